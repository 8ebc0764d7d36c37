#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One bulk operation exactly as DruID reported it.
///
/// The four documented fields are extracted for change detection; everything else stays in
/// ``rawJSON``, the item's object bytes as received, so unknown fields pass through to events
/// untouched. `rawJSON` is usually a slice of the whole response body: keeping slices instead of
/// copying each object is what lets a 100k-item poll decode without 100k extra allocations.
///
/// The two timestamps are 24 bytes each, too long for an inline `String`, so building them cost two
/// heap allocations per item on every poll (and two frees after it), although almost every item is
/// unchanged and only ever compared. The decoder therefore records where they sit in ``rawJSON``
/// (``Text/inRaw(offset:count:)``), the differ and the store read those bytes directly
/// (``withUpdatedOnUTF8(_:)``), and a `String` is built only when someone asks for ``createdOn`` or
/// ``updatedOn``.
package struct BulkItem: Sendable, Equatable {
    /// Where a scalar field's value is kept.
    package enum Text: Sendable {
        case absent
        /// Bytes of ``rawJSON`` that are the value as they stand (a string without escapes, or a literal):
        /// `offset` counts from `rawJSON.startIndex`.
        case inRaw(offset: UInt32, count: UInt32)
        case text(String)

        init(_ value: String?) {
            self = value.map(Text.text) ?? .absent
        }
    }

    /// Identity of the operation. Never empty: items without one are skipped by the decoder.
    package var bulkId: String
    package var status: String?
    private var createdOnText: Text
    private var updatedOnText: Text
    private var raw: ArraySlice<UInt8>

    package var createdOn: String? {
        get { string(createdOnText) }
        set { createdOnText = Text(newValue) }
    }

    package var updatedOn: String? {
        get { string(updatedOnText) }
        set { updatedOnText = Text(newValue) }
    }

    /// The item's JSON object, byte for byte as received (unknown fields included). Replacing it turns
    /// timestamps that pointed into the old bytes into strings first.
    package var rawJSON: ArraySlice<UInt8> {
        get { raw }
        set {
            createdOnText = Text(createdOn)
            updatedOnText = Text(updatedOn)
            raw = newValue
        }
    }

    package init(
        bulkId: String,
        status: String? = nil,
        createdOn: String? = nil,
        updatedOn: String? = nil,
        rawJSON: ArraySlice<UInt8>
    ) {
        self.bulkId = bulkId
        self.status = status
        self.createdOnText = Text(createdOn)
        self.updatedOnText = Text(updatedOn)
        self.raw = rawJSON
    }

    /// The decoder's form: timestamps as they are found (``Text/inRaw(offset:count:)`` must lie inside `rawJSON`).
    package init(bulkId: String, status: String?, createdOn: Text, updatedOn: Text, rawJSON: ArraySlice<UInt8>) {
        self.bulkId = bulkId
        self.status = status
        self.createdOnText = createdOn
        self.updatedOnText = updatedOn
        self.raw = rawJSON
    }

    /// Calls `body` with the UTF-8 bytes of `updatedOn`, or nil when there is none, without building a `String`.
    @inline(__always)
    package func withUpdatedOnUTF8<R>(_ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
        try withUTF8(of: updatedOnText, body)
    }

    /// Calls `body` with the UTF-8 bytes of `createdOn`, or nil when there is none, without building a `String`.
    @inline(__always)
    package func withCreatedOnUTF8<R>(_ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
        try withUTF8(of: createdOnText, body)
    }

    /// The UTF-8 length of `updatedOn`, nil when there is none.
    package var updatedOnUTF8Count: Int? { Self.count(of: updatedOnText) }
    /// The UTF-8 length of `createdOn`, nil when there is none.
    package var createdOnUTF8Count: Int? { Self.count(of: createdOnText) }

    // MARK: The hot path, through pointers
    //
    // The decoder builds, and the differ reads, 100k items per poll from other modules. Calling an
    // initializer or a method of an item across the module boundary copied the whole item first (a retain
    // and a release of each of its references, through the generic value witnesses) and made the calls
    // generic. These entry points take the array or a pointer, so the item is built in place and read
    // field by field here, where the layout is known.

    /// Appends an item in the decoder's form: timestamps as ``Text``, built in place in `items`.
    package static func appendDecoded(
        to items: inout [BulkItem], bulkId: consuming String, status: consuming String?, createdOn: consuming Text,
        updatedOn: consuming Text, rawJSON: consuming ArraySlice<UInt8>
    ) {
        items.append(
            BulkItem(bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn, rawJSON: rawJSON))
    }

    /// `updatedOn`'s UTF-8 length, nil when there is none.
    package static func updatedOnUTF8Count(of item: UnsafePointer<BulkItem>) -> Int? {
        count(of: item.pointee.updatedOnText)
    }

    /// Whether the first bytes of `stored` are exactly `updatedOn`'s (the caller has checked the lengths);
    /// true when the item has none.
    package static func updatedOn(of item: UnsafePointer<BulkItem>, isPrefixOf stored: UnsafeRawBufferPointer) -> Bool {
        switch item.pointee.updatedOnText {
        case .absent:
            return true
        case .inRaw(let offset, let count):
            return item.pointee.raw.withUnsafeBytes { raw in
                isPrefix(UnsafeRawBufferPointer(rebasing: raw[Int(offset)..<(Int(offset) + Int(count))]), of: stored)
            }
        case .text(var value):
            return value.withUTF8 { isPrefix(UnsafeRawBufferPointer($0), of: stored) }
        }
    }

    /// One `memcmp`: a generic `elementsEqual` compared byte by byte, 1 % of a steady 1M poll's samples
    /// (this runs once per listed item).
    @inline(__always)
    private static func isPrefix(_ value: UnsafeRawBufferPointer, of stored: UnsafeRawBufferPointer) -> Bool {
        guard stored.count >= value.count else { return false }
        guard let valueBase = value.baseAddress, let storedBase = stored.baseAddress, !value.isEmpty else {
            return true
        }
        return memcmp(valueBase, storedBase, value.count) == 0
    }

    package static func == (lhs: BulkItem, rhs: BulkItem) -> Bool {
        lhs.bulkId == rhs.bulkId && lhs.status == rhs.status && lhs.createdOn == rhs.createdOn
            && lhs.updatedOn == rhs.updatedOn && lhs.raw == rhs.raw
    }

    private func string(_ text: Text) -> String? {
        switch text {
        case .absent: return nil
        case .text(let value): return value
        case .inRaw(let offset, let count):
            let start = raw.startIndex + Int(offset)
            return String(decoding: raw[start..<(start + Int(count))], as: UTF8.self)
        }
    }

    @inline(__always)
    private func withUTF8<R>(of text: Text, _ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
        switch text {
        case .absent:
            return try body(nil)
        case .text(var value):
            return try value.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
        case .inRaw(let offset, let count):
            return try raw.withUnsafeBytes { bytes in
                try body(UnsafeRawBufferPointer(rebasing: bytes[Int(offset)..<(Int(offset) + Int(count))]))
            }
        }
    }

    private static func count(of text: Text) -> Int? {
        switch text {
        case .absent: nil
        case .text(let value): value.utf8.count
        case .inRaw(_, let count): Int(count)
        }
    }
}

/// A complete, well-formed 200 answer of the bulk-status endpoint.
package struct BulkListing: Sendable {
    /// Items in the order DruID sent them (duplicates are resolved later, by the differ).
    package var items: [BulkItem]
    /// Items that had no usable `bulkId` (missing, null, empty or not a scalar): skipped, never a crash.
    package var skippedWithoutId: Int
    /// `result.status` when present.
    package var resultStatus: Int?
    /// `result.message` when present.
    package var resultMessage: String?

    package init(items: [BulkItem], skippedWithoutId: Int = 0, resultStatus: Int? = nil, resultMessage: String? = nil) {
        self.items = items
        self.skippedWithoutId = skippedWithoutId
        self.resultStatus = resultStatus
        self.resultMessage = resultMessage
    }
}
