import BulkWatchSupport

/// Each entry's `createdOn` and raw JSON bytes, back to back in one buffer; for an entry whose key
/// fields are too long for ``KeyArena`` (it has no copy there), `bulkId`, `status` and `updatedOn`
/// too, so every entry can always be rebuilt.
///
/// Record layout: a varint `createdOn` code (0 = nil, else length + 1) and its bytes, then a varint
/// shape code: 0 and the raw JSON to the end of the record, or n for ``shapes``[n - 1], which rebuilds
/// the raw JSON from the entry's fields (``ItemShape``: ~120 bytes less per item, 12 MB at 100k items);
/// in the long form the record starts with the `bulkId` length and bytes and the `status` and
/// `updatedOn` codes and bytes. Per entry the arena keeps the record's offset and length. Replaced
/// records stay behind as waste until it outgrows the live bytes.
struct PayloadArena: Sendable {
    private(set) var bytes: [UInt8] = []
    private(set) var offsets: [UInt64] = []
    private(set) var lengths: [UInt32] = []
    private var wasted = 0
    /// The raw-JSON shapes records refer to; never more than ``maximumShapes``.
    private(set) var shapes: [ItemShape] = []
    /// Items whose raw JSON matched no shape and gave none either (escaped values): each such attempt
    /// scans the item, so after ``maximumFailedShapes`` of them this arena keeps raw bytes without trying.
    /// A compaction (``reordered(_:spareFraction:)``) starts counting again.
    private var failedShapes = 0

    static let maximumShapes = 16
    static let maximumFailedShapes = 1_024

    /// Record length that marks a cleared entry (a hole).
    private static let cleared = UInt32.max

    /// Bytes one item's record takes (an upper bound: the long form).
    static func size(of item: BulkItem) -> Int {
        3 * 5 + 5 + 5 + item.bulkId.utf8.count + (item.status?.utf8.count ?? 0) + (item.updatedOnUTF8Count ?? 0)
            + (item.createdOnUTF8Count ?? 0) + item.rawJSON.count
    }

    mutating func reserveCapacity(_ count: Int, bytes byteCount: Int) {
        offsets.reserveCapacity(count)
        lengths.reserveCapacity(count)
        if byteCount > 0 { bytes.reserveCapacity(bytes.count + byteCount) }
    }

    mutating func append(_ item: BulkItem, keysStored: Bool) {
        let (offset, length) = store(item, keysStored: keysStored)
        offsets.append(offset)
        lengths.append(length)
    }

    /// Stores a new record for `position`; the old one stays behind as waste until ``reordered(_:spareFraction:)``.
    mutating func replace(_ position: Int, with item: BulkItem, keysStored: Bool) {
        wasted += Int(lengths[position] == Self.cleared ? 0 : lengths[position])
        let (offset, length) = store(item, keysStored: keysStored)
        offsets[position] = offset
        lengths[position] = length
    }

    /// Bytes of replaced or cleared records still in the buffer.
    var wastedBytes: Int { wasted }

    mutating func clear(_ position: Int) {
        wasted += Int(lengths[position] == Self.cleared ? 0 : lengths[position])
        lengths[position] = Self.cleared
        offsets[position] = 0
    }

    /// A copy holding only the entries at `order`, in that order, without waste (and, with `spareFraction`
    /// n, room for 1/n more bytes).
    func reordered(_ order: [Int], spareFraction: Int = 0) -> PayloadArena {
        var total = 0
        for position in order where lengths[position] != Self.cleared { total += Int(lengths[position]) }
        var fresh = PayloadArena()
        // Records are copied as they are, so their shape codes keep their meaning.
        fresh.shapes = shapes
        // The per-entry arrays get the same spare room as the bytes (see `KeyArena.reordered`).
        fresh.offsets.reserveCapacity(withSpareRoom(order.count, spareFraction: spareFraction))
        fresh.lengths.reserveCapacity(withSpareRoom(order.count, spareFraction: spareFraction))
        fresh.bytes = [UInt8](unsafeUninitializedCapacity: withSpareRoom(total, spareFraction: spareFraction)) {
            target, initialized in
            var cursor = 0
            bytes.withUnsafeBytes { old in
                for position in order {
                    let length = lengths[position]
                    guard length != Self.cleared else {
                        fresh.offsets.append(0)
                        fresh.lengths.append(Self.cleared)
                        continue
                    }
                    if length > 0 {
                        UnsafeMutableRawPointer(target.baseAddress! + cursor).copyMemory(
                            from: old.baseAddress! + Int(offsets[position]), byteCount: Int(length))
                    }
                    fresh.offsets.append(UInt64(cursor))
                    fresh.lengths.append(length)
                    cursor += Int(length)
                }
            }
            initialized = cursor
        }
        return fresh
    }

    private mutating func store(_ item: BulkItem, keysStored: Bool) -> (UInt64, UInt32) {
        let offset = bytes.count
        if !keysStored {
            Self.appendVarint(item.bulkId.utf8.count, to: &bytes)
            ByteKeys.withBytes(item.bulkId) { bytes.append(contentsOf: $0) }
            Self.appendOptional(item.status, to: &bytes)
            item.withUpdatedOnUTF8 { Self.appendOptional($0, to: &bytes) }
        }
        item.withCreatedOnUTF8 { Self.appendOptional($0, to: &bytes) }
        let shape = item.rawJSON.withUnsafeBytes { raw in Self.withValues(of: item) { shapeCode(raw, $0) } }
        Self.appendVarint(shape, to: &bytes)
        if shape == 0 { bytes.append(contentsOf: item.rawJSON) }
        let length = bytes.count - offset
        precondition(length < Int(Self.cleared), "PayloadArena: an item of 4 GiB")
        return (UInt64(offset), UInt32(length))
    }

    /// 1 + the index of the shape `raw` is, filled with `values` (learning a new one when there is room),
    /// or 0 when the bytes must be kept.
    private mutating func shapeCode(_ raw: UnsafeRawBufferPointer, _ values: ItemShape.Values) -> Int {
        for (index, shape) in shapes.enumerated() where shape.matches(raw, values) { return index + 1 }
        guard shapes.count < Self.maximumShapes, failedShapes < Self.maximumFailedShapes else { return 0 }
        guard let shape = ItemShape.derive(from: raw, values) else {
            failedShapes += 1
            return 0
        }
        shapes.append(shape)
        return shapes.count
    }

    /// Calls `body` with `item`'s field values as bytes.
    private static func withValues<R>(of item: BulkItem, _ body: (ItemShape.Values) -> R) -> R {
        ByteKeys.withBytes(item.bulkId) { bulkId in
            item.withCreatedOnUTF8 { createdOn in
                item.withUpdatedOnUTF8 { updatedOn in
                    guard let status = item.status else {
                        return body(ItemShape.Values(bulkId: bulkId, createdOn: createdOn, updatedOn: updatedOn))
                    }
                    return ByteKeys.withBytes(status) { status in
                        body(
                            ItemShape.Values(bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn)
                        )
                    }
                }
            }
        }
    }

    private static func appendOptional(_ text: String?, to bytes: inout [UInt8]) {
        guard let text else { return appendOptional(nil as UnsafeRawBufferPointer?, to: &bytes) }
        ByteKeys.withBytes(text) { appendOptional($0, to: &bytes) }
    }

    private static func appendOptional(_ text: UnsafeRawBufferPointer?, to bytes: inout [UInt8]) {
        guard let text else {
            bytes.append(0)
            return
        }
        appendVarint(text.count + 1, to: &bytes)
        bytes.append(contentsOf: text)
    }

    private static func appendVarint(_ value: Int, to bytes: inout [UInt8]) {
        var value = UInt(value)
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// Reads records; `offset` moves past what was read.
    private struct Reader {
        let base: UnsafeRawPointer
        var offset: Int

        mutating func varint() -> Int {
            var value = 0
            var shift = 0
            while true {
                let byte = base.load(fromByteOffset: offset, as: UInt8.self)
                offset += 1
                value |= Int(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
        }

        mutating func bytes(length: Int) -> UnsafeRawBufferPointer {
            defer { offset += length }
            return UnsafeRawBufferPointer(start: base + offset, count: length)
        }

        mutating func string(length: Int) -> String {
            String(decoding: bytes(length: length), as: UTF8.self)
        }

        mutating func optional() -> String? {
            let code = varint()
            return code == 0 ? nil : string(length: code - 1)
        }
    }

    private func withReader<R>(_ position: Int, _ body: (inout Reader, _ end: Int) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { raw in
            var reader = Reader(base: raw.baseAddress!, offset: Int(offsets[position]))
            return try body(&reader, Int(offsets[position]) + Int(lengths[position]))
        }
    }

    /// Rebuilds the live entry at `position`; the key fields come from `keys` when it has a copy.
    ///
    /// An entry kept as a shape (``ItemShape``) is rendered straight into the item's raw JSON, and the item's
    /// timestamps point into it (``BulkItem/Text/inRaw(offset:count:)``) instead of being `String`s of their
    /// own: a steady 100k diff rebuilds an item for each operation that expires (~1,000; ~2,000 before the absence
    /// counters were written alone), and the two `String`s and the copy of the rendered bytes were three of their
    /// five allocations. `bulkwatch-bench diff --sizes 100000 --runs 41`, three alternated pairs: steady 7.49 /
    /// 7.24 / 7.25 → 6.76 / 6.79 / 6.93 ms.
    func item(at position: Int, keys: KeyArena) -> BulkItem {
        withFields(at: position, keys: keys) { values, layout, stored in
            func text(_ bytes: UnsafeRawBufferPointer?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }
            let bulkId = String(decoding: values.bulkId, as: UTF8.self)
            guard let layout else {
                return BulkItem(
                    bulkId: bulkId, status: text(values.status), createdOn: text(values.createdOn),
                    updatedOn: text(values.updatedOn), rawJSON: ArraySlice(stored))
            }
            var placed = ItemShape.Placed()
            let raw = [UInt8](unsafeUninitializedCapacity: layout.length(values)) { target, initialized in
                placed = layout.render(values, into: UnsafeMutableRawBufferPointer(target))
                initialized = target.count
            }
            func inRaw(_ offset: Int?, _ value: UnsafeRawBufferPointer?) -> BulkItem.Text {
                guard let value else { return .absent }
                guard let offset else { return .text(String(decoding: value, as: UTF8.self)) }
                return .inRaw(offset: UInt32(offset), count: UInt32(value.count))
            }
            return BulkItem(
                bulkId: bulkId, status: text(values.status), createdOn: inRaw(placed.createdOn, values.createdOn),
                updatedOn: inRaw(placed.updatedOn, values.updatedOn), rawJSON: raw[...])
        }
    }

    /// Calls `body` with the live entry's fields as bytes of the arenas, the key fields from `keys` when it
    /// has a copy: what the store encodes, without building a `String` or an array per entry.
    func withEntryBytes<R>(at position: Int, keys: KeyArena, _ body: (EntryBytes) throws -> R) rethrows -> R {
        try withFields(at: position, keys: keys) { values, layout, stored in
            func entry(_ raw: UnsafeRawBufferPointer) -> EntryBytes {
                EntryBytes(
                    bulkId: values.bulkId, status: values.status, createdOn: values.createdOn,
                    updatedOn: values.updatedOn, rawJSON: raw)
            }
            guard let layout else { return try body(entry(stored)) }
            return try withUnsafeTemporaryAllocation(byteCount: layout.length(values), alignment: 1) { raw in
                layout.render(values, into: raw)
                return try body(entry(UnsafeRawBufferPointer(raw)))
            }
        }
    }

    /// Calls `body` with the live entry's fields as bytes of the arenas (the key fields from `keys` when it has a
    /// copy) and either the shape that renders its raw JSON or, with none, the raw JSON's bytes as stored.
    private func withFields<R>(
        at position: Int, keys: KeyArena,
        _ body: (ItemShape.Values, _ layout: ItemShape?, _ stored: UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        try withReader(position) { reader, end in
            func optional() -> UnsafeRawBufferPointer? {
                let code = reader.varint()
                return code == 0 ? nil : reader.bytes(length: code - 1)
            }
            func rest(
                _ bulkId: UnsafeRawBufferPointer, _ status: UnsafeRawBufferPointer?,
                _ updatedOn: UnsafeRawBufferPointer?
            ) throws -> R {
                let createdOn = optional()
                let shape = reader.varint()
                let values = ItemShape.Values(
                    bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn)
                guard shape > 0 else { return try body(values, nil, reader.bytes(length: end - reader.offset)) }
                return try body(values, shapes[shape - 1], UnsafeRawBufferPointer(start: nil, count: 0))
            }
            if let result = try keys.withFieldBytes(at: position, { try rest($0, $1, $2) }) { return result }
            let bulkId = reader.bytes(length: reader.varint())
            let status = optional()
            let updatedOn = optional()
            return try rest(bulkId, status, updatedOn)
        }
    }

    /// The key fields of a live long-form entry (one ``KeyArena`` has no copy of).
    func longKeyFields(at position: Int) -> (bulkId: String, status: String?, updatedOn: String?) {
        withReader(position) { reader, _ in
            let bulkId = reader.string(length: reader.varint())
            return (bulkId, reader.optional(), reader.optional())
        }
    }

    /// Whether the long-form entry at `position` is live and has the id `id`.
    func longIdEquals(_ position: Int, _ id: UnsafeRawBufferPointer) -> Bool {
        guard lengths[position] != Self.cleared else { return false }
        return withReader(position) { reader, _ in
            let length = reader.varint()
            return length == id.count && ByteKeys.equal(reader.bytes(length: length), id)
        }
    }
}
