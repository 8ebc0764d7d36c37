import Foundation
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchStore

#if canImport(Glibc)
    import Glibc
#endif

private func item(_ id: String, _ status: String, updatedOn: String = "2026-11-28T10:00:00Z", extra: String = "")
    -> BulkItem
{
    let json = #"{"bulkId":"\#(id)","status":"\#(status)","updatedOn":"\#(updatedOn)"\#(extra)}"#
    return BulkItem(bulkId: id, status: status, updatedOn: updatedOn, rawJSON: Array(json.utf8)[...])
}

private func listing(_ items: BulkItem...) -> BulkListing { BulkListing(items: items) }

/// A file's bytes.
private func fileBytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

/// Diffs and commits like the watcher does, returning the stored events.
private func poll(
    _ journal: any Store, _ snapshot: inout Snapshot, _ listing: BulkListing, first: Bool = false,
    target: String = "default", source: String = "https://api.example.com/bulk"
) async throws -> [JournalEvent] {
    let outcome = SnapshotDiffer.apply(listing, to: &snapshot, policy: DetectionPolicy(), isFirstRun: first)
    return try await journal.commitReadingBack(
        PollCommit(
            target: target, source: source, outcome: outcome, snapshot: snapshot,
            detectedAt: Date(timeIntervalSince1970: 1_764_325_000.25)),
        fence: .exclusive)
}

/// The store backends the suite runs against; each invariant of DESIGN.md §1 is checked on every one.
enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    /// Opens (creating) the store named `name` in `directory`; the same name opens the same store again.
    func open(_ directory: String, _ name: String = "state") async throws -> any Store {
        switch self {
        case .sqlite: try SQLiteStore(path: "\(directory)/\(name).db")
        case .postgres: try await PostgresTestStores.open(directory, name)
        }
    }

    var testDescription: String { rawValue }
}

extension Store {
    /// Moves the cursor to `sequence` whatever it was (tests only).
    fileprivate func moveCursor(sink: String, to sequence: Int64) async throws {
        _ = try await advanceCursor(sink: sink, from: cursor(sink: sink) ?? 0, to: sequence, fence: .exclusive)
    }
}

@Suite("Store invariants (DESIGN.md §1), per backend", .runsPostgresStores)
struct StoreTests {
    let directory: String
    init() throws { directory = try makeTemporaryDirectory("store") }

    @Test func createsTheDatabaseReadableOnlyByItsOwner() async throws {
        let path = directory + "/state.db"
        let journal = try SQLiteStore(path: path)
        var snapshot = Snapshot()
        _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING")), first: true)
        for file in [path, path + "-wal"] where FileManager.default.fileExists(atPath: file) {
            var info = stat()
            #expect(stat(file, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600, "\(file)")
        }
    }

    @Test(arguments: StoreBackend.allCases) func storesEventsWithContiguousSequencesAndValidCloudEvents(
        backend: StoreBackend
    ) async throws {
        let journal = try await backend.open(directory)
        var snapshot = Snapshot()
        let first = try await poll(
            journal, &snapshot,
            listing(item("b-1", "PENDING", extra: #","owner":{"team":"x"}"#), item("b-2", "PENDING")),
            first: true)
        let second = try await poll(
            journal, &snapshot,
            listing(item("b-1", "FINISHED", updatedOn: "2026-11-28T10:05:00Z"), item("b-2", "PENDING")))
        #expect(first.map(\.sequence) == [1, 2])
        #expect(second.map(\.sequence) == [3])
        let stored = try await journal.allEvents()
        #expect(stored == first + second)

        let created = try #require(JSONSerialization.jsonObject(with: Data(stored[0].body)) as? [String: Any])
        #expect(created["specversion"] as? String == "1.0")
        #expect(created["type"] as? String == "bulk.created")
        #expect(created["subject"] as? String == "b-1")
        #expect(created["sequence"] as? String == "1")
        #expect(created["time"] as? String == "2025-11-28T10:16:40.250Z")
        #expect(created["source"] as? String == "https://api.example.com/bulk")
        let createdData = try #require(created["data"] as? [String: Any])
        #expect((createdData["owner"] as? [String: Any])?["team"] as? String == "x", "unknown fields pass through")
        #expect(createdData["previous"] is NSNull)

        let changed = try #require(JSONSerialization.jsonObject(with: Data(stored[2].body)) as? [String: Any])
        let previous = try #require((changed["data"] as? [String: Any])?["previous"] as? [String: Any])
        #expect(previous["status"] as? String == "PENDING")
        #expect(previous["updatedOn"] as? String == "2026-11-28T10:00:00Z")
    }

    /// The commit is atomic with the snapshot, so the same change is never committed twice and needs no
    /// dedupe by id; what must hold is that the id depends only on the change (and its incarnation).
    @Test(arguments: StoreBackend.allCases) func eventIDsAreStableAcrossJournals(backend: StoreBackend) async throws {
        let journal = try await backend.open(directory)
        var snapshot = Snapshot()
        let first = try await poll(journal, &snapshot, listing(item("b-1", "PENDING")), first: true)
        var elsewhere = Snapshot()
        let again = try await poll(
            try await backend.open(directory, "other"), &elsewhere, listing(item("b-1", "PENDING")), first: true)
        #expect(again.map(\.id) == first.map(\.id))

        let change = DetectedChange(kind: .created, item: item("b-1", "PENDING"))
        let id = CloudEventEncoder.stableID(source: "https://api.example.com/bulk", change: change)
        #expect(first.first?.id == id)
        var other = change
        other.item.status = "FINISHED"
        #expect(CloudEventEncoder.stableID(source: "https://api.example.com/bulk", change: other) != id)
        #expect(CloudEventEncoder.stableID(source: "https://other.example.com/bulk", change: change) != id)
        #expect(id.count == 36 && id.split(separator: "-").count == 5)
    }

    @Test(arguments: StoreBackend.allCases) func snapshotAndAbsenceCountersSurviveAReopen(backend: StoreBackend)
        async throws
    {
        var snapshot = Snapshot()
        do {
            let journal = try await backend.open(directory)
            _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING")), first: true)
            _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING")))
        }
        let reopened = try await backend.open(directory)
        let loaded = try await reopened.loadSnapshot(target: "default")
        let (stored, hasBaseline) = (loaded.snapshot, loaded.hasBaseline)
        #expect(hasBaseline)
        #expect(stored.count == 2)
        #expect(stored["b-2"]?.absentPolls == 1)
        #expect(stored["b-1"]?.item.rawJSON.elementsEqual(item("b-1", "PENDING").rawJSON) == true)
        // The second absence, after the restart, expires it: the counter was not lost.
        var restored = stored
        let events = try await poll(reopened, &restored, listing(item("b-1", "PENDING")))
        #expect(events.map(\.kind) == [.expired])
        #expect(try await reopened.loadSnapshot(target: "default").snapshot.count == 1)
    }

    /// The store remembers which operations ever expired; a restart between the expiry and the return must not
    /// forget it, or the new life would reuse the old life's ids.
    @Test(arguments: StoreBackend.allCases) func anOperationBackAfterARestartIsStillANewIncarnation(
        backend: StoreBackend
    ) async throws {
        let life = item("b-1", "FINISHED")
        do {
            let journal = try await backend.open(directory)
            var snapshot = Snapshot()
            _ = try await poll(journal, &snapshot, listing(life, item("b-2", "PENDING")), first: true)
            for _ in 1...2 { _ = try await poll(journal, &snapshot, listing(item("b-2", "PENDING"))) }
        }
        let reopened = try await backend.open(directory)
        var snapshot = try await reopened.loadSnapshot(target: "default").snapshot
        let back = try await poll(reopened, &snapshot, listing(life, item("b-2", "PENDING")))
        #expect(back.map(\.kind) == [.created])
        #expect(back.first?.id == "c191b46d-1833-8992-9393-03958f373cf4")
    }

    /// The SQLite store keeps the ids that ever expired in memory, and a commit takes that set out to grow it in
    /// place. A commit that fails inside its transaction (here: the incarnations table is renamed away by
    /// another process, then back) must not leave the store without them: the next commit reads them back from
    /// the table, so a return is still a new incarnation.
    @Test func aFailedCommitForgetsNoExpiredOperation() async throws {
        let path = directory + "/state.db"
        let journal = try SQLiteStore(path: path)
        let life = item("b-1", "FINISHED")
        var snapshot = Snapshot()
        _ = try await poll(journal, &snapshot, listing(life, item("b-2", "PENDING")), first: true)
        for _ in 1...2 { _ = try await poll(journal, &snapshot, listing(item("b-2", "PENDING"))) }
        #expect(snapshot["b-1"] == nil, "b-1 expired")

        try sqliteShell(path, "ALTER TABLE incarnation_log RENAME TO incarnations_away")
        var attempt = snapshot
        let error = await #expect(throws: JournalError.self) {
            _ = try await poll(journal, &attempt, listing(life, item("b-2", "PENDING")))
        }
        // One line naming the file and SQLite's reason, not GRDB's quote of the statement.
        #expect(
            error?.description == "cannot commit to \(path): no such table: incarnation_log")
        try sqliteShell(path, "ALTER TABLE incarnations_away RENAME TO incarnation_log")

        let back = try await poll(journal, &snapshot, listing(life, item("b-2", "PENDING")))
        #expect(back.map(\.kind) == [.created])
        // The id of b-1's second life (anOperationBackAfterARestartIsStillANewIncarnation), not its first's.
        #expect(back.first?.id == "c191b46d-1833-8992-9393-03958f373cf4")
    }

    /// A state file written before incarnations became an appended log (one row per operation in
    /// `incarnations`) keeps every expired operation through the migration; the log's superseded rows go at the
    /// next incarnation prune, and the newest row of each operation stays its state.
    @Test func incarnationsSurviveTheMoveToALogAndItsPruning() async throws {
        let path = directory + "/state.db"
        let life = item("b-1", "FINISHED")
        var snapshot = Snapshot()
        do {
            let journal = try SQLiteStore(path: path)
            _ = try await poll(journal, &snapshot, listing(life, item("b-2", "PENDING")), first: true)
            for _ in 1...2 { _ = try await poll(journal, &snapshot, listing(item("b-2", "PENDING"))) }
        }
        // Back to the layout before the log, as an older bulkwatch left it.
        try sqliteShell(
            path,
            """
            CREATE TABLE incarnations (target TEXT NOT NULL, bulk_id TEXT NOT NULL, incarnation INTEGER NOT NULL,
                expired_at TEXT, PRIMARY KEY (target, bulk_id)) WITHOUT ROWID;
            INSERT INTO incarnations SELECT target, bulk_id, incarnation, expired_at FROM incarnation_log;
            DROP TABLE incarnation_log;
            DELETE FROM grdb_migrations WHERE identifier = 'v4-incarnation-log';
            """)
        let journal = try SQLiteStore(path: path)
        let back = try await poll(journal, &snapshot, listing(life, item("b-2", "PENDING")))
        // The id of b-1's second life (anOperationBackAfterARestartIsStillANewIncarnation).
        #expect(back.map(\.id) == ["c191b46d-1833-8992-9393-03958f373cf4"])
        for _ in 1...2 { _ = try await poll(journal, &snapshot, listing(item("b-2", "PENDING"))) }
        #expect(try sqliteShell(path, "SELECT COUNT(*) FROM incarnation_log") == "3")

        // No life ended before this cutoff: only the rows that newer ones superseded go.
        _ = try await journal.prune(
            target: "default", olderThan: .distantPast, sinks: [], incarnationCutoff: .distantPast)
        #expect(try sqliteShell(path, "SELECT bulk_id, incarnation FROM incarnation_log") == "b-1|1")
        let third = try await poll(journal, &snapshot, listing(life, item("b-2", "PENDING")))
        #expect(third.map(\.kind) == [.created])
        #expect(third.first.map { ["c191b46d-1833-8992-9393-03958f373cf4", back[0].id].contains($0.id) } == false)
    }

    /// A new state file has 16 KiB pages (fewer WAL frames, so fewer system calls per commit); one written with
    /// SQLite's 4 KiB default, as every state file before, keeps its pages and goes on working.
    @Test func newStateFilesHaveLargePagesAndOldOnesKeepTheirs() async throws {
        let path = directory + "/state.db"
        var snapshot = Snapshot()
        do {
            let journal = try SQLiteStore(path: path)
            _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING")), first: true)
        }
        #expect(try sqliteShell(path, "PRAGMA page_size") == "\(SQLiteStore.pageSize)")
        _ = try sqliteShell(
            path, "PRAGMA journal_mode = DELETE; PRAGMA page_size = 4096; VACUUM; PRAGMA journal_mode = WAL")
        #expect(try sqliteShell(path, "PRAGMA page_size") == "4096")

        let journal = try SQLiteStore(path: path)
        let changed = try await poll(
            journal, &snapshot, listing(item("b-1", "FINISHED", updatedOn: "2026-11-28T11:00:00Z")))
        #expect(changed.map(\.kind) == [.changed])
        #expect(try await journal.events(after: 0).map(\.subject) == ["b-1", "b-1"])
        #expect(try sqliteShell(path, "PRAGMA page_size") == "4096")
        #expect(try sqliteShell(path, "PRAGMA integrity_check") == "ok")
    }

    @Test(arguments: StoreBackend.allCases) func aFreshStateHasNoBaseline(backend: StoreBackend) async throws {
        let journal = try await backend.open(directory)
        let loaded = try await journal.loadSnapshot(target: "default")
        let (snapshot, hasBaseline) = (loaded.snapshot, loaded.hasBaseline)
        #expect(snapshot.isEmpty)
        #expect(!hasBaseline)
    }

    @Test(arguments: StoreBackend.allCases) func cursorsPersistAndFiltersSelectEvents(backend: StoreBackend)
        async throws
    {
        let journal = try await backend.open(directory)
        var snapshot = Snapshot()
        _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING")), first: true)
        _ = try await poll(
            journal, &snapshot,
            listing(item("b-1", "FINISHED", updatedOn: "2026-11-28T11:00:00Z"), item("b-2", "PENDING")))
        #expect(try await journal.cursor(sink: "stdout") == nil)
        try await journal.moveCursor(sink: "stdout", to: 2)
        #expect(try await backend.open(directory).cursor(sink: "stdout") == 2)
        #expect(try await journal.events(after: 2).map(\.subject) == ["b-1"])
        #expect(
            try await journal.events(after: 0, limit: 1000, filter: .init(kinds: [.changed])).map(\.sequence) == [3])
        #expect(try await journal.events(after: 0, limit: 1000, filter: .init(subject: "b-2")).map(\.sequence) == [2])
        #expect(try await journal.events(after: 0, limit: 1).count == 1)
        #expect(try await journal.lastSequence() == 3)
    }

    @Test(arguments: StoreBackend.allCases) func pruningNeverDropsAnEventASinkHasNotDelivered(backend: StoreBackend)
        async throws
    {
        let journal = try await backend.open(directory)
        var snapshot = Snapshot()
        _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING")), first: true)
        try await journal.moveCursor(sink: "file:a", to: 2)
        try await journal.moveCursor(sink: "stdout", to: 1)
        let future = Date(timeIntervalSince1970: 1_764_325_000 + 86400)
        #expect(try await journal.prune(target: "default", olderThan: future, sinks: ["file:a", "stdout"]) == 1)
        #expect(try await journal.allEvents().map(\.sequence) == [2])
        // New sequences continue after pruned ones.
        _ = try await poll(
            journal, &snapshot,
            listing(item("b-1", "FINISHED", updatedOn: "2026-11-28T12:00:00Z"), item("b-2", "PENDING")))
        #expect(try await journal.lastSequence() == 3)
    }

    @Test(arguments: StoreBackend.allCases) func sequencesNeverRestartWhenPruningEmptiedTheJournal(
        backend: StoreBackend
    ) async throws {
        let journal = try await backend.open(directory)
        var snapshot = Snapshot()
        _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING")), first: true)
        try await journal.moveCursor(sink: "stdout", to: 2)
        let future = Date(timeIntervalSince1970: 1_764_325_000 + 86400)
        #expect(try await journal.prune(target: "default", olderThan: future, sinks: ["stdout"]) == 2)
        #expect(try await journal.allEvents().isEmpty)
        let next = try await poll(
            journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING"), item("b-3", "PENDING")))
        #expect(next.map(\.sequence) == [3])
        // Reopening (a restart) keeps counting from the stored number too.
        #expect(try await backend.open(directory).lastSequence() == 3)
    }

    @Test(arguments: StoreBackend.allCases) func prunesOnlyTheGivenTargetAndIgnoresSinksNotGiven(backend: StoreBackend)
        async throws
    {
        let journal = try await backend.open(directory)
        for target in ["a", "b"] {
            var snapshot = Snapshot()
            _ = try await poll(
                journal, &snapshot, listing(item("\(target)-1", "PENDING")), first: true, target: target,
                source: "https://\(target).example.com/bulk")
        }
        try await journal.moveCursor(sink: "stdout", to: 2)
        try await journal.moveCursor(sink: "file:gone", to: 0)
        let future = Date(timeIntervalSince1970: 1_764_325_000 + 86400)
        #expect(try await journal.prune(target: "a", olderThan: future, sinks: ["stdout"]) == 1)
        #expect(try await journal.allEvents().map(\.subject) == ["b-1"])
        // A configured sink that has not delivered holds the events back.
        #expect(try await journal.prune(target: "b", olderThan: future, sinks: ["stdout", "file:new"]) == 0)
    }

    @Test(arguments: StoreBackend.allCases) func anOperationBackAfterExpiryIsANewIncarnationWithNewIDs(
        backend: StoreBackend
    ) async throws {
        let journal = try await backend.open(directory)
        var snapshot = Snapshot()
        let life = item("b-1", "FINISHED")
        var ids: [String] = []
        ids += try await poll(journal, &snapshot, listing(life), first: true).map(\.id)
        for _ in 1...2 { ids += try await poll(journal, &snapshot, listing()).map(\.id) }
        ids += try await poll(journal, &snapshot, listing(life)).map(\.id)
        ids += try await poll(journal, &snapshot, listing(item("b-1", "FAILED", updatedOn: "2026-11-28T11:00:00Z")))
            .map(\.id)
        for _ in 1...2 { ids += try await poll(journal, &snapshot, listing()).map(\.id) }
        ids += try await poll(journal, &snapshot, listing(life)).map(\.id)
        #expect(
            try await journal.allEvents().map(\.type) == [
                "bulk.created", "bulk.expired", "bulk.created", "bulk.changed", "bulk.expired", "bulk.created",
            ])
        #expect(Set(ids).count == 6)
        // The first life keeps the ids bulkwatch always gave it (SHA-256 of source, bulkId, type, status and
        // updatedOn, NUL-terminated, as a version-8 UUID), so existing receivers see no change.
        #expect(ids[0] == "232a287b-3276-8261-8cc7-35bad952e362")
        // A later life hashes its number after the bulkId (values from an independent SHA-256 in Python).
        #expect(ids[2] == "c191b46d-1833-8992-9393-03958f373cf4")
        #expect(ids[5] == "89555fe2-889b-8cf2-95f6-6954c46f97e2")
    }

    /// The incarnation memory (``Store/prune(target:olderThan:sinks:incarnationCutoff:)``) forgets the operations
    /// whose last life ended before the cutoff, and only those: one that came back and is alive keeps its life.
    @Test(arguments: StoreBackend.allCases) func pruningIncarnationsForgetsOnlyLivesThatEndedBeforeTheCutoff(
        backend: StoreBackend
    ) async throws {
        let journal = try await backend.open(directory)
        var snapshot = Snapshot()
        let gone = item("b-1", "FINISHED")
        let back = item("b-2", "FINISHED")
        let stays = item("b-3", "PENDING")
        let twice = item("b-4", "FINISHED")
        let firstIDs = try await poll(journal, &snapshot, listing(gone, back, stays, twice), first: true).map(\.id)
        for _ in 1...2 { _ = try await poll(journal, &snapshot, listing(stays)) }
        let returned = try await poll(journal, &snapshot, listing(back, stays, twice))
        #expect(returned.map(\.kind) == [.created, .created] && returned[0].id != firstIDs[1], "second lives")
        // b-4's second life ends too, before the cutoff: all of it is forgotten, not only its first end.
        for _ in 1...2 { _ = try await poll(journal, &snapshot, listing(back, stays)) }

        let afterEveryExpiry = Date(timeIntervalSince1970: 1_764_325_000 + 60)
        _ = try await journal.prune(
            target: "default", olderThan: .distantPast, sinks: [], incarnationCutoff: afterEveryExpiry)
        // b-1 and b-4 are forgotten: back again, each is in its first life, with its first life's ids.
        let again = try await poll(journal, &snapshot, listing(gone, back, stays, twice))
        #expect(again.map(\.kind) == [.created, .created])
        #expect(again.map(\.id) == [firstIDs[0], firstIDs[3]])
        // b-2 was alive in its second life: that is kept, so its next return is its third.
        for _ in 1...2 { _ = try await poll(journal, &snapshot, listing(gone, stays)) }
        let third = try await poll(journal, &snapshot, listing(gone, back, stays))
        #expect(third.map(\.kind) == [.created])
        #expect(third.first.map { [firstIDs[1], returned[0].id].contains($0.id) } == false, "b-2's third life")
    }

    /// A commit large enough to be encoded on a second thread, in chunks (``EventEncodingPipeline``), stores
    /// and keeps exactly what encoding each event on its own gives: same sequences, ids and bodies, and the
    /// returning operations (straddling a chunk boundary) in their second life.
    @Test(arguments: StoreBackend.allCases) func aLargeCommitStoresEveryEventAsEncodedOneByOne(
        backend: StoreBackend
    ) async throws {
        let journal = try await backend.open(directory)
        let source = "https://api.example.com/bulk"
        let at = Date(timeIntervalSince1970: 1_764_325_000.25)
        func ids(_ range: Range<Int>) -> [BulkItem] { range.map { item("op-\($0)", "IN_PROGRESS") } }
        var snapshot = Snapshot()
        let all = ids(0..<3000)
        _ = try await poll(journal, &snapshot, BulkListing(items: all), first: true)
        // 100 operations expire after two absent polls.
        let leaving = 1000..<1100
        let remaining = all.enumerated().filter { !leaving.contains($0.offset) }.map(\.element)
        for _ in 1...2 { _ = try await poll(journal, &snapshot, BulkListing(items: remaining)) }
        // They come back amid 2,000 new ones: 2,100 created events, over the threaded threshold, the returning
        // ones at 950..<1050, across the first chunk boundary.
        let outcome = SnapshotDiffer.apply(
            BulkListing(items: ids(3000..<3950) + all + ids(3950..<5000)), to: &snapshot, policy: DetectionPolicy(),
            isFirstRun: false)
        #expect(outcome.changes.count >= EventEncodingPipeline.threadedFrom)
        let summary = try await journal.commit(
            PollCommit(target: "default", source: source, outcome: outcome, snapshot: snapshot, detectedAt: at),
            fence: .exclusive)
        let first = try #require(summary.sequences?.lowerBound)
        let expected = outcome.changes.enumerated().map { index, change in
            let returning = leaving.contains(Int(change.item.bulkId.dropFirst(3))!)
            return CloudEventEncoder.encode(
                change, source: source, sequence: first + Int64(index), time: RFC3339.millisecondsUTC(at),
                incarnation: returning ? 1 : 0)
        }
        let kept = try await journal.events(after: first - 1, limit: expected.count, filter: EventFilter())
        // Compared field by field, so a failure names the first event that differs instead of printing them all.
        func firstDifference(_ events: [JournalEvent]) -> Int? {
            guard events.count == expected.count else { return -1 }
            return Array(zip(events, expected)).firstIndex { $0 != $1 || $0.body != $1.body }
        }
        #expect(firstDifference(kept) == nil)
        if let sqlite = journal as? SQLiteStore {
            // The rows themselves, not the copies kept in memory for the sinks.
            let stored = try sqlite.allEventsBlocking().filter { $0.sequence >= first }
            #expect(firstDifference(stored) == nil)
        }
        let earlierIDs = Set(try await journal.allEvents().filter { $0.sequence < first }.map(\.id))
        #expect(expected.filter { earlierIDs.contains($0.id) }.isEmpty)
    }

    /// `maintain` checkpoints the WAL after every fourth poll, or sooner once 8 MiB of deltas and events were
    /// committed, or after a fold, not after every poll (a commit into a checkpointed WAL pays an `fdatasync` of its
    /// header). A checkpoint is the only write to the database file itself, so the file's bytes show when one ran.
    @Test func theWALIsCheckpointedEveryFewPollsOrAfterMuchWriting() async throws {
        let path = directory + "/checkpoints.db"
        let journal = try SQLiteStore(path: path)
        var snapshot = Snapshot()
        let items = (0..<200).map { item("op-\($0)", "IN_PROGRESS") }
        _ = try await poll(journal, &snapshot, BulkListing(items: items), first: true)
        try await journal.maintain(target: "default", snapshot: snapshot)
        try await journal.checkpoint()
        let settled = try fileBytes(path)
        let every = SQLiteStore.checkpointEvery.commits
        for round in 1..<every {
            let changed = items.enumerated().map { $0.offset == round ? item($0.element.bulkId, "DONE") : $0.element }
            _ = try await poll(journal, &snapshot, BulkListing(items: changed))
            try await journal.maintain(target: "default", snapshot: snapshot)
            #expect(try fileBytes(path) == settled, "checkpointed after poll \(round) of \(every)")
        }
        _ = try await poll(journal, &snapshot, BulkListing(items: items))
        try await journal.maintain(target: "default", snapshot: snapshot)
        #expect(try fileBytes(path) != settled, "not checkpointed after poll \(every)")

        // A poll that writes more than the byte bound is checkpointed at once (a small bound here).
        let small = try SQLiteStore(path: directory + "/small-bound.db", checkpointEvery: (commits: 100, bytes: 4_000))
        var other = Snapshot()
        _ = try await poll(small, &other, BulkListing(items: Array(items.prefix(5))), first: true)
        try await small.maintain(target: "default", snapshot: other)
        try await small.checkpoint()
        let quiet = try fileBytes(directory + "/small-bound.db")
        _ = try await poll(small, &other, BulkListing(items: Array(items.prefix(6))))  // one event, a few hundred bytes
        try await small.maintain(target: "default", snapshot: other)
        #expect(try fileBytes(directory + "/small-bound.db") == quiet, "checkpointed below the byte bound")
        _ = try await poll(small, &other, BulkListing(items: Array(items.prefix(40))))  // 34 events, past 4,000 bytes
        try await small.maintain(target: "default", snapshot: other)
        #expect(try fileBytes(directory + "/small-bound.db") != quiet, "not checkpointed past the byte bound")
    }

    @Test func reportsAnUnopenableDatabaseInOneLine() async throws {
        let error = #expect(throws: JournalError.self) { try SQLiteStore(path: directory + "/missing/dir/state.db") }
        #expect(error?.description.contains("missing/dir/state.db") == true)
        #expect(error?.description.contains("\n") == false)
        let garbage = directory + "/garbage.db"
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: garbage))
        #expect(throws: JournalError.self) { try SQLiteStore(path: garbage) }
    }

    @Test func passesIntegrityCheckWithDataInIt() async throws {
        let journal = try SQLiteStore(path: directory + "/state.db")
        var snapshot = Snapshot()
        _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING")), first: true)
        _ = try await poll(journal, &snapshot, listing(item("b-1", "FINISHED", updatedOn: "2026-11-28T11:00:00Z")))
        try await journal.maintain(target: "default", snapshot: snapshot)
        #expect(try await journal.allEvents().count == 3)
        #expect(try await journal.integrityCheck() == "ok")
    }

    /// A poll's events are kept in blocks (``EventBlock``) and operational events (and those of state files from
    /// before blocks) as rows: every read sees one journal, in sequence order, whichever holds an event. Read
    /// from the file (no events cached in memory), as `bulkwatch events` and a restarted watcher read it.
    @Test func eventsOfBlocksAndRowsReadAsOneJournal() async throws {
        let journal = try SQLiteStore(path: directory + "/state.db", recentEventBytes: 0)
        var snapshot = Snapshot()
        _ = try await poll(
            journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING"), item("b-3", "PENDING")),
            first: true)
        let failing = OperationalEvent(
            kind: .targetFailing, target: "default", since: Date(timeIntervalSince1970: 1_764_325_100),
            failedAttempts: 3, lastError: "HTTP 500", at: Date(timeIntervalSince1970: 1_764_325_200))
        let operational = try #require(
            try await journal.append(
                operational: failing, target: "default", source: "https://api.example.com/bulk", fence: .exclusive))
        _ = try await poll(
            journal, &snapshot,
            listing(
                item("b-1", "FINISHED", updatedOn: "2026-11-28T12:00:00Z"),
                item("b-2", "FINISHED", updatedOn: "2026-11-28T12:00:00Z"), item("b-3", "PENDING")))
        let all = try await journal.allEvents()
        #expect(all.map(\.sequence) == [1, 2, 3, 4, 5, 6])
        #expect(all.map(\.kind) == [.created, .created, .created, .targetFailing, .changed, .changed])
        #expect(all.allSatisfy { $0.target == "default" })
        #expect(all[3] == operational)
        // Limits and starting points that cut a block, a row, or both.
        for after in Int64(0)...6 {
            for limit in 0...7 {
                let expected = Array(all.filter { $0.sequence > after }.prefix(limit))
                #expect(
                    try await journal.events(after: after, limit: limit, filter: EventFilter()) == expected,
                    "after \(after), limit \(limit)")
            }
            #expect(
                try await journal.count(after: after, filter: EventFilter()) == all.filter { $0.sequence > after }.count
            )
        }
        let changed = EventFilter(kinds: [.changed])
        #expect(try await journal.events(after: 0, limit: 10, filter: changed).map(\.sequence) == [5, 6])
        #expect(try await journal.count(after: 5, filter: changed) == 1)
        let b2 = EventFilter(subject: "b-2")
        #expect(try await journal.events(after: 0, limit: 10, filter: b2).map(\.sequence) == [2, 6])
        #expect(try await journal.count(after: 0, filter: b2) == 2)
        #expect(try await journal.events(after: 0, limit: 10, filter: EventFilter(targets: ["other"])).isEmpty)
        #expect(try await journal.count(after: 0, filter: EventFilter(targets: ["other"])) == 0)
        for event in all {
            #expect(try await journal.event(sequence: event.sequence) == event)
            #expect(try await journal.event(id: event.id) == event)
        }
        #expect(try await journal.event(sequence: 7) == nil)
        #expect(try await journal.event(id: "no-such-id") == nil)
    }

    /// Pruning stays exact per event when a block is only partly prunable: the events a sink has not delivered,
    /// and a dead-lettered one, stay (and still read as before), the others of the block go.
    @Test func pruningInsideABlockKeepsExactlyWhatMustStay() async throws {
        let path = directory + "/state.db"
        let journal = try SQLiteStore(path: path, recentEventBytes: 0)
        var snapshot = Snapshot()
        _ = try await poll(
            journal, &snapshot,
            listing(item("b-1", "PENDING"), item("b-2", "PENDING"), item("b-3", "PENDING"), item("b-4", "PENDING")),
            first: true)
        let all = try await journal.allEvents()
        #expect(
            try await journal.deadLetter(
                sink: "webhook:w", events: [all[1]], reason: "HTTP 410", attempts: 5, cursorFrom: 0,
                fence: .exclusive))
        try await journal.moveCursor(sink: "webhook:w", to: 3)
        try await journal.moveCursor(sink: "stdout", to: 4)
        let future = Date(timeIntervalSince1970: 1_764_325_000 + 86400)
        // 1 and 3 go; 2 is dead-lettered, 4 is not delivered to the webhook yet.
        #expect(try await journal.prune(target: "default", olderThan: future, sinks: ["webhook:w", "stdout"]) == 2)
        #expect(try await journal.allEvents() == [all[1], all[3]])
        #expect(try await journal.count(after: 0, filter: EventFilter()) == 2)
        #expect(try await journal.deadLetters(sink: "webhook:w").map(\.event) == [all[1]])
        // Once delivered and forgiven, they go too; sequences go on from the journal's last.
        _ = try await journal.removeDeadLetter(sink: "webhook:w", sequence: 2)
        try await journal.moveCursor(sink: "webhook:w", to: 4)
        #expect(try await journal.prune(target: "default", olderThan: future, sinks: ["webhook:w", "stdout"]) == 2)
        #expect(try await journal.allEvents().isEmpty)
        let next = try await poll(journal, &snapshot, listing(item("b-5", "PENDING")))
        #expect(next.first?.sequence == 5)
        #expect(try await journal.integrityCheck() == "ok")
    }

    /// A block that holds an event of a kind this version does not know (a newer version wrote it) is left
    /// whole by a pruning that would have to rewrite it: nothing of it is lost, and the events this version
    /// knows still read.
    @Test func pruningLeavesWholeABlockWithAnEventOfAnUnknownKind() async throws {
        let path = directory + "/state.db"
        let journal = try SQLiteStore(path: path, recentEventBytes: 0)
        var snapshot = Snapshot()
        _ = try await poll(
            journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING"), item("b-3", "PENDING")),
            first: true)
        let known = try await journal.allEvents()
        // The third event's kind byte (after the magic and two events) becomes one this version has no name for.
        let block = Array(try sqliteShell(path, "SELECT hex(events) FROM event_blocks").utf8)
        var bytes = stride(from: 0, to: block.count, by: 2).map {
            UInt8(String(decoding: block[$0..<$0 + 2], as: UTF8.self), radix: 16)!
        }
        var offset = EventBlock.magic.count
        for event in known.prefix(2) {
            offset += EventBlock.Writer.length(
                id: event.id.utf8.count, subject: event.subject.utf8.count, body: event.body.count)
        }
        bytes[offset] = 200
        let hex = bytes.map { String(format: "%02X", $0) }.joined()
        try sqliteShell(path, "UPDATE event_blocks SET events = X'\(hex)'")
        #expect(try await journal.allEvents() == Array(known.prefix(2)))
        try await journal.moveCursor(sink: "stdout", to: 1)
        let future = Date(timeIntervalSince1970: 1_764_325_000 + 86400)
        #expect(try await journal.prune(target: "default", olderThan: future, sinks: ["stdout"]) == 0)
        #expect(try sqliteShell(path, "SELECT first_seq, last_seq FROM event_blocks") == "1|3")
        #expect(try await journal.allEvents() == Array(known.prefix(2)))
    }

    /// A dead letter whose event is in a block reads with its event, as one of a row does.
    @Test func aDeadLetterOfABlockedEventCarriesItsEvent() async throws {
        let journal = try SQLiteStore(path: directory + "/state.db", recentEventBytes: 0)
        var snapshot = Snapshot()
        _ = try await poll(journal, &snapshot, listing(item("b-1", "PENDING"), item("b-2", "PENDING")), first: true)
        let all = try await journal.allEvents()
        #expect(
            try await journal.deadLetter(
                sink: "webhook:w", events: [all[1]], reason: "HTTP 410", attempts: 5, cursorFrom: 0,
                fence: .exclusive))
        let letters = try await journal.deadLetters(sink: "webhook:w")
        #expect(letters.map(\.sequence) == [2])
        #expect(letters.map(\.event) == [all[1]])
    }
}

/// Runs `sql` on the database at `path` in the `sqlite3` shell, another process, as an operator would; returns
/// what it printed, trimmed.
@discardableResult
private func sqliteShell(_ path: String, _ sql: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = [path, sql]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let printed = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw JournalError(description: "sqlite3 exited with \(process.terminationStatus)")
    }
    return String(decoding: printed, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
