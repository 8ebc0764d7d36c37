import BulkWatchSupport
import Dispatch
import Foundation
import Synchronization

/// Byte constants, named so the scanner reads like the grammar.
private enum Byte {
    static let quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C
    static let slash: UInt8 = 0x2F
    static let comma: UInt8 = 0x2C
    static let colon: UInt8 = 0x3A
    static let openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D
    static let openBracket: UInt8 = 0x5B
    static let closeBracket: UInt8 = 0x5D
    static let minus: UInt8 = 0x2D
    static let plus: UInt8 = 0x2B
    static let dot: UInt8 = 0x2E
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let lineFeed: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
}

/// Where one of the extracted fields sits in the body; strings are built only once the item is
/// complete, so a duplicated key costs nothing and the last occurrence wins for free.
private struct FieldSlot {
    enum Kind: UInt8 {
        /// Missing, `null`, object or array.
        case none
        /// A string without escapes: the bytes between the quotes are the value.
        case plainString
        /// A string with escapes: must be unescaped.
        case escapedString
        /// A number or boolean: its literal text is the value.
        case literal
    }

    var kind: Kind = .none
    var start: Int = 0
    var end: Int = 0
}

/// The single-pass scanner behind ``BulkListDecoder``. Works on a raw pointer into the body (bounds
/// are checked by hand against `count`) and on `body` only to hand out ``BulkItem/rawJSON`` slices.
struct BulkBodyParser {
    private let base: UnsafePointer<UInt8>
    private let count: Int
    private let body: [UInt8]
    private var position = 0
    /// A `content` array of at least this many bytes is parsed in two halves at once (``SecondHalf``).
    private let parallelFrom: Int
    /// What a reader parsed of the body while it arrived, taken over by the first `content` array that starts
    /// where it did (``ArrivingContent``); nil once taken.
    private var arrived: ArrivingContent?
    /// Whether items in the compact shape take the fast path (``compactItem()``); tests turn it off to compare.
    private let compactItems: Bool

    init(
        base: UnsafePointer<UInt8>, count: Int, body: [UInt8], parallelFrom: Int = .max,
        arrived: ArrivingContent? = nil, compactItems: Bool = true
    ) {
        self.base = base
        self.count = count
        self.body = body
        self.parallelFrom = parallelFrom
        self.arrived = arrived
        self.compactItems = compactItems
    }

    // MARK: Document

    private enum ContentState {
        case missing, null, notArray, array
    }

    mutating func parseDocument() throws(BulkDecodingError) -> BulkListing {
        if count >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF {
            position = 3
        }
        skipWhitespace()
        guard position < count else { throw error(.truncated, "no JSON value") }
        guard base[position] == Byte.openBrace else {
            if base[position] == Byte.openBracket || base[position] == Byte.quote || base[position] == 0x6E
                || base[position] == 0x74 || base[position] == 0x66 || isNumberStart(base[position])
            {
                throw error(.notAnObject, "top level is not an object")
            }
            throw unexpected("expected '{'")
        }
        let documentStart = position
        position += 1

        var listing = BulkListing(decoding: body, expectedItems: 0)
        var skipped = 0
        var content = ContentState.missing
        var resultStatusLiteral: FieldSlot?
        var resultStatusOffset = 0
        var resultMessage = FieldSlot()

        skipWhitespace()
        if try peek() == Byte.closeBrace {
            position += 1
        } else {
            while true {
                let key = try parseKey()
                if keyEquals(key, "content") {
                    switch try peek() {
                    case Byte.openBracket:
                        listing.removeAllItems()
                        skipped = 0
                        try parseContent(into: &listing, skipped: &skipped)
                        content = .array
                    case 0x6E:  // n
                        try expectLiteral("null")
                        content = .null
                    default:
                        try skipValue(depth: 1)
                        content = .notArray
                    }
                } else if keyEquals(key, "result") {
                    if try peek() == Byte.openBrace {
                        let slots = try parseResult()
                        resultStatusLiteral = slots.status
                        resultStatusOffset = slots.statusOffset
                        resultMessage = slots.message
                    } else {
                        try skipValue(depth: 1)
                        resultStatusLiteral = nil
                        resultMessage = FieldSlot()
                    }
                } else {
                    try skipValue(depth: 1)
                }
                if try endOfMember(close: Byte.closeBrace, what: "'}'") { break }
            }
        }
        skipWhitespace()
        if position < count {
            throw error(.trailingData, "data after the closing '}'")
        }

        switch content {
        case .missing, .null:
            throw BulkDecodingError(code: .contentMissing, offset: documentStart, detail: "no 'content' array")
        case .notArray:
            throw BulkDecodingError(code: .contentNotArray, offset: documentStart, detail: "'content' is not an array")
        case .array:
            break
        }

        var resultStatus: Int?
        if let slot = resultStatusLiteral {
            let text = string(slot) ?? ""
            if let value = Double(text) {
                if value >= 400 {
                    throw BulkDecodingError(
                        code: .errorStatus, offset: resultStatusOffset, detail: "result.status \(text.prefix(24))")
                }
                if let exact = Int(exactly: value) { resultStatus = exact }
            }
        }
        listing.skippedWithoutId = skipped
        listing.resultStatus = resultStatus
        listing.resultMessage = string(resultMessage)
        return listing
    }

    /// Reads `result`; `status` is kept only when it is a number, as its literal text.
    private mutating func parseResult() throws(BulkDecodingError) -> (
        status: FieldSlot?, statusOffset: Int, message: FieldSlot
    ) {
        position += 1
        var status: FieldSlot?
        var statusOffset = 0
        var message = FieldSlot()
        skipWhitespace()
        if try peek() == Byte.closeBrace {
            position += 1
            return (nil, 0, message)
        }
        while true {
            let key = try parseKey()
            if keyEquals(key, "status") {
                statusOffset = position
                let isNumber = isNumberStart(try peek())
                let slot = try parseField(depth: 2)
                status = isNumber ? slot : nil
            } else if keyEquals(key, "message") {
                message = try parseField(depth: 2)
            } else {
                try skipValue(depth: 2)
            }
            if try endOfMember(close: Byte.closeBrace, what: "'}'") { break }
        }
        return (status, statusOffset, message)
    }

    private mutating func parseContent(into items: inout BulkListing, skipped: inout Int) throws(BulkDecodingError) {
        position += 1
        skipWhitespace()
        // Whether this array starts at the byte the reader of the arriving body started from.
        let takesOver = arrived.map { position == $0.start } ?? false
        if items.count == 0, !takesOver {
            // Generous on purpose: a large array is mapped fresh and only the pages actually written
            // become resident, while growing past the estimate would copy the whole array into one
            // twice its size. 60 bytes is less than any item with a bulkId and a status or timestamp.
            items = BulkListing(decoding: body, expectedItems: count / 60 + 4)
        }
        if try peek() == Byte.closeBracket {
            position += 1
            return
        }
        var second: SecondHalf?
        var tail: (start: Int, items: BulkListing, skipped: Int, end: Int)?
        // Whether `position` is just after an element rather than at one (where the reader stopped).
        var separatorDue = false
        if takesOver, let arrived {
            self.arrived = nil
            // This array starts at the byte the reader started from: what it parsed is what this loop would have.
            tail = try takeOver(arrived, into: &items, skipped: &skipped)
            if arrived.closedArray { return }
            separatorDue = arrived.separatorDue
        } else if count - position >= parallelFrom {
            second = splitPoint(from: position).map { SecondHalf(self, from: $0) }
        }
        defer { _ = second?.finish() }
        while true {
            if !separatorDue {
                // This parse reached the very byte where another part started, an element of this array (parsed by
                // the second half's thread, or by this one while the reader finished): that part holds the rest
                // exactly as this loop would have parsed it.
                let rest: (items: BulkListing, skipped: Int, end: Int)? =
                    if let tail, position == tail.start {
                        (items: tail.items, skipped: tail.skipped, end: tail.end)
                    } else if let second, position == second.start { second.finish() } else { nil }
                if let rest {
                    items.append(contentsOf: rest.items)
                    skipped += rest.skipped
                    position = rest.end
                    return
                }
                if try !parseElement(appendingTo: &items) {
                    skipped += 1
                }
            }
            separatorDue = false
            if try endOfMember(close: Byte.closeBracket, what: "']'") { break }
        }
    }

    /// Takes over what the reader of the arriving body parsed (`arrived`, starting at `position`): asks it to stop
    /// in the middle of what is left, parses from there to the end on this thread meanwhile, then appends the
    /// reader's items and moves to where it stopped. Returns the part parsed here, for the caller to append when
    /// it gets to its first byte (it does at once when the reader stopped exactly there).
    private mutating func takeOver(
        _ arrived: ArrivingContent, into items: inout BulkListing, skipped: inout Int
    ) throws(BulkDecodingError) -> (start: Int, items: BulkListing, skipped: Int, end: Int)? {
        let reached = max(position, arrived.progress)
        let split = count - reached >= arrived.smallestSplit ? splitPoint(from: reached) : nil
        arrived.stop(at: split ?? Int.max)
        var tail: (start: Int, items: BulkListing, skipped: Int, end: Int)?
        if let split {
            var other = self
            other.arrived = nil
            // A failure here is found again, at its true offset, by the loop that reaches it.
            if let part = try? other.parseElements(from: split) {
                tail = (split, part.items, part.skipped, part.end)
            }
        }
        arrived.finish()
        let found = arrived.takeItems()
        items = found.listing
        items.adoptBody(body)
        skipped += found.skipped
        position = arrived.position
        return tail
    }

    /// Parses one element of `content` at `position`; false when it is an item without a usable `bulkId`.
    @inline(__always)
    private mutating func parseElement(appendingTo items: inout some ParsedItems) throws(BulkDecodingError) -> Bool {
        guard try peek() == Byte.openBrace else {
            if isValueStart(base[position]) {
                throw error(.itemNotObject, "element of 'content' is not an object")
            }
            throw unexpected("expected an item object")
        }
        return try parseItem(appendingTo: &items)
    }

    /// Where a second thread could start parsing `content`'s elements: the first `{` after the middle of the body
    /// from `start` that follows a `}` and a `,` (whitespace allowed). A guess: it may lie inside a string
    /// or a nested value, and then the first half never reaches it and parses on alone (``parseContent``).
    private func splitPoint(from start: Int) -> Int? {
        var index = start + (count - start) / 2
        let limit = min(count, index + (1 << 16))
        while index < limit {
            defer { index += 1 }
            guard base[index] == Byte.closeBrace else { continue }
            let comma = afterWhitespace(index + 1, limit: limit)
            guard comma < limit, base[comma] == Byte.comma else { continue }
            let open = afterWhitespace(comma + 1, limit: limit)
            if open < limit, base[open] == Byte.openBrace { return open }
        }
        return nil
    }

    /// The first offset from `start` (up to `limit`) that is not JSON whitespace.
    private func afterWhitespace(_ start: Int, limit: Int) -> Int {
        var index = start
        while index < limit {
            switch base[index] {
            case Byte.space, Byte.lineFeed, Byte.carriageReturn, Byte.tab: index += 1
            default: return index
            }
        }
        return index
    }

    /// Parses `content`'s elements from `start` (a `{`) to the end of the array, into a listing of their own:
    /// the second half's work (``SecondHalf``). Returns them, the items skipped, and the offset after the `]`.
    fileprivate mutating func parseElements(
        from start: Int
    ) throws(BulkDecodingError) -> (items: BulkListing, skipped: Int, end: Int) {
        position = start
        var items = BulkListing(decoding: body, expectedItems: (count - start) / 60 + 4)
        var skipped = 0
        while true {
            if try !parseElement(appendingTo: &items) {
                skipped += 1
            }
            if try endOfMember(close: Byte.closeBracket, what: "']'") { break }
        }
        return (items, skipped, position)
    }

    // MARK: Items (the hot path)

    /// Parses one `{...}` element of `content` and appends it; false when it has no usable `bulkId`.
    /// An item whose fields need no unescaping is recorded as offsets into the body
    /// (``BulkListing/appendFound(raw:bulkId:status:createdOn:updatedOn:)``): no string, no slice.
    private mutating func parseItem(appendingTo items: inout some ParsedItems) throws(BulkDecodingError) -> Bool {
        if compactItems, let item = compactItem() {
            items.appendFound(
                raw: item.raw, bulkId: item.bulkId, status: item.status, createdOn: item.createdOn,
                updatedOn: item.updatedOn)
            return true
        }
        let itemStart = position
        position += 1
        var bulkId = FieldSlot()
        var status = FieldSlot()
        var createdOn = FieldSlot()
        var updatedOn = FieldSlot()

        skipWhitespace()
        if try peek() == Byte.closeBrace {
            position += 1
            return false
        }
        while true {
            guard try peek() == Byte.quote else { throw unexpected("expected a key") }
            position += 1
            let field: Int
            if let known = compactItemField() {
                field = known
            } else {
                let keyStart = position
                let escaped = try scanString()
                let keyEnd = position - 1
                skipWhitespace()
                guard try peek() == Byte.colon else { throw unexpected("expected ':'") }
                position += 1
                field = itemField(start: keyStart, end: keyEnd, escaped: escaped)
            }
            skipWhitespace()
            switch field {
            case 0: bulkId = try parseField(depth: 3)
            case 1: status = try parseField(depth: 3)
            case 2: createdOn = try parseField(depth: 3)
            case 3: updatedOn = try parseField(depth: 3)
            default: try skipValue(depth: 3)
            }
            skipWhitespace()
            guard position < count else { throw truncated() }
            let next = base[position]
            position += 1
            if next == Byte.comma {
                skipWhitespace()
                continue
            }
            if next == Byte.closeBrace { break }
            position -= 1
            throw unexpected("expected ',' or '}'")
        }

        guard bulkId.kind != .none, bulkId.end > bulkId.start else { return false }
        if bulkId.kind == .escapedString || status.kind == .escapedString || createdOn.kind == .escapedString
            || updatedOn.kind == .escapedString
        {
            guard let id = string(bulkId) else { return false }
            items.appendWhole(from: itemStart) {
                BulkItem(
                    bulkId: id, status: string(status), createdOn: text(createdOn, itemStart: itemStart),
                    updatedOn: text(updatedOn, itemStart: itemStart), rawJSON: body[itemStart..<position])
            }
            return true
        }
        items.appendFound(
            raw: itemStart..<position, bulkId: bulkId.start..<bulkId.end, status: range(status),
            createdOn: range(createdOn), updatedOn: range(updatedOn))
        return true
    }

    /// Where the four fields of an item in the compact shape lie (``compactItem()``).
    private struct CompactItem {
        let raw: Range<Int>
        let bulkId: Range<Int>
        let status: Range<Int>
        let createdOn: Range<Int>
        let updatedOn: Range<Int>
    }

    /// The shape the endpoint writes (and the simulator), `{"bulkId":"…","status":"…","createdOn":"…",
    /// "updatedOn":"…"}`: compact, in this order, nothing else, every value a string of printable ASCII without
    /// an escape, and a non-empty `bulkId`. Its keys and punctuation are compared as words and its values
    /// scanned eight bytes at a time, without the general loop's per-key dispatch, whitespace skips and bound
    /// checks. Returns nil for anything else, with `position` untouched, and the general path parses the item
    /// from its first byte; what it returns is exactly what that path would append for such an item (the
    /// decoder tests compare the two on every item shape of the corpus).
    ///
    /// Why: parsing the items is most of the fetch, and at a steady 100k poll the reader of the arriving body
    /// had half the body left to parse when the last byte arrived.
    @inline(__always)
    private mutating func compactItem() -> CompactItem? {
        let start = position
        guard word(at: start, is: Self.itemOpen) else { return nil }
        let idStart = start &+ Self.itemOpen.count
        guard let idEnd = plainStringEnd(from: idStart), idEnd > idStart,
            word(at: idEnd, is: Self.statusKey)
        else { return nil }
        let statusStart = idEnd &+ Self.statusKey.count
        guard let statusEnd = plainStringEnd(from: statusStart), word(at: statusEnd, is: Self.createdOnKey) else {
            return nil
        }
        let createdStart = statusEnd &+ Self.createdOnKey.count
        guard let createdEnd = plainStringEnd(from: createdStart), word(at: createdEnd, is: Self.updatedOnKey)
        else { return nil }
        let updatedStart = createdEnd &+ Self.updatedOnKey.count
        guard let updatedEnd = plainStringEnd(from: updatedStart), updatedEnd &+ 2 <= count,
            base[updatedEnd &+ 1] == Byte.closeBrace
        else { return nil }
        position = updatedEnd &+ 2
        return CompactItem(
            raw: start..<position, bulkId: idStart..<idEnd, status: statusStart..<statusEnd,
            createdOn: createdStart..<createdEnd, updatedOn: updatedStart..<updatedEnd)
    }

    /// Whether `item` (one element, alone) is in the compact shape: what the fast path takes, for tests.
    static func takesCompactPath(_ item: [UInt8]) -> Bool {
        item.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return false }
            var parser = BulkBodyParser(base: base, count: buffer.count, body: [])
            return parser.compactItem() != nil && parser.position == buffer.count
        }
    }

    /// A run of 9 to 16 bytes, as its first and last eight (little-endian; they overlap when shorter than 16).
    struct WordLiteral {
        let head: UInt64
        let tail: UInt64
        let count: Int
    }

    // The bytes of the compact shape's keys and punctuation as words; `CompactItemTests` checks them against the text.
    /// `{"bulkId":"`
    static let itemOpen = WordLiteral(head: 0x6449_6B6C_7562_227B, tail: 0x223A_2264_496B_6C75, count: 11)
    /// `","status":"`
    static let statusKey = WordLiteral(head: 0x7574_6174_7322_2C22, tail: 0x223A_2273_7574_6174, count: 12)
    /// `","createdOn":"`
    static let createdOnKey = WordLiteral(head: 0x7461_6572_6322_2C22, tail: 0x223A_226E_4F64_6574, count: 15)
    /// `","updatedOn":"`
    static let updatedOnKey = WordLiteral(head: 0x7461_6470_7522_2C22, tail: 0x223A_226E_4F64_6574, count: 15)

    /// Whether the bytes at `index` are `literal`'s.
    @inline(__always)
    private func word(at index: Int, is literal: WordLiteral) -> Bool {
        guard index &+ literal.count <= count else { return false }
        let raw = UnsafeRawPointer(base + index)
        return raw.loadUnaligned(as: UInt64.self).littleEndian == literal.head
            && raw.loadUnaligned(fromByteOffset: literal.count &- 8, as: UInt64.self).littleEndian == literal.tail
    }

    /// The offset of the quote that closes a string whose value starts at `start`, if the value is printable
    /// ASCII without an escape; nil at any other byte first, or at the end of the bytes at hand.
    @inline(__always)
    private func plainStringEnd(from start: Int) -> Int? {
        var index = skipPlainWords(from: start)
        while index < count {
            let byte = base[index]
            if byte == Byte.quote { return index }
            if byte == Byte.backslash || byte < 0x20 || byte >= 0x80 { return nil }
            index &+= 1
        }
        return nil
    }

    /// The common case, compact JSON: the bytes after the opening quote are exactly `bulkId":`,
    /// `status":`, `createdOn":` or `updatedOn":`. Matching them as words skips scanning the key and
    /// the colon; on a match `position` moves past the colon. Anything else (whitespace, escapes,
    /// other keys) returns nil without moving and takes the general path.
    @inline(__always)
    private mutating func compactItemField() -> Int? {
        guard position &+ 11 <= count else { return nil }
        let raw = UnsafeRawPointer(base + position)
        let head = raw.loadUnaligned(as: UInt64.self).littleEndian
        switch head {
        case 0x3A22_6449_6B6C_7562:  // bulkId":
            position &+= 8
            return 0
        case 0x3A22_7375_7461_7473:  // status":
            position &+= 8
            return 1
        case 0x4F64_6574_6165_7263, 0x4F64_6574_6164_7075:  // createdO, updatedO
            guard raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self).littleEndian == 0x226E,  // n"
                raw.load(fromByteOffset: 10, as: UInt8.self) == Byte.colon
            else { return nil }
            position &+= 11
            return head == 0x4F64_6574_6165_7263 ? 2 : 3
        default:
            return nil
        }
    }

    /// Which of the four item fields a key names: 0 bulkId, 1 status, 2 createdOn, 3 updatedOn, -1 other.
    /// Unescaped keys are compared as little-endian words (a byte loop here cost ~100 instructions per
    /// item); the constants are the names' bytes, checked by the conformance tests.
    @inline(__always)
    private func itemField(start: Int, end: Int, escaped: Bool) -> Int {
        if escaped {
            let key = unescapedBytes(start: start, end: end)
            for (index, name) in ["bulkId", "status", "createdOn", "updatedOn"].enumerated()
            where key.elementsEqual(name.utf8) {
                return index
            }
            return -1
        }
        let raw = UnsafeRawPointer(base + start)
        switch end - start {
        case 6:
            let head = raw.loadUnaligned(as: UInt32.self).littleEndian
            let tail = raw.loadUnaligned(fromByteOffset: 4, as: UInt16.self).littleEndian
            if head == 0x6B6C_7562 && tail == 0x6449 { return 0 }  // "bulk" "Id"
            if head == 0x7461_7473 && tail == 0x7375 { return 1 }  // "stat" "us"
        case 9:
            guard raw.load(fromByteOffset: 8, as: UInt8.self) == 0x6E else { return -1 }  // "n"
            let head = raw.loadUnaligned(as: UInt64.self).littleEndian
            if head == 0x4F64_6574_6165_7263 { return 2 }  // "createdO"
            if head == 0x4F64_6574_6164_7075 { return 3 }  // "updatedO"
        default:
            break
        }
        return -1
    }

    /// Reads a value in field position: scalars are recorded, containers validated and dropped.
    @inline(__always)
    private mutating func parseField(depth: Int) throws(BulkDecodingError) -> FieldSlot {
        guard position < count else { throw truncated() }
        let first = base[position]
        if first == Byte.quote {
            position += 1
            let start = position
            let escaped = try scanString()
            return FieldSlot(kind: escaped ? .escapedString : .plainString, start: start, end: position - 1)
        }
        let start = position
        switch first {
        case 0x6E:  // n
            try expectLiteral("null")
            return FieldSlot()
        case 0x74:  // t
            try expectLiteral("true")
        case 0x66:  // f
            try expectLiteral("false")
        case Byte.minus, Byte.zero...Byte.nine:
            try scanNumber()
        default:
            try skipValue(depth: depth)
            return FieldSlot()
        }
        return FieldSlot(kind: .literal, start: start, end: position)
    }

    // MARK: Strings

    /// Builds the value of a slot (already validated, so this cannot fail for a non-empty slot).
    @inline(__always)
    private func string(_ slot: FieldSlot) -> String? {
        switch slot.kind {
        case .none:
            return nil
        case .plainString, .literal:
            return String(
                decoding: UnsafeBufferPointer(start: base + slot.start, count: slot.end - slot.start), as: UTF8.self)
        case .escapedString:
            return String(decoding: unescapedBytes(start: slot.start, end: slot.end), as: UTF8.self)
        }
    }

    /// A timestamp's value where it lies in the item's bytes (no `String` built, see ``BulkItem/Text``);
    /// only an escaped one is unescaped into a `String` now.
    @inline(__always)
    private func text(_ slot: FieldSlot, itemStart: Int) -> BulkItem.Text {
        switch slot.kind {
        case .none:
            return .absent
        case .plainString, .literal:
            // An item of 4 GiB cannot be addressed by the offsets: keep its value as a string instead.
            guard slot.end - itemStart <= Int(UInt32.max) else { return .text(string(slot) ?? "") }
            return .inRaw(offset: UInt32(slot.start - itemStart), count: UInt32(slot.end - slot.start))
        case .escapedString:
            return .text(String(decoding: unescapedBytes(start: slot.start, end: slot.end), as: UTF8.self))
        }
    }

    /// The bytes of an unescaped value as they stand in the body, nil when the field is missing.
    @inline(__always)
    private func range(_ slot: FieldSlot) -> Range<Int>? {
        slot.kind == .none ? nil : slot.start..<slot.end
    }

    /// Scans a string body; `position` is just after the opening quote and ends just after the closing
    /// one. Validates UTF-8, escapes and control characters. Returns whether any escape was seen.
    @inline(__always)
    private mutating func scanString() throws(BulkDecodingError) -> Bool {
        var index = position
        var escaped = false
        while true {
            index = skipPlainWords(from: index)
            guard index < count else {
                position = count
                throw truncated()
            }
            let byte = base[index]
            if byte == Byte.quote {
                position = index &+ 1
                return escaped
            } else if byte == Byte.backslash {
                escaped = true
                index = try validateEscape(at: index)
            } else if byte >= 0x80 {
                index = try validateUTF8(at: index)
            } else if byte < 0x20 {
                position = index
                throw error(.invalidString, "unescaped control character in a string")
            } else {
                index &+= 1
            }
        }
    }

    /// From `start`, eight bytes at a time: the offset of the first byte that is a quote, a backslash, a control
    /// character or non-ASCII, or, if none comes first, of the last fewer than eight bytes, which the caller reads
    /// one by one. The scan of every string value (``scanString()``, ``plainStringEnd(from:)``).
    @inline(__always)
    private func skipPlainWords(from start: Int) -> Int {
        var index = start
        while index &+ 8 <= count {
            let flags = Self.specialBytes(UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
            if flags != 0 { return index &+ Int(flags.trailingZeroBitCount &>> 3) }
            index &+= 8
        }
        return index
    }

    /// High bit set in the lowest byte of `word` that is `"`, `\`, below 0x20 or above 0x7F (higher bytes
    /// may be flagged spuriously, which is why only the lowest is used).
    @inline(__always)
    private static func specialBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let quotes = word ^ (ones &* 0x22)
        let backslashes = word ^ (ones &* 0x5C)
        let hasQuote = (quotes &- ones) & ~quotes
        let hasBackslash = (backslashes &- ones) & ~backslashes
        let hasControl = (word &- ones &* 0x20) & ~word
        return (hasQuote | hasBackslash | hasControl | word) & (ones &* 0x80)
    }

    /// Validates the escape at `index` (a backslash); returns the index after it.
    private mutating func validateEscape(at index: Int) throws(BulkDecodingError) -> Int {
        guard index + 1 < count else {
            position = count
            throw truncated()
        }
        switch base[index + 1] {
        case Byte.quote, Byte.backslash, Byte.slash, 0x62, 0x66, 0x6E, 0x72, 0x74:  // " \ / b f n r t
            return index + 2
        case 0x75:  // u
            let unit = try hex4(at: index + 2)
            if unit >= 0xDC00 && unit <= 0xDFFF {
                position = index
                throw error(.invalidString, "lone low surrogate escape")
            }
            guard unit >= 0xD800 && unit <= 0xDBFF else { return index + 6 }
            guard index + 7 < count else {
                position = count
                throw truncated()
            }
            guard base[index + 6] == Byte.backslash && base[index + 7] == 0x75 else {
                position = index
                throw error(.invalidString, "lone high surrogate escape")
            }
            let low = try hex4(at: index + 8)
            guard low >= 0xDC00 && low <= 0xDFFF else {
                position = index
                throw error(.invalidString, "lone high surrogate escape")
            }
            return index + 12
        default:
            position = index
            throw error(.invalidString, "invalid escape")
        }
    }

    private mutating func hex4(at index: Int) throws(BulkDecodingError) -> UInt32 {
        guard index + 4 <= count else {
            position = count
            throw truncated()
        }
        var value: UInt32 = 0
        for offset in 0..<4 {
            guard let digit = Self.hexValue(base[index + offset]) else {
                position = index + offset
                throw error(.invalidString, "invalid \\u escape")
            }
            value = value << 4 | digit
        }
        return value
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case 0x30...0x39: UInt32(byte - 0x30)
        case 0x41...0x46: UInt32(byte - 0x41 + 10)
        case 0x61...0x66: UInt32(byte - 0x61 + 10)
        default: nil
        }
    }

    /// Validates one multi-byte UTF-8 sequence starting at `index` (Unicode Table 3-7: no overlongs, no
    /// surrogates, nothing above U+10FFFF); returns the index after it.
    private mutating func validateUTF8(at index: Int) throws(BulkDecodingError) -> Int {
        let lead = base[index]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            high = 0x9F
        case 0xF0:
            length = 4
            low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            high = 0x8F
        default:
            position = index
            throw error(.invalidUTF8, "invalid UTF-8 lead byte")
        }
        guard index + length <= count else {
            position = count
            throw truncated()
        }
        let second = base[index + 1]
        guard second >= low && second <= high else {
            position = index
            throw error(.invalidUTF8, "invalid UTF-8 sequence")
        }
        for offset in 2..<max(length, 2) where base[index + offset] & 0xC0 != 0x80 {
            position = index
            throw error(.invalidUTF8, "invalid UTF-8 sequence")
        }
        return index + length
    }

    /// Decodes the escapes of an already validated string body.
    private func unescapedBytes(start: Int, end: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(end - start)
        var index = start
        while index < end {
            let byte = base[index]
            guard byte == Byte.backslash else {
                out.append(byte)
                index += 1
                continue
            }
            let kind = base[index + 1]
            index += 2
            switch kind {
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0C)
            case 0x6E: out.append(0x0A)
            case 0x72: out.append(0x0D)
            case 0x74: out.append(0x09)
            case 0x75:
                var scalar = hex4Unchecked(at: index)
                index += 4
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    let low = hex4Unchecked(at: index + 2)
                    index += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                Self.appendUTF8(scalar, to: &out)
            default: out.append(kind)  // " \ /
            }
        }
        return out
    }

    private func hex4Unchecked(at index: Int) -> UInt32 {
        var value: UInt32 = 0
        for offset in 0..<4 {
            value = value << 4 | (Self.hexValue(base[index + offset]) ?? 0)
        }
        return value
    }

    private static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    // MARK: Generic values

    /// Validates and skips any value. `depth` is the nesting of the container holding it.
    private mutating func skipValue(depth: Int) throws(BulkDecodingError) {
        guard position < count else { throw truncated() }
        switch base[position] {
        case Byte.quote:
            position += 1
            _ = try scanString()
        case Byte.openBrace:
            try skipObject(depth: depth + 1)
        case Byte.openBracket:
            try skipArray(depth: depth + 1)
        case 0x6E:
            try expectLiteral("null")
        case 0x74:
            try expectLiteral("true")
        case 0x66:
            try expectLiteral("false")
        case Byte.minus, Byte.zero...Byte.nine:
            try scanNumber()
        default:
            throw unexpected("expected a value")
        }
    }

    private mutating func skipObject(depth: Int) throws(BulkDecodingError) {
        guard depth <= BulkListDecoder.maximumDepth else { throw error(.nestingTooDeep, "nesting too deep") }
        position += 1
        skipWhitespace()
        if try peek() == Byte.closeBrace {
            position += 1
            return
        }
        while true {
            guard try peek() == Byte.quote else { throw unexpected("expected a key") }
            position += 1
            _ = try scanString()
            skipWhitespace()
            guard try peek() == Byte.colon else { throw unexpected("expected ':'") }
            position += 1
            skipWhitespace()
            try skipValue(depth: depth)
            if try endOfMember(close: Byte.closeBrace, what: "'}'") { return }
        }
    }

    private mutating func skipArray(depth: Int) throws(BulkDecodingError) {
        guard depth <= BulkListDecoder.maximumDepth else { throw error(.nestingTooDeep, "nesting too deep") }
        position += 1
        skipWhitespace()
        if try peek() == Byte.closeBracket {
            position += 1
            return
        }
        while true {
            try skipValue(depth: depth)
            if try endOfMember(close: Byte.closeBracket, what: "']'") { return }
        }
    }

    /// After a member: consumes `,` (and following whitespace, returning false) or `close` (returning true).
    @inline(__always)
    private mutating func endOfMember(close: UInt8, what: String) throws(BulkDecodingError) -> Bool {
        skipWhitespace()
        guard position < count else { throw truncated() }
        let next = base[position]
        if next == Byte.comma {
            position += 1
            skipWhitespace()
            return false
        }
        if next == close {
            position += 1
            return true
        }
        throw unexpected("expected ',' or \(what)")
    }

    /// Reads `"key"` and the following `:`; returns the key's byte range and whether it has escapes.
    private mutating func parseKey() throws(BulkDecodingError) -> (start: Int, end: Int, escaped: Bool) {
        guard try peek() == Byte.quote else { throw unexpected("expected a key") }
        position += 1
        let start = position
        let escaped = try scanString()
        let end = position - 1
        skipWhitespace()
        guard try peek() == Byte.colon else { throw unexpected("expected ':'") }
        position += 1
        skipWhitespace()
        return (start, end, escaped)
    }

    private func keyEquals(_ key: (start: Int, end: Int, escaped: Bool), _ name: StaticString) -> Bool {
        let nameBytes = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        if key.escaped {
            return unescapedBytes(start: key.start, end: key.end).elementsEqual(nameBytes)
        }
        return UnsafeBufferPointer(start: base + key.start, count: key.end - key.start).elementsEqual(nameBytes)
    }

    /// Validates a number against the RFC 8259 grammar; the caller checks what follows it.
    private mutating func scanNumber() throws(BulkDecodingError) {
        var index = position
        if base[index] == Byte.minus { index += 1 }
        guard index < count else { throw truncated() }
        if base[index] == Byte.zero {
            index += 1
        } else if base[index] > Byte.zero && base[index] <= Byte.nine {
            index = skipDigits(from: index + 1)
        } else {
            position = index
            throw unexpected("invalid number")
        }
        if index < count && base[index] == Byte.dot {
            index += 1
            guard index < count else { throw truncated() }
            guard isDigit(base[index]) else {
                position = index
                throw unexpected("invalid number")
            }
            index = skipDigits(from: index + 1)
        }
        if index < count && base[index] | 0x20 == 0x65 {  // e or E
            index += 1
            guard index < count else { throw truncated() }
            if base[index] == Byte.plus || base[index] == Byte.minus { index += 1 }
            guard index < count else { throw truncated() }
            guard isDigit(base[index]) else {
                position = index
                throw unexpected("invalid number")
            }
            index = skipDigits(from: index + 1)
        }
        position = index
    }

    @inline(__always)
    private func skipDigits(from start: Int) -> Int {
        var index = start
        while index < count && isDigit(base[index]) { index += 1 }
        return index
    }

    @inline(__always)
    private func isDigit(_ byte: UInt8) -> Bool {
        byte &- Byte.zero < 10
    }

    @inline(__always)
    private func isNumberStart(_ byte: UInt8) -> Bool {
        byte == Byte.minus || isDigit(byte)
    }

    private func isValueStart(_ byte: UInt8) -> Bool {
        switch byte {
        case Byte.quote, Byte.openBracket, 0x6E, 0x74, 0x66, Byte.minus, Byte.zero...Byte.nine: true
        default: false
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(BulkDecodingError) {
        let length = literal.utf8CodeUnitCount
        let bytes = literal.utf8Start
        for offset in 0..<length {
            guard position + offset < count else {
                position = count
                throw truncated()
            }
            guard base[position + offset] == bytes[offset] else {
                position += offset
                throw unexpected("invalid literal")
            }
        }
        position += length
    }

    // MARK: Whitespace and errors

    @inline(__always)
    private mutating func skipWhitespace() {
        while position < count {
            switch base[position] {
            case Byte.space, Byte.lineFeed, Byte.carriageReturn, Byte.tab: position += 1
            default: return
            }
        }
    }

    @inline(__always)
    private func peek() throws(BulkDecodingError) -> UInt8 {
        guard position < count else { throw truncated() }
        return base[position]
    }

    private func truncated() -> BulkDecodingError {
        BulkDecodingError(code: .truncated, offset: count, detail: "body ends inside a value")
    }

    private func error(_ code: BulkDecodingError.Code, _ detail: String) -> BulkDecodingError {
        BulkDecodingError(code: code, offset: position, detail: detail)
    }

    /// A syntax error naming the offending byte (printable ASCII as itself, anything else in hex).
    @inline(never)
    private func unexpected(_ expectation: String) -> BulkDecodingError {
        guard position < count else { return truncated() }
        let byte = base[position]
        let shown =
            byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "0x\(String(byte, radix: 16))"
        return BulkDecodingError(code: .syntax, offset: position, detail: "\(expectation), found \(shown)")
    }
}

/// The second half of a large `content` array, parsed on a thread of its own while the decoding thread parses the
/// first: at 1M items (122 MB) decoding was ~80 ms of a ~440 ms steady poll, on one of two cores.
///
/// Why this is safe: the second half starts at a guessed element boundary (``BulkBodyParser/splitPoint(from:)``) and
/// its result is used only if the first half's own parse arrives at exactly that byte as the start of an element
/// of the same array. From there the parse is fully determined by the bytes, so the second half's items, skips
/// and end are what the first half would have found. A wrong guess, or a second half that failed (the first half
/// then reaches the error itself and reports it at its true offset), costs only the wasted work.
private final class SecondHalf: @unchecked Sendable {
    let start: Int
    private var parser: BulkBodyParser
    /// Written by the second thread; read only after joining it.
    private var result: (items: BulkListing, skipped: Int, end: Int)?
    private var thread: JoinableThread?

    init(_ parser: BulkBodyParser, from start: Int) {
        self.start = start
        self.parser = parser
        thread = JoinableThread(name: "bulkwatch-half") { [self] in
            result = try? self.parser.parseElements(from: start)
        }
    }

    /// Waits for the second half; nil when its parse failed.
    func finish() -> (items: BulkListing, skipped: Int, end: Int)? {
        thread?.join()
        return result
    }
}

// MARK: - The arriving body

/// Where a parser puts the items it finds: the listing, or the listing of the reader of an arriving body.
protocol ParsedItems {
    /// An item recorded as offsets into the body (no escapes), as ``BulkListing/appendFound(raw:bulkId:status:createdOn:updatedOn:)``.
    mutating func appendFound(
        raw: Range<Int>, bulkId: Range<Int>, status: Range<Int>?, createdOn: Range<Int>?, updatedOn: Range<Int>?)
    /// An item that needs to be kept whole (its fields have escapes), starting at `start`; `item` builds it.
    mutating func appendWhole(from start: Int, _ item: () -> BulkItem)
}

extension BulkListing: ParsedItems {
    mutating func appendWhole(from start: Int, _ item: () -> BulkItem) {
        appendBoxed(item())
    }
}

/// How a run of ``BulkBodyParser/parseArriving(from:separatorDue:into:stopAt:reached:)`` ended.
enum ArrivingStep {
    /// The bytes published so far end inside the next element or separator: wait for more.
    case needsBytes
    /// At an element that starts at or after the offset the final parse asked the reader to stop at.
    case stopped
    /// The array's `]` was read.
    case closedArray
    /// Something this parse will not go past (an error, or a value the listing must see whole): the final parse
    /// takes it from here.
    case leftToFinalParse
}

extension BulkBodyParser {
    /// Parses `content`'s elements from `start` as far as the `count` bytes at hand allow, for the reader of an
    /// arriving body (``ArrivingContent``). `start` is an element's first byte, or just after an element when
    /// `separatorDue`. Returns where the parse is, in the same terms, and why it ended.
    ///
    /// Why this gives what the final parse would: an element is kept only once its closing brace was read, and
    /// every decision before it was made on bytes before `count`, which are final. Where the bytes ran out the
    /// parser throws ``BulkDecodingError/Code/truncated`` (every bound check does), and the element is parsed
    /// again from its first byte once more have come. Any other error stops here, untouched: the final parse
    /// reaches it and reports it at its true offset.
    mutating func parseArriving(
        from start: Int, separatorDue: Bool, into items: inout ArrivingItems, stopAt: borrowing Atomic<Int>,
        reached: borrowing Atomic<Int>
    ) -> (position: Int, separatorDue: Bool, step: ArrivingStep) {
        position = start
        var separatorDue = separatorDue
        while true {
            if separatorDue {
                skipWhitespace()
                guard position < count else { return (position, true, .needsBytes) }
                let next = base[position]
                if next == Byte.closeBracket { return (position + 1, false, .closedArray) }
                guard next == Byte.comma else { return (position, true, .leftToFinalParse) }
                position += 1
                separatorDue = false
            }
            // Also when resuming: the bytes at hand may have ended inside the whitespace before this element.
            skipWhitespace()
            guard position < count else { return (position, false, .needsBytes) }
            if position >= stopAt.load(ordering: .relaxed) { return (position, false, .stopped) }
            let elementStart = position
            do throws(BulkDecodingError) {
                if try !parseElement(appendingTo: &items) { items.skipped += 1 }
            } catch {
                return (elementStart, false, error.code == .truncated ? .needsBytes : .leftToFinalParse)
            }
            if items.refused { return (elementStart, false, .leftToFinalParse) }
            separatorDue = true
            reached.store(position, ordering: .relaxed)
        }
    }

    /// Where a reader of the arriving body can start: the first element of a `content` array within the first
    /// `limit` bytes, found by its bytes alone (`"content"`, `:`, `[`, `{`, whitespace between). A guess, which the
    /// final parse checks before it uses anything parsed from there (``ArrivingContent``).
    enum ContentStart: Equatable {
        case found(Int)
        /// Not decided by the bytes at hand: ask again with more.
        case undecided
        /// Not within `limit`, or the array is empty: no reader.
        case none
    }

    func guessContentStart(limit: Int) -> ContentStart {
        let key = Array(#""content""#.utf8)
        let end = min(count, limit)
        var index = 0
        while index < end {
            defer { index += 1 }
            guard base[index] == Byte.quote else { continue }
            guard index + key.count < end else { break }
            guard (0..<key.count).allSatisfy({ base[index + $0] == key[$0] }) else { continue }
            var next = afterWhitespace(index + key.count, limit: end)
            guard next < end else { break }
            guard base[next] == Byte.colon else { continue }
            next = afterWhitespace(next + 1, limit: end)
            guard next < end else { break }
            guard base[next] == Byte.openBracket else { continue }
            next = afterWhitespace(next + 1, limit: end)
            guard next < end else { break }
            return base[next] == Byte.openBrace ? .found(next) : .none
        }
        // Ran out of bytes before the limit: more may decide it.
        return end < limit ? .undecided : .none
    }
}
