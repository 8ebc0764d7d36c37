import BulkWatch
import BulkWatchSimulator
import Testing

@testable import BulkWatchDetect

/// Replays random upstream histories through the differ and checks it against a literal model of
/// DESIGN.md §3 and against what actually happened upstream.
///
/// Each history: items appear, change status and/or `updatedOn` (monotonically, in several
/// spellings of the same instant), and vanish for good; some polls are glitches (an empty or
/// partial list, never two in a row), some contain stale reads of older versions or duplicates;
/// the listing order is sometimes shuffled; the watcher sometimes restarts from its journal.
/// Checked after every poll:
/// - the events equal the model's, in the same order, byte for byte;
/// - the snapshot equals the model's state, and replaying `upserted`/`removed` onto a journal
///   reproduces it, with no row written that did not change;
/// - no item alive upstream ever expires (so no glitch poll caused an expiry);
/// - no event concerns an item whose answer in that poll was a stale read;
/// - an item that vanished expires exactly `expireAfter` (or, under the guard, twice that) polls
///   after it was last listed, and never on a poll that tripped the mass-removal guard;
/// - an item that comes back after it expired is `created` again (a new incarnation); some
///   histories bring vanished items back, before and after their expiry, so this happens in every shard.
@Suite("Differ against a reference model")
struct DifferPropertyTests {
    /// 300 histories of 40 polls, in shards of 25 seeds so they run in parallel.
    static let seedShards: [ClosedRange<UInt64>] = stride(from: 1, through: 300, by: 25).map { $0...($0 + 24) }

    @Test(arguments: seedShards)
    func randomHistoriesMatchTheReferenceModel(seeds: ClosedRange<UInt64>) {
        var recurrences = 0
        var guardTrips = 0
        for seed in seeds {
            var history = HistoryRun(seed: seed)
            if let failure = history.run(polls: 40) {
                Issue.record("seed \(seed): \(failure)")
            }
            recurrences += history.recurrences
            guardTrips += history.guardTrips.count
        }
        // The properties above must have been exercised, not vacuously true.
        #expect(recurrences > 0, "no item came back after it expired in seeds \(seeds)")
        #expect(guardTrips > 0, "no poll tripped the mass-removal guard in seeds \(seeds)")
    }

    /// Hundreds of items and tens of changes per poll: enough holes and out-of-order listings for
    /// the snapshot to compact and re-sort its storage, which must not change any outcome.
    @Test(arguments: 1_001...1_012 as ClosedRange<UInt64>)
    func largeHistoriesMatchTheReferenceModel(seed: UInt64) {
        var history = HistoryRun(seed: seed, scale: 40)
        if let failure = history.run(polls: 30) {
            Issue.record("seed \(seed) (scale 40): \(failure)")
        }
    }
}

// MARK: - Upstream simulation

private struct Version {
    var status: String?
    /// Milliseconds since the epoch, or for "revision" items a counter rendered as `rev-0007`.
    var instant: Int64
    var spelling: Int
}

private struct UpstreamItem {
    var bulkId: String
    var usesRevisions: Bool
    var history: [Version]
    var current: Version { history[history.count - 1] }
}

private func render(_ version: Version, revisions: Bool) -> String {
    if revisions { return "rev-" + zeroPadded(version.instant, 4) }
    let millis = version.instant
    switch version.spelling % 4 {
    case 0: return iso(millis, offsetHours: 0, fractionDigits: 3)
    case 1: return iso(millis, offsetHours: 0, fractionDigits: 6)
    case 2: return iso(millis, offsetHours: 1, fractionDigits: 3)
    default: return String(millis)
    }
}

private func zeroPadded(_ value: Int64, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// `2026-11-28T10:16:03.512Z`, or with an offset (`+01:00`) and the wall time shifted to match.
private func iso(_ millis: Int64, offsetHours: Int64, fractionDigits: Int) -> String {
    let local = millis + offsetHours * 3_600_000
    let days = local / 86_400_000
    var rest = local % 86_400_000
    let hour = rest / 3_600_000
    rest %= 3_600_000
    let minute = rest / 60_000
    rest %= 60_000
    let z = days + 719_468
    let era = z / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    var fraction = zeroPadded(rest % 1_000, 3)
    fraction += String(repeating: "0", count: fractionDigits - 3)
    let zone = offsetHours == 0 ? "Z" : "+" + zeroPadded(offsetHours, 2) + ":00"
    return "\(year)-\(zeroPadded(month, 2))-\(zeroPadded(day, 2))T\(zeroPadded(hour, 2)):"
        + "\(zeroPadded(minute, 2)):\(zeroPadded(rest / 1_000, 2)).\(fraction)\(zone)"
}

// MARK: - Reference model: DESIGN.md §3, literally, on dictionaries

private struct ModelEntry {
    var item: BulkItem
    var absent: Int
    var guarded: Bool
}

private struct ReferenceModel {
    var entries: [String: ModelEntry] = [:]
    let policy: DetectionPolicy
    private var instants: [String: Int64?] = [:]

    init(policy: DetectionPolicy) { self.policy = policy }

    /// `parseInstant`, memoised: the model re-reads the same few hundred spellings every poll.
    private mutating func instant(_ text: String?) -> Int64? {
        guard let text else { return nil }
        if let known = instants[text] { return known }
        let parsed = parseInstant(text)
        instants[text] = parsed
        return parsed
    }

    /// Newest `updatedOn` wins (instants when both parse, else strings by bytes, missing oldest).
    private static func isOlder(_ candidate: String?, than other: String?) -> Bool {
        switch (candidate, other) {
        case (nil, nil): return false
        case (nil, _): return true
        case (_, nil): return false
        case (let a?, let b?):
            if let x = parseInstant(a), let y = parseInstant(b) { return x < y }
            return Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8))
        }
    }

    mutating func poll(_ listing: BulkListing, isFirstRun: Bool) -> [DetectedChange] {
        let known = entries.count
        var winner: [String: Int] = [:]
        for (i, item) in listing.items.enumerated() {
            if let j = winner[item.bulkId], Self.isOlder(item.updatedOn, than: listing.items[j].updatedOn) {
                continue
            }
            winner[item.bulkId] = i
        }
        var events: [DetectedChange] = []
        for (i, item) in listing.items.enumerated() where winner[item.bulkId] == i {
            guard var entry = entries[item.bulkId] else {
                entries[item.bulkId] = ModelEntry(item: item, absent: 0, guarded: false)
                if !(isFirstRun && policy.initial == .skip) {
                    events.append(DetectedChange(kind: .created, item: item))
                }
                continue
            }
            entry.absent = 0
            entry.guarded = false
            let old = entry.item
            let oldInstant = instant(old.updatedOn)
            let newInstant = instant(item.updatedOn)
            if old.status == item.status && old.updatedOn == item.updatedOn {
                // unchanged
            } else if let o = oldInstant, let n = newInstant, n < o {
                // stale read: keep the stored state
            } else if let o = oldInstant, let n = newInstant, n == o, old.status == item.status {
                entry.item = item
            } else {
                events.append(
                    DetectedChange(
                        kind: .changed, item: item,
                        previous: PreviousState(status: old.status, updatedOn: old.updatedOn)))
                entry.item = item
            }
            entries[item.bulkId] = entry
        }
        let absentIds = entries.keys.filter { winner[$0] == nil }
        let newlyAbsent = absentIds.filter { entries[$0]!.absent == 0 }.count
        let guardTriggered = known >= 10 && newlyAbsent * 2 >= known
        let confirmations = max(2, policy.expireAfter)
        var expired: [String] = []
        for bulkId in absentIds {
            // DESIGN.md §3: a guard-tripping poll holds every absent item and confirms no expiry.
            if guardTriggered { entries[bulkId]!.guarded = true }
            entries[bulkId]!.absent += 1
            let needed = entries[bulkId]!.guarded ? 2 * confirmations : confirmations
            if !guardTriggered, entries[bulkId]!.absent >= needed { expired.append(bulkId) }
        }
        expired.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        for bulkId in expired {
            events.append(DetectedChange(kind: .expired, item: entries.removeValue(forKey: bulkId)!.item))
        }
        return events
    }
}

/// An independent, slow instant parser for the model: the four spellings the simulation produces.
private func parseInstant(_ text: String) -> Int64? {
    if let millis = Int64(text) { return millis }
    let bytes = Array(text.utf8)
    guard bytes.count >= 24, bytes[4] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T") else { return nil }
    func number(_ from: Int, _ count: Int) -> Int64? {
        Int64(String(decoding: bytes[from..<(from + count)], as: UTF8.self))
    }
    guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
        let minute = number(14, 2), let second = number(17, 2), let millis = number(20, 3)
    else { return nil }
    var end = 23
    while end < bytes.count, bytes[end] >= UInt8(ascii: "0"), bytes[end] <= UInt8(ascii: "9") { end += 1 }
    var offset: Int64 = 0
    if bytes[end] == UInt8(ascii: "+"), let hours = number(end + 1, 2) { offset = hours * 3_600_000 }
    let y = month <= 2 ? year - 1 : year
    let era = y / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let days = era * 146_097 + yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear - 719_468
    return days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1_000 + millis - offset
}

// MARK: - One history

private struct HistoryRun {
    var random: SplitMix64
    let policy: DetectionPolicy
    var live: [UpstreamItem] = []
    var nextSerial = 0
    var clock: Int64 = 1_795_860_963_000

    var snapshot = Snapshot()
    /// The same history diffed from listings built of ``BulkItem`` values (each item kept whole) instead of
    /// decoded ones (offsets into the body), and with no item built ahead of pass 2: every outcome must be the
    /// same.
    var builtSnapshot = Snapshot()
    /// The same history diffed with every listing's lookups split over two threads (``SnapshotDiffer``'s
    /// `parallelFrom: 1`), as a large listing's are: every outcome must be the same as on one thread.
    var splitSnapshot = Snapshot()
    var model: ReferenceModel
    /// Rows as a journal would hold them, built only from `upserted` and `removed`.
    var journal: [String: TrackedItem] = [:]
    var journalGuarded: [String] = []
    var hasBaseline = false

    /// Per bulkId: index of the last version listed non-stale (what the differ may have stored).
    var delivered: [String: Int] = [:]
    var lastListedPoll: [String: Int] = [:]
    var vanished: [String: Int] = [:]
    var expiredAt: [String: Int] = [:]
    /// Items that left upstream and may come back (the same bulkId listed again).
    var gone: [UpstreamItem] = []
    /// When each item that came back did so: it may then expire while alive, its absence being real.
    var cameBack: [String: Int] = [:]
    /// `created` events of items that had expired before: new incarnations.
    var recurrences = 0
    /// Polls that tripped the mass-removal guard.
    var guardTrips: [Int] = []

    /// Multiplies the population and the per-poll churn.
    let scale: Int

    init(seed: UInt64, scale: Int = 1) {
        self.scale = scale
        random = SplitMix64(seed: seed)
        let expireAfter = 1 + Int(random.next() % 3)
        let initial: DetectionPolicy.InitialMode = random.next() % 4 == 0 ? .skip : .emit
        policy = DetectionPolicy(expireAfter: expireAfter, initial: initial)
        model = ReferenceModel(policy: policy)
        for _ in 0..<Int(random.next() % UInt64(30 * scale)) { addItem() }
    }

    mutating func chance(_ percent: UInt64) -> Bool { random.next() % 100 < percent }

    mutating func addItem() {
        nextSerial += 1
        let revisions = chance(10)
        let version = Version(
            status: chance(5) ? nil : "QUEUED", instant: revisions ? 1 : clock + Int64(random.next() % 1_000),
            spelling: Int(random.next() % 4))
        let item = UpstreamItem(bulkId: "op-\(nextSerial)", usesRevisions: revisions, history: [version])
        if chance(50) { live.append(item) } else { live.insert(item, at: 0) }
    }

    mutating func evolveUpstream(poll: Int) {
        clock += 10_000
        for _ in 0..<Int(random.next() % UInt64(4 * scale)) { addItem() }
        guard !live.isEmpty else { return }
        for _ in 0..<Int(random.next() % UInt64(4 * scale)) {
            let k = Int(random.next() % UInt64(live.count))
            var next = live[k].current
            switch random.next() % 4 {
            case 0:  // status only
                next.status = ["QUEUED", "RUNNING", "DONE", "FAILED"][Int(random.next() % 4)]
            case 1:  // same instant, another spelling: not a change
                if !live[k].usesRevisions { next.spelling += 1 + Int(random.next() % 3) }
            default:  // time moves on, maybe with a new status
                next.instant += live[k].usesRevisions ? 1 : 1 + Int64(random.next() % 5_000)
                if chance(50) { next.status = ["RUNNING", "DONE", "FAILED"][Int(random.next() % 3)] }
            }
            live[k].history.append(next)
        }
        for _ in 0..<Int(random.next() % UInt64(3 * scale)) {
            guard !live.isEmpty, chance(60) else { continue }
            let leaving = live.remove(at: Int(random.next() % UInt64(live.count)))
            vanished[leaving.bulkId] = poll
            gone.append(leaving)
        }
        // An operation comes back under the same bulkId: sometimes as it was, sometimes moved on.
        if !gone.isEmpty, chance(25) {
            var back = gone.remove(at: Int(random.next() % UInt64(gone.count)))
            if chance(50) {
                var next = back.current
                next.instant += back.usesRevisions ? 1 : 1 + Int64(random.next() % 5_000)
                back.history.append(next)
            }
            vanished[back.bulkId] = nil
            cameBack[back.bulkId] = poll
            live.append(back)
        }
    }

    /// The answer of one successful poll, plus the ids answered with a stale version.
    mutating func answer(glitch: Bool) -> (specs: [String], stale: Set<String>) {
        var order = Array(live.indices)
        if chance(30) { order.shuffle(using: &random) }
        // (item, version shown, whether it counts as delivered)
        var rows: [(item: UpstreamItem, version: Int, fresh: Bool)] = []
        var stale: Set<String> = []
        var staleBudget = chance(20) ? scale + Int(random.next() % UInt64(2 * scale)) : 0
        for k in order {
            let item = live[k]
            if staleBudget > 0, !item.usesRevisions, let shown = delivered[item.bulkId],
                let older = item.history[..<shown].lastIndex(where: { $0.instant < item.history[shown].instant })
            {
                rows.append((item, older, false))
                stale.insert(item.bulkId)
                staleBudget -= 1
            } else {
                rows.append((item, item.history.count - 1, true))
            }
        }
        if chance(10), !live.isEmpty {
            // A duplicate that must lose: an older (or identical) version of a non-stale item.
            let item = live[Int(random.next() % UInt64(live.count))]
            if !stale.contains(item.bulkId) {
                let version = item.usesRevisions ? 0 : item.history.count - 1
                rows.insert((item, version, false), at: Int(random.next() % UInt64(rows.count + 1)))
            }
        }
        if glitch {
            if chance(50) {
                rows = []
            } else {
                let keep = 30 + random.next() % 40
                var kept: [(item: UpstreamItem, version: Int, fresh: Bool)] = []
                for row in rows where random.next() % 100 < keep { kept.append(row) }
                rows = kept
            }
        }
        for row in rows where row.fresh { delivered[row.item.bulkId] = row.version }
        return (rows.map { spec($0.item, $0.version) }, stale)
    }

    func spec(_ item: UpstreamItem, _ versionIndex: Int) -> String {
        let version = item.history[versionIndex]
        return "\(item.bulkId):\(version.status ?? "")@\(render(version, revisions: item.usesRevisions))"
    }

    mutating func run(polls: Int) -> String? {
        var previousWasGlitch = true  // the first poll is never a glitch
        for n in 0..<polls {
            if n > 0 { evolveUpstream(poll: n) }
            let glitch = !previousWasGlitch && chance(15)
            previousWasGlitch = glitch
            let (specs, stale) = answer(glitch: glitch)
            let answer = listing(specs)
            for item in answer.items { lastListedPoll[item.bulkId] = n }

            if n > 0, chance(10) {
                // Restart: rebuild from the journal's rows (sorted, so a seed replays identically).
                let rows = journal.values.sorted { $0.item.bulkId < $1.item.bulkId }
                snapshot = Snapshot(tracked: rows, removalGuarded: journalGuarded)
                builtSnapshot = snapshot
                splitSnapshot = snapshot
            }
            let isFirstRun = !hasBaseline
            let outcome = SnapshotDiffer.apply(answer, to: &snapshot, policy: policy, isFirstRun: isFirstRun)
            // Built one by one in pass 2 too (`readAheadLimit: 0`), not ahead: also the same outcome.
            let builtOutcome = SnapshotDiffer.apply(
                listing(specs, built: true), to: &builtSnapshot, policy: policy, isFirstRun: isFirstRun,
                readAheadLimit: 0)
            // The watcher's between-polls rewrite (every fifth poll here, whatever the holes and waste) must
            // change nothing the differ decides.
            if n % 5 == 4 { snapshot.closeHoles(spareFraction: 2) }
            if builtOutcome.changes.map(describe) != outcome.changes.map(describe)
                || builtOutcome.upserted != outcome.upserted || builtOutcome.removed != outcome.removed
                || builtOutcome.absenceCounts != outcome.absenceCounts
                || builtOutcome.stats != outcome.stats
            {
                return "poll \(n): a listing built of items diffed differently from the decoded one"
            }
            let splitOutcome = SnapshotDiffer.apply(
                answer, to: &splitSnapshot, policy: policy, isFirstRun: isFirstRun, parallelFrom: 1)
            if splitOutcome.changes.map(describe) != outcome.changes.map(describe)
                || splitOutcome.upserted != outcome.upserted || splitOutcome.removed != outcome.removed
                || splitOutcome.absenceCounts != outcome.absenceCounts
                || splitOutcome.stats != outcome.stats
            {
                return "poll \(n): the lookups split over two threads diffed differently from one thread's"
            }
            let expected = model.poll(answer, isFirstRun: isFirstRun)
            hasBaseline = true

            if outcome.stats.massRemovalGuardTriggered { guardTrips.append(n) }
            let got = outcome.changes.map(describe)
            let want = expected.map(describe)
            if got != want {
                return "poll \(n) (\(glitch ? "glitch" : "normal"), policy \(policy)):\n  got  \(got)\n  want \(want)"
            }
            if let problem = checkState(outcome, poll: n) { return "poll \(n): \(problem)" }
            for change in outcome.changes {
                if stale.contains(change.item.bulkId) {
                    return "poll \(n): event for a stale read: \(describe(change))"
                }
                let bulkId = change.item.bulkId
                if change.kind == .created, expiredAt[bulkId] != nil {
                    recurrences += 1
                    expiredAt[bulkId] = nil
                }
                guard change.kind == .expired else { continue }
                let absentForReal = (cameBack[bulkId] ?? -1) > (lastListedPoll[bulkId] ?? -1)
                if live.contains(where: { $0.bulkId == bulkId }), !absentForReal {
                    return "poll \(n): \(bulkId) is alive upstream but expired (glitch=\(glitch))"
                }
                // Its next life starts from nothing: an old version listed later is a creation, not stale.
                delivered[bulkId] = nil
                if outcome.stats.massRemovalGuardTriggered {
                    return "poll \(n): \(bulkId) expired on a poll that tripped the mass-removal guard"
                }
                if let problem = checkExpiryTiming(bulkId, at: n) { return "poll \(n): \(problem)" }
                expiredAt[bulkId] = n
            }
        }
        return checkExpiryTiming(polls: polls)
    }

    mutating func checkState(_ outcome: DiffOutcome, poll: Int) -> String? {
        // Journal replay must reproduce the snapshot, and every written row must be a real change.
        let written = Set(outcome.upserted.map(\.item.bulkId))
        for row in outcome.upserted {
            if let before = journal[row.item.bulkId], sameRow(before, row) {
                return "upserted an unchanged row \(row.item.bulkId)"
            }
            journal[row.item.bulkId] = row
        }
        for count in outcome.absenceCounts {
            guard !written.contains(count.bulkId), var row = journal[count.bulkId] else {
                return "absence counter of \(count.bulkId): not a stored row, or also upserted"
            }
            guard row.absentPolls != count.absentPolls else { return "unchanged absence counter \(count.bulkId)" }
            row.absentPolls = count.absentPolls
            journal[count.bulkId] = row
        }
        for bulkId in outcome.removed {
            guard journal.removeValue(forKey: bulkId) != nil else { return "removed unknown \(bulkId)" }
        }
        if outcome.removalGuardChanged { journalGuarded = snapshot.removalGuardedIDs }
        let tracked = snapshot.trackedItems
        guard tracked.count == model.entries.count, tracked.count == journal.count else {
            return "sizes: snapshot \(tracked.count), model \(model.entries.count), journal \(journal.count)"
        }
        for row in tracked {
            guard let entry = model.entries[row.item.bulkId], let stored = journal[row.item.bulkId] else {
                return "\(row.item.bulkId) missing from model or journal"
            }
            let modelRow = TrackedItem(item: entry.item, absentPolls: entry.absent)
            if !sameRow(row, modelRow) || !sameRow(row, stored) {
                return "row \(row.item.bulkId): snapshot \(rowText(row)), model \(rowText(modelRow)),"
                    + " journal \(rowText(stored))"
            }
            if poll % 8 == 0 || written.contains(row.item.bulkId), !sameBytes(row.item.rawJSON, entry.item.rawJSON) {
                return "rawJSON of \(row.item.bulkId)"
            }
            if snapshot.isUnderRemovalGuard(row.item.bulkId) != entry.guarded {
                return "guard of \(row.item.bulkId)"
            }
        }
        if journalGuarded != snapshot.removalGuardedIDs { return "persisted guard set is stale" }
        return nil
    }

    /// An expiry comes `expireAfter` polls after the item was last listed, or under the guard twice
    /// that, plus one poll for each guard-tripping poll that fell on the due poll.
    func checkExpiryTiming(_ bulkId: String, at poll: Int) -> String? {
        let confirmations = max(2, policy.expireAfter)
        guard let last = lastListedPoll[bulkId] else { return "\(bulkId) expired but was never listed" }
        let after = poll - last
        let trips = guardTrips.filter { $0 > last && $0 < poll }.count
        if after != confirmations && !(2 * confirmations...2 * confirmations + trips).contains(after) {
            return "\(bulkId) expired \(after) polls after it was last listed (expireAfter \(confirmations))"
        }
        return nil
    }

    func checkExpiryTiming(polls: Int) -> String? {
        let confirmations = max(2, policy.expireAfter)
        for (bulkId, _) in vanished {
            guard let last = lastListedPoll[bulkId], model.entries[bulkId] != nil || expiredAt[bulkId] != nil
            else { continue }
            let trips = guardTrips.filter { $0 > last }.count
            if expiredAt[bulkId] == nil, polls - 1 - last >= 2 * confirmations + trips {
                return "\(bulkId) vanished after poll \(last) and never expired"
            }
        }
        return nil
    }
}

private func sameBytes(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
    a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in x.count == y.count && x.elementsEqual(y) } }
}

private func sameRow(_ a: TrackedItem, _ b: TrackedItem) -> Bool {
    a.item.bulkId == b.item.bulkId && a.item.status == b.item.status && a.item.updatedOn == b.item.updatedOn
        && a.absentPolls == b.absentPolls
}

private func rowText(_ row: TrackedItem) -> String {
    "\(row.item.status ?? "-")/\(row.item.updatedOn ?? "-")/absent \(row.absentPolls)"
}

private func describe(_ change: DetectedChange) -> String {
    render(change) + " " + String(decoding: change.item.rawJSON, as: UTF8.self)
}
