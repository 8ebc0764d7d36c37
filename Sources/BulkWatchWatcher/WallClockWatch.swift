import BulkWatchSupport
import Foundation

/// Notices the wall clock jumping: between two looks, the wall clock moved more than `tolerance` differently
/// from the monotonic clock (an NTP step, `date -s`, a VM restored from a snapshot).
///
/// Why bother: detection, event ids, the schedule and token lifetimes never read the wall clock, but event
/// `time`s, retention pruning and the webhook max age do. A jump is not an error, yet an operator reading
/// event times an hour off, or dead letters after a leap forward, deserves one line saying why.
struct WallClockWatch: Sendable {
    private var wall: Date
    private var monotonic: ContinuousClock.Instant
    private let tolerance: Duration

    init(tolerance: Duration = .seconds(2), wall: Date = Date(), monotonic: ContinuousClock.Instant = .now) {
        self.wall = wall
        self.monotonic = monotonic
        self.tolerance = tolerance
    }

    /// The jump since the last look (positive: forward), or nil when the two clocks agree within the tolerance.
    mutating func jump(wall now: Date = Date(), monotonic instant: ContinuousClock.Instant = .now) -> Duration? {
        let wallElapsed = Duration.milliseconds(Int64((now.timeIntervalSince(wall) * 1000).rounded()))
        let drift = wallElapsed - (instant - monotonic)
        wall = now
        monotonic = instant
        return drift > tolerance || drift < .zero - tolerance ? drift : nil
    }

    /// The log line for a jump.
    static func describe(_ jump: Duration) -> String {
        let seconds = jump.seconds
        let direction = seconds > 0 ? "forward" : "backward"
        return
            "wall clock jumped \(direction) by \(String(format: "%.1f", abs(seconds)))s (the monotonic clock did not):"
            + " event times follow the wall clock; detection, ids and the schedule do not depend on it"
    }
}
