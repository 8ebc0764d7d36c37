import Foundation

/// The watcher's timing rules, as pure functions so they can be tested without waiting.
public enum Schedule {
    /// The first fixed-rate tick strictly after `now`, on the grid `start + k·interval`.
    ///
    /// Fixed rate, not fixed delay: a 300 ms poll at a 5 s interval still polls every 5 s, and
    /// ticks missed while a poll overran are skipped, never queued up and fired back to back.
    public static func nextTick(
        after now: ContinuousClock.Instant, start: ContinuousClock.Instant, interval: Duration
    ) -> ContinuousClock.Instant {
        guard now >= start else { return start }
        let elapsed = now - start
        let ticks = Int64((elapsed / interval).rounded(.down)) + 1
        return start + interval * ticks
    }

    /// Delay before retry number `failures` (1 = first retry) after failed polls: exponential from
    /// `base` with full jitter, capped at `cap`; a server's `Retry-After` wins when longer.
    ///
    /// Full jitter (uniform in 0…min(cap, base·2ⁿ)) spreads retries of many watchers apart instead
    /// of synchronising them on the same upstream outage.
    public static func backoff(
        failures: Int, base: Duration, cap: Duration, retryAfter: Duration?,
        using random: inout some RandomNumberGenerator
    ) -> Duration {
        let exponent = min(max(failures - 1, 0), 30)
        let ceiling = min(cap, base * (1 << exponent))
        let ceilingNanos = max(Int64(1), ceiling.nanoseconds)
        let jittered = Duration.nanoseconds(Int64.random(in: 0...ceilingNanos, using: &random))
        guard let retryAfter else { return jittered }
        return max(jittered, retryAfter)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Parses `300ms`, `30s`, `5m`, `1h`, `1.5s` (a bare number means seconds).
    public init?(parsing text: String) {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        var number = Substring(text.trimmingCharacters(in: .whitespaces))
        var scale = 1.0
        for (suffix, factor) in units where number.hasSuffix(suffix) {
            number = number.dropLast(suffix.count)
            scale = factor
            break
        }
        // Past Int64 nanoseconds (about 292 years) is refused rather than trapping (fuzz finding).
        guard let value = Double(number), value.isFinite, value >= 0,
            let nanoseconds = Int64(exactly: (value * scale * 1e9).rounded())
        else { return nil }
        self = .nanoseconds(nanoseconds)
    }
}
