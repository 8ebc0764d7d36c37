import BulkWatchSupport

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
        for var row in rows {
            row.absentPolls = max(0, row.absentPolls)
            if let existing = position(of: row.item.bulkId) {
                replaceItem(at: existing, with: row.item)
                setAbsentPolls(existing, row.absentPolls)
            } else {
                append(row, hash: ByteKeys.hash(row.item.bulkId))
            }
        }
        for bulkId in removalGuarded {
            if let position = position(of: bulkId), absentCounts[position] > 0 {
                setGuarded(position, true)
            }
        }
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

    /// The stored `status` and `updatedOn` at `position`, without rebuilding the rest.
    func state(at position: Int) -> (status: String?, updatedOn: String?) {
        if let stored = keys.fields(at: position) { return (stored.status, stored.updatedOn) }
        let long = payloads.longKeyFields(at: position)
        return (long.status, long.updatedOn)
    }

    /// The stored `bulkId` at `position`.
    func bulkId(at position: Int) -> String {
        keys.fields(at: position)?.bulkId ?? payloads.longKeyFields(at: position).bulkId
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

    /// Closes the holes, keeping the live entries in their order.
    mutating func closeHoles() {
        compact(order: hashes.indices.filter { !isDead($0) })
    }

    /// Rewrites the storage without holes, live entries in `order` (positions; every live one
    /// exactly once), and rebuilds the index.
    mutating func compact(order: [Int]) {
        var newHashes: [UInt64] = []
        var newFlags: [UInt8] = []
        var newAbsent: [Int] = []
        newHashes.reserveCapacity(order.count)
        newFlags.reserveCapacity(order.count)
        newAbsent.reserveCapacity(order.count)
        for position in order {
            newHashes.append(hashes[position])
            newFlags.append(flags[position])
            newAbsent.append(absentCounts[position])
        }
        hashes = newHashes
        flags = newFlags
        absentCounts = newAbsent
        keys = keys.reordered(order)
        payloads = payloads.reordered(order)
        deadCount = 0
        index.rebuild(hashes: hashes, flags: flags)
    }
}

/// Each entry's `createdOn` and raw JSON bytes, back to back in one buffer; for an entry whose key
/// fields are too long for ``KeyArena`` (it has no copy there), `bulkId`, `status` and `updatedOn`
/// too, so every entry can always be rebuilt.
///
/// Record layout: a varint `createdOn` code (0 = nil, else length + 1) and its bytes, then the raw
/// JSON; in the long form the record starts with the `bulkId` length and bytes and the `status` and
/// `updatedOn` codes and bytes. Per entry the arena keeps the record's offset and length. Replaced
/// records stay behind as waste until it outgrows the live bytes.
struct PayloadArena: Sendable {
    private(set) var bytes: [UInt8] = []
    private(set) var offsets: [UInt64] = []
    private(set) var lengths: [UInt32] = []
    private var wasted = 0

    /// Record length that marks a cleared entry (a hole).
    private static let cleared = UInt32.max

    /// Bytes one item's record takes (an upper bound: the long form).
    static func size(of item: BulkItem) -> Int {
        3 * 5 + 5 + item.bulkId.utf8.count + (item.status?.utf8.count ?? 0) + (item.updatedOn?.utf8.count ?? 0)
            + (item.createdOn?.utf8.count ?? 0) + item.rawJSON.count
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

    mutating func replace(_ position: Int, with item: BulkItem, keysStored: Bool) {
        wasted += Int(lengths[position] == Self.cleared ? 0 : lengths[position])
        let (offset, length) = store(item, keysStored: keysStored)
        offsets[position] = offset
        lengths[position] = length
        if wasted > 1 << 16, wasted > bytes.count / 2 {
            self = reordered(Array(offsets.indices))
        }
    }

    mutating func clear(_ position: Int) {
        wasted += Int(lengths[position] == Self.cleared ? 0 : lengths[position])
        lengths[position] = Self.cleared
        offsets[position] = 0
    }

    /// A copy holding only the entries at `order`, in that order, without waste.
    func reordered(_ order: [Int]) -> PayloadArena {
        var total = 0
        for position in order where lengths[position] != Self.cleared { total += Int(lengths[position]) }
        var fresh = PayloadArena()
        fresh.offsets.reserveCapacity(order.count)
        fresh.lengths.reserveCapacity(order.count)
        fresh.bytes = [UInt8](unsafeUninitializedCapacity: total) { target, initialized in
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
            Self.appendOptional(item.updatedOn, to: &bytes)
        }
        Self.appendOptional(item.createdOn, to: &bytes)
        bytes.append(contentsOf: item.rawJSON)
        let length = bytes.count - offset
        precondition(length < Int(Self.cleared), "PayloadArena: an item of 4 GiB")
        return (UInt64(offset), UInt32(length))
    }

    private static func appendOptional(_ text: String?, to bytes: inout [UInt8]) {
        guard let text else {
            bytes.append(0)
            return
        }
        appendVarint(text.utf8.count + 1, to: &bytes)
        ByteKeys.withBytes(text) { bytes.append(contentsOf: $0) }
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

    private func withReader<R>(_ position: Int, _ body: (inout Reader, _ end: Int) -> R) -> R {
        bytes.withUnsafeBytes { raw in
            var reader = Reader(base: raw.baseAddress!, offset: Int(offsets[position]))
            return body(&reader, Int(offsets[position]) + Int(lengths[position]))
        }
    }

    /// Rebuilds the live entry at `position`; the key fields come from `keys` when it has a copy.
    func item(at position: Int, keys: KeyArena) -> BulkItem {
        let stored = keys.fields(at: position)
        return withReader(position) { reader, end in
            let bulkId: String
            let status: String?
            let updatedOn: String?
            if let stored {
                (bulkId, status, updatedOn) = stored
            } else {
                bulkId = reader.string(length: reader.varint())
                status = reader.optional()
                updatedOn = reader.optional()
            }
            let createdOn = reader.optional()
            let raw = ArraySlice(reader.bytes(length: end - reader.offset))
            return BulkItem(bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn, rawJSON: raw)
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

    mutating func replace(_ position: Int, with item: BulkItem) {
        wasted += Self.length(spans[position])
        spans[position] = store(item)
        if wasted > 1 << 16, wasted > bytes.count / 2 {
            self = reordered(Array(spans.indices))
        }
    }

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

    /// A copy holding only the entries at `order`, in that order, without waste.
    func reordered(_ order: [Int]) -> KeyArena {
        var total = 0
        let newSpans = order.map { position in
            let span = spans[position]
            guard span != Self.none else { return Self.none }
            defer { total += Self.length(span) }
            return span & ~0xFF_FFFF_FFFF | UInt64(total)
        }
        var fresh = KeyArena()
        fresh.spans = newSpans
        guard total > 0 else { return fresh }
        let oldSpans = spans
        fresh.bytes = bytes.withUnsafeBytes { old in
            [UInt8](unsafeUninitializedCapacity: total) { target, initialized in
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
        let updatedCount = item.updatedOn?.utf8.count ?? -1
        guard idCount <= 254, statusCount <= 253, updatedCount <= 253 else { return Self.none }
        let offset = UInt64(bytes.count)
        ByteKeys.withBytes(item.bulkId) { bytes.append(contentsOf: $0) }
        if let status = item.status { ByteKeys.withBytes(status) { bytes.append(contentsOf: $0) } }
        if let updatedOn = item.updatedOn { ByteKeys.withBytes(updatedOn) { bytes.append(contentsOf: $0) } }
        return offset | UInt64(idCount) << 40 | UInt64(statusCount + 1) << 48 | UInt64(updatedCount + 1) << 56
    }

    /// The entry's key fields as strings; nil when the entry has no copy (or is cleared).
    func fields(at position: Int) -> (bulkId: String, status: String?, updatedOn: String?)? {
        let span = spans[position]
        guard span != Self.none else { return nil }
        return bytes.withUnsafeBytes { arena in
            var offset = Int(span & 0xFF_FFFF_FFFF)
            func take(_ length: Int) -> String {
                defer { offset += length }
                return String(
                    decoding: UnsafeRawBufferPointer(rebasing: arena[offset..<(offset + length)]), as: UTF8.self)
            }
            let bulkId = take(Int(span >> 40 & 0xFF))
            let statusCode = Int(span >> 48 & 0xFF)
            let status = statusCode == 0 ? nil : take(statusCode - 1)
            let updatedCode = Int(span >> 56)
            let updatedOn = updatedCode == 0 ? nil : take(updatedCode - 1)
            return (bulkId, status, updatedOn)
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

    /// Whether the entry's `status` and `updatedOn` are byte for byte these; nil when it has no copy.
    @inline(__always)
    func stateEquals(_ position: Int, status: String?, updatedOn: String?) -> Bool? {
        let span = spans[position]
        guard span != Self.none else { return nil }
        let statusCode = Int(span >> 48 & 0xFF)
        let updatedCode = Int(span >> 56)
        guard statusCode == (status?.utf8.count ?? -1) + 1, updatedCode == (updatedOn?.utf8.count ?? -1) + 1 else {
            return false
        }
        return bytes.withUnsafeBytes { arena in
            var offset = Int(span & 0xFF_FFFF_FFFF) + Int(span >> 40 & 0xFF)
            if let status {
                let equal = ByteKeys.withBytes(status) {
                    ByteKeys.equal(UnsafeRawBufferPointer(rebasing: arena[offset...]), $0)
                }
                guard equal else { return false }
                offset += statusCode - 1
            }
            if let updatedOn {
                return ByteKeys.withBytes(updatedOn) {
                    ByteKeys.equal(UnsafeRawBufferPointer(rebasing: arena[offset...]), $0)
                }
            }
            return true
        }
    }
}

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

    static func hash(_ text: String) -> UInt64 { withBytes(text) { hash($0) } }

    /// A fast 64-bit mix of the bytes (not keyed: ids come from the configured upstream).
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
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

    static func equal(_ lhs: String, _ rhs: String) -> Bool {
        guard lhs.utf8.count == rhs.utf8.count else { return false }
        return withBytes(lhs) { left in withBytes(rhs) { right in equal(left, right) } }
    }

    /// Whether the first `right.count` bytes of `left` are `right` (callers check lengths).
    @inline(__always)
    static func equal(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
        let count = right.count
        guard left.count >= count else { return false }
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
