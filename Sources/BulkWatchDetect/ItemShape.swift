/// The layout of an item's raw JSON with its field values cut out: the literal bytes before, between and
/// after the values, and which field fills each gap.
///
/// An upstream renders every item of a listing the same way, so the raw JSON a snapshot keeps for each item
/// (for the `data` of its events) is, byte for byte, one layout with the item's own `bulkId`, `status`,
/// `createdOn` and `updatedOn` spliced in: ~120 of the ~150 bytes an item took in ``PayloadArena``, and the
/// fields are kept anyway. An entry whose raw JSON is exactly one of a few known shapes filled with its
/// fields keeps only the shape's number; any other (an escaped value, an extra field, another key order)
/// keeps its bytes. Either way the rebuilt raw JSON is the bytes DruID sent.
struct ItemShape: Sendable, Equatable {
    enum Field: UInt8, CaseIterable, Sendable {
        case bulkId, status, createdOn, updatedOn
    }

    /// One item's field values as bytes (nil: absent).
    struct Values {
        var bulkId: UnsafeRawBufferPointer
        var status: UnsafeRawBufferPointer?
        var createdOn: UnsafeRawBufferPointer?
        var updatedOn: UnsafeRawBufferPointer?

        subscript(field: Field) -> UnsafeRawBufferPointer? {
            switch field {
            case .bulkId: bulkId
            case .status: status
            case .createdOn: createdOn
            case .updatedOn: updatedOn
            }
        }
    }

    /// The fields in the order their values appear.
    private let fields: [Field]
    /// The bytes before the first value, between two values, after the last: one more than `fields`.
    private let literals: [[UInt8]]

    /// The shape of `raw`, found by cutting each present field's value out of it where it stands as a JSON
    /// string (between quotes, not overlapping another); nil when a value is not found so (an escaped one).
    /// Filled with `values` again, the shape gives back exactly `raw`. When two values are equal (an item
    /// created and never updated) the first found may be the other's place: the shape is still exact for
    /// this item, and an item it misplaces fails ``matches(_:_:)`` and makes a shape of its own.
    static func derive(from raw: UnsafeRawBufferPointer, _ values: Values) -> ItemShape? {
        var cuts: [(start: Int, end: Int, field: Field)] = []
        for field in Field.allCases {
            guard let value = values[field] else { continue }
            var from = 0
            var placed = false
            while let start = quotedOccurrence(of: value, in: raw, from: from) {
                let end = start + value.count
                // Quotes included: two cuts never share a quote.
                if cuts.allSatisfy({ end + 1 <= $0.start - 1 || start - 1 >= $0.end + 1 }) {
                    cuts.append((start, end, field))
                    placed = true
                    break
                }
                from = start
            }
            guard placed else { return nil }
        }
        cuts.sort { $0.start < $1.start }
        var literals: [[UInt8]] = []
        var cursor = 0
        for cut in cuts {
            literals.append(Array(raw[cursor..<cut.start]))
            cursor = cut.end
        }
        literals.append(Array(raw[cursor..<raw.count]))
        return ItemShape(fields: cuts.map(\.field), literals: literals)
    }

    /// Whether this shape filled with `values` is exactly `raw`.
    func matches(_ raw: UnsafeRawBufferPointer, _ values: Values) -> Bool {
        var cursor = 0
        func consume(_ piece: UnsafeRawBufferPointer) -> Bool {
            guard raw.count - cursor >= piece.count,
                ByteKeys.equal(UnsafeRawBufferPointer(rebasing: raw[cursor...]), piece)
            else { return false }
            cursor += piece.count
            return true
        }
        for (index, field) in fields.enumerated() {
            guard let value = values[field] else { return false }
            guard literals[index].withUnsafeBytes({ consume($0) }), consume(value) else { return false }
        }
        return literals[fields.count].withUnsafeBytes { consume($0) } && cursor == raw.count
    }

    /// The length of the raw JSON this shape gives with `values` (each field it uses must be present).
    func length(_ values: Values) -> Int {
        var total = 0
        for literal in literals { total += literal.count }
        for field in fields { total += values[field]?.count ?? 0 }
        return total
    }

    /// Where ``render(_:into:)`` put the timestamps' values in the raw JSON (nil: the shape has no such field).
    struct Placed {
        var createdOn: Int?
        var updatedOn: Int?
    }

    /// Writes the raw JSON this shape gives with `values` into `target`, which is ``length(_:)`` long, and says
    /// where the timestamps went (a rebuilt item points at them instead of holding `String`s of its own).
    @discardableResult
    func render(_ values: Values, into target: UnsafeMutableRawBufferPointer) -> Placed {
        var cursor = 0
        var placed = Placed()
        func put(_ piece: UnsafeRawBufferPointer) {
            guard piece.count > 0 else { return }
            (target.baseAddress! + cursor).copyMemory(from: piece.baseAddress!, byteCount: piece.count)
            cursor += piece.count
        }
        for (index, field) in fields.enumerated() {
            literals[index].withUnsafeBytes { put($0) }
            if field == .createdOn { placed.createdOn = cursor }
            if field == .updatedOn { placed.updatedOn = cursor }
            if let value = values[field] { put(value) }
        }
        literals[fields.count].withUnsafeBytes { put($0) }
        return placed
    }

    /// The offset of the first `"value"` in `raw` at or after `from`, pointing at the value (past the quote).
    private static func quotedOccurrence(
        of value: UnsafeRawBufferPointer, in raw: UnsafeRawBufferPointer, from: Int
    ) -> Int? {
        let quote = UInt8(ascii: "\"")
        var start = from
        while start + value.count + 1 < raw.count {
            defer { start += 1 }
            guard raw[start] == quote, raw[start + value.count + 1] == quote else { continue }
            if ByteKeys.equal(UnsafeRawBufferPointer(rebasing: raw[(start + 1)...]), value) {
                return start + 1
            }
        }
        return nil
    }
}
