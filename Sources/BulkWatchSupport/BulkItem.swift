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

    /// The bytes of an item's fields and raw JSON where they lie, valid only during ``withFieldBytes(_:)``.
    package struct FieldBytes {
        package let bulkId: UnsafeRawBufferPointer
        package let status: UnsafeRawBufferPointer?
        package let createdOn: UnsafeRawBufferPointer?
        package let updatedOn: UnsafeRawBufferPointer?
        package let rawJSON: UnsafeRawBufferPointer
    }

    /// Calls `body` with the UTF-8 bytes of the item's fields and its raw JSON, read in place: no copy of the
    /// item or of any of its strings.
    ///
    /// Why: a commit writes every event and every row of its delta from these. Read field by field
    /// (``rawJSON``, ``status``, ``withUpdatedOnUTF8(_:)``), each read copied the item or the string, a retain and
    /// a release each: after the id's hash, most of an event's encoding in `perf` of a steady 100k commit.
    package func withFieldBytes<R>(_ body: (FieldBytes) throws -> R) rethrows -> R {
        try Self.withBytes(of: bulkId) { bulkId in
            try Self.withOptionalBytes(of: status) { status in
                try raw.withUnsafeBytes { rawJSON in
                    try Self.withBytes(of: createdOnText, in: rawJSON) { createdOn in
                        try Self.withBytes(of: updatedOnText, in: rawJSON) { updatedOn in
                            try body(
                                FieldBytes(
                                    bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn,
                                    rawJSON: rawJSON))
                        }
                    }
                }
            }
        }
    }

    /// A timestamp's bytes: where they lie in `rawJSON` (the item's raw bytes), or in its own string.
    @inline(__always)
    private static func withBytes<R>(
        of text: Text, in rawJSON: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws -> R
    ) rethrows -> R {
        switch text {
        case .absent:
            return try body(nil)
        case .inRaw(let offset, let count):
            return try body(UnsafeRawBufferPointer(rebasing: rawJSON[Int(offset)..<(Int(offset) + Int(count))]))
        case .text(let value):
            return try withBytes(of: value) { (bytes: UnsafeRawBufferPointer) in try body(bytes) }
        }
    }

    /// `text`'s UTF-8 bytes where they lie (nil for nil).
    @inline(__always)
    private static func withOptionalBytes<R>(
        of text: String?, _ body: (UnsafeRawBufferPointer?) throws -> R
    ) rethrows -> R {
        guard let text else { return try body(nil) }
        return try withBytes(of: text) { (bytes: UnsafeRawBufferPointer) in try body(bytes) }
    }

    /// `text`'s UTF-8 bytes where they lie, copied only when they are not contiguous.
    @inline(__always)
    private static func withBytes<R>(of text: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let result = try text.utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        var contiguous = text
        return try contiguous.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
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
        try raw.withUnsafeBytes { try Self.withBytes(of: text, in: $0, body) }
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
///
/// The decoder's listing keeps, per item, one ``Entry`` of plain offsets into the body it was decoded
/// from (24 bytes, no reference: nothing to retain, release or destroy), not a ``BulkItem`` (112 bytes
/// inline: two strings, two timestamp cases and a slice that retains the body). At 1M items that is
/// ~24 MB instead of ~112 MB held beside the 120 MB body at a steady poll's peak, and the differ,
/// which only compares each item's id, status and `updatedOn` bytes with the stored ones, reads them
/// where they lie. A ``BulkItem`` is built only for the few items that need one (``item(at:)``).
///
/// An item the offsets cannot describe (a field with escapes, an item of 64 KiB or more, a body past
/// 4 GiB) is kept whole in a side list instead ("boxed"); so is every item of a listing built from
/// ``BulkItem`` values (``init(items:skippedWithoutId:resultStatus:resultMessage:)``, tests and
/// benchmarks). Both forms give the same items.
package struct BulkListing: Sendable {
    /// Where one item and its four fields sit in ``body``.
    package struct Entry: Sendable, BitwiseCopyable {
        /// Offset of the item's object in the body; for a boxed item, its index in the side list.
        var rawStart: UInt32
        /// Length of the item's object; ``boxed`` for a boxed item.
        var rawCount: UInt32
        /// Each field as an offset from `rawStart` and a length; ``absent`` as the length when missing.
        var idOffset: UInt16
        var idCount: UInt16
        var statusOffset: UInt16
        var statusCount: UInt16
        var createdOffset: UInt16
        var createdCount: UInt16
        var updatedOffset: UInt16
        var updatedCount: UInt16

        static let boxed = UInt32.max
        static let absent = UInt16.max
    }

    /// The body the entries point into (empty when every item is boxed, or while it is still arriving).
    private var body: [UInt8]
    /// The bytes that have arrived of a body still arriving (``init(arriving:expectedItems:)``); nil once the body
    /// is here (``adoptBody(_:)``), and for every other listing.
    private var arrived: ArrivedBytes?

    /// A pointer to bytes the listing does not own. Sendable because only the thread building the listing reads
    /// it, inside the window in which the arriving body keeps it valid; the listing is handed over, and sent
    /// anywhere, only after ``adoptBody(_:)`` has dropped it.
    private struct ArrivedBytes: @unchecked Sendable {
        let bytes: UnsafeRawBufferPointer
    }
    private var entries: [Entry]
    private var boxed: [BulkItem]
    /// How many items carry each distinct `status` (nil: none), counted as the items are appended, while
    /// their bytes are in the cache: ``countItems(byStatus:)`` then asks about each status once instead of
    /// reading 1M statuses again (15 ms of a 1M poll, all of it memory traffic). nil once more than
    /// ``tallyLimit`` distinct statuses were seen; counting then reads every item.
    private var statusTally: [StatusCount]? = []
    /// The latest items in the body that share one status, not yet in ``statusTally``: where that status lies
    /// (nil: they have none) and how many. Consecutive items mostly share their status, so appending one
    /// costs a `memcmp` and an increment; updating the tally for each item cost more than counting later.
    private var run: (status: Range<Int>?, length: Int) = (nil, 0)
    private static let tallyLimit = 32
    /// Entry arrays reserved this large are backed by huge pages where the kernel has them (``HugePages``).
    private static let hugePagesFrom = 4 << 20

    private struct StatusCount {
        var status: [UInt8]?
        var count: Int
    }
    /// Items that had no usable `bulkId` (missing, null, empty or not a scalar): skipped, never a crash.
    package var skippedWithoutId: Int
    /// `result.status` when present.
    package var resultStatus: Int?
    /// `result.message` when present.
    package var resultMessage: String?

    package init(items: [BulkItem], skippedWithoutId: Int = 0, resultStatus: Int? = nil, resultMessage: String? = nil) {
        body = []
        boxed = items
        entries = items.indices.map { Self.boxedEntry($0) }
        self.skippedWithoutId = skippedWithoutId
        self.resultStatus = resultStatus
        self.resultMessage = resultMessage
        for item in items { tally(item.status, count: 1) }
    }

    /// An empty listing whose items the decoder appends as it finds them in `body`.
    package init(decoding body: [UInt8], expectedItems: Int) {
        self.body = body
        entries = []
        // Generous on purpose: a large array is mapped fresh and only the pages actually written become
        // resident, while growing past the estimate would copy the whole array into one twice its size.
        entries.reserveCapacity(expectedItems)
        // Mapped fresh every poll, and written front to back while the body is parsed: in 4 KiB pages the
        // ~2.4 MB of a 100k listing's entries cost ~600 page faults (~2 µs each here, ~1.2 ms of the poll), in
        // 2 MiB pages a few. Resident grows by at most the last huge page's unwritten part, while the poll lasts.
        HugePages.adviseCapacity(of: &entries, minimum: Self.hugePagesFrom)
        boxed = []
        skippedWithoutId = 0
    }

    /// An empty listing built while its body is still arriving, by a decoder reading the bytes that have arrived
    /// (`arrived`; ``rebase(_:)`` when they move). Only items that fit as offsets are appended
    /// (``holdsAsOffsets(_:)``): an item kept whole would need the complete body. Usable once the complete body is
    /// handed over (``adoptBody(_:)``).
    package init(arriving arrived: UnsafeRawBufferPointer, expectedItems: Int) {
        self.init(decoding: [], expectedItems: expectedItems)
        self.arrived = ArrivedBytes(bytes: arrived)
    }

    /// The arriving bytes, where they are now (the same offsets, a longer or a moved buffer).
    package mutating func rebase(_ arrived: UnsafeRawBufferPointer) {
        precondition(self.arrived != nil, "rebase of a listing whose body is here")
        self.arrived = ArrivedBytes(bytes: arrived)
    }

    /// The complete body that the arriving bytes were the start of.
    package mutating func adoptBody(_ body: [UInt8]) {
        self.body = body
        arrived = nil
    }

    /// Whether an item spanning `raw` is kept as offsets by ``appendFound(raw:bulkId:status:createdOn:updatedOn:)``
    /// (shorter than 64 KiB, within the first 4 GiB of the body), not whole.
    package static func holdsAsOffsets(_ raw: Range<Int>) -> Bool {
        raw.count < Int(Entry.absent) && raw.upperBound <= Int(UInt32.max)
    }

    /// The body's bytes while the listing is being built: the arriving ones until the body is adopted.
    @inline(__always)
    private func withBuildingBytes<R>(_ read: (UnsafeRawBufferPointer) -> R) -> R {
        if let arrived { return read(arrived.bytes) }
        return body.withUnsafeBytes(read)
    }

    /// Number of listed items (duplicates included: they are resolved later, by the differ).
    package var count: Int { entries.count }

    /// Every item, built: for tests, tools and small listings. The watcher's path reads ``Keys`` instead.
    package var items: [BulkItem] {
        get { entries.indices.map { item(at: $0) } }
        set {
            self = BulkListing(
                items: newValue, skippedWithoutId: skippedWithoutId, resultStatus: resultStatus,
                resultMessage: resultMessage)
        }
    }

    /// Forgets the items appended so far (a repeated `content` key: the last one wins).
    package mutating func removeAllItems() {
        entries.removeAll(keepingCapacity: true)
        boxed.removeAll()
        statusTally = []
        run = (nil, 0)
    }

    /// Appends an item found in the body: `raw` is the object, each field the byte range of its value as it
    /// stands (no escapes), nil when missing. Falls back to the boxed form when the offsets cannot hold it.
    package mutating func appendFound(
        raw: Range<Int>, bulkId: Range<Int>, status: Range<Int>?, createdOn: Range<Int>?, updatedOn: Range<Int>?
    ) {
        guard Self.holdsAsOffsets(raw) else {
            precondition(arrived == nil, "an item kept whole in a listing whose body is still arriving")
            let item = BulkItem(
                bulkId: text(bulkId), status: status.map(text), createdOn: createdOn.map(text),
                updatedOn: updatedOn.map(text), rawJSON: body[raw])
            appendBoxed(item)
            return
        }
        let start = raw.lowerBound
        func field(_ range: Range<Int>?) -> (UInt16, UInt16) {
            guard let range else { return (0, Entry.absent) }
            return (UInt16(truncatingIfNeeded: range.lowerBound - start), UInt16(truncatingIfNeeded: range.count))
        }
        if run.length > 0, sameStatus(status, run.status) {
            run.length += 1
        } else {
            endRun()
            run = (status, 1)
        }
        let id = field(bulkId)
        let state = field(status)
        let created = field(createdOn)
        let updated = field(updatedOn)
        entries.append(
            Entry(
                rawStart: UInt32(truncatingIfNeeded: start), rawCount: UInt32(truncatingIfNeeded: raw.count),
                idOffset: id.0, idCount: id.1, statusOffset: state.0, statusCount: state.1, createdOffset: created.0,
                createdCount: created.1, updatedOffset: updated.0, updatedCount: updated.1))
    }

    /// Appends the items of `other`, decoded from a later part of the same body (the decoder's second half), as
    /// if they had been appended here one by one.
    package mutating func append(contentsOf other: BulkListing) {
        var other = other
        other.endRun()
        endRun()
        if other.boxed.isEmpty {
            entries.append(contentsOf: other.entries)
        } else {
            let shift = UInt32(truncatingIfNeeded: boxed.count)
            entries.append(
                contentsOf: other.entries.lazy.map { entry in
                    guard entry.rawCount == Entry.boxed else { return entry }
                    var moved = entry
                    moved.rawStart += shift
                    return moved
                })
            boxed.append(contentsOf: other.boxed)
        }
        guard let counts = other.statusTally else {
            statusTally = nil
            return
        }
        for slot in counts {
            guard let status = slot.status else {
                tally(nil as UnsafeRawBufferPointer?, count: slot.count)
                continue
            }
            status.withUnsafeBytes { tally($0, count: slot.count) }
        }
    }

    /// Appends an item kept whole (its `rawJSON` may be a slice of the body).
    package mutating func appendBoxed(_ item: BulkItem) {
        entries.append(Self.boxedEntry(boxed.count))
        boxed.append(item)
        endRun()
        tally(item.status, count: 1)
    }

    /// Whether the body's bytes at `lhs` and `rhs` are the same status (or both are missing).
    @inline(__always)
    private func sameStatus(_ lhs: Range<Int>?, _ rhs: Range<Int>?) -> Bool {
        guard let lhs, let rhs else { return lhs == nil && rhs == nil }
        guard lhs.count == rhs.count else { return false }
        return lhs.isEmpty
            || withBuildingBytes {
                memcmp($0.baseAddress! + lhs.lowerBound, $0.baseAddress! + rhs.lowerBound, lhs.count) == 0
            }
    }

    /// Moves the pending ``run`` into ``statusTally``.
    private mutating func endRun() {
        guard run.length > 0 else { return }
        let (status, length) = run
        run = (nil, 0)
        guard let status else { return tally(nil as UnsafeRawBufferPointer?, count: length) }
        if let arrived {
            return tally(UnsafeRawBufferPointer(rebasing: arrived.bytes[status]), count: length)
        }
        let body = self.body  // a reference, so that `tally` can change `self` meanwhile
        body.withUnsafeBytes { tally(UnsafeRawBufferPointer(rebasing: $0[status]), count: length) }
    }

    private mutating func tally(_ status: String?, count: Int) {
        guard var status else { return tally(nil as UnsafeRawBufferPointer?, count: count) }
        status.withUTF8 { tally(UnsafeRawBufferPointer($0), count: count) }
    }

    /// Counts `count` more items with `status` in ``statusTally``.
    private mutating func tally(_ status: UnsafeRawBufferPointer?, count: Int) {
        guard statusTally != nil else { return }
        if let slot = statusTally!.firstIndex(where: { Self.sameBytes($0.status, status) }) {
            statusTally![slot].count += count
        } else if statusTally!.count < Self.tallyLimit {
            statusTally!.append(StatusCount(status: status.map { Array($0) }, count: count))
        } else {
            statusTally = nil
        }
    }

    @inline(__always)
    private static func sameBytes(_ lhs: [UInt8]?, _ rhs: UnsafeRawBufferPointer?) -> Bool {
        guard let lhs, let rhs else { return lhs == nil && rhs == nil }
        return lhs.withUnsafeBytes { sameBytes($0, rhs) }
    }

    private static func boxedEntry(_ index: Int) -> Entry {
        Entry(
            rawStart: UInt32(truncatingIfNeeded: index), rawCount: Entry.boxed, idOffset: 0, idCount: 0,
            statusOffset: 0, statusCount: 0, createdOffset: 0, createdCount: 0, updatedOffset: 0, updatedCount: 0)
    }

    private func text(_ range: Range<Int>) -> String {
        body.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[range]), as: UTF8.self) }
    }

    /// The item at `index`, built: its `rawJSON` a slice of the body, its timestamps read from there.
    package func item(at index: Int) -> BulkItem {
        let entry = entries[index]
        guard entry.rawCount != Entry.boxed else { return boxed[Int(entry.rawStart)] }
        let start = Int(entry.rawStart)
        let raw = body[start..<(start + Int(entry.rawCount))]
        func string(_ offset: UInt16, _ count: UInt16) -> String? {
            guard count != Entry.absent else { return nil }
            return text((start + Int(offset))..<(start + Int(offset) + Int(count)))
        }
        func inRaw(_ offset: UInt16, _ count: UInt16) -> BulkItem.Text {
            count == Entry.absent ? .absent : .inRaw(offset: UInt32(offset), count: UInt32(count))
        }
        return BulkItem(
            bulkId: string(entry.idOffset, entry.idCount) ?? "", status: string(entry.statusOffset, entry.statusCount),
            createdOn: inRaw(entry.createdOffset, entry.createdCount),
            updatedOn: inRaw(entry.updatedOffset, entry.updatedCount), rawJSON: raw)
    }

    /// How many items `isCounted` accepts by their `status` bytes (nil: no status). Consecutive items mostly
    /// share a status, so `isCounted` is asked only when an item's status differs from the previous one's
    /// (one `memcmp`): a count over 100k items every poll, without a `String` or an array per item.
    package func countItems(byStatus isCounted: (UnsafeRawBufferPointer?) -> Bool) -> Int {
        if var tally = statusTally {
            if run.length > 0 {
                tally.append(StatusCount(status: run.status.map { Array(body[$0]) }, count: run.length))
            }
            return tally.reduce(0) { total, slot in
                let counted =
                    slot.status.map { status in status.withUnsafeBytes { isCounted($0) } } ?? isCounted(nil)
                return counted ? total + slot.count : total
            }
        }
        return withKeys { reader in
            var count = 0
            // The previous offsets item's status (nil: none yet, or a kept-whole item came between), and
            // whether it was counted.
            var last: UnsafeRawBufferPointer?? = nil
            var lastCounted = false
            for index in 0..<reader.count {
                guard let status = reader.status(at: index) else {
                    // A kept-whole item: its bytes live only inside this call, so nothing is remembered.
                    if reader.keys(at: index, { isCounted($0.status) }) { count += 1 }
                    last = nil
                    continue
                }
                if let previous = last, Self.sameBytes(status, previous) {
                    if lastCounted { count += 1 }
                    continue
                }
                lastCounted = isCounted(status)
                last = status
                if lastCounted { count += 1 }
            }
            return count
        }
    }

    @inline(__always)
    private static func sameBytes(_ lhs: UnsafeRawBufferPointer?, _ rhs: UnsafeRawBufferPointer?) -> Bool {
        guard let lhs, let rhs else { return lhs == nil && rhs == nil }
        guard lhs.count == rhs.count else { return false }
        guard lhs.count > 0 else { return true }
        return memcmp(lhs.baseAddress!, rhs.baseAddress!, lhs.count) == 0
    }

    /// An item's key fields as UTF-8 bytes, valid only inside ``withKeys(_:)``.
    package struct Keys {
        package var bulkId: UnsafeRawBufferPointer
        package var status: UnsafeRawBufferPointer?
        package var updatedOn: UnsafeRawBufferPointer?
    }

    /// Read access to every item's key bytes for the duration of `body`, without building an item.
    package func withKeys<R>(_ body: (KeyReader) throws -> R) rethrows -> R {
        try self.body.withUnsafeBytes { bytes in
            try entries.withUnsafeBufferPointer { entries in
                try body(KeyReader(base: bytes.baseAddress, entries: entries, boxed: boxed))
            }
        }
    }

    /// See ``withKeys(_:)``.
    package struct KeyReader {
        let base: UnsafeRawPointer?
        let entries: UnsafeBufferPointer<Entry>
        let boxed: [BulkItem]

        package var count: Int { entries.count }

        /// The status bytes of the item at `index` when it is read in place in the body (`.some(nil)`: it has
        /// none), valid for the whole ``withKeys(_:)`` call; nil for an item kept whole (use ``keys(at:_:)``).
        @inline(__always)
        package func status(at index: Int) -> UnsafeRawBufferPointer?? {
            let entry = entries[index]
            guard entry.rawCount != Entry.boxed, let base else { return nil }
            guard entry.statusCount != Entry.absent else { return .some(nil) }
            return .some(
                UnsafeRawBufferPointer(
                    start: base + Int(entry.rawStart) + Int(entry.statusOffset), count: Int(entry.statusCount)))
        }

        /// Calls `body` with the key bytes of the item at `index`.
        @inline(__always)
        package func keys<R>(at index: Int, _ body: (Keys) throws -> R) rethrows -> R {
            let entry = entries[index]
            guard entry.rawCount != Entry.boxed, let base else {
                return try Self.boxedKeys(boxed[Int(entry.rawStart)], body)
            }
            let start = base + Int(entry.rawStart)
            @inline(__always)
            func field(_ offset: UInt16, _ count: UInt16) -> UnsafeRawBufferPointer? {
                count == Entry.absent ? nil : UnsafeRawBufferPointer(start: start + Int(offset), count: Int(count))
            }
            return try body(
                Keys(
                    bulkId: UnsafeRawBufferPointer(start: start + Int(entry.idOffset), count: Int(entry.idCount)),
                    status: field(entry.statusOffset, entry.statusCount),
                    updatedOn: field(entry.updatedOffset, entry.updatedCount)))
        }

        private static func boxedKeys<R>(_ item: BulkItem, _ body: (Keys) throws -> R) rethrows -> R {
            var id = item.bulkId
            return try id.withUTF8 { id in
                try item.withUpdatedOnUTF8 { updated in
                    guard var status = item.status else {
                        return try body(Keys(bulkId: UnsafeRawBufferPointer(id), status: nil, updatedOn: updated))
                    }
                    return try status.withUTF8 { status in
                        try body(
                            Keys(
                                bulkId: UnsafeRawBufferPointer(id), status: UnsafeRawBufferPointer(status),
                                updatedOn: updated))
                    }
                }
            }
        }
    }
}
