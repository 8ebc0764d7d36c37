import BulkWatch
import Testing

private let t1 = "2026-11-28T10:16:01Z"
private let t2 = "2026-11-28T10:16:02Z"
private let t3 = "2026-11-28T10:16:03Z"

/// One rule of DESIGN.md §3 as a sequence of polls and the exact events each must produce.
struct RuleCase: Sendable, CustomTestStringConvertible {
    var name: String
    var expireAfter = 2
    var initial = DetectionPolicy.InitialMode.emit
    var polls: [(listing: [String], events: [String])]

    var testDescription: String { name }

    static let all: [RuleCase] = [
        RuleCase(
            name: "an unknown bulkId is created, a known unchanged one is silent",
            polls: [
                (["a:QUEUED@\(t1)"], ["created a QUEUED \(t1)"]),
                (["a:QUEUED@\(t1)", "b:QUEUED@\(t1)"], ["created b QUEUED \(t1)"]),
                (["a:QUEUED@\(t1)", "b:QUEUED@\(t1)"], []),
            ]),
        RuleCase(
            name: "a new status is a change",
            polls: [
                (["a:QUEUED@\(t1)"], ["created a QUEUED \(t1)"]),
                (["a:RUNNING@\(t1)"], ["changed a RUNNING \(t1) (was QUEUED \(t1))"]),
            ]),
        RuleCase(
            name: "a newer updatedOn is a change",
            polls: [
                (["a:QUEUED@\(t1)"], ["created a QUEUED \(t1)"]),
                (["a:QUEUED@\(t2)"], ["changed a QUEUED \(t2) (was QUEUED \(t1))"]),
            ]),
        RuleCase(
            name: "an older updatedOn is a stale read: ignored, the stored state is kept",
            polls: [
                (["a:RUNNING@\(t2)"], ["created a RUNNING \(t2)"]),
                (["a:QUEUED@\(t1)"], []),
                (["a:RUNNING@\(t2)"], []),
                (["a:DONE@\(t3)"], ["changed a DONE \(t3) (was RUNNING \(t2))"]),
            ]),
        RuleCase(
            name: "the same instant spelled differently is not a change",
            polls: [
                (["a:QUEUED@2026-11-28T10:16:03Z"], ["created a QUEUED 2026-11-28T10:16:03Z"]),
                (["a:QUEUED@2026-11-28T10:16:03.000Z"], []),
                (["a:QUEUED@2026-11-28T11:16:03+01:00"], []),
                (["a:QUEUED@1795860963000"], []),
                (["a:QUEUED@2026-11-28T10:16:03Z"], []),
            ]),
        RuleCase(
            name: "the same instant with a new status is a change",
            polls: [
                (["a:QUEUED@2026-11-28T10:16:03Z"], ["created a QUEUED 2026-11-28T10:16:03Z"]),
                (
                    ["a:RUNNING@2026-11-28T10:16:03.000Z"],
                    ["changed a RUNNING 2026-11-28T10:16:03.000Z (was QUEUED 2026-11-28T10:16:03Z)"]
                ),
            ]),
        RuleCase(
            name: "an unparseable updatedOn is compared as a string, so it is never stale",
            polls: [
                (["a:QUEUED@v2"], ["created a QUEUED v2"]),
                (["a:QUEUED@v1"], ["changed a QUEUED v1 (was QUEUED v2)"]),
                (["a:QUEUED@v1"], []),
            ]),
        RuleCase(
            name: "a missing updatedOn differs from a present one",
            polls: [
                (["a:QUEUED"], ["created a QUEUED -"]),
                (["a:QUEUED@\(t1)"], ["changed a QUEUED \(t1) (was QUEUED -)"]),
                (["a:QUEUED"], ["changed a QUEUED - (was QUEUED \(t1))"]),
            ]),
        RuleCase(
            name: "expires after exactly expireAfter (2) absent polls, not before",
            polls: [
                (["a:Q@1", "b:Q@1"], ["created a Q 1", "created b Q 1"]),
                (["a:Q@1"], []),
                (["a:Q@1"], ["expired b Q 1"]),
                (["a:Q@1"], []),
            ]),
        RuleCase(
            name: "expires after exactly expireAfter (3) absent polls, not before",
            expireAfter: 3,
            polls: [
                (["a:Q@1", "b:Q@1"], ["created a Q 1", "created b Q 1"]),
                (["a:Q@1"], []),
                (["a:Q@1"], []),
                (["a:Q@1"], ["expired b Q 1"]),
            ]),
        RuleCase(
            name: "expireAfter 1 still needs two absent polls: one poll never expires anything",
            expireAfter: 1,
            polls: [
                (["a:Q@1", "b:Q@1"], ["created a Q 1", "created b Q 1"]),
                (["a:Q@1"], []),
                (["a:Q@1"], ["expired b Q 1"]),
            ]),
        RuleCase(
            name: "reappearing resets the absence counter",
            polls: [
                (["a:Q@1", "b:Q@1"], ["created a Q 1", "created b Q 1"]),
                (["a:Q@1"], []),
                (["a:Q@1", "b:Q@1"], []),
                (["a:Q@1"], []),
                (["a:Q@1"], ["expired b Q 1"]),
            ]),
        RuleCase(
            name: "an item that reappears changed is changed",
            polls: [
                (["a:Q@1", "b:Q@1"], ["created a Q 1", "created b Q 1"]),
                (["a:Q@1"], []),
                (["a:Q@1", "b:DONE@2"], ["changed b DONE 2 (was Q 1)"]),
            ]),
        RuleCase(
            name: "the expired event carries the last known state",
            polls: [
                (["a:QUEUED@\(t1)", "z:Q@1"], ["created a QUEUED \(t1)", "created z Q 1"]),
                (["a:DONE@\(t2)", "z:Q@1"], ["changed a DONE \(t2) (was QUEUED \(t1))"]),
                (["a:QUEUED@\(t1)", "z:Q@1"], []),
                (["z:Q@1"], []),
                (["z:Q@1"], ["expired a DONE \(t2)"]),
            ]),
        RuleCase(
            name: "created and changed follow the listing order, expired follow bulkId byte order",
            polls: [
                (
                    ["m:Q@1", "k:Q@1", "y:Q@1", "x:Q@1", "B:Q@1"],
                    ["created m Q 1", "created k Q 1", "created y Q 1", "created x Q 1", "created B Q 1"]
                ),
                (
                    ["k:R@2", "n:Q@1", "m:R@2"],
                    ["changed k R 2 (was Q 1)", "created n Q 1", "changed m R 2 (was Q 1)"]
                ),
                (["n:Q@1", "k:R@2", "m:R@2"], ["expired B Q 1", "expired x Q 1", "expired y Q 1"]),
            ]),
        RuleCase(
            // The sort decides by an id's first 8 bytes first: "op-2024-" is 8 bytes, "op-2024" 7.
            name: "expired ids that share their first 8 bytes follow bulkId byte order too",
            polls: [
                (
                    ["op-2024-b:Q@1", "op-2024-a2:Q@1", "op-2024-\u{E9}:Q@1", "op-2024-a:Q@1", "op-2024:Q@1", "z:Q@1"],
                    [
                        "created op-2024-b Q 1", "created op-2024-a2 Q 1", "created op-2024-\u{E9} Q 1",
                        "created op-2024-a Q 1", "created op-2024 Q 1", "created z Q 1",
                    ]
                ),
                (["z:Q@1"], []),
                (
                    ["z:Q@1"],
                    [
                        "expired op-2024 Q 1", "expired op-2024-a Q 1", "expired op-2024-a2 Q 1",
                        "expired op-2024-b Q 1", "expired op-2024-\u{E9} Q 1",
                    ]
                ),
            ]),
        RuleCase(
            name: "duplicates in one answer: the newest updatedOn wins, ties go to the later one",
            polls: [
                (["a:FIRST@\(t2)", "a:OLDER@\(t1)", "a:TIED@\(t2)"], ["created a TIED \(t2)"]),
                (["a:NEWER@\(t3)", "a:OLDER@\(t1)"], ["changed a NEWER \(t3) (was TIED \(t2))"]),
                (["a:OLDER@\(t1)", "a:NEWER@\(t3)"], []),
                // An occurrence in the stored state after a changed one: the tie still goes to the later one,
                // whichever of the two the differ looked at first.
                (["a:CHANGED@\(t3)", "a:NEWER@\(t3)"], []),
                (["a:NEWER@\(t3)", "a:CHANGED@\(t3)"], ["changed a CHANGED \(t3) (was NEWER \(t3))"]),
            ]),
        RuleCase(
            name: "initial emit announces every item of the first poll",
            polls: [
                (["a:Q@1", "b:Q@1"], ["created a Q 1", "created b Q 1"]),
                (["a:Q@1", "b:R@2"], ["changed b R 2 (was Q 1)"]),
            ]),
        RuleCase(
            name: "initial skip records the first poll silently, then reports normally",
            initial: .skip,
            polls: [
                (["a:Q@1", "b:Q@1"], []),
                (["a:Q@1", "b:R@2"], ["changed b R 2 (was Q 1)"]),
                (["a:Q@1", "b:R@2", "c:Q@1"], ["created c Q 1"]),
            ]),
        RuleCase(
            name: "more than half missing at once needs twice the confirmations",
            polls: [
                (population(10), population(10).map { "created \($0.spaced)" }),
                (Array(population(10).prefix(4)), []),
                (Array(population(10).prefix(4)), []),
                (Array(population(10).prefix(4)), []),
                (Array(population(10).prefix(4)), population(10).suffix(6).map { "expired \($0.spaced)" }),
            ]),
        RuleCase(
            name: "exactly half missing is a mass removal too (the half-list glitch)",
            polls: [
                (population(10), population(10).map { "created \($0.spaced)" }),
                (Array(population(10).prefix(5)), []),
                (Array(population(10).prefix(5)), []),
                (Array(population(10).prefix(5)), []),
                (Array(population(10).prefix(5)), population(10).suffix(5).map { "expired \($0.spaced)" }),
            ]),
        RuleCase(
            name: "fewer than half missing is an ordinary removal",
            polls: [
                (population(10), population(10).map { "created \($0.spaced)" }),
                (Array(population(10).prefix(6)), []),
                (Array(population(10).prefix(6)), population(10).suffix(4).map { "expired \($0.spaced)" }),
            ]),
        RuleCase(
            name: "the mass-removal guard needs at least 10 known items",
            polls: [
                (population(9), population(9).map { "created \($0.spaced)" }),
                ([], []),
                ([], population(9).map { "expired \($0.spaced)" }),
            ]),
        RuleCase(
            name: "an empty answer after a full one never expires anything",
            polls: [
                (population(20), population(20).map { "created \($0.spaced)" }),
                ([], []),
                (population(20), []),
                ([], []),
                (population(20), []),
            ]),
        RuleCase(
            name: "a half answer after a full one never expires anything",
            polls: [
                (population(20), population(20).map { "created \($0.spaced)" }),
                (Array(population(20).prefix(10)), []),
                (population(20), []),
                (Array(population(20).suffix(10)), []),
                (population(20), []),
            ]),
        RuleCase(
            name: "a guarded item that comes back loses the guard",
            polls: [
                (population(10), population(10).map { "created \($0.spaced)" }),
                (Array(population(10).prefix(4)), []),
                (population(10), []),
                (Array(population(10).prefix(7)), []),
                (Array(population(10).prefix(7)), population(10).suffix(3).map { "expired \($0.spaced)" }),
            ]),
        RuleCase(
            name: "a guard-tripping poll expires nothing, also not items missing before it",
            polls: [
                (population(12), population(12).map { "created \($0.spaced)" }),
                (Array(population(12).prefix(11)), []),
                // p04…p10 newly missing (7 of 12): the guard trips and holds all eight absent items, so
                // p11's second absence confirms nothing (before the fix it expired here, one short).
                (Array(population(12).prefix(4)), []),
                (Array(population(12).prefix(4)), []),
                (Array(population(12).prefix(4)), ["expired p11:QUEUED@1".spaced]),
                (Array(population(12).prefix(4)), population(12).dropFirst(4).prefix(7).map { "expired \($0.spaced)" }),
            ]),
    ]
}

extension String {
    /// `p01:QUEUED@1` → `p01 QUEUED 1`, the rendered form of an item spec.
    fileprivate var spaced: String {
        String(map { $0 == ":" || $0 == "@" ? " " : $0 })
    }
}

@Suite("Change detection rules (DESIGN.md §3)")
struct DifferRuleTests {
    /// Every rule on one thread with every item built in pass 2, and with every listing's lookups and items
    /// built ahead split over two threads (as a large listing's are; an empty listing, as in the mass-removal
    /// cases, has nothing to split).
    @Test("rule", arguments: RuleCase.all, [false, true])
    func ruleProducesExactlyTheseEvents(_ rule: RuleCase, split: Bool) {
        var harness = DiffHarness(expireAfter: rule.expireAfter, initial: rule.initial)
        if split { harness.parallelFrom = 1 } else { harness.readAheadLimit = 0 }
        for (n, poll) in rule.polls.enumerated() {
            let events = harness.events(poll.listing)
            #expect(
                events == poll.events,
                "poll \(n + 1) of “\(rule.name)”\(split ? ", lookups and read-ahead split" : ", nothing built ahead")")
        }
    }

    @Test func staleReadsAreCountedWithExamplesAndStoredStateIsKept() {
        var harness = DiffHarness()
        harness.poll(["a:RUNNING@\(t2)", "b:RUNNING@\(t2)"])
        let outcome = harness.poll(["a:QUEUED@\(t1)", "b:RUNNING@\(t2)"])
        #expect(outcome.changes.isEmpty)
        #expect(outcome.stats.staleIgnored == 1)
        #expect(outcome.stats.staleExamples == ["a"])
        #expect(outcome.stats.unchanged == 1)
        #expect(outcome.upserted.isEmpty)
        #expect(harness.snapshot["a"]?.item.status == "RUNNING")
        #expect(harness.snapshot["a"]?.item.updatedOn == t2)
    }

    @Test func reformattedTimestampIsStoredButNotAnnounced() {
        var harness = DiffHarness()
        harness.poll(["a:Q@2026-11-28T10:16:03Z"])
        let outcome = harness.poll(["a:Q@2026-11-28T10:16:03.000Z"])
        #expect(outcome.changes.isEmpty)
        #expect(outcome.stats.reformattedTimestamps == 1)
        #expect(outcome.upserted.map(\.item.updatedOn) == ["2026-11-28T10:16:03.000Z"])
    }

    @Test func duplicatesAreCountedAndWarnedAbout() {
        var harness = DiffHarness()
        let outcome = harness.poll(["a:Q@1", "b:Q@1", "a:R@2", "a:S@1", "c:Q@1"])
        #expect(outcome.changes.map(render) == ["created b Q 1", "created a R 2", "created c Q 1"])
        #expect(outcome.stats.duplicatesResolved == 2)
        #expect(outcome.stats.warnings == [.duplicateIDs(count: 2, examples: ["a"])])
        #expect(harness.snapshot.count == 3)

        let known = harness.poll(["a:X@3", "a:Y@2", "b:Q@1", "c:Q@1"])
        #expect(known.changes.map(render) == ["changed a X 3 (was R 2)"])
        #expect(known.stats.duplicatesResolved == 1)
    }

    @Test func skippedItemsWithoutIdArePassedThroughAndWarned() {
        var harness = DiffHarness()
        let outcome = harness.poll(["a:Q@1"], skippedWithoutId: 3)
        #expect(outcome.stats.skippedWithoutId == 3)
        #expect(outcome.stats.warnings == [.itemsWithoutID(count: 3)])
        let clean = harness.poll(["a:Q@1"])
        #expect(clean.stats.skippedWithoutId == 0)
        #expect(clean.stats.warnings.isEmpty)
    }

    @Test func massRemovalGuardWarnsOnceAndReportsItsState() {
        var harness = DiffHarness()
        harness.poll(population(10))
        let triggered = harness.poll(Array(population(10).prefix(4)))
        #expect(triggered.stats.massRemovalGuardTriggered)
        #expect(triggered.stats.warnings == [.massRemovalGuard(newlyAbsent: 6, known: 10, confirmations: 4)])
        #expect(triggered.stats.newlyAbsent == 6)
        #expect(triggered.stats.absentPending == 6)
        #expect(triggered.stats.removalGuarded == 6)
        #expect(triggered.removalGuardChanged)
        #expect(harness.snapshot.removalGuardedIDs == ["p04", "p05", "p06", "p07", "p08", "p09"])
        #expect(harness.snapshot.isUnderRemovalGuard("p04"))
        #expect(!harness.snapshot.isUnderRemovalGuard("p00"))

        for _ in 0..<2 {
            let held = harness.poll(Array(population(10).prefix(4)))
            #expect(held.stats.warnings.isEmpty)
            #expect(!held.stats.massRemovalGuardTriggered)
            #expect(!held.removalGuardChanged)
            #expect(held.stats.newlyAbsent == 0)
            #expect(held.stats.absentPending == 6)
        }
        let expired = harness.poll(Array(population(10).prefix(4)))
        #expect(expired.stats.expired == 6)
        #expect(expired.removalGuardChanged)
        #expect(expired.stats.removalGuarded == 0)
        #expect(harness.snapshot.removalGuardedIDs.isEmpty)
    }

    @Test func upsertedAndRemovedAreExactlyTheStoredDeltas() {
        var harness = DiffHarness()
        let first = harness.poll(["a:Q@1", "b:Q@1", "c:Q@1", "d:Q@1"])
        #expect(first.upserted.map(\.item.bulkId) == ["a", "b", "c", "d"])
        #expect(first.removed.isEmpty)

        // a unchanged, b changed, e new, c and d missing once.
        let second = harness.poll(["a:Q@1", "b:R@2", "e:Q@1"])
        #expect(rows(second.upserted) == ["b R 0", "e Q 0"])
        #expect(second.absenceCounts == [.init(bulkId: "c", absentPolls: 1), .init(bulkId: "d", absentPolls: 1)])
        #expect(second.removed.isEmpty)

        // c is back (counter reset), d is gone for the second time.
        let third = harness.poll(["a:Q@1", "b:R@2", "e:Q@1", "c:Q@1"])
        #expect(rows(third.upserted) == ["c Q 0"])
        #expect(third.absenceCounts.isEmpty)
        #expect(third.removed == ["d"])
        #expect(third.stats.reappeared == 1)

        let quiet = harness.poll(["a:Q@1", "b:R@2", "e:Q@1", "c:Q@1"])
        #expect(quiet.upserted.isEmpty && quiet.absenceCounts.isEmpty)
        #expect(quiet.removed.isEmpty)
        #expect(quiet.changes.isEmpty)
        #expect(quiet.stats.unchanged == 4)
    }

    @Test func statsCountEveryKindOfOutcome() {
        var harness = DiffHarness()
        harness.poll(["a:Q@1", "b:Q@1", "c:Q@1", "d:Q@1", "e:Q@\(t2)"])
        let outcome = harness.poll(["a:Q@1", "b:R@1", "f:Q@1", "e:Q@\(t1)"])
        #expect(outcome.stats.listed == 4)
        #expect(outcome.stats.created == 1)
        #expect(outcome.stats.changed == 1)
        #expect(outcome.stats.unchanged == 1)
        #expect(outcome.stats.staleIgnored == 1)
        #expect(outcome.stats.newlyAbsent == 2)
        #expect(outcome.stats.absentPending == 2)
        #expect(outcome.stats.expired == 0)
    }

    @Test func pureDiffLeavesThePreviousSnapshotUntouched() {
        var harness = DiffHarness()
        harness.poll(["a:Q@1", "b:Q@1"])
        let before = harness.snapshot
        let (next, outcome) = SnapshotDiffer.diff(
            previous: before, listing: listing(["a:R@2"]), policy: harness.policy, isFirstRun: false)
        #expect(outcome.changes.map(render) == ["changed a R 2 (was Q 1)"])
        #expect(before["a"]?.item.status == "Q")
        #expect(before["b"]?.absentPolls == 0)
        #expect(next["a"]?.item.status == "R")
        #expect(next["b"]?.absentPolls == 1)
    }

    @Test func snapshotRebuiltFromPersistedRowsContinuesIdentically() {
        var live = DiffHarness()
        live.poll(population(10))
        live.poll(Array(population(10).prefix(3)))
        var restarted = DiffHarness()
        restarted.snapshot = Snapshot(
            tracked: live.snapshot.trackedItems, removalGuarded: live.snapshot.removalGuardedIDs)
        restarted.poll([])  // leave the first-run state behind: absences count on both sides
        live.poll([])
        for _ in 0..<3 {
            let poll = Array(population(10).prefix(3))
            #expect(live.events(poll) == restarted.events(poll))
        }
        #expect(live.snapshot.count == 3)
        #expect(restarted.snapshot.count == 3)
    }

    @Test func fewItemsStoredFromALargeAnswerOwnTheirBytesInsteadOfPinningTheBody() {
        var harness = DiffHarness()
        harness.poll(["a:Q@1", "b:Q@1", "c:Q@1", "d:Q@1"])
        let answer = listing(["a:Q@1", "b:R@2", "c:Q@1", "d:Q@1"])
        #expect(answer.items[1].rawJSON.startIndex > 0)
        let outcome = harness.poll(answer)
        let stored = harness.snapshot["b"]!.item
        #expect(stored.rawJSON.startIndex == 0)
        #expect(Array(stored.rawJSON) == Array(answer.items[1].rawJSON))
        #expect(outcome.changes[0].item.rawJSON.elementsEqual(answer.items[1].rawJSON))
    }

    @Test func idsAreComparedAsBytesNotAsCanonicallyEquivalentText() {
        var harness = DiffHarness()
        let precomposed = "caf\u{E9}"
        let decomposed = "cafe\u{301}"
        let outcome = harness.poll(["\(precomposed):Q@1", "\(decomposed):Q@1"])
        #expect(outcome.stats.created == 2)
        #expect(outcome.stats.duplicatesResolved == 0)
        #expect(harness.snapshot[precomposed] != nil)
        #expect(harness.snapshot[decomposed] != nil)
    }

    @Test func hugeExpireAfterNeitherOverflowsNorExpires() {
        var harness = DiffHarness(expireAfter: .max)
        harness.poll(population(12))
        for _ in 0..<5 {
            #expect(harness.events([]).isEmpty)
        }
        #expect(harness.snapshot.count == 12)
    }

    @Test func negativeAbsenceCountsFromStorageAreReadAsZero() {
        let snapshot = Snapshot(tracked: [TrackedItem(item: item("a:Q@1"), absentPolls: -3)])
        #expect(snapshot["a"]?.absentPolls == 0)
    }

    private func rows(_ upserted: [TrackedItem]) -> [String] {
        upserted.map { "\($0.item.bulkId) \($0.item.status ?? "-") \($0.absentPolls)" }
    }
}
