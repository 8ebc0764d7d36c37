import BulkWatchSupport

/// Open-addressing (linear probing) table from `bulkId` to entry position.
///
/// Each slot is one `UInt64`: the upper 32 bits of the key's hash as a tag, and position + 1 in
/// the lower 32 (0 = empty). The tag rejects almost every non-matching slot without touching the
/// entry, so a lookup usually costs one cache line of this table plus the key it confirms. Load
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

    /// The position stored under `hash` for which `matches` holds.
    @inline(__always)
    func find(hash: UInt64, where matches: (Int) -> Bool) -> Int? {
        let tag = Self.tag(hash)
        var bucket = home(hash)
        return slots.withUnsafeBufferPointer { table in
            while true {
                let slot = table[bucket]
                if slot == 0 { return nil }
                if slot >> 32 == tag {
                    let position = Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1
                    if matches(position) { return position }
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

    /// Indexes `position` under `hash` unless a position matching `matches` is already there, in
    /// which case that one is returned and nothing changes.
    mutating func insertUnlessPresent(
        hash: UInt64, position: Int, hashes: [UInt64], flags: [UInt8], matches: (Int) -> Bool
    ) -> Int? {
        if (count + 1) * 2 > slots.count {
            rehash(toHold: max(count + 1, slots.count), hashes: hashes, flags: flags)
        }
        let tag = Self.tag(hash)
        var bucket = home(hash)
        while true {
            let slot = slots[bucket]
            if slot == 0 { break }
            if slot >> 32 == tag {
                let existing = Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1
                if matches(existing) { return existing }
            }
            bucket = (bucket + 1) & mask
        }
        slots[bucket] = tag << 32 | UInt64(position + 1)
        count += 1
        return nil
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
