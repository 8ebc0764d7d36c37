import Foundation
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchStore

private func item(_ id: String, _ status: String, updatedOn: String = "2026-11-28T10:00:00Z") -> BulkItem {
    let json = #"{"bulkId":"\#(id)","status":"\#(status)","updatedOn":"\#(updatedOn)"}"#
    return BulkItem(bulkId: id, status: status, updatedOn: updatedOn, rawJSON: Array(json.utf8)[...])
}

private let detectedAt = Date(timeIntervalSince1970: 1_764_325_000.25)

/// Diffs `items` against `snapshot` and commits the outcome, as the watcher does.
@discardableResult
private func poll(
    _ store: SQLiteStore, _ snapshot: inout Snapshot, _ items: [BulkItem], first: Bool = false,
    target: String = "default"
) async throws -> CommitSummary {
    let outcome = SnapshotDiffer.apply(
        BulkListing(items: items), to: &snapshot, policy: DetectionPolicy(), isFirstRun: first)
    return try await store.commit(
        PollCommit(
            target: target, source: "https://\(target).example.com/bulk", outcome: outcome, snapshot: snapshot,
            detectedAt: detectedAt),
        fence: .exclusive)
}

/// The SQLite store answers a sink that keeps up from the events it has just committed (``RecentEvents``).
/// These tests hold that cache to the one rule that makes it safe: every answer is exactly what a read of
/// the file gives, which a second store opened on the same file (with nothing cached) reads.
@Suite("Recently committed events are read from memory, exactly as from the file")
struct RecentEventsTests {
    let path: String
    init() throws { path = try makeTemporaryDirectory("recent") + "/state.db" }

    /// Every read a dispatcher or `bulkwatch events` makes, on the cached store and on a fresh one.
    private func expectSameAnswers(
        _ cached: SQLiteStore, cursors: [Int64], sourceLocation: SourceLocation = #_sourceLocation
    )
        async throws
    {
        let file = try SQLiteStore(path: path)
        #expect(file.cachedEventCount == 0)
        let filters: [EventFilter] = [
            EventFilter(), EventFilter(kinds: [.changed]), EventFilter(kinds: [.created, .expired]),
            EventFilter(subject: "a-2"), EventFilter(targets: ["b"]), EventFilter(targets: ["a", "b"]),
            EventFilter(kinds: [.created], targets: ["a"]),
        ]
        for cursor in cursors {
            for filter in filters {
                for limit in [1, 2, 1000] {
                    let fromMemory = try await cached.events(after: cursor, limit: limit, filter: filter)
                    let fromFile = try await file.events(after: cursor, limit: limit, filter: filter)
                    #expect(
                        fromMemory == fromFile, "after \(cursor), limit \(limit), \(filter)",
                        sourceLocation: sourceLocation)
                    #expect(
                        fromMemory.map(\.target) == fromFile.map(\.target), "targets after \(cursor), \(filter)",
                        sourceLocation: sourceLocation)
                }
            }
            let routed = try await cached.routableEvents(after: cursor, limit: 1000, targets: ["a"])
            #expect(
                routed == (try await file.routableEvents(after: cursor, limit: 1000, targets: ["a"])),
                sourceLocation: sourceLocation)
        }
    }

    @Test func readsAfterACommitAreAnsweredFromMemoryWithTheFilesAnswer() async throws {
        let store = try SQLiteStore(path: path)
        var a = Snapshot()
        var b = Snapshot()
        try await poll(store, &a, [item("a-1", "PENDING"), item("a-2", "PENDING")], first: true, target: "a")
        try await poll(store, &b, [item("b-1", "PENDING")], first: true, target: "b")
        try await poll(
            store, &a, [item("a-1", "FINISHED", updatedOn: "2026-11-28T11:00:00Z"), item("a-3", "PENDING")],
            target: "a")
        let operational = try await store.append(
            operational: OperationalEvent(
                kind: .targetFailing, target: "b", since: detectedAt, failedAttempts: 3, lastError: "HTTP 500",
                at: detectedAt),
            target: "b", source: "https://b.example.com/bulk", fence: .exclusive)
        #expect(operational != nil)
        #expect(store.cachedEventCount == Int(try await store.lastSequence()))
        try await expectSameAnswers(store, cursors: [0, 1, 2, 3, 4, 5, 6, 7])
    }

    @Test func eventsAnotherWriterAppendedAreReadFromTheFile() async throws {
        let store = try SQLiteStore(path: path)
        var snapshot = Snapshot()
        try await poll(store, &snapshot, [item("a-1", "PENDING")], first: true, target: "a")
        // A second writer on the same file: the cache holds 1 but the journal ends at 2.
        var other = Snapshot()
        try await poll(try SQLiteStore(path: path), &other, [item("b-1", "PENDING")], first: true, target: "b")
        #expect(try await store.events(after: 0).map(\.subject) == ["a-1", "b-1"])
        // The next commit does not continue the cached run (2 is missing from it): it replaces the run.
        try await poll(store, &snapshot, [item("a-1", "FINISHED", updatedOn: "2026-11-28T11:00:00Z")], target: "a")
        #expect(store.cachedEventCount == 1)
        try await expectSameAnswers(store, cursors: [0, 1, 2, 3])
    }

    @Test func aPrunedEventIsNeverAnsweredFromMemory() async throws {
        let store = try SQLiteStore(path: path)
        try await store.markConfiguredSinks(["stdout"])
        var snapshot = Snapshot()
        try await poll(store, &snapshot, [item("a-1", "PENDING"), item("a-2", "PENDING")], first: true, target: "a")
        // The cursor moves in the file only (another process's write): this store still holds both events.
        #expect(try await SQLiteStore(path: path).advanceCursor(sink: "stdout", from: 0, to: 1, fence: .exclusive))
        #expect(store.cachedEventCount == 2)
        let future = detectedAt.addingTimeInterval(86_400)
        #expect(try await store.prune(target: "a", olderThan: future, sinks: ["stdout"]) == 1)
        // An operator rewinds `stdout` to the start: event 1 is gone from the file, so it is gone here too.
        #expect(try await store.events(after: 0).map(\.sequence) == [2])
        try await expectSameAnswers(store, cursors: [0, 1, 2])
    }

    @Test func eventsEveryConfiguredSinkDeliveredLeaveMemory() async throws {
        let store = try SQLiteStore(path: path)
        try await store.markConfiguredSinks(["stdout", "file:a"])
        var snapshot = Snapshot()
        try await poll(
            store, &snapshot, [item("a-1", "PENDING"), item("a-2", "PENDING"), item("a-3", "PENDING")], first: true,
            target: "a")
        #expect(store.cachedEventCount == 3)
        #expect(try await store.advanceCursor(sink: "stdout", from: 0, to: 3, fence: .exclusive))
        // file:a has not said where it stands: nothing is dropped on its behalf.
        #expect(store.cachedEventCount == 3)
        #expect(try await store.advanceCursor(sink: "file:a", from: 0, to: 2, fence: .exclusive))
        #expect(store.cachedEventCount == 1)
        #expect(try await store.events(after: 2).map(\.subject) == ["a-3"])
        #expect(try await store.advanceCursor(sink: "file:a", from: 2, to: 3, fence: .exclusive))
        #expect(store.cachedEventCount == 0)
        try await expectSameAnswers(store, cursors: [0, 2, 3])
    }

    @Test func aCommitLargerThanTheBudgetKeepsOnlyItsNewestEvents() async throws {
        let budget = 4_000
        let store = try SQLiteStore(path: path, recentEventBytes: budget)
        var snapshot = Snapshot()
        let items = (0..<60).map { item(String(format: "a-%03d", $0), "PENDING") }
        let summary = try await poll(store, &snapshot, items, first: true, target: "a")
        #expect(summary.count == 60 && summary.sequences == 1...60)
        // What the file holds, read by a store with nothing cached.
        let stored = try await SQLiteStore(path: path).events(after: 0, limit: Int.max, filter: EventFilter())
        let held = store.cachedEventCount
        #expect(held > 0 && held < 60)
        #expect(stored.suffix(held).reduce(0) { $0 + $1.body.count } <= budget)
        #expect(stored.suffix(held + 1).reduce(0) { $0 + $1.body.count } > budget)
        // A read from the start is not in memory and comes from the file, whole; one near the end is.
        #expect(try await store.events(after: 0, limit: Int.max, filter: EventFilter()).count == 60)
        #expect(try await store.events(after: 55).map(\.sequence) == [56, 57, 58, 59, 60])
        try await expectSameAnswers(store, cursors: [0, Int64(60 - held), 55, 60])
    }
}
