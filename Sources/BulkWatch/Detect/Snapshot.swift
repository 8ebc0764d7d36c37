/// The known operations, indexed by `bulkId`: what the watcher keeps in memory between polls
/// and what the journal persists.
///
/// Identity is the `bulkId`'s UTF-8 bytes (not Unicode canonical equivalence), so an id is
/// exactly what DruID sent. Items live in one contiguous array with a compact open-addressing
/// index of entry positions beside it, instead of the pointer chasing of a
/// `[String: TrackedItem]`. The storage is kept in the order the upstream lists items (new ones
/// appended, expired ones left as holes until a compaction re-sorts everything into the latest
/// listing order), so a steady poll mostly walks both arrays side by side and rarely hashes.
/// The order of ``trackedItems`` is otherwise unspecified, but deterministic for one history.
///
/// Besides each item's absence counter, the snapshot remembers which absent items are held by the
/// mass-removal guard (DESIGN.md §3: a poll that would remove more than half of the known items
/// needs twice the confirmations). Persist ``removalGuardedIDs`` next to the items and pass them
/// back to ``init(tracked:removalGuarded:)`` so the guard survives a restart.
public struct Snapshot: Sendable {
    var entries: [TrackedItem]
    /// Cached ``ByteKeys/hash(_:)`` of each entry's `bulkId`, parallel to `entries`.
    var hashes: [UInt64]
    /// Per entry: ``Flags``, parallel to `entries`.
    var flags: [UInt8]
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
        static let guarded: UInt8 = 1
        static let dead: UInt8 = 2
    }

    /// An empty snapshot: the state before the first successful poll.
    public init() {
        entries = []
        hashes = []
        flags = []
        guardedCount = 0
        deadCount = 0
        index = SlotIndex(minimumCapacity: 0)
    }

    /// Rebuilds a snapshot from persisted rows. A repeated `bulkId` keeps the last row;
    /// `removalGuarded` ids that are not among the absent `tracked` items are ignored.
    public init(tracked: some Sequence<TrackedItem>, removalGuarded: [String] = []) {
        self.init()
        let rows = Array(tracked)
        reserveCapacity(rows.count)
        for row in rows {
            let hash = ByteKeys.hash(row.item.bulkId)
            if let existing = index.find(hash: hash, bulkId: row.item.bulkId, in: entries) {
                entries[existing] = row
            } else {
                append(row, hash: hash)
            }
        }
        for bulkId in removalGuarded {
            if let position = position(of: bulkId), entries[position].absentPolls > 0 {
                setGuarded(position, true)
            }
        }
    }

    /// Number of known operations, present or pending expiry.
    public var count: Int { entries.count - deadCount }

    public var isEmpty: Bool { count == 0 }

    /// The known state of `bulkId`, or nil when it is not tracked.
    public subscript(bulkId: String) -> TrackedItem? {
        position(of: bulkId).map { entries[$0] }
    }

    /// Every known operation.
    public var trackedItems: [TrackedItem] {
        guard deadCount > 0 else { return entries }
        return entries.indices.filter { !isDead($0) }.map { entries[$0] }
    }

    /// Ids of absent items currently held by the mass-removal guard, in UTF-8 byte order.
    public var removalGuardedIDs: [String] {
        guard guardedCount > 0 else { return [] }
        var ids: [String] = []
        ids.reserveCapacity(guardedCount)
        for position in entries.indices where isGuarded(position) {
            ids.append(entries[position].item.bulkId)
        }
        return ids.sorted(by: ByteKeys.less)
    }

    /// Whether `bulkId` is absent and held by the mass-removal guard (needs twice the confirmations).
    public func isUnderRemovalGuard(_ bulkId: String) -> Bool {
        position(of: bulkId).map { isGuarded($0) } ?? false
    }

    func position(of bulkId: String) -> Int? {
        index.find(hash: ByteKeys.hash(bulkId), bulkId: bulkId, in: entries)
    }

    func isDead(_ position: Int) -> Bool { flags[position] & Flags.dead != 0 }

    func isGuarded(_ position: Int) -> Bool { flags[position] & Flags.guarded != 0 }

    mutating func reserveCapacity(_ capacity: Int) {
        entries.reserveCapacity(capacity)
        hashes.reserveCapacity(capacity)
        flags.reserveCapacity(capacity)
        index.reserve(capacity, hashes: hashes, flags: flags)
    }

    /// Appends a new entry and indexes it; returns its position.
    @discardableResult
    mutating func append(_ tracked: TrackedItem, hash: UInt64) -> Int {
        let position = entries.count
        // Index first: a rehash inside `insert` re-places exactly the entries already stored.
        index.insert(hash: hash, position: position, hashes: hashes, flags: flags)
        entries.append(tracked)
        hashes.append(hash)
        flags.append(0)
        return position
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
            entries[position] = Self.hole
            deadCount += 1
        }
    }

    /// What a removed position holds: no strings, no bytes, an id that matches no real `bulkId`.
    private static let hole = TrackedItem(item: BulkItem(bulkId: "", rawJSON: []), absentPolls: 0)

    /// Rewrites the storage without holes, live entries in `order` (positions; every live one
    /// exactly once), and rebuilds the index.
    mutating func compact(order: [Int]) {
        var newEntries: [TrackedItem] = []
        var newHashes: [UInt64] = []
        var newFlags: [UInt8] = []
        newEntries.reserveCapacity(order.count)
        newHashes.reserveCapacity(order.count)
        newFlags.reserveCapacity(order.count)
        for position in order {
            newEntries.append(entries[position])
            newHashes.append(hashes[position])
            newFlags.append(flags[position])
        }
        entries = newEntries
        hashes = newHashes
        flags = newFlags
        deadCount = 0
        index.rebuild(hashes: hashes, flags: flags)
    }
}

/// Open-addressing (linear probing) table from `bulkId` to entry position.
///
/// Each slot is one `UInt64`: the upper 32 bits of the key's hash as a tag, and position + 1 in
/// the lower 32 (0 = empty). The tag rejects almost every non-matching slot without touching the
/// entry, so a lookup usually costs one cache line of this table plus the entry it finds. Load
/// stays at or below one half; deletion shifts followers back, so the table has no tombstones.
struct SlotIndex: Sendable {
    private(set) var slots: [UInt64]
    private var mask: Int
    private(set) var count: Int

    init(minimumCapacity: Int) {
        var capacity = 16
        while capacity < minimumCapacity * 2 { capacity <<= 1 }
        slots = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
        count = 0
    }

    private static func tag(_ hash: UInt64) -> UInt64 { hash >> 32 }

    @inline(__always)
    private func home(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash) & mask }

    func find(hash: UInt64, bulkId: String, in entries: [TrackedItem]) -> Int? {
        entries.withUnsafeBufferPointer { find(hash: hash, bulkId: bulkId, in: $0) }
    }

    func find(hash: UInt64, bulkId: String, in entries: UnsafeBufferPointer<TrackedItem>) -> Int? {
        let tag = Self.tag(hash)
        var bucket = home(hash)
        return slots.withUnsafeBufferPointer { table in
            while true {
                let slot = table[bucket]
                if slot == 0 { return nil }
                if slot >> 32 == tag {
                    let position = Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1
                    if ByteKeys.equal(entries[position].item.bulkId, bulkId) { return position }
                }
                bucket = (bucket + 1) & mask
            }
        }
    }

    mutating func reserve(_ capacity: Int, hashes: [UInt64], flags: [UInt8]) {
        if capacity * 2 > slots.count { rehash(toHold: capacity, hashes: hashes, flags: flags) }
    }

    /// Indexes every live position of `hashes` from scratch.
    mutating func rebuild(hashes: [UInt64], flags: [UInt8]) {
        rehash(toHold: hashes.count, hashes: hashes, flags: flags)
    }

    /// Indexes a new entry; `hashes` and `flags` must describe every entry stored so far (and not
    /// yet this one), for the rehash when the table grows.
    mutating func insert(hash: UInt64, position: Int, hashes: [UInt64], flags: [UInt8]) {
        if (count + 1) * 2 > slots.count {
            rehash(toHold: max(count + 1, slots.count), hashes: hashes, flags: flags)
        }
        place(hash: hash, position: position)
        count += 1
    }

    private mutating func place(hash: UInt64, position: Int) {
        var bucket = home(hash)
        while slots[bucket] != 0 { bucket = (bucket + 1) & mask }
        slots[bucket] = Self.tag(hash) << 32 | UInt64(position + 1)
    }

    /// Rebuilds the table for the live positions of `hashes`, sized for `toHold` keys.
    private mutating func rehash(toHold: Int, hashes: [UInt64], flags: [UInt8]) {
        var capacity = 16
        while capacity < toHold * 2 { capacity <<= 1 }
        slots = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
        count = 0
        for (position, hash) in hashes.enumerated() where flags[position] & Snapshot.Flags.dead == 0 {
            place(hash: hash, position: position)
            count += 1
        }
    }

    private func bucket(holding position: Int, hash: UInt64) -> Int {
        let wanted = Self.tag(hash) << 32 | UInt64(position + 1)
        var bucket = home(hash)
        while slots[bucket] != wanted {
            precondition(slots[bucket] != 0, "SlotIndex: position \(position) is not indexed")
            bucket = (bucket + 1) & mask
        }
        return bucket
    }

    /// Deletes the slot of the entry at `position`, shifting later members of its probe run back.
    mutating func remove(position: Int, hashes: [UInt64]) {
        var hole = bucket(holding: position, hash: hashes[position])
        var next = hole
        while true {
            next = (next + 1) & mask
            let slot = slots[next]
            if slot == 0 { break }
            let home = home(hashes[Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1])
            // Move `slot` into the hole unless its home lies cyclically in (hole, next].
            let homeBetween = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !homeBetween {
                slots[hole] = slot
                hole = next
            }
        }
        slots[hole] = 0
        count -= 1
    }
}

/// `bulkId`s as UTF-8 bytes: hashing, equality and order that do not depend on Unicode
/// normalisation and cost a few nanoseconds for a 36-byte id.
enum ByteKeys {
    @inline(__always)
    static func withBytes<R>(_ text: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let result = text.utf8.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        var copy = text
        copy.makeContiguousUTF8()
        return copy.utf8.withContiguousStorageIfAvailable { body(UnsafeRawBufferPointer($0)) }!
    }

    /// A fast 64-bit mix of the bytes (not keyed: ids come from the configured upstream).
    static func hash(_ text: String) -> UInt64 {
        withBytes(text) { bytes in
            var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(bytes.count)
            var offset = 0
            let count = bytes.count
            while offset + 8 <= count {
                let word = bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                h = (h ^ word) &* 0xBF58_476D_1CE4_E5B9
                h ^= h >> 29
                offset += 8
            }
            if offset < count {
                var word: UInt64 = 0
                var shift: UInt64 = 0
                while offset < count {
                    word |= UInt64(bytes[offset]) << shift
                    shift += 8
                    offset += 1
                }
                h = (h ^ word) &* 0x94D0_49BB_1331_11EB
            }
            h ^= h >> 31
            h = h &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 32
            return h
        }
    }

    static func equal(_ lhs: String, _ rhs: String) -> Bool {
        let count = lhs.utf8.count
        guard count == rhs.utf8.count else { return false }
        return withBytes(lhs) { left in
            withBytes(rhs) { right in
                var offset = 0
                while offset + 8 <= count {
                    if left.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                        != right.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    {
                        return false
                    }
                    offset += 8
                }
                while offset < count {
                    if left[offset] != right[offset] { return false }
                    offset += 1
                }
                return true
            }
        }
    }

    /// -1, 0 or 1 by lexicographic UTF-8 byte order.
    static func compare(_ lhs: String, _ rhs: String) -> Int {
        withBytes(lhs) { left in
            withBytes(rhs) { right in
                let shared = min(left.count, right.count)
                for offset in 0..<shared where left[offset] != right[offset] {
                    return left[offset] < right[offset] ? -1 : 1
                }
                return left.count < right.count ? -1 : (left.count > right.count ? 1 : 0)
            }
        }
    }

    static func less(_ lhs: String, _ rhs: String) -> Bool { compare(lhs, rhs) < 0 }
}
