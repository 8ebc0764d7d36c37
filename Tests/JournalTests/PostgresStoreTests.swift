import Foundation
import Logging
import PostgresNIO
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchStore

#if canImport(Glibc)
    import Glibc
#endif

private func item(_ id: String, _ status: String = "PENDING") -> BulkItem {
    let json = #"{"bulkId":"\#(id)","status":"\#(status)","updatedOn":"2026-11-28T10:00:00Z"}"#
    return BulkItem(bulkId: id, status: status, updatedOn: "2026-11-28T10:00:00Z", rawJSON: Array(json.utf8)[...])
}

/// One poll of `target` that lists `items`, diffed against `snapshot` like the watcher does.
private func pollCommit(_ target: String, _ snapshot: inout Snapshot, _ items: [BulkItem]) -> PollCommit {
    let outcome = SnapshotDiffer.apply(
        BulkListing(items: items), to: &snapshot, policy: DetectionPolicy(), isFirstRun: false)
    return PollCommit(
        target: target, source: "https://\(target).example.com/bulk", outcome: outcome, snapshot: snapshot,
        detectedAt: Date(timeIntervalSince1970: 1_764_325_000))
}

/// What a test can see of the whole state: the numbers, the events, the target's row.
private func footprint(_ store: PostgresStore, target: String) async throws -> [String] {
    let loaded = try await store.loadSnapshot(target: target)
    return [
        "last \(try await store.lastSequence())", "events \(try await store.allEvents().count)",
        "baseline \(loaded.hasBaseline)", "items \(loaded.snapshot.count)",
        "cursor \(try await store.cursor(sink: "hook") ?? -1)",
    ]
}

@Suite("PostgreSQL store: migrations, commit order, leases and fencing", .runsPostgresStores)
struct PostgresStoreTests {
    let directory: String
    init() throws { directory = try makeTemporaryDirectory("pg-store") }

    @Test func severalReplicasMigratingANewDatabaseAtOnceAllSucceed() async throws {
        let settings = try PostgresTestStores.settings(directory)
        let stores = try await withThrowingTaskGroup(of: PostgresStore.self) { group in
            for _ in 0..<6 { group.addTask { try await PostgresTestStores.open(settings) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for store in stores { group.addTask { try await store.journalID() } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(ids.count == 1 && ids.first?.isEmpty == false, "one journal, created once")
        var versions: [Int] = []
        for try await version in try await stores[0].client.query("SELECT version FROM schema_versions ORDER BY 1")
            .decode(Int.self)
        {
            versions.append(version)
        }
        #expect(versions == PostgresSchema.migrations.map(\.version))
        // Opening again later migrates nothing and keeps the journal.
        let again = try await PostgresTestStores.open(settings)
        #expect(try await again.journalID() == ids.first)
    }

    /// Writers commit concurrently while a reader follows its cursor: if numbers were not assigned in
    /// commit order, a smaller number committed late would fall behind the reader's cursor and be missed.
    @Test func aReaderFollowingItsCursorSeesEveryConcurrentCommitOnceWithoutGaps() async throws {
        let settings = try PostgresTestStores.settings(directory)
        let store = try await PostgresTestStores.open(settings)
        let writers = 4
        let polls = 40
        let total = Int64(writers * polls * 2)
        let seen = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<writers {
                group.addTask {
                    // Each writer its own store (its own pool), as separate replicas would be.
                    let replica = try await PostgresTestStores.open(settings)
                    var snapshot = Snapshot()
                    var items: [BulkItem] = []
                    for poll in 0..<polls {
                        items += [item("w\(writer)-\(poll)-a"), item("w\(writer)-\(poll)-b")]
                        let stored = try await replica.commitReadingBack(
                            pollCommit("t\(writer)", &snapshot, items), fence: .exclusive)
                        #expect(stored.count == 2)
                    }
                    return []
                }
            }
            group.addTask {
                var cursor: Int64 = 0
                var sequences: [Int64] = []
                let deadline = ContinuousClock.now + .seconds(120)
                while cursor < total && ContinuousClock.now < deadline {
                    let batch = try await store.events(after: cursor, limit: 7)
                    sequences += batch.map(\.sequence)
                    cursor = batch.last?.sequence ?? cursor
                    if batch.isEmpty { try await Task.sleep(for: .milliseconds(2)) }
                }
                return sequences
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(seen == Array(1...total), "every event exactly once, in order, no gap")
        #expect(try await store.lastSequence() == total)
    }

    @Test func aCommitUnderAStaleEpochIsFencedOutAndWritesNothing() async throws {
        let store = try await PostgresTestStores.open(try PostgresTestStores.settings(directory))
        // A zero TTL expires at once, by the database's clock: no sleeping.
        let first = try #require(try await store.leases.tryAcquire("target:t", owner: "replica-a", ttl: .zero))
        #expect(first.epoch == 1)
        let second = try #require(try await store.leases.tryAcquire("target:t", owner: "replica-b", ttl: .seconds(60)))
        #expect(second.epoch == 2, "taking an expired lease bumps its epoch")
        #expect(try await store.leases.tryAcquire("target:t", owner: "replica-a", ttl: .seconds(60)) == nil)

        let before = try await footprint(store, target: "t")
        var snapshot = Snapshot()
        let error = await #expect(throws: FencedOut.self) {
            try await store.commitReadingBack(pollCommit("t", &snapshot, [item("b-1")]), fence: first.fence)
        }
        #expect(error?.fence == first.fence)
        #expect(try await footprint(store, target: "t") == before, "nothing was written")
        #expect(try await !store.leases.renew(first, ttl: .seconds(60)), "the lost lease cannot be renewed")

        var fresh = Snapshot()
        let stored = try await store.commitReadingBack(pollCommit("t", &fresh, [item("b-1")]), fence: second.fence)
        #expect(stored.map(\.sequence) == [1])
    }

    @Test func everyFencedWriteChecksTheLease() async throws {
        let store = try await PostgresTestStores.open(try PostgresTestStores.settings(directory))
        let holder = try #require(try await store.leases.tryAcquire("sink:hook", owner: "a", ttl: .seconds(60)))
        var snapshot = Snapshot()
        let events = try await store.commitReadingBack(
            pollCommit("t", &snapshot, [item("b-1"), item("b-2")]), fence: .exclusive)
        let stale = StoreFence(lease: "sink:hook", owner: "a", epoch: holder.epoch + 1)
        let stranger = StoreFence(lease: "sink:hook", owner: "b", epoch: holder.epoch)
        let before = try await footprint(store, target: "t")
        for fence in [stale, stranger, StoreFence(lease: "sink:none", owner: "a", epoch: 1)] {
            await #expect(throws: FencedOut.self) {
                try await store.advanceCursor(sink: "hook", from: 0, to: 1, fence: fence)
            }
            await #expect(throws: FencedOut.self) {
                try await store.deadLetter(
                    sink: "hook", events: events, reason: "x", attempts: 1, cursorFrom: 0, fence: fence)
            }
            await #expect(throws: FencedOut.self) {
                try await store.append(
                    operational: OperationalEvent(
                        kind: .targetFailing, target: "t", since: Date(), failedAttempts: 3, lastError: "down",
                        at: Date()),
                    target: "t", source: "https://t.example.com/bulk", fence: fence)
            }
        }
        #expect(try await footprint(store, target: "t") == before)
        #expect(try await store.deadLetters().isEmpty)
        #expect(try await store.advanceCursor(sink: "hook", from: 0, to: 1, fence: holder.fence))
        #expect(try await store.cursor(sink: "hook") == 1)
    }

    @Test func severalLeasesAreRenewedInOneStatementAndTheLostOnesAreLeftOut() async throws {
        let store = try await PostgresTestStores.open(try PostgresTestStores.settings(directory))
        let leases = store.leases
        // Short enough that only a renewal keeps them past the sleep below, long enough that a loaded
        // machine (the suite in parallel, a cluster starting) still renews them before they lapse: at
        // 400 ms this test failed once under load.
        let kept = try #require(try await leases.tryAcquire("target:a", owner: "r1", ttl: .seconds(2)))
        let beat = try #require(try await leases.tryAcquire("replica:r1", owner: "r1", ttl: .seconds(2)))
        let expired = try #require(try await leases.tryAcquire("target:b", owner: "r1", ttl: .zero))
        let moved = try #require(try await leases.tryAcquire("sink:s", owner: "r1", ttl: .zero))
        let taker = try #require(try await leases.tryAcquire("sink:s", owner: "r2", ttl: .seconds(60)))
        let renewed = try await leases.renew([kept, beat, expired, moved], ttl: .seconds(60))
        #expect(renewed == ["target:a", "replica:r1"])
        try await Task.sleep(for: .milliseconds(2_200))
        let held = try await leases.list().filter(\.held).map(\.description)
        #expect(
            held.sorted() == [
                "replica:r1 (owner r1, epoch 1)", "sink:s (owner r2, epoch \(taker.epoch))",
                "target:a (owner r1, epoch 1)",
            ])
        #expect(try await leases.renew([], ttl: .seconds(60)).isEmpty)
    }

    @Test func aRenewedLeaseKeepsWorkingPastItsFirstExpiry() async throws {
        let store = try await PostgresTestStores.open(try PostgresTestStores.settings(directory))
        let lease = try #require(try await store.leases.tryAcquire("target:t", owner: "a", ttl: .milliseconds(300)))
        #expect(try await store.leases.renew(lease, ttl: .seconds(60)))
        try await Task.sleep(for: .milliseconds(400))
        var snapshot = Snapshot()
        #expect(
            try await store.commitReadingBack(pollCommit("t", &snapshot, [item("b-1")]), fence: lease.fence).count == 1)
        #expect(try await store.leases.tryAcquire("target:t", owner: "b", ttl: .seconds(60)) == nil)
        #expect(try await store.leases.list().map(\.description) == ["target:t (owner a, epoch 1)"])
    }

    @Test func aCommitAfterExpiryIsFencedOutEvenWithNoNewHolder() async throws {
        let store = try await PostgresTestStores.open(try PostgresTestStores.settings(directory))
        let lease = try #require(try await store.leases.tryAcquire("target:t", owner: "a", ttl: .zero))
        var snapshot = Snapshot()
        await #expect(throws: FencedOut.self) {
            try await store.commitReadingBack(pollCommit("t", &snapshot, [item("b-1")]), fence: lease.fence)
        }
        #expect(try await store.lastSequence() == 0)
    }

    @Test func aReleasedLeaseIsFreeAtOnceWithTheNextEpochAndNotified() async throws {
        let store = try await PostgresTestStores.open(try PostgresTestStores.settings(directory))
        let lease = try #require(try await store.leases.tryAcquire("sink:hook", owner: "a", ttl: .seconds(60)))
        let notified = try await store.client.withConnection { connection -> String? in
            try await connection.listen(on: Leases.channel) { notifications -> String? in
                #expect(try await store.leases.release(lease))
                for try await notification in notifications { return notification.payload }
                return nil
            }
        }
        #expect(notified == "sink:hook")
        #expect(try await !store.leases.release(lease), "released once")
        #expect(try await store.leases.list().map(\.held) == [false])
        let next = try #require(try await store.leases.tryAcquire("sink:hook", owner: "b", ttl: .seconds(60)))
        #expect(next.epoch == lease.epoch + 1)
        await #expect(throws: FencedOut.self) {
            try await store.advanceCursor(sink: "hook", from: 0, to: 1, fence: lease.fence)
        }
    }

    @Test func anExclusiveFenceIsRefusedWhenTheStoreIsReplicated() async throws {
        let store = try await PostgresTestStores.open(
            try PostgresTestStores.settings(directory), acceptsExclusive: false)
        var snapshot = Snapshot()
        await #expect(throws: FencedOut.self) {
            try await store.commitReadingBack(pollCommit("t", &snapshot, [item("b-1")]), fence: .exclusive)
        }
        #expect(try await store.lastSequence() == 0)
    }

    @Test func compactionFoldsDeltasIntoAnImageThatLoadsTheSameSnapshot() async throws {
        let store = try await PostgresTestStores.open(try PostgresTestStores.settings(directory))
        var snapshot = Snapshot()
        // Large raw bodies so that the deltas pass the 1 MiB compaction threshold quickly.
        let padding = String(repeating: "x", count: 4000)
        for poll in 0..<4 {
            let items = (0..<100).map { index in
                let id = "b-\(poll)-\(index)"
                let json = #"{"bulkId":"\#(id)","status":"PENDING","pad":"\#(padding)"}"#
                return BulkItem(bulkId: id, status: "PENDING", rawJSON: Array(json.utf8)[...])
            }
            _ = try await store.commitReadingBack(pollCommit("t", &snapshot, items), fence: .exclusive)
            try await store.maintain(target: "t", snapshot: snapshot)
        }
        var deltas: Int64 = -1
        for try await count in try await store.client.query("SELECT COUNT(*) FROM snapshot_deltas").decode(Int64.self) {
            deltas = count
        }
        #expect(deltas < 4, "some deltas were folded into the image")
        let loaded = try await store.loadSnapshot(target: "t").snapshot
        #expect(loaded.count == snapshot.count)
        #expect(loaded["b-0-7"]?.item.rawJSON.elementsEqual(snapshot["b-0-7"]!.item.rawJSON) == true)
    }

    @Test func connectsWithThePasswordFromAPrivateFile() async throws {
        let cluster = try PostgresCluster.shared()
        let url = cluster.url(database: try cluster.database(for: directory))
        let file = directory + "/pgpassword"
        _ = FileManager.default.createFile(atPath: file, contents: Data((cluster.password + "\n").utf8))
        chmod(file, 0o600)
        let location = try StoreLocation(url, environment: [:], passwordFile: file)
        #expect(!location.description.contains(cluster.password))
        let id = try await location.withStore(logger: Logger(label: "test")) { try await $0.journalID() }
        #expect(!id.isEmpty)

        let wrong = try StoreLocation(url, environment: ["PGPASSWORD": "not-the-password"])
        let error = await #expect(throws: JournalError.self) {
            try await wrong.withStore(logger: Logger(label: "test")) { try await $0.journalID() }
        }
        #expect(error?.description.contains("not-the-password") == false)
        #expect(error?.description.contains("\n") == false)
    }
}

@Suite("--state values: SQLite paths and postgres:// URLs")
struct StoreLocationTests {
    @Test func aPasswordInTheURLIsRefusedWithoutRepeatingIt() throws {
        for url in ["postgres://bw:s3cret@db.example.com/bw", "postgresql://bw:@db.example.com/bw"] {
            let error = #expect(throws: StoreLocationError.self) { try StoreLocation(url, environment: [:]) }
            #expect(error?.description.contains("password") == true)
            #expect(error?.description.contains("s3cret") == false)
            #expect(error?.description.contains("\n") == false)
        }
    }

    @Test func parsesUserHostPortDatabaseAndSSLMode() throws {
        let settings = try PostgresSettings(
            url: "postgresql://bw@db.example.com:6543/journal?sslmode=verify-full", environment: [:])
        #expect(settings.user == "bw")
        #expect(settings.host == "db.example.com")
        #expect(settings.port == 6543)
        #expect(settings.database == "journal")
        #expect(settings.sslMode == .verifyFull)
        #expect(!settings.hasPassword)
        let defaults = try PostgresSettings(url: "postgres://bw@db.example.com/journal", environment: [:])
        #expect(defaults.port == 5432)
        #expect(defaults.sslMode == .prefer)
        for mode in PostgresSettings.SSLMode.allCases {
            let parsed = try PostgresSettings(url: "postgres://bw@h/d?sslmode=\(mode.rawValue)", environment: [:])
            #expect(parsed.sslMode == mode)
        }
        #expect(throws: StoreLocationError.self) {
            try PostgresSettings(url: "postgres://bw@h/d?sslmode=allow", environment: [:])
        }
        #expect(throws: StoreLocationError.self) { try PostgresSettings(url: "postgres://h/d", environment: [:]) }
        #expect(throws: StoreLocationError.self) {
            try PostgresSettings(url: "postgres://bw@h/d?application_name=x", environment: [:])
        }
    }

    @Test func aUnixSocketDirectoryIsTheHostParameter() throws {
        let settings = try PostgresSettings(
            url: "postgres://bw@/journal?host=/var/run/postgresql&sslmode=disable", environment: [:])
        #expect(settings.host == nil)
        #expect(settings.socketDirectory == "/var/run/postgresql")
        #expect(settings.database == "journal")
    }

    @Test func anythingElseIsAnSQLitePath() throws {
        #expect(try StoreLocation("./bulkwatch.db") == .sqlite(path: "./bulkwatch.db"))
        #expect(try StoreLocation("/var/lib/postgres.db") == .sqlite(path: "/var/lib/postgres.db"))
        #expect(!StoreLocation.isPostgres("postgres.db"))
    }

    @Test func theLocationNeverContainsThePassword() throws {
        let location = try StoreLocation(
            "postgres://bw@db.example.com/journal?sslmode=require", environment: ["PGPASSWORD": "hunter2-secret"])
        guard case .postgres(let settings) = location else {
            Issue.record("not a postgres location")
            return
        }
        #expect(settings.hasPassword)
        #expect(location.description == "postgres://bw@db.example.com:5432/journal?sslmode=require")
        var dumped = ""
        dump(settings, to: &dumped)
        for text in [location.description, "\(location)", String(reflecting: settings), dumped] {
            #expect(!text.contains("hunter2"), "\(text)")
        }
    }

    @Test func aPasswordFileReadableByOthersIsRefused() throws {
        let directory = try makeTemporaryDirectory("pg-password")
        let file = directory + "/password"
        _ = FileManager.default.createFile(atPath: file, contents: Data("hunter2\n".utf8))
        chmod(file, 0o640)
        let url = "postgres://bw@db.example.com/journal"
        for environment in [["BULKWATCH_STATE_PASSWORD_FILE": file], ["PGPASSFILE": file]] {
            let error = #expect(throws: StoreLocationError.self) { try StoreLocation(url, environment: environment) }
            #expect(error?.description.contains("chmod 600") == true)
            #expect(error?.description.contains("hunter2") == false)
        }
        chmod(file, 0o600)
        let settings = try PostgresSettings(url: url, environment: [:], passwordFile: file)
        #expect(settings.password == "hunter2")
    }

    @Test func aLibpqPasswordFileIsMatchedByHostPortDatabaseAndUser() throws {
        let content = """
            # comment
            other.example.com:5432:journal:bw:wrong
            db.example.com:5432:journal:bw:pass\\:word
            *:*:*:*:fallback
            """
        let match = PostgresSettings.pgpassEntry(
            content, host: "db.example.com", port: 5432, database: "journal", user: "bw")
        #expect(match == "pass:word")
        #expect(
            PostgresSettings.pgpassEntry(content, host: "x", port: 1, database: "y", user: "z") == "fallback")
    }
}
