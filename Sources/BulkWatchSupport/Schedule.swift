/// The watcher's timing rules, as pure functions so they can be tested without waiting.
package enum Schedule {
    /// The first fixed-rate tick strictly after `now`, on the grid `start + k·interval`.
    ///
    /// Fixed rate, not fixed delay: a 300 ms poll at a 5 s interval still polls every 5 s, and
    /// ticks missed while a poll overran are skipped, never queued up and fired back to back.
    ///
    /// Generic over the instant so the watcher can run the same rule on a test clock as on
    /// `ContinuousClock`; it reads no clock itself.
    package static func nextTick<Instant: InstantProtocol<Duration>>(
        after now: Instant, start: Instant, interval: Duration
    ) -> Instant {
        guard now >= start else { return start }
        let elapsed = start.duration(to: now)
        let ticks = Int64((elapsed / interval).rounded(.down)) + 1
        return start.advanced(by: interval * ticks)
    }

    /// Delay before retry number `failures` (1 = first retry) after failed polls: exponential from
    /// `base` with full jitter, capped at `cap`; a server's `Retry-After` wins when longer.
    ///
    /// Full jitter (uniform in 0…min(cap, base·2ⁿ)) spreads retries of many watchers apart instead
    /// of synchronising them on the same upstream outage.
    package static func backoff(
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
