import BulkWatchSupport

/// One entry's fields as UTF-8 bytes inside a ``Snapshot``'s storage (nil: the field is absent); see
/// ``Snapshot/withEntryBytes(at:_:)``.
package struct EntryBytes {
    package var bulkId: UnsafeRawBufferPointer
    package var status: UnsafeRawBufferPointer?
    package var createdOn: UnsafeRawBufferPointer?
    package var updatedOn: UnsafeRawBufferPointer?
    package var rawJSON: UnsafeRawBufferPointer
    /// Consecutive successful polls the entry has been missing from.
    package var absentPolls = 0
}

/// The known operations, indexed by `bulkId`: what the watcher keeps in memory between polls
/// and what the journal persists.
///
/// Identity is the `bulkId`'s UTF-8 bytes (not Unicode canonical equivalence), so an id is
/// exactly what DruID sent.
///
/// The layout is built for the steady poll, where almost every listed item is known and
/// unchanged, and for memory: a watcher of a million operations keeps them all, every minute of
/// its life. No entry owns an object. Each entry's `bulkId`, `status` and `updatedOn` sit side by
/// side in one byte arena (``KeyArena``), its `createdOn` and raw JSON in another
/// (``PayloadArena``), and beside them a few parallel arrays (hash, flags, absence counter) and a
/// compact open-addressing index of positions: about 250 bytes per item for a 150-byte item
/// instead of the ~800 that `BulkItem` values cost (four strings and an array each). Recognising
/// an unchanged item reads a few dozen contiguous bytes; a ``TrackedItem`` is rebuilt from the
/// bytes only for the few entries a poll reports or rewrites.
///
/// The storage is kept in the order the upstream lists items (new ones appended, expired ones
/// left as holes until a compaction re-sorts everything into the latest listing order), so a
/// steady poll walks the listing and the arena side by side and rarely hashes. The order of
/// ``trackedItems`` is otherwise unspecified, but deterministic for one history.
///
/// Besides each item's absence counter, the snapshot remembers which absent items are held by the
/// mass-removal guard (DESIGN.md §3: a poll that would remove half or more of the known items
/// needs twice the confirmations). Persist ``removalGuardedIDs`` next to the items and pass them
/// back to ``init(tracked:removalGuarded:)`` so the guard survives a restart.
package struct Snapshot: Sendable {
    /// Cached ``ByteKeys/hash(_:)`` of each entry's `bulkId`, one per position.
    var hashes: [UInt64]
    /// Per entry: ``Flags``.
    var flags: [UInt8]
    /// Per entry: consecutive successful polls it has been missing from.
    var absentCounts: [Int]
    /// Per entry: its id and state bytes.
    var keys: KeyArena
    /// Per entry: its `createdOn` and raw JSON (and the key fields when ``keys`` has no copy).
    var payloads: PayloadArena
    var guardedCount: Int
    /// Entries removed but still occupying a position (their slot in `index` is gone).
    var deadCount: Int
    var index: SlotIndex
    /// When to re-sort the storage into the listing's order (performance only, no effect on results).
    var layout = Layout()

    struct Layout: Sendable {
        var reorderedLastPoll = false
        var backoff = 0
        var pollsUntilReorder = 0
    }

    enum Flags {
        /// Held by the mass-removal guard.
        static let guarded: UInt8 = 1
        /// A hole left by an expired item.
        static let dead: UInt8 = 2
        /// `absentPolls > 0`, mirrored here so the steady path need not read the counter.
        static let absent: UInt8 = 4
    }

    /// An empty snapshot: the state before the first successful poll.
    package init() {
        hashes = []
        flags = []
        absentCounts = []
        keys = KeyArena()
        payloads = PayloadArena()
        guardedCount = 0
        deadCount = 0
        index = SlotIndex(minimumCapacity: 0)
    }

    /// Rebuilds a snapshot from persisted rows. A repeated `bulkId` keeps the last row;
    /// `removalGuarded` ids that are not among the absent `tracked` items are ignored.
    package init(tracked: some Sequence<TrackedItem>, removalGuarded: [String] = []) {
        self.init()
        let rows = Array(tracked)
        reserveCapacity(rows.count, payloadBytes: rows.reduce(0) { $0 + PayloadArena.size(of: $1.item) })
        for row in rows { load(row) }
        finishLoad(removalGuarded: removalGuarded)
    }

    /// Replays one persisted row (an image's or a delta's, in order) into a snapshot being loaded: a new id
    /// is appended, a known one takes the row's state. ``init(tracked:removalGuarded:)`` holds every row at
    /// once; a store loading 100k rows feeds them here one by one instead, so it never holds them all.
    package mutating func load(_ row: TrackedItem) {
        let absentPolls = max(0, row.absentPolls)
        let hash = ByteKeys.hash(row.item.bulkId)
        if let existing = ByteKeys.withBytes(row.item.bulkId, { find(id: $0, hash: hash) }) {
            replaceItem(at: existing, with: row.item)
            setAbsentPolls(existing, absentPolls)
        } else {
            append(TrackedItem(item: row.item, absentPolls: absentPolls), hash: hash)
        }
    }

    /// Replays a persisted absence counter (a delta's ``DiffOutcome/absenceCounts``) into a snapshot being
    /// loaded; unknown ids are ignored, as ``unload(_:)`` ignores them.
    package mutating func loadAbsentPolls(_ bulkId: String, _ count: Int) {
        if let position = position(of: bulkId) { setAbsentPolls(position, max(0, count)) }
    }

    /// Removes `bulkId` from a snapshot being loaded (a delta's removed id); unknown ids are ignored.
    package mutating func unload(_ bulkId: String) {
        if let position = position(of: bulkId) { remove(positions: [position]) }
    }

    /// Ends a load: closes the holes the removals left and restores the mass-removal guard for those of
    /// `removalGuarded` that are absent (the others are ignored).
    package mutating func finishLoad(removalGuarded: [String]) {
        if deadCount > 0 { closeHoles() }
        for bulkId in removalGuarded {
            if let position = position(of: bulkId), absentCounts[position] > 0 {
                setGuarded(position, true)
            }
        }
    }

    /// Makes room for `count` more entries whose records take about `payloadBytes` in all, before a load.
    package mutating func reserveForLoad(_ count: Int, payloadBytes: Int) {
        reserveCapacity(positions + count, payloadBytes: payloadBytes)
    }

    /// Number of known operations, present or pending expiry.
    package var count: Int { hashes.count - deadCount }

    package var isEmpty: Bool { count == 0 }

    /// Number of positions, holes included.
    package var positions: Int { hashes.count }

    /// The known state of `bulkId`, or nil when it is not tracked.
    package subscript(bulkId: String) -> TrackedItem? {
        position(of: bulkId).map { tracked(at: $0) }
    }

    /// Every known operation.
    package var trackedItems: [TrackedItem] {
        hashes.indices.filter { !isDead($0) }.map { tracked(at: $0) }
    }

    /// Every position's entry, holes included (as an empty item): for tests and diagnostics.
    var entries: Entries { Entries(snapshot: self) }

    struct Entries: RandomAccessCollection {
        let snapshot: Snapshot
        var startIndex: Int { 0 }
        var endIndex: Int { snapshot.positions }
        subscript(position: Int) -> TrackedItem { snapshot.tracked(at: position) }
    }

    /// The entry at `position`, rebuilt from the arenas.
    package func tracked(at position: Int) -> TrackedItem {
        TrackedItem(item: item(at: position), absentPolls: absentCounts[position])
    }

    /// The item at `position`, rebuilt from the arenas (an empty item for a hole).
    func item(at position: Int) -> BulkItem {
        if isDead(position) { return Self.hole }
        return payloads.item(at: position, keys: keys)
    }

    /// Calls `body` with the live entry at `position` as bytes of the arenas, valid only during the call.
    /// The store writes an image of 100k entries this way without a `String` or an array per entry.
    ///
    /// Not generic on purpose: a generic one, called from the store's module, ran unspecialized and built its
    /// closures' generic metadata at run time on every call (`_swift_getGenericMetadata` in a `perf record` of
    /// `bulkwatch-bench poll`, where every image fold and first-poll delta reads each entry this way); this one
    /// has the arenas' readers specialized here. With the one-pass delta (``SnapshotCodec``) the first 100k
    /// poll's cycle went from 494 / 513 / 498 to 442 / 435 / 455 ms (three alternated pairs).
    package func withEntryBytes(at position: Int, _ body: (EntryBytes) throws -> Void) rethrows {
        precondition(!isDead(position), "Snapshot.withEntryBytes: position \(position) is a hole")
        return try payloads.withEntryBytes(at: position, keys: keys) { entry in
            var entry = entry
            entry.absentPolls = absentCounts[position]
            return try body(entry)
        }
    }

    /// The stored `status` and `updatedOn` at `position`, without rebuilding the rest.
    func state(at position: Int) -> (status: String?, updatedOn: String?) {
        if let stored = keys.state(at: position) { return stored }
        let long = payloads.longKeyFields(at: position)
        return (long.status, long.updatedOn)
    }

    /// The stored `bulkId` at `position`.
    func bulkId(at position: Int) -> String {
        keys.bulkId(at: position) ?? payloads.longKeyFields(at: position).bulkId
    }

    func absentPolls(at position: Int) -> Int { absentCounts[position] }

    /// Ids of absent items currently held by the mass-removal guard, in UTF-8 byte order.
    package var removalGuardedIDs: [String] {
        guard guardedCount > 0 else { return [] }
        var ids: [String] = []
        ids.reserveCapacity(guardedCount)
        for position in hashes.indices where isGuarded(position) {
            ids.append(bulkId(at: position))
        }
        return ids.sorted(by: ByteKeys.less)
    }

    /// Whether `bulkId` is absent and held by the mass-removal guard (needs twice the confirmations).
    package func isUnderRemovalGuard(_ bulkId: String) -> Bool {
        position(of: bulkId).map { isGuarded($0) } ?? false
    }

    func position(of bulkId: String) -> Int? {
        ByteKeys.withBytes(bulkId) { find(id: $0, hash: ByteKeys.hash($0)) }
    }

    /// The live position whose id is `id` (`hash` = its ``ByteKeys/hash(_:)``).
    func find(id: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        index.find(hash: hash) { idMatches($0, id) }
    }

    @inline(__always)
    func idMatches(_ position: Int, _ id: UnsafeRawBufferPointer) -> Bool {
        Self.idMatches(position, id, keys: keys, payloads: payloads)
    }

    @inline(__always)
    static func idMatches(
        _ position: Int, _ id: UnsafeRawBufferPointer, keys: KeyArena, payloads: PayloadArena
    ) -> Bool {
        keys.idEquals(position, id) ?? payloads.longIdEquals(position, id)
    }

    package func isDead(_ position: Int) -> Bool { flags[position] & Flags.dead != 0 }

    func isGuarded(_ position: Int) -> Bool { flags[position] & Flags.guarded != 0 }

    func isAbsent(_ position: Int) -> Bool { flags[position] & Flags.absent != 0 }

    /// Makes room for `capacity` entries and `payloadBytes` bytes of ``PayloadArena`` records, so a
    /// first poll grows nothing by doubling (a doubling copy of a 150 MB arena is a 450 MB peak).
    mutating func reserveCapacity(_ capacity: Int, payloadBytes: Int = 0) {
        hashes.reserveCapacity(capacity)
        flags.reserveCapacity(capacity)
        absentCounts.reserveCapacity(capacity)
        keys.reserveCapacity(capacity)
        payloads.reserveCapacity(capacity, bytes: payloadBytes)
        index.reserve(capacity, hashes: hashes, flags: flags)
    }

    /// Appends a new entry and indexes it; returns its position.
    @discardableResult
    mutating func append(_ tracked: TrackedItem, hash: UInt64) -> Int {
        let position = hashes.count
        // Index first: a rehash inside `insert` re-places exactly the entries already stored.
        index.insert(hash: hash, position: position, hashes: hashes, flags: flags)
        store(tracked, hash: hash)
        return position
    }

    private mutating func store(_ tracked: TrackedItem, hash: UInt64) {
        hashes.append(hash)
        flags.append(tracked.absentPolls > 0 ? Flags.absent : 0)
        absentCounts.append(tracked.absentPolls)
        keys.append(tracked.item)
        payloads.append(tracked.item, keysStored: keys.spans[keys.spans.count - 1] != KeyArena.none)
    }

    /// Appends `tracked` unless its id is already live; returns the position and whether it was new.
    /// One probe of the index does both the lookup and the insertion.
    mutating func appendIfAbsent(_ tracked: TrackedItem, hash: UInt64) -> (position: Int, inserted: Bool) {
        let position = hashes.count
        let existing = Self.indexUnlessPresent(
            tracked.item.bulkId, hash: hash, position: position, index: &index, keys: keys, payloads: payloads,
            hashes: hashes, flags: flags)
        if let existing { return (existing, false) }
        store(tracked, hash: hash)
        return (position, true)
    }

    /// Separate from `self` so the matcher can read the keys while the index is being modified.
    private static func indexUnlessPresent(
        _ bulkId: String, hash: UInt64, position: Int, index: inout SlotIndex, keys: KeyArena,
        payloads: PayloadArena, hashes: [UInt64], flags: [UInt8]
    ) -> Int? {
        ByteKeys.withBytes(bulkId) { id in
            index.insertUnlessPresent(hash: hash, position: position, hashes: hashes, flags: flags) {
                idMatches($0, id, keys: keys, payloads: payloads)
            }
        }
    }

    /// Stores a new state for the entry at `position` (same `bulkId`).
    mutating func replaceItem(at position: Int, with item: BulkItem) {
        keys.replace(position, with: item)
        payloads.replace(position, with: item, keysStored: keys.spans[position] != KeyArena.none)
    }

    mutating func setAbsentPolls(_ position: Int, _ count: Int) {
        absentCounts[position] = count
        if count > 0 {
            flags[position] |= Flags.absent
        } else {
            flags[position] &= ~Flags.absent
        }
    }

    mutating func setGuarded(_ position: Int, _ value: Bool) {
        guard isGuarded(position) != value else { return }
        flags[position] ^= Flags.guarded
        guardedCount += value ? 1 : -1
    }

    /// Removes the entries at `positions` (each once, any order). The positions become holes, so
    /// nothing moves and the storage keeps the upstream's order; ``compact(order:)`` reclaims them.
    mutating func remove(positions: [Int]) {
        for position in positions {
            setGuarded(position, false)
            index.remove(position: position, hashes: hashes)
            flags[position] = Flags.dead
            absentCounts[position] = 0
            keys.clear(position)
            payloads.clear(position)
            deadCount += 1
        }
    }

    /// What a removed position reads as: no bytes, an id that matches no real `bulkId`.
    private static let hole = BulkItem(bulkId: "", rawJSON: [])

    /// Whether replaced and removed entries leave enough bytes behind in the arenas to be worth rewriting
    /// them (``compactBetweenPolls()``): more than a seventh of the live bytes, and at least 256 KiB. Each poll
    /// appends about as many bytes as it leaves behind, so the rewrite must come before the spare room a
    /// rewrite leaves runs out: at a quarter of the live bytes and 1 MiB (the thresholds before) it ran out
    /// first, and at 100k items the arena was copied into one twice its size one poll before each rewrite.
    package var hasWastefulArenas: Bool {
        func wasteful(_ wasted: Int, _ total: Int) -> Bool { wasted > 256 << 10 && wasted * 8 > total }
        return wasteful(keys.wastedBytes, keys.bytes.count) || wasteful(payloads.wastedBytes, payloads.bytes.count)
    }

    /// Closes the holes, keeping the live entries in their order; with `spareFraction` n, every array keeps
    /// room for 1/n more entries and bytes (only the pages written become resident).
    mutating func closeHoles(spareFraction: Int = 0) {
        compact(order: hashes.indices.filter { !isDead($0) }, spareFraction: spareFraction)
    }

    /// Whether expired entries left enough holes to be worth closing between polls (``closeHoles(spareFraction:)``):
    /// more than an eighth of the positions. Each hole costs ~45 bytes in the per-position arrays and the
    /// index, and the differ itself closes them only once they are half the positions (2× the live count).
    package var hasManyHoles: Bool { deadCount > 64 && deadCount * 8 > positions }

    /// Whether ``compactBetweenPolls()`` would rewrite the storage.
    package var needsCompaction: Bool { hasManyHoles || hasWastefulArenas }

    /// The housekeeping the watcher does between polls (``Watcher/maintainState()``): when there are many
    /// holes or much waste in the arenas, rewrites everything without either in one go (two rewrites a few
    /// polls apart cost twice). Between polls, not in a diff: at 1M items a rewrite in the middle of a poll
    /// sat beside the body, the listing and the events, and made the poll's peak ~300 MB higher. Every array keeps room for half as much again, reserved but not resident
    /// until written, so the polls until the next rewrite append without copying any of them into a buffer
    /// twice its size. Returns whether it rewrote anything.
    @discardableResult
    package mutating func compactBetweenPolls() -> Bool {
        guard needsCompaction else { return false }
        closeHoles(spareFraction: 2)
        return true
    }

    /// Rewrites the storage without holes, live entries in `order` (positions; every live one
    /// exactly once), and rebuilds the index.
    mutating func compact(order: [Int], spareFraction: Int = 0) {
        var newHashes: [UInt64] = []
        var newFlags: [UInt8] = []
        var newAbsent: [Int] = []
        let capacity = withSpareRoom(order.count, spareFraction: spareFraction)
        newHashes.reserveCapacity(capacity)
        newFlags.reserveCapacity(capacity)
        newAbsent.reserveCapacity(capacity)
        for position in order {
            newHashes.append(hashes[position])
            newFlags.append(flags[position])
            newAbsent.append(absentCounts[position])
        }
        hashes = newHashes
        flags = newFlags
        absentCounts = newAbsent
        keys = keys.reordered(order, spareFraction: spareFraction)
        payloads = payloads.reordered(order, spareFraction: spareFraction)
        deadCount = 0
        index.rebuild(hashes: hashes, flags: flags)
    }
}

/// `count` plus room for 1/`spareFraction` more (nothing more for 0): the capacity a rewrite of the snapshot's
/// storage gives each array and arena, so the appends of the polls until the next rewrite never copy one into a
/// buffer twice its size. Reserved, not resident, until written.
func withSpareRoom(_ count: Int, spareFraction: Int) -> Int {
    count + (spareFraction > 0 ? count / spareFraction : 0)
}
