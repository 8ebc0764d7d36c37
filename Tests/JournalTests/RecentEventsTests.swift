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

    /// A commit encoded in chunks by two encoders (``EventEncodingPipeline``) reaches the cache chunk by chunk, the
    /// first becoming the run itself: the run holds every event once, in order, and answers as the file does,
    /// also across chunk boundaries and after a second such commit.
    @Test func aCommitOfSeveralChunksIsCachedWholeAndInOrder() async throws {
        let store = try SQLiteStore(path: path)
        var snapshot = Snapshot()
        let count = 3 * EventEncodingPipeline.chunkSize - 100
        #expect(count >= EventEncodingPipeline.threadedFrom)
        let items = (0..<count).map { item("a-\($0)", "PENDING") }
        try await poll(store, &snapshot, items, first: true, target: "a")
        #expect(store.cachedEventCount == count)
        let changed = items.map { item($0.bulkId, "FINISHED", updatedOn: "2026-11-28T11:00:00Z") }
        try await poll(store, &snapshot, changed, target: "a")
        #expect(store.cachedEventCount == 2 * count)
        let all = try await store.events(after: 0, limit: 3 * count)
        #expect(all.map(\.sequence) == Array(1...Int64(2 * count)))
        let chunk = Int64(EventEncodingPipeline.chunkSize)
        try await expectSameAnswers(
            store, cursors: [0, chunk - 1, chunk, 2 * chunk + 1, Int64(count), Int64(count + 1)])
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

/// The commit writes most events from one reused buffer, binds their columns in place, and builds only the
/// events it keeps in memory. Each row must still be exactly the event `CloudEventEncoder.encode` renders,
/// whether it was kept or not, and the events kept must be the newest that fit the budget.
@Suite("The commit's events are the encoder's, kept in memory or not")
struct CommitEncodingTests {
    let path: String
    init() throws { path = try makeTemporaryDirectory("commit-encoding") + "/state.db" }

    /// An item whose bulkId and status need JSON escapes.
    private static let escaped = BulkItem(
        bulkId: "q\"uo\\te\u{01}", status: "PEN\nDING", updatedOn: "2026-11-28T10:00:00Z",
        rawJSON: Array(#"{"bulkId":"q\"uo\\te\u0001","status":"PEN\nDING","updatedOn":"2026-11-28T10:00:00Z"}"#.utf8)[
            ...])

    @Test(arguments: [0, 1_500, 4_000, SQLiteStore.recentEventsBudget])
    func everyStoredEventIsTheEncodersWhetherKeptOrNot(budget: Int) async throws {
        let source = "https://a.example.com/bulk"
        let time = RFC3339.millisecondsUTC(detectedAt)
        let store = try SQLiteStore(path: path, recentEventBytes: budget)
        var snapshot = Snapshot()
        var expected: [JournalEvent] = []
        var recorded: [String: Int64] = [:]  // the incarnation book, kept independently
        // created (escapes included); a change and a new one; a removal confirmed (expired); its return
        // (created in its second incarnation); an item with an empty object.
        let polls: [[BulkItem]] = [
            (1...30).map { item("a-\($0)", "PENDING") } + [Self.escaped],
            [item("a-1", "FINISHED", updatedOn: "2026-11-28T10:05:00Z")] + (3...31).map { item("a-\($0)", "PENDING") }
                + [Self.escaped],
            [item("a-1", "FINISHED", updatedOn: "2026-11-28T10:05:00Z")] + (3...31).map { item("a-\($0)", "PENDING") }
                + [Self.escaped],
            (1...31).map { item("a-\($0)", "PENDING") } + [Self.escaped]
                + [BulkItem(bulkId: "empty", rawJSON: Array(#"{}"#.utf8)[...])],
        ]
        for (index, items) in polls.enumerated() {
            let outcome = SnapshotDiffer.apply(
                BulkListing(items: items), to: &snapshot, policy: DetectionPolicy(), isFirstRun: index == 0)
            let summary = try await store.commit(
                PollCommit(target: "a", source: source, outcome: outcome, snapshot: snapshot, detectedAt: detectedAt),
                fence: .exclusive)
            for (offset, change) in outcome.changes.enumerated() {
                let bulkId = change.item.bulkId
                let incarnation: Int64
                switch change.kind {
                case .created:
                    incarnation = recorded[bulkId].map { $0 + 1 } ?? 0
                    if recorded[bulkId] != nil { recorded[bulkId] = incarnation }
                case .changed: incarnation = recorded[bulkId] ?? 0
                case .expired:
                    incarnation = recorded[bulkId] ?? 0
                    recorded[bulkId] = incarnation
                }
                expected.append(
                    CloudEventEncoder.encode(
                        change, source: source, sequence: summary.firstSequence + Int64(offset), time: time,
                        incarnation: incarnation))
            }
        }
        #expect(Set(expected.map(\.kind)) == Set<JournalEvent.Kind>([.created, .changed, .expired]))
        #expect(recorded["a-2"] == 1, "a-2 expired and came back in its second incarnation")
        // The file, read by a store with nothing cached: columns and bodies.
        let stored = try await SQLiteStore(path: path).events(after: 0, limit: Int.max, filter: EventFilter())
        #expect(stored == expected)
        for event in stored {
            let object = try #require(JSONSerialization.jsonObject(with: Data(event.body)) as? [String: Any])
            #expect(object["id"] as? String == event.id && object["type"] as? String == event.kind.type)
            #expect(object["subject"] as? String == event.subject && object["time"] as? String == event.time)
            #expect(object["sequence"] as? String == String(event.sequence))
        }
        #expect(stored.first { $0.subject == Self.escaped.bulkId } != nil)
        // What memory answers is the file's answer, and it is the newest events that fit the budget.
        let held = store.cachedEventCount
        let bodies = stored.map(\.body.count)
        #expect(bodies.suffix(held).reduce(0, +) <= budget)
        if held < stored.count { #expect(bodies.suffix(held + 1).reduce(0, +) > budget) }
        #expect(try await store.events(after: 0, limit: Int.max, filter: EventFilter()) == expected)
        #expect(
            try await store.events(after: 0, limit: Int.max, filter: EventFilter()).map(\.target)
                == stored.map(\.target))
    }

    @Test func theBodyLengthIsTheLengthOfTheBodyWritten() {
        let source = CloudEventEncoder.Source("https://user:pw@a.example.com/bu\"lk")
        let changes = [
            DetectedChange(kind: .created, item: item("a-1", "PENDING")),
            DetectedChange(kind: .created, item: Self.escaped),
            DetectedChange(
                kind: .changed, item: Self.escaped,
                previous: PreviousState(status: "A\u{02}\"", updatedOn: nil)),
            DetectedChange(kind: .expired, item: BulkItem(bulkId: "e", rawJSON: Array(#" { } "#.utf8)[...])),
            DetectedChange(kind: .created, item: BulkItem(bulkId: "n", rawJSON: Array("[1]".utf8)[...])),
        ]
        for change in changes {
            for sequence: Int64 in [1, 9, 10, 999, 1_000_000, Int64.max] {
                let event = CloudEventEncoder.encode(change, source: source, sequence: sequence, time: "T")
                #expect(
                    CloudEventEncoder.bodyLength(of: change, source: source, sequence: sequence, time: "T")
                        == event.body.count, "\(change.kind) \(change.item.bulkId) \(sequence)")
                let timed = CloudEventEncoder.encode(
                    change, source: source, sequence: sequence, time: "2026-12-01T00:00:00.000Z")
                #expect(CloudEventEncoder.bodyLengthBound(of: change, source: source) >= timed.body.count)
                #expect((try? JSONSerialization.jsonObject(with: Data(event.body))) is [String: Any])
            }
        }
    }

    @Test func eachKindsTypeIsItsPrefixAndName() {
        for kind in JournalEvent.Kind.allCases {
            #expect(kind.type == (kind.isBulk ? "bulk." : "bulkwatch.") + kind.rawValue)
            #expect(kind.staticType.description == kind.type)
            #expect(JournalEvent.Kind(type: kind.type) == kind)
        }
    }

    /// The commit decides which events to build from their lengths alone; what it builds must be exactly
    /// what ``RecentEvents/append(_:)`` keeps of them, at every budget.
    @Test func theFirstKeptIsWhereTheNewestThatFitBegin() {
        let lengths = [5, 4, 3, 2, 1]
        #expect(RecentEvents.firstKept(of: 5, budget: 0, bound: { lengths[$0] + 1 }) { lengths[$0] } == 5)
        #expect(RecentEvents.firstKept(of: 5, budget: 2, bound: { lengths[$0] + 1 }) { lengths[$0] } == 4)
        #expect(RecentEvents.firstKept(of: 5, budget: 3, bound: { lengths[$0] + 1 }) { lengths[$0] } == 3)
        #expect(RecentEvents.firstKept(of: 5, budget: 6, bound: { lengths[$0] + 1 }) { lengths[$0] } == 2)
        #expect(RecentEvents.firstKept(of: 5, budget: 15, bound: { lengths[$0] + 1 }) { lengths[$0] } == 0)
        let allFit = RecentEvents.firstKept(of: 5, budget: 20, bound: { lengths[$0] }) { index in
            Issue.record("no exact length is needed when the bounds fit")
            return lengths[index]
        }
        #expect(allFit == 0)
        #expect(RecentEvents.firstKept(of: 0, budget: 15, bound: { lengths[$0] + 1 }) { lengths[$0] } == 0)
        let batch = lengths.enumerated().map { index, length in
            JournalEvent(
                sequence: Int64(index + 1), id: "", kind: JournalEvent.Kind.created, subject: "", time: "",
                body: [UInt8](repeating: 0, count: length))
        }
        for budget in 0...16 {
            var recent = RecentEvents(byteBudget: budget)
            recent.append(batch)
            #expect(
                lengths.count - recent.count
                    == RecentEvents.firstKept(of: 5, budget: budget, bound: { lengths[$0] + 1 }) { lengths[$0] },
                "budget \(budget)")
        }
    }
}
