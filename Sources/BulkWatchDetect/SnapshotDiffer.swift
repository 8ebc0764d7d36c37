package import BulkWatchSupport
import Dispatch
import Synchronization

/// Turns one successful poll into events, against the last committed snapshot (DESIGN.md §3).
///
/// Pure: no clock, no logging, no I/O. Everything the caller should log comes back in
/// ``DiffStats`` (counts, examples, ``DiffWarning``s), so the same inputs always give the same
/// outcome and the rules can be tested and benchmarked without a watcher around them.
///
/// Rules as implemented:
/// - **created**: a `bulkId` not in the snapshot. On a first run with `initial: .skip` it is
///   recorded silently (only `created` is suppressed; nothing else can happen on an empty state).
/// - **changed**: `status` or `updatedOn` differs. When both the stored and the received
///   `updatedOn` parse as instants and the received one is older, it is a stale read: ignored,
///   the stored state is kept, counted in ``DiffStats/staleIgnored``. Equal instants written
///   differently (`…03Z` vs `…03.000Z`) with the same status are not a change (the new spelling is
///   stored). Values that do not parse are compared as strings.
/// - **expired**: absent from `expireAfter` consecutive successful polls (at least 2, whatever the
///   policy says: a single poll must never expire anything). Presence in the listing, stale or
///   not, resets the counter; an item that comes back changed is `changed`. The event carries
///   the last known state.
/// - **mass-removal guard**: when at least 10 items are known and a poll would newly count half
///   or more of them absent (a half list is the classic glitch, so exactly half counts), every item
///   absent from it (newly or already) is held by the guard until it reappears: it expires only
///   after `2 × expireAfter` absences, and nothing expires on the guard-tripping poll itself. A
///   ``DiffWarning/massRemovalGuard`` is produced on the poll that triggers it.
/// - **duplicates** in one listing: the occurrence with the newest `updatedOn` wins (by instant, else
///   by string; missing is oldest; ties go to the later one), the others are dropped and counted.
///
/// Event order: `created` and `changed` in listing order (of the winning occurrence), then
/// `expired` in UTF-8 byte order of `bulkId`.
package enum SnapshotDiffer {
    /// Listings from this many items on are matched against the snapshot on two threads. At 100k items that
    /// took `bulkwatch-bench diff`'s steady diff from 8.6–9.2 to 7.6–8.7 ms and its shuffled one from 39–47 to
    /// 20–28 ms (three alternated pairs); below ~10k items the hand-off costs about what it saves.
    package static let parallelListingItems = 32_768

    /// Up to this many items that need a write are built before pass 2 writes anything, beside the lookups of
    /// pass 3 (``DiffRun``'s `readAhead`); more are built one by one as pass 2 applies them, as a first poll's
    /// always are. Each built ahead is held twice until pass 2 has applied it (~160 bytes more at the poll's
    /// peak): ~10 MB at this limit, where a first 1M poll's million would be ~150 MB.
    package static let readAheadItems = 65_536

    /// Applies `listing` to `snapshot` in place and returns what changed. The snapshot's storage is
    /// updated without a copy when uniquely referenced: what the watcher should call every poll.
    ///
    /// A listing of `parallelFrom` items or more has its items looked up in the snapshot on two threads, with
    /// the same outcome (tests pass a small value to check that on small listings). So does building ahead up to
    /// `readAheadLimit` items that need a write (``readAheadItems``; tests pass 0 to build none ahead).
    ///
    /// With `rowsOfNewSnapshot` false, a diff that starts from an empty snapshot does not list its rows in
    /// ``DiffOutcome/upserted`` (every entry of the snapshot, a `TrackedItem` each: ~12 MB at 100k items,
    /// beside the events at a first poll's peak) and sets ``DiffOutcome/upsertedIsWholeSnapshot`` instead:
    /// the rows to persist are then the snapshot's entries, which the stores read in place.
    package static func apply(
        _ listing: BulkListing,
        to snapshot: inout Snapshot,
        policy: DetectionPolicy,
        isFirstRun: Bool,
        rowsOfNewSnapshot: Bool = true,
        parallelFrom: Int = parallelListingItems,
        readAheadLimit: Int = readAheadItems
    ) -> DiffOutcome {
        var run = DiffRun(
            listing: listing, policy: policy, isFirstRun: isFirstRun,
            rowsAreWholeSnapshot: !rowsOfNewSnapshot && snapshot.isEmpty, parallelProbeFrom: parallelFrom,
            readAheadLimit: readAheadLimit)
        run.execute(on: &snapshot)
        return run.outcome
    }

    /// The same as ``apply(_:to:policy:isFirstRun:)`` without touching `previous`: convenient in
    /// tests, but it copies the snapshot's storage (O(n)) because `previous` stays alive.
    package static func diff(
        previous: Snapshot,
        listing: BulkListing,
        policy: DetectionPolicy,
        isFirstRun: Bool
    ) -> (next: Snapshot, outcome: DiffOutcome) {
        var next = previous
        let outcome = apply(listing, to: &next, policy: policy, isFirstRun: isFirstRun)
        return (next, outcome)
    }
}

/// What one poll changed: the events to journal and the snapshot rows to write, in one transaction.
package struct DiffOutcome: Sendable {
    /// `created`/`changed` in listing order, then `expired` in UTF-8 byte order of `bulkId`.
    package var changes: [DetectedChange]
    /// Rows whose stored state changed: new items, changed items, re-spelled timestamps, and items back from
    /// absence (counter reset), in listing order. Nothing else changes in the snapshot (an unchanged item
    /// keeps the bytes it was stored with), so applying exactly these rows, ``absenceCounts`` and ``removed``
    /// to the journal keeps it equal to the in-memory snapshot. Empty when ``upsertedIsWholeSnapshot``.
    package var upserted: [TrackedItem]
    /// Items absent from this listing that stay (not expired), with their incremented counters, in snapshot
    /// order. Only the counter moved, so only it is persisted: a steady 100k poll has ~1,000 of them, and
    /// writing each as a whole row (its raw JSON rendered back from the arenas, ~220 bytes) cost the diff
    /// and the commit more than every other row but the new and changed ones.
    package var absenceCounts: [AbsenceCount] = []
    /// The diff started from an empty snapshot and was asked not to list its rows: every entry of the
    /// snapshot after it is a row to persist (``SnapshotDiffer/apply(_:to:policy:isFirstRun:rowsOfNewSnapshot:)``).
    package var upsertedIsWholeSnapshot = false
    /// `bulkId`s that expired and left the snapshot, in the order of their `expired` events.
    package var removed: [String]
    /// Whether ``Snapshot/removalGuardedIDs`` changed: persist the new set when true.
    package var removalGuardChanged: Bool
    package var stats: DiffStats
}

/// Counts and findings of one diff, for logs and metrics.
package struct DiffStats: Sendable, Equatable {
    /// Items in the listing (after the decoder's skips, before duplicate resolution).
    package var listed = 0
    /// Items not known before; announced unless a first run with `initial: .skip`.
    package var created = 0
    package var changed = 0
    package var expired = 0
    /// Known items seen again with the same status and `updatedOn`.
    package var unchanged = 0
    /// Same status and same instant, spelled differently: stored, not announced.
    package var reformattedTimestamps = 0
    /// Stale reads ignored (received `updatedOn` older than the stored one); log at debug.
    package var staleIgnored = 0
    /// Up to 8 `bulkId`s of stale reads, for that debug line.
    package var staleExamples: [String] = []
    /// Listing entries dropped because a newer occurrence of the same `bulkId` won.
    package var duplicatesResolved = 0
    /// Items the decoder skipped for lack of a `bulkId` (``BulkListing/skippedWithoutId``).
    package var skippedWithoutId = 0
    /// Absent items that are present again (counter reset).
    package var reappeared = 0
    /// Items that were present last poll and are missing from this one.
    package var newlyAbsent = 0
    /// Items absent but not (yet) expired after this poll.
    package var absentPending = 0
    /// Whether this poll triggered the mass-removal guard.
    package var massRemovalGuardTriggered = false
    /// Absent items held by the mass-removal guard after this poll.
    package var removalGuarded = 0
    /// Things an operator should hear about (log at warning).
    package var warnings: [DiffWarning] = []

    package init() {}
}

/// A finding of the differ that deserves a warning in the log.
package enum DiffWarning: Sendable, Equatable, CustomStringConvertible {
    /// `count` listing entries repeated an earlier `bulkId` and were resolved (newest wins).
    case duplicateIDs(count: Int, examples: [String])
    /// The decoder skipped `count` items without a usable `bulkId`.
    case itemsWithoutID(count: Int)
    /// Half or more of the `known` items went missing at once; those need `confirmations` polls.
    case massRemovalGuard(newlyAbsent: Int, known: Int, confirmations: Int)

    package var description: String {
        switch self {
        case .duplicateIDs(let count, let examples):
            return "\(count) duplicate bulkId entr\(count == 1 ? "y" : "ies") in one answer, newest kept"
                + " (e.g. \(examples.joined(separator: ", ")))"
        case .itemsWithoutID(let count):
            return "\(count) item\(count == 1 ? "" : "s") without a bulkId skipped"
        case .massRemovalGuard(let newlyAbsent, let known, let confirmations):
            return "\(newlyAbsent) of \(known) known operations missing from one answer:"
                + " they expire only after \(confirmations) consecutive absent polls"
        }
    }
}

/// One execution of the rules.
///
/// Pass 1 reads the listing and the snapshot without writing either: it matches every listed item
/// to its entry, resolves duplicates and judges each match, keeping only the few "candidates" that
/// need a write (new, changed, re-spelled, stale, or back from absence). The steady majority,
/// unchanged and present, costs one id comparison and one `status`/`updatedOn` comparison and is
/// never touched again. Pass 2 applies the candidates in listing order; pass 3 handles absences.
private struct DiffRun {
    /// A `let`, so reading it inside the matcher's closures never overlaps the run's own mutations.
    let listing: BulkListing
    let policy: DetectionPolicy
    let announceCreated: Bool
    let parallelProbeFrom: Int
    let readAheadLimit: Int
    var outcome: DiffOutcome

    private static let exampleLimit = 8
    private static let notFound: Int32 = -1

    private enum Verdict: UInt8, Sendable {
        case created, same, reformatted, stale, changed
    }

    /// A listed item that needs a write, in listing order.
    private struct Candidate: Sendable {
        var listed: Int32
        /// Entry position; for `created`, assigned once the new entries are appended.
        var position: Int32
        var verdict: Verdict
        /// The id's hash, kept for `created` so it is not computed twice.
        var hash: UInt64
    }

    init(
        listing: BulkListing, policy: DetectionPolicy, isFirstRun: Bool, rowsAreWholeSnapshot: Bool,
        parallelProbeFrom: Int, readAheadLimit: Int
    ) {
        self.listing = listing
        self.parallelProbeFrom = parallelProbeFrom
        self.readAheadLimit = readAheadLimit
        self.policy = policy
        announceCreated = !(isFirstRun && policy.initial == .skip)
        var stats = DiffStats()
        stats.listed = listing.count
        stats.skippedWithoutId = listing.skippedWithoutId
        outcome = DiffOutcome(changes: [], upserted: [], removed: [], removalGuardChanged: false, stats: stats)
        outcome.upsertedIsWholeSnapshot = rowsAreWholeSnapshot
    }

    mutating func execute(on snapshot: inout Snapshot) {
        let known = snapshot.count
        let stored = snapshot.positions
        var owner = [Int32](repeating: Self.notFound, count: stored)
        var duplicateExamples: [String] = []
        var (candidates, misses) = match(snapshot, owner: &owner, duplicateExamples: &duplicateExamples)
        appendNew(to: &snapshot, candidates: &candidates, owner: &owner, duplicateExamples: &duplicateExamples)
        if outcome.stats.duplicatesResolved > 0 {
            outcome.stats.warnings.append(
                .duplicateIDs(count: outcome.stats.duplicatesResolved, examples: duplicateExamples))
        }
        // What passes 2 and 3 read before they write, gathered at once: the received items and prior states of the
        // candidates from the listing, the absences and the expired items from the snapshot. Against an empty
        // snapshot (a first poll) nothing is absent, and every item is new: pass 2 builds each as it goes.
        let buildsAhead = known > 0 && candidates.count <= readAheadLimit
        let (received, absence) = Self.readAhead(
            listing, snapshot, candidates: buildsAhead ? candidates : [], owner: owner, stored: stored, known: known,
            policy: policy, split: buildsAhead && listing.count >= parallelProbeFrom)
        applyPresent(to: &snapshot, candidates: candidates, owner: owner, received: received)
        let absent = applyAbsent(to: &snapshot, absence)
        let stats = outcome.stats
        outcome.stats.unchanged = known - absent - stats.changed - stats.reformattedTimestamps - stats.staleIgnored
        if stats.skippedWithoutId > 0 {
            outcome.stats.warnings.append(.itemsWithoutID(count: stats.skippedWithoutId))
        }
        outcome.stats.removalGuarded = snapshot.guardedCount
        maintainLayout(of: &snapshot, owner: owner, misses: misses)
    }

    /// Re-sorts the storage into this listing's order when it no longer follows the upstream's
    /// (too many lookups missed the guessed position) or is half holes. A listing whose
    /// order changes every poll would make every re-sort wasted work, so each re-sort that did not
    /// help doubles the wait before the next one (up to 64 polls).
    private func maintainLayout(of snapshot: inout Snapshot, owner: [Int32], misses: Int) {
        let fragmented = misses > 64 && misses * 16 > listing.count
        var layout = snapshot.layout
        if layout.reorderedLastPoll {
            layout.backoff = fragmented ? min(layout.backoff + 1, 6) : 0
            layout.reorderedLastPoll = false
        }
        if layout.pollsUntilReorder > 0 { layout.pollsUntilReorder -= 1 }
        let holes = snapshot.deadCount > 64 && snapshot.deadCount * 2 > snapshot.positions
        let reorder = fragmented && layout.pollsUntilReorder == 0
        if reorder {
            layout.reorderedLastPoll = true
            layout.pollsUntilReorder = 1 << layout.backoff
        }
        snapshot.layout = layout
        if holes, !reorder {
            snapshot.closeHoles()
            return
        }
        guard reorder else { return }

        var byListing = [Int32](repeating: Self.notFound, count: listing.count)
        var order: [Int] = []
        order.reserveCapacity(snapshot.count)
        for position in owner.indices where owner[position] >= 0 {
            byListing[Int(owner[position])] = Int32(position)
        }
        for position in byListing where position >= 0 { order.append(Int(position)) }
        for position in owner.indices where owner[position] < 0 && !snapshot.isDead(position) {
            order.append(position)
        }
        snapshot.compact(order: order)
    }

    /// Decides whether the occurrence at `listed` replaces the current owner of an entry
    /// (newest `updatedOn` wins, ties go to the later one); counts the duplicate either way.
    private mutating func laterWins(
        _ listed: Int, over earlier: Int, duplicateExamples: inout [String]
    ) -> Bool {
        outcome.stats.duplicatesResolved += 1
        let later = listing.item(at: listed)
        if duplicateExamples.count < Self.exampleLimit, !duplicateExamples.contains(later.bulkId) {
            duplicateExamples.append(later.bulkId)
        }
        return compareUpdated(later.updatedOn, listing.item(at: earlier).updatedOn) >= 0
    }

    /// Pass 1 (read-only): match, resolve duplicates among known ids, judge.
    ///
    /// The lookups and the state comparisons (``probe(_:_:_:into:)``, most of a steady diff's time) need nothing
    /// of the run, so a large listing has them done in two halves at once (``probeInParallel``); what follows
    /// them here is cheap and takes the listing in order, so its outcome does not depend on that split.
    private mutating func match(
        _ snapshot: Snapshot, owner: inout [Int32], duplicateExamples: inout [String]
    ) -> (candidates: [Candidate], misses: Int) {
        var candidates: [Candidate] = []
        candidates.reserveCapacity(snapshot.isEmpty ? listing.count : 64 + listing.count / 16)
        // Against an empty snapshot nothing is found: no probe, every item is new.
        var probes: [UInt32] = []
        var misses = 0
        if !snapshot.isEmpty {
            (probes, misses) = Self.probeInParallel(listing, snapshot, from: parallelProbeFrom)
        }
        // The steady majority first: known, same state, present, not taken by an earlier occurrence. Such an item
        // only takes its entry, here through raw buffers; the loop below, with its array accesses checked one by
        // one, took ~1 ms of a steady 100k diff for 100k items, almost all of them this kind (traced). `bulkwatch-
        // bench diff --sizes 100000 --runs 41`, three alternated pairs: steady 7.96 / 7.68 / 7.56 → 7.37 / 7.31 /
        // 7.55 ms.
        let slow = probes.isEmpty ? nil : Self.takeUnchanged(probes, snapshot, owner: &owner)
        listing.withKeys { reader in
            func visit(_ i: Int) {
                let probe = probes.isEmpty ? 0 : probes[i]
                guard probe != 0 else {
                    // Hashed here, once for both the append and its lookup in ``appendNew``.
                    let hash = reader.keys(at: i) { ByteKeys.hash($0.bulkId) }
                    candidates.append(
                        Candidate(listed: Int32(i), position: Self.notFound, verdict: .created, hash: hash))
                    return
                }
                let position = Int(probe & ~Self.sameState) - 1
                let earlier = Int(owner[position])
                if earlier >= 0, !laterWins(i, over: earlier, duplicateExamples: &duplicateExamples) {
                    return
                }
                owner[position] = Int32(i)
                let verdict: Verdict
                if probe & Self.sameState != 0 {
                    verdict = .same
                } else {
                    // Only the two fields judged, as strings: no item, no `String` of the id.
                    let received = reader.keys(at: i) { keys in
                        (
                            status: keys.status.map { String(decoding: $0, as: UTF8.self) },
                            updatedOn: keys.updatedOn.map { String(decoding: $0, as: UTF8.self) }
                        )
                    }
                    verdict = Self.judge(stored: snapshot.state(at: position), received: received)
                }
                if verdict != .same || snapshot.isAbsent(position) {
                    candidates.append(Candidate(listed: Int32(i), position: Int32(position), verdict: verdict, hash: 0))
                }
            }
            if let slow {
                for i in slow { visit(Int(i)) }
            } else {
                for i in 0..<reader.count { visit(i) }
            }
        }
        return (candidates, misses)
    }

    /// Gives every listed item that is known, in the same state and present its entry in `owner`, unless an
    /// earlier occurrence of its id took the entry first, and returns the others (listing indices, in order) for
    /// the rules. Returns nil, with `owner` as it was, when an item taken here has an earlier occurrence among the
    /// others: the rules compare duplicates in listing order, so that listing goes through them whole.
    private static func takeUnchanged(_ probes: [UInt32], _ snapshot: Snapshot, owner: inout [Int32]) -> [Int32]? {
        var others: [Int32] = []
        others.reserveCapacity(64 + probes.count / 16)
        let same = sameState
        let absent = Snapshot.Flags.absent
        let inOrder = probes.withUnsafeBufferPointer { probes in
            snapshot.flags.withUnsafeBufferPointer { flags in
                owner.withUnsafeMutableBufferPointer { owner in
                    for i in 0..<probes.count {
                        let probe = probes[i]
                        if probe & same != 0 {
                            let position = Int(probe & ~same) &- 1
                            if owner[position] < 0 && flags[position] & absent == 0 {
                                owner[position] = Int32(truncatingIfNeeded: i)
                                continue
                            }
                        }
                        others.append(Int32(truncatingIfNeeded: i))
                    }
                    // A taken entry whose taker comes after one of the others with the same id.
                    for i in others where probes[Int(i)] != 0 {
                        if owner[Int(probes[Int(i)] & ~same) &- 1] > i {
                            owner.update(repeating: notFound)
                            return false
                        }
                    }
                    return true
                }
            }
        }
        return inOrder ? others : nil
    }

    /// Where the probes go; each thread writes only its own half's slots, and the array is read after both
    /// have finished.
    private struct ProbeOutput: @unchecked Sendable {
        let base: UnsafeMutablePointer<UInt32>
    }

    /// Bit 31 of a probe: the entry's `status` and `updatedOn` are byte for byte the received ones.
    private static let sameState: UInt32 = 1 << 31

    /// ``probe(_:_:_:into:)`` for every listed item: on the calling thread alone below `threshold` items, else
    /// in two halves, the second on another thread. Returns a probe per item and the lookups that missed.
    ///
    /// Why two threads: the lookups are most of this pass, which was ~45 % of a steady 100k diff's CPU (`perf`),
    /// and the poll waits for them with the second core idle (the decode before has finished, the commit after
    /// has not started). Reading a snapshot and a listing that nothing mutates meanwhile is safe from any thread.
    private static func probeInParallel(
        _ listing: BulkListing, _ snapshot: Snapshot, from threshold: Int
    ) -> (probes: [UInt32], misses: Int) {
        let count = listing.count
        guard count > 0 else { return ([], 0) }
        var misses = (0, 0)
        let probes = [UInt32](unsafeUninitializedCapacity: count) { buffer, initialized in
            let output = ProbeOutput(base: buffer.baseAddress!)
            if count < threshold {
                misses.0 = listing.withKeys { probe($0, snapshot, 0..<count, into: output.base) }
            } else {
                let halves = [0..<count / 2, count / 2..<count]
                let counts = Mutex((0, 0))
                // The calling thread runs one half and, if no worker is free, the other after it: never a wait
                // for a thread that may not come.
                DispatchQueue.concurrentPerform(iterations: 2) { half in
                    let found = listing.withKeys { probe($0, snapshot, halves[half], into: output.base) }
                    counts.withLock { if half == 0 { $0.0 = found } else { $0.1 = found } }
                }
                misses = counts.withLock { $0 }
            }
            initialized = count
        }
        return (probes, misses.0 + misses.1)
    }

    /// For the listed items in `range`: the live entry with the item's id (its position plus one; 0 for none),
    /// with ``sameState`` set when that entry's state is the received one. Returns how many lookups the guess
    /// missed (an id found by hash).
    ///
    /// The common case (the upstream lists items in the same order every time) is served by guessing the entry
    /// after the previous match and checking its id, which skips hashing. A range that starts mid-listing has no
    /// previous match, so its first item costs one lookup (and counts as one miss more than a pass from the start).
    private static func probe(
        _ reader: BulkListing.KeyReader, _ snapshot: Snapshot, _ range: Range<Int>,
        into output: UnsafeMutablePointer<UInt32>
    ) -> Int {
        var misses = 0
        let storedCount = snapshot.positions
        var cursor = -1
        for i in range {
            reader.keys(at: i) { keys in
                let id = keys.bulkId
                // The entry after the last match, or the one after that (one absent item between).
                var found: Int?
                var guess = cursor + 1
                while guess < storedCount, snapshot.isDead(guess) { guess += 1 }
                if guess < storedCount, snapshot.idMatches(guess, id) {
                    found = guess
                } else {
                    guess += 1
                    while guess < storedCount, snapshot.isDead(guess) { guess += 1 }
                    if guess < storedCount, snapshot.idMatches(guess, id) {
                        found = guess
                    } else {
                        found = snapshot.find(id: id, hash: ByteKeys.hash(id))
                        if found != nil { misses += 1 }
                    }
                }
                guard let position = found else {
                    (output + i).initialize(to: 0)
                    return
                }
                cursor = position
                let same = snapshot.keys.stateEquals(position, status: keys.status, updatedOn: keys.updatedOn) == true
                (output + i).initialize(to: UInt32(position + 1) | (same ? sameState : 0))
            }
        }
        return misses
    }

    /// Appends an entry for every new id (once, even when listed twice) and resolves duplicates
    /// among them.
    private mutating func appendNew(
        to snapshot: inout Snapshot, candidates: inout [Candidate], owner: inout [Int32],
        duplicateExamples: inout [String]
    ) {
        if snapshot.isEmpty {
            var bytes = 0
            for candidate in candidates where candidate.verdict == .created {
                bytes += PayloadArena.size(of: listing.item(at: Int(candidate.listed)))
            }
            snapshot.reserveCapacity(candidates.count, payloadBytes: bytes)
        }
        for k in candidates.indices where candidates[k].verdict == .created {
            let i = Int(candidates[k].listed)
            let item = listing.item(at: i)
            let (position, inserted) = snapshot.appendIfAbsent(TrackedItem(item: item), hash: candidates[k].hash)
            candidates[k].position = Int32(position)
            if inserted {
                owner.append(Int32(i))
            } else if laterWins(i, over: Int(owner[position]), duplicateExamples: &duplicateExamples) {
                owner[position] = Int32(i)
                snapshot.replaceItem(at: position, with: item)
            }
        }
    }

    private static func judge(
        stored: (status: String?, updatedOn: String?), received: (status: String?, updatedOn: String?)
    ) -> Verdict {
        let sameStatus = stored.status == received.status
        let sameUpdated = stored.updatedOn == received.updatedOn
        if sameUpdated { return sameStatus ? .same : .changed }
        return judgeTimestamps(stored: stored.updatedOn, received: received.updatedOn, sameStatus: sameStatus)
    }

    private static func judgeTimestamps(stored: String?, received: String?, sameStatus: Bool) -> Verdict {
        if let old = stored, let new = received,
            let oldInstant = Timestamp.instantMillis(old), let newInstant = Timestamp.instantMillis(new)
        {
            if newInstant < oldInstant { return .stale }
            if newInstant == oldInstant, sameStatus { return .reformatted }
        }
        return .changed
    }

    /// What pass 2 reads of a candidate before it writes: the received item (a winning `created`, `reformatted` or
    /// `changed` one) and, for `changed`, the state it replaces.
    private struct Received: Sendable {
        var item: BulkItem?
        var previous: PreviousState?
    }

    /// What pass 3 decided, before it writes: the known items absent from this listing, which of them expire and
    /// which are counted, with everything the outcome reports of them already read from the snapshot.
    private struct AbsencePlan: Sendable {
        /// Absent positions, in snapshot order.
        var absent: [Int] = []
        var newlyAbsent = 0
        /// Live items before this poll (the guard's base).
        var known = 0
        var guardTriggered = false
        /// The confirmations a held item needs, for the warning.
        var confirmations = 0
        /// Positions that expire on this poll, in UTF-8 byte order of their `bulkId`, and their last known items.
        var expiring: [Int] = []
        var expired: [BulkItem] = []
        /// An item held by the guard expires (the persisted set changes).
        var expiresGuarded = false
        /// Absent items that stay, with their counters after this poll, in snapshot order.
        var counts: [AbsenceCount] = []
    }

    /// Reads what passes 2 and 3 need of the listing and of the snapshot, before either writes.
    ///
    /// Why ahead and why on two threads: building the received items (a `String` for each id, the prior states)
    /// and the absent ones (each expired item's JSON rendered back from the arenas, each counter's id, the sort by
    /// id) was most of a steady diff after the lookups: at 100k items, `present` 1.6–2.0 ms and `absent` 2.4–2.5 ms
    /// of a 7.5 ms diff on this machine (a temporary trace), one after the other on one thread while the other
    /// idled. They read disjoint things and write nothing, so a large listing has them done at once. Alternating
    /// the split with one thread poll by poll in `bulkwatch-bench poll --sizes 100000 --runs 41`, three runs: the
    /// diff's median 7.66 / 8.89 / 6.88 → 7.02 / 7.93 / 6.81 ms.
    private static func readAhead(
        _ listing: BulkListing, _ snapshot: Snapshot, candidates: [Candidate], owner: [Int32], stored: Int,
        known: Int, policy: DetectionPolicy, split: Bool
    ) -> ([Received], AbsencePlan) {
        let present: @Sendable () -> [Received] = {
            receivedItems(listing, snapshot, candidates: candidates, owner: owner)
        }
        let absent: @Sendable () -> AbsencePlan = {
            planAbsences(snapshot, stored: stored, known: known, owner: owner, policy: policy)
        }
        guard split else { return (present(), absent()) }
        let results = Mutex<([Received]?, AbsencePlan?)>((nil, nil))
        // The calling thread runs one and, if no worker is free, the other after it: never a wait for a thread
        // that may not come.
        DispatchQueue.concurrentPerform(iterations: 2) { part in
            if part == 0 {
                let received = present()
                results.withLock { $0.0 = received }
            } else {
                let plan = absent()
                results.withLock { $0.1 = plan }
            }
        }
        // Both parts ran (`concurrentPerform` runs every iteration); were one missing, it would run here, so the
        // outcome never depends on the split.
        let (received, plan) = results.withLock { ($0.0, $0.1) }
        return (received ?? present(), plan ?? absent())
    }

    /// For each candidate that won its entry: the received item when pass 2 stores or announces it, and the state
    /// a `changed` one replaces.
    private static func receivedItems(
        _ listing: BulkListing, _ snapshot: Snapshot, candidates: [Candidate], owner: [Int32]
    ) -> [Received] {
        var received = [Received](repeating: Received(), count: candidates.count)
        for (k, candidate) in candidates.enumerated() where owner[Int(candidate.position)] == candidate.listed {
            switch candidate.verdict {
            case .created, .reformatted:
                received[k].item = listing.item(at: Int(candidate.listed))
            case .changed:
                let before = snapshot.state(at: Int(candidate.position))
                received[k].previous = PreviousState(status: before.status, updatedOn: before.updatedOn)
                received[k].item = listing.item(at: Int(candidate.listed))
            case .same, .stale:
                break
            }
        }
        return received
    }

    /// Pass 2: applies the candidates that won their entry, in listing order, with what ``receivedItems`` built
    /// of them ahead (none: each is built here).
    private mutating func applyPresent(
        to snapshot: inout Snapshot, candidates: [Candidate], owner: [Int32], received: [Received]
    ) {
        outcome.changes.reserveCapacity(candidates.count)
        if !outcome.upsertedIsWholeSnapshot { outcome.upserted.reserveCapacity(candidates.count) }
        for (k, candidate) in candidates.enumerated() {
            let position = Int(candidate.position)
            let i = Int(candidate.listed)
            guard owner[position] == candidate.listed else { continue }
            var rowChanged = false
            /// The row's new item when it is the received one; otherwise the stored one is kept.
            var receivedItem: BulkItem?
            let ahead = k < received.count ? received[k] : nil
            switch candidate.verdict {
            case .created:
                // ``appendNew`` stored the winning occurrence already (its bytes copied into the arenas).
                let item = ahead?.item ?? listing.item(at: i)
                outcome.stats.created += 1
                if !outcome.upsertedIsWholeSnapshot { outcome.upserted.append(TrackedItem(item: item)) }
                if announceCreated {
                    outcome.changes.append(DetectedChange(kind: .created, item: item))
                }
                continue
            case .same:
                break
            case .reformatted:
                let item = ahead?.item ?? listing.item(at: i)
                outcome.stats.reformattedTimestamps += 1
                snapshot.replaceItem(at: position, with: item)
                receivedItem = item
                rowChanged = true
            case .stale:
                outcome.stats.staleIgnored += 1
                if outcome.stats.staleExamples.count < Self.exampleLimit {
                    outcome.stats.staleExamples.append(listing.item(at: i).bulkId)
                }
            case .changed:
                let item = ahead?.item ?? listing.item(at: i)
                outcome.stats.changed += 1
                let previous =
                    ahead?.previous
                    ?? {
                        let before = snapshot.state(at: position)
                        return PreviousState(status: before.status, updatedOn: before.updatedOn)
                    }()
                outcome.changes.append(DetectedChange(kind: .changed, item: item, previous: previous))
                snapshot.replaceItem(at: position, with: item)
                receivedItem = item
                rowChanged = true
            }
            if snapshot.isAbsent(position) {
                snapshot.setAbsentPolls(position, 0)
                outcome.stats.reappeared += 1
                if snapshot.isGuarded(position) {
                    snapshot.setGuarded(position, false)
                    outcome.removalGuardChanged = true
                }
                rowChanged = true
            }
            if rowChanged {
                outcome.upserted.append(
                    TrackedItem(
                        item: receivedItem ?? snapshot.item(at: position),
                        absentPolls: snapshot.absentPolls(at: position)))
            }
        }
    }

    /// Pass 3, its decisions: counts absences, applies the mass-removal guard and picks what is confirmed gone.
    private static func planAbsences(
        _ snapshot: Snapshot, stored: Int, known: Int, owner: [Int32], policy: DetectionPolicy
    ) -> AbsencePlan {
        var plan = AbsencePlan()
        for position in 0..<stored where owner[position] < 0 && !snapshot.isDead(position) {
            plan.absent.append(position)
            if !snapshot.isAbsent(position) { plan.newlyAbsent += 1 }
        }
        guard !plan.absent.isEmpty else { return plan }

        let confirmations = min(max(2, policy.expireAfter), Int.max / 2)
        plan.confirmations = confirmations
        plan.known = known
        plan.guardTriggered = known >= 10 && plan.newlyAbsent * 2 >= known
        var expiring: [Int] = []
        for position in plan.absent {
            // Every absent item is held, not only the newly absent ones: an item already missing once
            // must not expire on the strength of an answer that looks like a glitch.
            let guarded = plan.guardTriggered || snapshot.isGuarded(position)
            let count = snapshot.absentPolls(at: position) + 1
            let needed = guarded ? 2 * confirmations : confirmations
            if !plan.guardTriggered, count >= needed {
                expiring.append(position)
                if guarded { plan.expiresGuarded = true }
            } else {
                plan.counts.append(AbsenceCount(bulkId: snapshot.bulkId(at: position), absentPolls: count))
            }
        }
        let expired = expiring.map { snapshot.item(at: $0) }
        // By each id's first 8 bytes as one number, which decides almost every comparison of real ids, and by the
        // whole id only on a tie: comparing two `String`s byte by byte every time took ~0.7 ms to sort a steady
        // 100k poll's 1,000 expired items (a temporary trace).
        var byId = expired.indices.map { (prefix: ByteKeys.orderPrefix(expired[$0].bulkId), index: $0) }
        byId.sort {
            $0.prefix != $1.prefix
                ? $0.prefix < $1.prefix : ByteKeys.less(expired[$0.index].bulkId, expired[$1.index].bulkId)
        }
        plan.expiring = byId.map { expiring[$0.index] }
        plan.expired = byId.map { expired[$0.index] }
        return plan
    }

    /// Pass 3: applies ``planAbsences(_:stored:known:owner:policy:)``'s decisions. Returns the number of known items
    /// absent from this listing.
    private mutating func applyAbsent(to snapshot: inout Snapshot, _ plan: AbsencePlan) -> Int {
        outcome.stats.newlyAbsent = plan.newlyAbsent
        guard !plan.absent.isEmpty else { return 0 }
        if plan.guardTriggered {
            outcome.stats.massRemovalGuardTriggered = true
            outcome.removalGuardChanged = true
            outcome.stats.warnings.append(
                .massRemovalGuard(
                    newlyAbsent: plan.newlyAbsent, known: plan.known, confirmations: 2 * plan.confirmations))
        }
        for position in plan.absent {
            if plan.guardTriggered { snapshot.setGuarded(position, true) }
            snapshot.setAbsentPolls(position, snapshot.absentPolls(at: position) + 1)
        }
        if plan.expiresGuarded { outcome.removalGuardChanged = true }
        outcome.stats.absentPending = plan.absent.count - plan.expiring.count
        outcome.absenceCounts = plan.counts
        guard !plan.expiring.isEmpty else { return plan.absent.count }

        outcome.stats.expired = plan.expiring.count
        outcome.changes.reserveCapacity(outcome.changes.count + plan.expired.count)
        outcome.removed.reserveCapacity(plan.expired.count)
        for item in plan.expired {
            outcome.changes.append(DetectedChange(kind: .expired, item: item))
            outcome.removed.append(item.bulkId)
        }
        snapshot.remove(positions: plan.expiring)
        return plan.absent.count
    }
}

/// Orders two optional `updatedOn` values: by instant when both parse, otherwise as UTF-8 strings;
/// a missing value is older than any present one. Picks the winner among duplicates.
private func compareUpdated(_ lhs: String?, _ rhs: String?) -> Int {
    switch (lhs, rhs) {
    case (nil, nil): return 0
    case (nil, _): return -1
    case (_, nil): return 1
    case (let left?, let right?):
        if left == right { return 0 }
        if let l = Timestamp.instantMillis(left), let r = Timestamp.instantMillis(right) {
            return l < r ? -1 : (l > r ? 1 : 0)
        }
        return ByteKeys.compare(left, right)
    }
}
