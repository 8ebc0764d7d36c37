package import Foundation

/// The one place that turns a `Duration` into numbers and text, and text into a `Duration`: the
/// metrics, the schedule, the retention cut-offs, libcurl's millisecond timeouts and the log lines
/// each needed a conversion, and five hand-written copies had started to round differently.
extension Duration {
    /// Fractional seconds, for metrics and `TimeInterval` arithmetic.
    package var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// Whole nanoseconds (truncated), the unit the schedule's jitter works in.
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// The same span as a Foundation `TimeInterval`, for `Date` arithmetic.
    package var timeInterval: TimeInterval { seconds }

    /// Whole milliseconds, rounded up so a tiny positive duration never becomes "no limit" (0).
    package var roundedUpMilliseconds: Int {
        let (seconds, attoseconds) = components
        let millis = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int(max(0, millis))
    }

    /// `30s`, `1.5s`, `250ms`: for log lines.
    package var shortDescription: String {
        let millis = nanoseconds / 1_000_000
        if millis >= 1000, millis % 1000 == 0 { return "\(millis / 1000)s" }
        return millis < 1000 ? "\(millis)ms" : String(format: "%.1fs", Double(millis) / 1000)
    }

    /// Parses `300ms`, `30s`, `5m`, `1h`, `1.5s`, `7d` (a bare number means seconds); nil for
    /// anything else, negative, or past Int64 nanoseconds (about 292 years), which would trap.
    package init?(parsing text: String) {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        var number = Substring(text.trimmingCharacters(in: .whitespaces))
        var scale = 1.0
        for (suffix, factor) in units where number.hasSuffix(suffix) {
            number = number.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value >= 0,
            let nanoseconds = Int64(exactly: (value * scale * 1e9).rounded())
        else { return nil }
        self = .nanoseconds(nanoseconds)
    }
}
