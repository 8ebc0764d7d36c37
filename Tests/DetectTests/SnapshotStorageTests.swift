import Testing

@testable import BulkWatch
@testable import BulkWatchDetect

/// The snapshot's storage machinery (index, key arena, holes, compaction) under churn that the
/// differ's own tests reach only at scale.
@Suite("Snapshot storage")
struct SnapshotStorageTests {
    @Test func lookupsStayExactThroughRandomAppendsRemovalsAndCompactions() {
        var random = StorageRandom(seed: 7)
        var snapshot = Snapshot()
        var model: [String: String] = [:]  // bulkId → status
        var serial = 0
        for round in 0..<400 {
            for _ in 0..<Int(random.next() % 40) {
                serial += 1
                let bulkId = "id-\(serial)-" + String(repeating: "x", count: Int(random.next() % 40))
                let status = "S\(random.next() % 5)"
                snapshot.append(TrackedItem(item: item("\(bulkId):\(status)@1")), hash: ByteKeys.hash(bulkId))
                model[bulkId] = status
            }
            let live = snapshot.entries.indices.filter { !snapshot.isDead($0) }
            var doomed = Set<Int>()
            for _ in 0..<Int(random.next() % 30) where !live.isEmpty {
                doomed.insert(live[Int(random.next() % UInt64(live.count))])
            }
            for position in doomed { model[snapshot.entries[position].item.bulkId] = nil }
            snapshot.remove(positions: Array(doomed))
            if round % 7 == 0 {
                var order = snapshot.entries.indices.filter { !snapshot.isDead($0) }
                order.shuffle(using: &random)
                snapshot.compact(order: order)
            } else if round % 5 == 0 {
                snapshot.closeHoles()
                #expect(snapshot.deadCount == 0)
                #expect(snapshot.entries.count == model.count)
            }
            #expect(snapshot.count == model.count)
            for (bulkId, status) in model {
                let position = snapshot.position(of: bulkId)
                #expect(position.map { snapshot.entries[$0].item.status } == status, "round \(round): \(bulkId)")
                #expect(position.flatMap { snapshot.keys.stateEquals($0, status: status, updatedOn: "1") } == true)
            }
            #expect(snapshot.position(of: "id-0-") == nil)
        }
    }

    @Test func keyCopiesFollowEveryReplacementThroughArenaCompaction() {
        var snapshot = Snapshot()
        for n in 0..<50 {
            snapshot.append(TrackedItem(item: item("op-\(n):QUEUED@0")), hash: ByteKeys.hash("op-\(n)"))
        }
        // Enough replacements to make the arenas' waste outgrow their live bytes many times over.
        let padding = String(repeating: "z", count: 100)
        for round in 1...12_000 {
            let n = round % 50
            snapshot.replaceItem(at: n, with: item("op-\(n):S\(round % 7)@\(round)\(padding)"))
        }
        // The old bytes stay until the watcher compacts between polls, never in the middle of a diff.
        #expect(snapshot.keys.wastedBytes > 1 << 20)
        #expect(snapshot.hasWastefulArenas)
        let before = snapshot.trackedItems
        let rewrote = snapshot.compactBetweenPolls()
        #expect(rewrote)
        #expect(!snapshot.hasWastefulArenas)
        #expect(snapshot.keys.wastedBytes == 0 && snapshot.payloads.wastedBytes == 0)
        #expect(snapshot.keys.bytes.count < 1 << 13)  // 50 live entries of ~115 bytes
        #expect(snapshot.keys.bytes.capacity >= snapshot.keys.bytes.count * 5 / 4, "room to append into")
        #expect(snapshot.trackedItems == before)
        for n in 0..<50 {
            let current = snapshot.entries[n].item
            #expect(snapshot.keys.stateEquals(n, status: current.status, updatedOn: current.updatedOn) == true)
            #expect(snapshot.keys.stateEquals(n, status: current.status, updatedOn: "other") == false)
            #expect(snapshot.keys.stateEquals(n, status: nil, updatedOn: current.updatedOn) == false)
            #expect(snapshot.position(of: "op-\(n)") == n)
        }
    }

    /// Between polls the watcher rewrites the storage once there are many holes or much waste, in one go, and
    /// leaves room in every array: the polls after it append without copying any array into one twice its size
    /// (at 100k items those copies, and a second rewrite two polls later, raised the steady peak by ~10 MB).
    @Test func aRewriteBetweenPollsClosesHolesDropsWasteAndLeavesRoomToAppend() {
        var snapshot = Snapshot()
        for n in 0..<4_000 {
            snapshot.append(TrackedItem(item: item("op-\(n):QUEUED@0")), hash: ByteKeys.hash("op-\(n)"))
        }
        #expect(!snapshot.needsCompaction)
        // An eighth of the entries expire (holes) and as many change state (waste), as in a few steady polls.
        snapshot.remove(positions: Array(stride(from: 0, to: 4_000, by: 7)))
        for n in stride(from: 3, to: 4_000, by: 7) {
            snapshot.replaceItem(at: n, with: item("op-\(n):DONE@1"))
        }
        #expect(snapshot.hasManyHoles)
        let expected = snapshot.trackedItems
        let rewrote = snapshot.compactBetweenPolls()
        #expect(rewrote)
        #expect(snapshot.deadCount == 0 && snapshot.positions == snapshot.count)
        #expect(snapshot.keys.wastedBytes == 0 && snapshot.payloads.wastedBytes == 0)
        #expect(!snapshot.needsCompaction)
        let rewroteAgain = snapshot.compactBetweenPolls()
        #expect(!rewroteAgain, "nothing left to rewrite")
        #expect(snapshot.trackedItems == expected)

        func capacities() -> [Int] {
            [
                snapshot.hashes.capacity, snapshot.flags.capacity, snapshot.absentCounts.capacity,
                snapshot.keys.spans.capacity, snapshot.keys.bytes.capacity, snapshot.payloads.offsets.capacity,
                snapshot.payloads.lengths.capacity, snapshot.payloads.bytes.capacity,
            ]
        }
        let before = capacities()
        // An eighth more entries, each appended and then changed once: no array is reallocated.
        for n in 4_000..<(4_000 + snapshot.count / 8) {
            let position = snapshot.append(
                TrackedItem(item: item("op-\(n):QUEUED@0")), hash: ByteKeys.hash("op-\(n)"))
            snapshot.replaceItem(at: position, with: item("op-\(n):DONE@2"))
        }
        #expect(capacities() == before)
    }

    @Test func fieldsTooLongForTheKeyArenaAreComparedAsStrings() {
        let longId = String(repeating: "i", count: 300)
        let longStatus = String(repeating: "s", count: 300)
        var harness = DiffHarness()
        harness.poll(["\(longId):\(longStatus)@1", "b:\(longStatus)@1"])
        #expect(harness.snapshot.keys.spans.allSatisfy { $0 == KeyArena.none })
        #expect(harness.events(["\(longId):\(longStatus)@1", "b:\(longStatus)@1"]).isEmpty)
        #expect(
            harness.events(["\(longId):DONE@1", "b:\(longStatus)@1"]) == [
                "changed \(longId) DONE 1 (was \(longStatus) 1)"
            ])
        #expect(harness.snapshot[longId]?.item.status == "DONE")
    }

    @Test func missingAndEmptyFieldsAreDifferentStates() {
        var harness = DiffHarness()
        harness.poll(["a:@1", "b:Q"])
        #expect(harness.events(["a:@1", "b:Q"]).isEmpty)
        #expect(harness.events(["a:@1", "b:Q@"]) == ["changed b Q  (was Q -)"])
        #expect(harness.events(["a:@1", "b:Q@"]).isEmpty)
    }
}

/// A small seeded generator (SplitMix64), so a failing history can be replayed.
struct StorageRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension KeyArena {
    /// The differ's comparison (``stateEquals(_:status:updatedOn:)``) for a listed item carrying exactly these
    /// two fields, read from a decoded body as the differ reads them.
    fileprivate func stateEquals(_ position: Int, status: String?, updatedOn: String?) -> Bool? {
        let probe = BulkListing(items: [BulkItem(bulkId: "probe", status: status, updatedOn: updatedOn, rawJSON: [])])
        return probe.withKeys { reader in
            reader.keys(at: 0) { stateEquals(position, status: $0.status, updatedOn: $0.updatedOn) }
        }
    }
}
