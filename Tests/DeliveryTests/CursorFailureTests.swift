import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch

/// The real SQLite store, with its next `failures` cursor writes failing as a full disk would, and each
/// cursor write taking `writeDelay` longer, as a PostgreSQL commit with fsync or a writer busy with a
/// poll's commit does: faults injected at the store's edge, everything else real.
private final class FailingCursorWrites: Store {
    let base: SQLiteStore
    let remaining: Mutex<Int>
    let writeDelay: Duration
    let attempts = Mutex(0)

    init(_ base: SQLiteStore, failures: Int, writeDelay: Duration = .zero) {
        self.base = base
        remaining = Mutex(failures)
        self.writeDelay = writeDelay
    }

    struct DiskFull: Error, CustomStringConvertible {
        var description: String { "database or disk is full" }
    }

    var location: String { base.location }
    func journalID() async throws -> String { try await base.journalID() }
    func loadSnapshot(target: String) async throws -> StoredSnapshot { try await base.loadSnapshot(target: target) }
    func commit(_ poll: PollCommit, fence: StoreFence) async throws -> CommitSummary {
        try await base.commit(poll, fence: fence)
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
        try await base.append(operational: event, target: target, source: source, fence: fence)
    }
    func openOutage(target: String) async throws -> (since: Date, failedAttempts: Int)? {
        try await base.openOutage(target: target)
    }
    func cursorState(sink: String) async throws -> CursorState? { try await base.cursorState(sink: sink) }
    func advanceCursor(sink: String, from expected: Int64, to sequence: Int64, filtered: Int, fence: StoreFence)
        async throws -> Bool
    {
        attempts.withLock { $0 += 1 }
        if writeDelay > .zero { try await Task.sleep(for: writeDelay) }
        let fail = remaining.withLock { count -> Bool in
            guard count > 0 else { return false }
            count -= 1
            return true
        }
        if fail { throw DiskFull() }
        return try await base.advanceCursor(sink: sink, from: expected, to: sequence, filtered: filtered, fence: fence)
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
        try await base.deadLetter(
            sink: sink, events: events, reason: reason, attempts: attempts, cursorFrom: expected, fence: fence)
    }
    func deadLetters(sink: String?) async throws -> [DeadLetter] { try await base.deadLetters(sink: sink) }
    func removeDeadLetter(sink: String, sequence: Int64) async throws -> Bool {
        try await base.removeDeadLetter(sink: sink, sequence: sequence)
    }
    func sinkStatuses() async throws -> [SinkStatus] { try await base.sinkStatuses() }
}

@Suite("A cursor that cannot be written is a store problem, not a delivery failure")
struct CursorFailureTests {
    @Test func aFailingCursorWriteNeitherResendsNorDeadLetters() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(1)
        let store = FailingCursorWrites(fixture.journal, failures: 5)
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(try await dispatch(store, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 1 })
        // Delivered once: the five failed cursor writes were retried on their own, not as deliveries.
        #expect(server.requests.count == 1)
        #expect(store.attempts.withLock { $0 } == 6)
        #expect(try await fixture.journal.deadLetters().isEmpty)
    }

    /// A slow cursor write does not hold back the deliveries after it: while one write is in flight the
    /// next events go out, and the next write records them all at once. Before, every one-event POST
    /// waited for the previous event's cursor write (with PostgreSQL's fsync'd commits: ~400 events/s, and
    /// with SQLite beside a committing poller: a queue of ~100 ms at 500 events/s).
    @Test func aSlowCursorWriteDoesNotHoldBackTheNextDeliveries() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(40)
        let store = FailingCursorWrites(fixture.journal, failures: 0, writeDelay: .milliseconds(100))
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(try await dispatch(store, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 40 })
        #expect(server.requests.count == 40, "each event delivered once, unbatched")
        let writes = store.attempts.withLock { $0 }
        #expect(writes <= 10, "\(writes) cursor writes for 40 one-event posts: they are not coalesced")
    }
}
