/// The known operations, indexed by `bulkId`: what the watcher keeps in memory between polls
/// and what the journal persists.
///
/// Identity is the `bulkId`'s UTF-8 bytes (not Unicode canonical equivalence), so an id is
/// exactly what DruID sent. Items live in one contiguous array with a compact open-addressing
/// index of entry numbers beside it: a poll of 100k items then costs one probe into a small table
/// per item instead of the pointer chasing of a `[String: TrackedItem]`, which is what keeps a
/// steady diff in the low milliseconds. Order of ``trackedItems`` is an implementation detail
/// (roughly first-seen order) but is deterministic for the same history.
///
/// Besides each item's absence counter, the snapshot remembers which absent items are held by the
/// mass-removal guard (DESIGN.md §3: a poll that would remove more than half of the known items
/// needs twice the confirmations). Persist ``removalGuardedIDs`` next to the items and pass them
/// back to ``init(tracked:removalGuarded:)`` so the guard survives a restart.
public struct Snapshot: Sendable {
    var entries: [TrackedItem]
    /// Cached ``ByteKeys/hash(_:)`` of each entry's `bulkId`, parallel to `entries`.
    var hashes: [UInt64]
    /// Whether each entry is held by the mass-removal guard, parallel to `entries`.
    var guarded: [Bool]
    var guardedCount: Int
    var index: SlotIndex

    /// An empty snapshot: the state before the first successful poll.
    public init() {
        entries = []
        hashes = []
        guarded = []
        guardedCount = 0
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
            if let position = index.find(hash: ByteKeys.hash(bulkId), bulkId: bulkId, in: entries),
                entries[position].absentPolls > 0, !guarded[position]
            {
                guarded[position] = true
                guardedCount += 1
            }
        }
    }

    /// Number of known operations, present or pending expiry.
    public var count: Int { entries.count }

    public var isEmpty: Bool { entries.isEmpty }

    /// The known state of `bulkId`, or nil when it is not tracked.
    public subscript(bulkId: String) -> TrackedItem? {
        position(of: bulkId).map { entries[$0] }
    }

    /// Every known operation (no copy: the snapshot's own storage).
    public var trackedItems: [TrackedItem] { entries }

    /// Ids of absent items currently held by the mass-removal guard, in UTF-8 byte order.
    public var removalGuardedIDs: [String] {
        guard guardedCount > 0 else { return [] }
        var ids: [String] = []
        ids.reserveCapacity(guardedCount)
        for position in entries.indices where guarded[position] {
            ids.append(entries[position].item.bulkId)
        }
        return ids.sorted(by: ByteKeys.less)
    }

    /// Whether `bulkId` is absent and held by the mass-removal guard (needs twice the confirmations).
    public func isUnderRemovalGuard(_ bulkId: String) -> Bool {
        position(of: bulkId).map { guarded[$0] } ?? false
    }

    func position(of bulkId: String) -> Int? {
        index.find(hash: ByteKeys.hash(bulkId), bulkId: bulkId, in: entries)
    }

    mutating func reserveCapacity(_ capacity: Int) {
        entries.reserveCapacity(capacity)
        hashes.reserveCapacity(capacity)
        guarded.reserveCapacity(capacity)
        index.reserve(capacity, hashes: hashes)
    }

    /// Appends a new entry and indexes it; returns its position.
    @discardableResult
    mutating func append(_ tracked: TrackedItem, hash: UInt64) -> Int {
        let position = entries.count
        // Index first: a rehash inside `insert` re-places exactly the entries already in `hashes`.
        index.insert(hash: hash, position: position, hashes: hashes)
        entries.append(tracked)
        hashes.append(hash)
        guarded.append(false)
        return position
    }

    mutating func setGuarded(_ position: Int, _ value: Bool) {
        guard guarded[position] != value else { return }
        guarded[position] = value
        guardedCount += value ? 1 : -1
    }

    /// Removes the entries at `positions` (each once, any order) by moving the last entry into
    /// each hole, so removal costs O(removed) rather than shifting the array.
    mutating func remove(positions: [Int]) {
        for position in positions.sorted(by: >) {
            setGuarded(position, false)
            index.remove(position: position, hashes: hashes)
            let last = entries.count - 1
            if position != last {
                index.relabel(from: last, to: position, hashes: hashes)
                entries.swapAt(position, last)
                hashes.swapAt(position, last)
                guarded.swapAt(position, last)
            }
            entries.removeLast()
            hashes.removeLast()
            guarded.removeLast()
        }
    }
}

/// Open-addressing (linear probing) table from `bulkId` to entry position.
///
/// Each slot is one `UInt64`: the upper 32 bits of the key's hash as a tag, and position + 1 in
/// the lower 32 (0 = empty). The tag rejects almost every non-matching slot without touching the
/// entry, so a lookup usually costs one cache line of this table plus the entry it finds. Load
/// stays at or below one half; deletion shifts followers back, so there are no tombstones.
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

    mutating func reserve(_ capacity: Int, hashes: [UInt64]) {
        if capacity * 2 > slots.count { rehash(toHold: capacity, hashes: hashes) }
    }

    /// Indexes a new entry; `hashes` must hold the hashes of every entry indexed so far (and not
    /// yet this one), for the rehash when the table grows.
    mutating func insert(hash: UInt64, position: Int, hashes: [UInt64]) {
        if (count + 1) * 2 > slots.count {
            rehash(toHold: max(count + 1, slots.count), hashes: hashes)
        }
        place(hash: hash, position: position)
        count += 1
    }

    private mutating func place(hash: UInt64, position: Int) {
        var bucket = home(hash)
        while slots[bucket] != 0 { bucket = (bucket + 1) & mask }
        slots[bucket] = Self.tag(hash) << 32 | UInt64(position + 1)
    }

    /// Rebuilds the table for `hashes` (positions 0..<hashes.count), sized for `toHold` keys.
    private mutating func rehash(toHold: Int, hashes: [UInt64]) {
        var capacity = 16
        while capacity < toHold * 2 { capacity <<= 1 }
        slots = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
        count = 0
        for (position, hash) in hashes.enumerated() {
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

    /// Points the slot of the entry at `old` to `new` (the entry moved; its key did not change).
    mutating func relabel(from old: Int, to new: Int, hashes: [UInt64]) {
        let hash = hashes[old]
        let bucket = bucket(holding: old, hash: hash)
        slots[bucket] = Self.tag(hash) << 32 | UInt64(new + 1)
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
