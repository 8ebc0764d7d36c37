import BulkWatchSupport

/// Each entry's `bulkId`, `status` and `updatedOn` as UTF-8 bytes, side by side in one buffer.
///
/// A span per entry packs the offset (40 bits) and three lengths (8 bits each); `status` and
/// `updatedOn` lengths are stored plus one so that 0 can mean nil. A field longer than the span
/// can describe leaves the entry without a copy (``none``) and callers compare the strings
/// instead. Replaced bytes stay behind as waste until it outgrows the live bytes.
struct KeyArena: Sendable {
    private(set) var bytes: [UInt8] = []
    private(set) var spans: [UInt64] = []
    private var wasted = 0

    static let none = UInt64.max

    mutating func reserveCapacity(_ count: Int) {
        spans.reserveCapacity(count)
        bytes.reserveCapacity(count * 96)
    }

    mutating func append(_ item: BulkItem) {
        spans.append(store(item))
    }

    /// Stores a new state for `position`; the old bytes stay behind as waste until ``reordered(_:spareFraction:)``.
    mutating func replace(_ position: Int, with item: BulkItem) {
        wasted += Self.length(spans[position])
        spans[position] = store(item)
    }

    /// Bytes of replaced or cleared entries still in the buffer.
    var wastedBytes: Int { wasted }

    mutating func withUnsafeMutableSpans<R>(_ body: (inout UnsafeMutableBufferPointer<UInt64>) -> R) -> R {
        spans.withUnsafeMutableBufferPointer(body)
    }

    mutating func removeLast(_ count: Int) {
        spans.removeLast(count)
    }

    mutating func clear(_ position: Int) {
        wasted += Self.length(spans[position])
        spans[position] = Self.none
    }

    /// A copy holding only the entries at `order`, in that order, without waste (and, with `spareFraction`
    /// n, room for 1/n more bytes).
    func reordered(_ order: [Int], spareFraction: Int = 0) -> KeyArena {
        var total = 0
        var newSpans: [UInt64] = []
        // The spans get the same spare room as the bytes: appended to at the exact size, the array would be
        // copied into one twice as large by the next poll's first new entry.
        newSpans.reserveCapacity(withSpareRoom(order.count, spareFraction: spareFraction))
        for position in order {
            let span = spans[position]
            guard span != Self.none else {
                newSpans.append(Self.none)
                continue
            }
            newSpans.append(span & ~0xFF_FFFF_FFFF | UInt64(total))
            total += Self.length(span)
        }
        var fresh = KeyArena()
        fresh.spans = newSpans
        guard total > 0 else { return fresh }
        let oldSpans = spans
        fresh.bytes = bytes.withUnsafeBytes { old in
            [UInt8](unsafeUninitializedCapacity: withSpareRoom(total, spareFraction: spareFraction)) {
                target, initialized in
                let base = UnsafeMutableRawPointer(target.baseAddress!)
                newSpans.withUnsafeBufferPointer { newSpans in
                    oldSpans.withUnsafeBufferPointer { oldSpans in
                        for (n, position) in order.enumerated() where newSpans[n] != Self.none {
                            base.advanced(by: Int(newSpans[n] & 0xFF_FFFF_FFFF)).copyMemory(
                                from: old.baseAddress! + Int(oldSpans[position] & 0xFF_FFFF_FFFF),
                                byteCount: Self.length(newSpans[n]))
                        }
                    }
                }
                initialized = total
            }
        }
        return fresh
    }

    private static func length(_ span: UInt64) -> Int {
        guard span != none else { return 0 }
        let id = Int(span >> 40 & 0xFF)
        let status = Int(span >> 48 & 0xFF)
        let updated = Int(span >> 56)
        return id + max(status - 1, 0) + max(updated - 1, 0)
    }

    private mutating func store(_ item: BulkItem) -> UInt64 {
        let idCount = item.bulkId.utf8.count
        let statusCount = item.status?.utf8.count ?? -1
        let updatedCount = item.updatedOnUTF8Count ?? -1
        guard idCount <= 254, statusCount <= 253, updatedCount <= 253 else { return Self.none }
        let offset = UInt64(bytes.count)
        ByteKeys.withBytes(item.bulkId) { bytes.append(contentsOf: $0) }
        if let status = item.status { ByteKeys.withBytes(status) { bytes.append(contentsOf: $0) } }
        item.withUpdatedOnUTF8 { updatedOn in if let updatedOn { bytes.append(contentsOf: updatedOn) } }
        return offset | UInt64(idCount) << 40 | UInt64(statusCount + 1) << 48 | UInt64(updatedCount + 1) << 56
    }

    /// The entry's `bulkId` as a string; nil when the entry has no copy (or is cleared).
    func bulkId(at position: Int) -> String? {
        withFieldBytes(at: position) { bulkId, _, _ in String(decoding: bulkId, as: UTF8.self) }
    }

    /// The entry's `status` and `updatedOn` as strings (a judged change needs only these); nil when the entry has
    /// no copy (or is cleared).
    func state(at position: Int) -> (status: String?, updatedOn: String?)? {
        withFieldBytes(at: position) { _, status, updatedOn in
            (status.map { String(decoding: $0, as: UTF8.self) }, updatedOn.map { String(decoding: $0, as: UTF8.self) })
        }
    }

    /// Calls `body` with the entry's key fields as bytes of the arena (`status` and `updatedOn` nil when
    /// absent); returns nil without calling it when the entry has no copy (or is cleared).
    func withFieldBytes<R>(
        at position: Int,
        _ body: (
            _ bulkId: UnsafeRawBufferPointer, _ status: UnsafeRawBufferPointer?, _ updatedOn: UnsafeRawBufferPointer?
        ) throws -> R
    ) rethrows -> R? {
        let span = spans[position]
        guard span != Self.none else { return nil }
        return try bytes.withUnsafeBytes { arena in
            var offset = Int(span & 0xFF_FFFF_FFFF)
            func take(_ length: Int) -> UnsafeRawBufferPointer {
                defer { offset += length }
                return UnsafeRawBufferPointer(rebasing: arena[offset..<(offset + length)])
            }
            let bulkId = take(Int(span >> 40 & 0xFF))
            let statusCode = Int(span >> 48 & 0xFF)
            let status = statusCode == 0 ? nil : take(statusCode - 1)
            let updatedCode = Int(span >> 56)
            let updatedOn = updatedCode == 0 ? nil : take(updatedCode - 1)
            return try body(bulkId, status, updatedOn)
        }
    }

    /// Whether the entry's id is `id`; nil when the entry has no copy.
    @inline(__always)
    func idEquals(_ position: Int, _ id: UnsafeRawBufferPointer) -> Bool? {
        let span = spans[position]
        guard span != Self.none else { return nil }
        guard Int(span >> 40 & 0xFF) == id.count else { return false }
        return bytes.withUnsafeBytes {
            ByteKeys.equal(UnsafeRawBufferPointer(rebasing: $0[Int(span & 0xFF_FFFF_FFFF)...]), id)
        }
    }

    /// Whether the entry's `status` and `updatedOn` are byte for byte the given ones (nil: the field is
    /// missing); nil when the entry has no copy. The listed item's bytes are read where they lie in the
    /// body (``BulkListing/withKeys(_:)``), so an unchanged item costs no `String` and no retain.
    @inline(__always)
    func stateEquals(
        _ position: Int, status: UnsafeRawBufferPointer?, updatedOn: UnsafeRawBufferPointer?
    ) -> Bool? {
        let span = spans[position]
        guard span != Self.none else { return nil }
        let statusCode = Int(span >> 48 & 0xFF)
        let updatedCode = Int(span >> 56)
        guard statusCode == (status?.count ?? -1) + 1, updatedCode == (updatedOn?.count ?? -1) + 1 else {
            return false
        }
        return bytes.withUnsafeBytes { arena in
            var offset = Int(span & 0xFF_FFFF_FFFF) + Int(span >> 40 & 0xFF)
            if let status {
                guard ByteKeys.equal(UnsafeRawBufferPointer(rebasing: arena[offset...]), status) else { return false }
                offset += status.count
            }
            guard let updatedOn else { return true }
            return ByteKeys.equal(UnsafeRawBufferPointer(rebasing: arena[offset...]), updatedOn)
        }
    }
}
