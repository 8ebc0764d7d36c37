package import BulkWatchStore
import BulkWatchSupport
package import Foundation

/// Decides when a target's outage becomes a `bulkwatch.target.failing` event and when its end
/// becomes `bulkwatch.target.recovered` (DESIGN.md §9).
///
/// A value the watcher owns and feeds with each poll's outcome and the time it happened; it keeps
/// no clock of its own, so a test can run a long outage on made-up times. Guarantees: at most one
/// failing event per outage however long it lasts (never a flood), a recovered event only after a
/// failing one, and nothing at all for an outage shorter than `failingAfter`.
package struct TargetHealthTracker: Sendable, Equatable {
    package var target: String
    package var failingAfter: Duration
    /// First failure of the current outage; nil while polls succeed.
    package private(set) var failingSince: Date?
    package private(set) var failedAttempts = 0
    package private(set) var lastError = ""
    /// Whether this outage's failing event was raised.
    package private(set) var reported = false

    package init(target: String, failingAfter: Duration) {
        self.target = target
        self.failingAfter = failingAfter
    }

    /// Records a failed poll at `now`; returns the failing event when the outage has just lasted
    /// `failingAfter`.
    package mutating func pollFailed(error: String, at now: Date) -> OperationalEvent? {
        let since = failingSince ?? now
        failingSince = since
        failedAttempts += 1
        lastError = error
        guard !reported, now.timeIntervalSince(since) >= failingAfter.timeInterval else { return nil }
        reported = true
        return OperationalEvent(
            kind: .targetFailing, target: target, since: since, failedAttempts: failedAttempts, lastError: error,
            at: now)
    }

    /// Records a successful poll at `now`; returns the recovered event when a failing one was raised.
    package mutating func pollSucceeded(at now: Date) -> OperationalEvent? {
        defer {
            failingSince = nil
            failedAttempts = 0
            lastError = ""
            reported = false
        }
        guard reported, let since = failingSince else { return nil }
        return OperationalEvent(
            kind: .targetRecovered, target: target, since: since, failedAttempts: failedAttempts,
            lastError: lastError, at: now)
    }

    /// Continues an outage whose failing event is already journaled (the watcher restarted during
    /// it): no second failing event, and the next successful poll raises the recovered one.
    package mutating func resume(outageSince since: Date, failedAttempts: Int) {
        failingSince = since
        self.failedAttempts = failedAttempts
        reported = true
    }

    /// The failing event returned last could not be journaled: raise it again on the next failure
    /// rather than staying silent for the rest of the outage.
    package mutating func failingEventNotRecorded() {
        reported = false
    }

}
