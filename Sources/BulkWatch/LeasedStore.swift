import BulkWatchDetect
import BulkWatchStore
import Foundation

/// The store as one lease holder (a watcher or a sink's dispatcher) sees it in replicated mode: every
/// call goes to the shared store unchanged, and the outcome of each fenced write is reported to the
/// ``LeaseCoordinator``.
///
/// Why a wrapper: a ``FencedOut`` is the surest sign that a lease was lost (the database says so, in
/// the write's own transaction), and the watcher treats it like any failed commit and retries; the
/// coordinator must instead stop the holder at once. The first successful commit under a new lease is
/// also what ends a failover, for its measurement.
struct LeasedStore: Store {
    let base: any Store
    /// Called after each fenced write: nil error for a commit that went through.
    let reported: @Sendable (StoreFence, FencedOut?) -> Void

    var location: String { base.location }

    private func fenced<T>(_ fence: StoreFence, _ write: () async throws -> T) async throws -> T {
        do {
            let value = try await write()
            reported(fence, nil)
            return value
        } catch let error as FencedOut {
            reported(fence, error)
            throw error
        }
    }

    func journalID() async throws -> String { try await base.journalID() }
    func loadSnapshot(target: String) async throws -> StoredSnapshot { try await base.loadSnapshot(target: target) }

    func commit(_ poll: PollCommit, fence: StoreFence) async throws -> CommitSummary {
        try await fenced(fence) { try await base.commit(poll, fence: fence) }
    }

    func maintain(target: String, snapshot: Snapshot) async throws {
        try await base.maintain(target: target, snapshot: snapshot)
    }

    func prune(target: String, olderThan cutoff: Date, sinks: [String], incarnationCutoff: Date?) async throws -> Int {
        try await base.prune(target: target, olderThan: cutoff, sinks: sinks, incarnationCutoff: incarnationCutoff)
    }

    func events(after: Int64, limit: Int, filter: EventFilter) async throws -> [JournalEvent] {
        try await base.events(after: after, limit: limit, filter: filter)
    }

    func count(after: Int64, filter: EventFilter) async throws -> Int {
        try await base.count(after: after, filter: filter)
    }

    func lastSequence() async throws -> Int64 { try await base.lastSequence() }
    func event(sequence: Int64) async throws -> JournalEvent? { try await base.event(sequence: sequence) }
    func event(id: String) async throws -> JournalEvent? { try await base.event(id: id) }

    func routableEvents(after: Int64, limit: Int, targets: Set<String>?) async throws -> [JournalEvent] {
        try await base.routableEvents(after: after, limit: limit, targets: targets)
    }

    func append(operational event: OperationalEvent, target: String, source: String, fence: StoreFence)
        async throws -> JournalEvent?
    {
        try await fenced(fence) {
            try await base.append(operational: event, target: target, source: source, fence: fence)
        }
    }

    func openOutage(target: String) async throws -> (since: Date, failedAttempts: Int)? {
        try await base.openOutage(target: target)
    }

    func cursorState(sink: String) async throws -> CursorState? { try await base.cursorState(sink: sink) }

    func advanceCursor(sink: String, from expected: Int64, to sequence: Int64, filtered: Int, fence: StoreFence)
        async throws -> Bool
    {
        try await fenced(fence) {
            try await base.advanceCursor(sink: sink, from: expected, to: sequence, filtered: filtered, fence: fence)
        }
    }

    func filteredCounts() async throws -> [String: Int64] { try await base.filteredCounts() }
    func rewindCursor(sink: String, to sequence: Int64) async throws {
        try await base.rewindCursor(sink: sink, to: sequence)
    }

    func recordSinkError(sink: String, message: String) async throws {
        try await base.recordSinkError(sink: sink, message: message)
    }

    func markConfiguredSinks(_ names: [String]) async throws { try await base.markConfiguredSinks(names) }

    func deadLetter(
        sink: String, events: [JournalEvent], reason: String, attempts: Int, cursorFrom expected: Int64,
        fence: StoreFence
    ) async throws -> Bool {
        try await fenced(fence) {
            try await base.deadLetter(
                sink: sink, events: events, reason: reason, attempts: attempts, cursorFrom: expected, fence: fence)
        }
    }

    func deadLetters(sink: String?) async throws -> [DeadLetter] { try await base.deadLetters(sink: sink) }

    func removeDeadLetter(sink: String, sequence: Int64) async throws -> Bool {
        try await base.removeDeadLetter(sink: sink, sequence: sequence)
    }

    func sinkStatuses() async throws -> [SinkStatus] { try await base.sinkStatuses() }
}
