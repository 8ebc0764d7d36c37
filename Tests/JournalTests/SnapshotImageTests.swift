import Foundation
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchStore

/// The image a fold writes is streamed (encoded in pieces straight from the snapshot's bytes, written into a
/// zero blob of its exact size) and a load decodes it in place, row by row into the snapshot. These check that
/// nothing of that changes what is stored: the bytes are the documented format, and what loads is what was
/// folded.
@Suite("Snapshot images: streamed fold, in-place load", .runsPostgresStores)
struct SnapshotImageTests {
    let directory: String
    init() throws { directory = try makeTemporaryDirectory("image") }

    /// Entries of every shape the arenas store differently: short keys, a `bulkId` too long for the key
    /// arena (long form), absent fields, escapes in the raw bytes, absence counters, a guarded entry.
    private static func variedSnapshot() -> Snapshot {
        let long = String(repeating: "l", count: 300)
        var rows: [TrackedItem] = [
            TrackedItem(item: bulkItem("b-1", status: "PENDING", createdOn: "2026-11-28T09:00:00Z"), absentPolls: 0),
            TrackedItem(item: bulkItem("b-2", status: nil, createdOn: nil, updatedOn: nil), absentPolls: 1),
            TrackedItem(item: bulkItem(long, status: "FINISHED", createdOn: nil), absentPolls: 0),
            TrackedItem(item: bulkItem("b-\u{e9}", status: String(repeating: "S", count: 260)), absentPolls: 2),
        ]
        for index in 0..<200 {
            rows.append(TrackedItem(item: bulkItem("bulk-\(index)", status: "RUNNING"), absentPolls: index % 3))
        }
        return Snapshot(tracked: rows, removalGuarded: ["b-2", "bulk-1"])
    }

    private static func bulkItem(
        _ id: String, status: String?, createdOn: String? = "2026-11-28T08:00:00Z",
        updatedOn: String? = "2026-11-28T10:00:00Z"
    ) -> BulkItem {
        let json = #"{"bulkId":"\#(id)","note":"a \"quoted\" \\ value","status":"\#(status ?? "")"}"#
        return BulkItem(
            bulkId: id, status: status, createdOn: createdOn, updatedOn: updatedOn, rawJSON: Array(json.utf8)[...])
    }

    /// Every entry of `snapshot` by `bulkId`: its item and absence counter, and the guarded ids.
    private static func contents(_ snapshot: Snapshot) -> [String: String] {
        var contents: [String: String] = [:]
        for row in snapshot.trackedItems {
            let item = row.item
            contents[item.bulkId] =
                "\(item.status ?? "-")|\(item.createdOn ?? "-")|\(item.updatedOn ?? "-")|"
                + "\(String(decoding: item.rawJSON, as: UTF8.self))|\(row.absentPolls)"
        }
        contents["(guarded)"] = snapshot.removalGuardedIDs.joined(separator: ",")
        return contents
    }

    /// The entries on which `loaded` and `expected` differ (at most five, with both values), for a short failure.
    private static func differences(_ loaded: Snapshot, _ expected: Snapshot) -> [String] {
        let (a, b) = (contents(loaded), contents(expected))
        let keys = Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
        return keys.prefix(5).map { "\($0): loaded \(a[$0] ?? "nothing"), expected \(b[$0] ?? "nothing")" }
            + (keys.count > 5 ? ["… \(keys.count) entries differ"] : [])
    }

    /// The documented format (SnapshotCodec's header), written out independently of the codec.
    private static func documentedImage(of snapshot: Snapshot) -> [UInt8] {
        var out = Array("BWI1".utf8)
        func varint(_ value: Int) {
            var rest = UInt64(value)
            while rest >= 0x80 {
                out.append(UInt8(rest & 0x7F) | 0x80)
                rest >>= 7
            }
            out.append(UInt8(rest))
        }
        func string(_ text: String) {
            varint(text.utf8.count)
            out.append(contentsOf: text.utf8)
        }
        func optional(_ text: String?) {
            guard let text else { return varint(0) }
            varint(text.utf8.count + 1)
            out.append(contentsOf: text.utf8)
        }
        let rows = snapshot.trackedItems
        varint(rows.count)
        for row in rows {
            string(row.item.bulkId)
            optional(row.item.status)
            optional(row.item.createdOn)
            optional(row.item.updatedOn)
            varint(row.item.rawJSON.count)
            out.append(contentsOf: row.item.rawJSON)
            varint(row.absentPolls)
        }
        let guarded = snapshot.removalGuardedIDs
        varint(guarded.count)
        for bulkId in guarded { string(bulkId) }
        return out
    }

    @Test func theStreamedImageIsTheDocumentedFormatInAnyPieceSize() throws {
        let snapshot = Self.variedSnapshot()
        let expected = Self.documentedImage(of: snapshot)
        #expect(SnapshotCodec.imageSize(of: snapshot) == expected.count)
        #expect(SnapshotCodec.image(of: snapshot) == expected)
        for pieceSize in [1, 7, 4096] {
            var joined: [UInt8] = []
            var pieces = 0
            SnapshotCodec.writeImage(of: snapshot, chunkBytes: pieceSize) { piece in
                joined.append(contentsOf: piece)
                pieces += 1
            }
            #expect(joined == expected, "pieces of \(pieceSize) bytes")
            #expect(pieces > 1)
        }
    }

    @Test func anImageDecodedInPlaceIsTheSnapshotItWasMadeOf() throws {
        let snapshot = Self.variedSnapshot()
        let decoded = try SnapshotCodec.snapshot(image: SnapshotCodec.image(of: snapshot), deltas: [])
        #expect(Self.differences(decoded, snapshot) == [])
        #expect(decoded.removalGuardedIDs == ["b-2", "bulk-1"])
        // A truncated image is refused, never half loaded.
        let image = SnapshotCodec.image(of: snapshot)
        #expect(throws: SnapshotCodec.Corrupt.self) {
            try SnapshotCodec.snapshot(image: Array(image.dropLast(40)), deltas: [])
        }
    }

    /// The SQLite store writes a poll's delta as consecutive deltas of a few thousand rows; replayed in order
    /// they must give what the single delta gives, removals and the guard set included.
    @Test func aDeltaWrittenInPiecesReplaysAsTheWholeDelta() throws {
        let policy = DetectionPolicy()
        var snapshot = Snapshot()
        let first = (0..<50).map { Self.bulkItem("op-\($0)", status: "PENDING") }
        _ = SnapshotDiffer.apply(BulkListing(items: first), to: &snapshot, policy: policy, isFirstRun: true)
        // The last ten go missing once (absent, not yet expired)…
        let kept = Array(first.dropLast(10))
        _ = SnapshotDiffer.apply(BulkListing(items: kept), to: &snapshot, policy: policy, isFirstRun: false)
        let base = SnapshotCodec.image(of: snapshot)
        // …then one poll with changes, new items, their expiry (second absence), and five more missing once
        // (only their absence counters are written).
        var next = kept.dropLast(5).map {
            Self.bulkItem($0.bulkId, status: "DONE", updatedOn: "2026-11-29T00:00:00Z")
        }
        next += (0..<7).map { Self.bulkItem("new-\($0)", status: "PENDING") }
        let outcome = SnapshotDiffer.apply(BulkListing(items: next), to: &snapshot, policy: policy, isFirstRun: false)
        #expect(outcome.upserted.count == 42)
        #expect(outcome.absenceCounts == (35..<40).map { AbsenceCount(bulkId: "op-\($0)", absentPolls: 1) })
        #expect(outcome.removed.count == 10)
        let guarded = ["op-1"]
        let ranges = SnapshotCodec.deltaPieces(of: outcome, rowsEach: 3)
        #expect(ranges.count == 14 && ranges.first == 0..<3 && ranges.last == 39..<42)
        let pieces = ranges.map { SnapshotCodec.delta(of: outcome, rows: $0, guarded: guarded) }
        let whole = SnapshotCodec.delta(of: outcome, guarded: guarded)
        #expect(SnapshotCodec.deltaPieces(of: outcome, rowsEach: .max) == [0..<42])
        let fromPieces = try SnapshotCodec.snapshot(image: base, deltas: pieces)
        let fromWhole = try SnapshotCodec.snapshot(image: base, deltas: [whole])
        #expect(Self.differences(fromPieces, fromWhole) == [])
        #expect(Self.differences(fromPieces, snapshot) == [])
        #expect(fromPieces.count == 47)
    }

    /// State files written before the absence counters had their own section hold `BWD1` deltas, in which an
    /// absent item's counter came as a whole row: such a delta still loads, and one now written carries the
    /// counter alone (a `bulkId` and a varint), which loads to the same snapshot.
    @Test func aDeltaWrittenBeforeTheAbsenceCountersStillLoads() throws {
        let policy = DetectionPolicy()
        var snapshot = Snapshot()
        let first = (0..<20).map { Self.bulkItem("op-\($0)", status: "PENDING") }
        _ = SnapshotDiffer.apply(BulkListing(items: first), to: &snapshot, policy: policy, isFirstRun: true)
        let base = SnapshotCodec.image(of: snapshot)
        let outcome = SnapshotDiffer.apply(
            BulkListing(items: Array(first.dropLast(3))), to: &snapshot, policy: policy, isFirstRun: false)
        #expect(outcome.upserted.isEmpty && outcome.absenceCounts.count == 3)
        let delta = SnapshotCodec.delta(of: outcome, guarded: nil)
        #expect(delta.starts(with: Array("BWD2".utf8)))
        #expect(delta.count < 4 + 4 + 3 * 8)
        #expect(Self.differences(try SnapshotCodec.snapshot(image: base, deltas: [delta]), snapshot) == [])

        // The same change as a BWD1 delta: the three rows whole, no counter section.
        var rowsOnly = outcome
        rowsOnly.upserted = outcome.absenceCounts.map {
            TrackedItem(item: Self.bulkItem($0.bulkId, status: "PENDING"), absentPolls: $0.absentPolls)
        }
        rowsOnly.absenceCounts = []
        let current = SnapshotCodec.delta(of: rowsOnly, guarded: nil)
        #expect(current.last == 0)
        let old = Array("BWD1".utf8) + current.dropFirst(4).dropLast()
        #expect(Self.differences(try SnapshotCodec.snapshot(image: base, deltas: [old]), snapshot) == [])
        #expect(throws: SnapshotCodec.Corrupt.self) {
            try SnapshotCodec.snapshot(image: base, deltas: [Array("BWD3".utf8) + current.dropFirst(4)])
        }
    }

    /// The watcher's first poll does not list its rows (``DiffOutcome/upsertedIsWholeSnapshot``): the stores
    /// write them from the snapshot itself, in pieces. Also after every item expired, when the snapshot is
    /// empty but still has holes. Either way a reopened store loads exactly the snapshot in memory.
    @Test(arguments: StoreBackend.allCases) func aPollWhoseRowsAreTheWholeSnapshotReloadsToIt(
        backend: StoreBackend
    ) async throws {
        let policy = DetectionPolicy()
        let store = try await backend.open(directory)
        func poll(_ items: [BulkItem], into snapshot: inout Snapshot, target: String, first: Bool = false)
            async throws -> DiffOutcome
        {
            let outcome = SnapshotDiffer.apply(
                BulkListing(items: items), to: &snapshot, policy: policy, isFirstRun: first, rowsOfNewSnapshot: false)
            _ = try await store.commit(
                PollCommit(
                    target: target, source: "https://api.example.com/bulk", outcome: outcome, snapshot: snapshot,
                    detectedAt: Date(timeIntervalSince1970: 1_764_325_000)),
                fence: .exclusive)
            return outcome
        }
        func expectReloadMatches(_ snapshot: Snapshot, target: String, _ when: Comment) async throws {
            let loaded = try await backend.open(directory).loadSnapshot(target: target)
            #expect(loaded.snapshot.count == snapshot.count, when)
            #expect(Self.differences(loaded.snapshot, snapshot) == [], when)
        }
        // Past one piece of 4,096 rows.
        var large = Snapshot()
        let first = try await poll(
            (0..<9000).map { Self.bulkItem("op-\($0)", status: "PENDING") }, into: &large, target: "large", first: true)
        #expect(first.upsertedIsWholeSnapshot && first.upserted.isEmpty && first.changes.count == 9000)
        try await expectReloadMatches(large, target: "large", "after the first poll")
        // A steady poll lists its rows as always.
        let steady = try await poll(
            (0..<9000).map { Self.bulkItem("op-\($0)", status: $0 < 5 ? "DONE" : "PENDING") }, into: &large,
            target: "large")
        #expect(!steady.upsertedIsWholeSnapshot && steady.upserted.count == 5)
        try await expectReloadMatches(large, target: "large", "after a steady poll")

        // Everything expires (after the mass-removal guard's doubled confirmations); the empty snapshot keeps
        // its holes (too few for the differ to close), and fills again without listing its rows.
        var small = Snapshot()
        _ = try await poll(
            (0..<40).map { Self.bulkItem("s-\($0)", status: "PENDING") }, into: &small, target: "small", first: true)
        for _ in 1...8 where !small.isEmpty { _ = try await poll([], into: &small, target: "small") }
        #expect(small.isEmpty && small.positions == 40)
        try await expectReloadMatches(small, target: "small", "after everything expired")
        let again = try await poll(
            (0..<5000).map { Self.bulkItem("back-\($0)", status: "PENDING") }, into: &small, target: "small")
        #expect(again.upsertedIsWholeSnapshot && again.changes.count == 5000)
        try await expectReloadMatches(small, target: "small", "after the snapshot filled again")
        try await expectReloadMatches(large, target: "large", "the other target untouched")
    }

    /// A fold (image streamed into a zero blob), more polls as deltas after it, a second fold over the first
    /// image's row: after each, a reopened store loads exactly the snapshot in memory.
    @Test(arguments: StoreBackend.allCases) func foldedImagesAndTheirDeltasReloadToTheSnapshotInMemory(
        backend: StoreBackend
    ) async throws {
        let policy = DetectionPolicy()
        var snapshot = Snapshot()
        var population = (0..<12000).map { Self.bulkItem("op-\($0)", status: "PENDING") }
        let store = try await backend.open(directory)
        func poll(first: Bool = false) async throws {
            let outcome = SnapshotDiffer.apply(
                BulkListing(items: population), to: &snapshot, policy: policy, isFirstRun: first)
            _ = try await store.commit(
                PollCommit(
                    target: "default", source: "https://api.example.com/bulk", outcome: outcome, snapshot: snapshot,
                    detectedAt: Date(timeIntervalSince1970: 1_764_325_000)),
                fence: .exclusive)
        }
        /// Reopens the store, loads, compares; returns the loaded image's and deltas' sizes.
        func expectReloadMatches(_ when: Comment) async throws -> (image: Int, deltas: Int)? {
            let reopened = try await backend.open(directory)
            let loaded = try await reopened.loadSnapshot(target: "default")
            #expect(loaded.hasBaseline, when)
            #expect(loaded.snapshot.count == snapshot.count, when)
            #expect(Self.differences(loaded.snapshot, snapshot) == [], when)
            switch reopened {
            case let sqlite as SQLiteStore: return sqlite.snapshotFootprint(target: "default")
            case let postgres as PostgresStore: return postgres.snapshotFootprint(target: "default")
            default: return nil
            }
        }
        try await poll(first: true)
        // The first poll's delta (~2 MB) is past the fold threshold (1 MiB): this writes the first image.
        try await store.maintain(target: "default", snapshot: snapshot)
        let first = try await expectReloadMatches("after the first fold")
        // It loaded from an image alone: the fold happened and was stored.
        #expect((first?.image ?? 0) > 1_000_000 && first?.deltas == 0, "\(String(describing: first))")

        for round in 0..<3 {
            for index in stride(from: round, to: population.count, by: 7) {
                population[index] = Self.bulkItem(
                    population[index].bulkId, status: "FINISHED", updatedOn: "2026-11-28T1\(round + 1):00:00Z")
            }
            population.removeLast(40)
            population.append(contentsOf: (0..<25).map { Self.bulkItem("new-\(round)-\($0)", status: "PENDING") })
            try await poll()
        }
        let afterDeltas = try await expectReloadMatches("image plus three deltas")
        #expect(afterDeltas?.image == first?.image && (afterDeltas?.deltas ?? 0) > 0)

        // Enough changed rows for a second fold, which replaces the first image's row.
        for index in population.indices {
            population[index] = Self.bulkItem(
                population[index].bulkId, status: "DONE", updatedOn: "2026-11-29T00:00:00Z")
        }
        try await poll()
        try await store.maintain(target: "default", snapshot: snapshot)
        let second = try await expectReloadMatches("after the second fold")
        #expect(second?.deltas == 0 && second?.image != first?.image)
        if let sqlite = store as? SQLiteStore { #expect(try await sqlite.integrityCheck() == "ok") }
    }
}
