import BulkWatchDetect
import BulkWatchSupport

/// The bytes a snapshot is persisted as: an *image* of every tracked item, written now and then, and
/// after it the *deltas* of each committed poll holding only the rows that poll changed (one delta, or
/// consecutive pieces of at most 4,096 rows: ``deltaPieces(of:rowsEach:)``).
///
/// Why not a table row per item: a steady poll changes a few thousand items scattered over random
/// `bulkId`s, and rewriting their rows dirtied thousands of B-tree pages (and their WAL copies) per
/// poll. A delta is one appended blob of O(changes) bytes; loading is the image plus the deltas in
/// order, and the store folds the deltas into a fresh image once they outgrow it, so both the load
/// time and the space stay within a small factor of the snapshot's own size.
///
/// Format (little-endian varints, strings as UTF-8 with their length; an optional string's length is
/// stored plus one, 0 meaning absent): a 4-byte magic and version, then
/// - image: item count, items, guarded-id count, guarded ids;
/// - delta (`BWD2`): upserted count, items, removed count, removed ids, then 0 (guard set unchanged) or 1
///   followed by the guarded-id count and ids, then the absence-counter count and that many `bulkId` and
///   counter pairs (``DiffOutcome/absenceCounts``: absent items whose counter alone moved). A `BWD1` delta,
///   written before the counters had their own section, ends after the guard set; it still loads.
///
/// An item is `bulkId`, `status`, `createdOn`, `updatedOn`, raw JSON, absence counter.
enum SnapshotCodec {
    static let imageMagic: [UInt8] = Array("BWI1".utf8)
    static let deltaMagic: [UInt8] = Array("BWD2".utf8)
    /// Deltas of state files written before ``DiffOutcome/absenceCounts``: the same without the counters.
    static let deltaMagicWithoutCounts: [UInt8] = Array("BWD1".utf8)

    struct Corrupt: Error, CustomStringConvertible {
        var what: String
        var description: String { "stored snapshot is corrupt (\(what))" }
    }

    // MARK: Encoding

    static func image(of snapshot: Snapshot) -> [UInt8] {
        var image: [UInt8] = []
        image.reserveCapacity(imageSize(of: snapshot))
        writeImage(of: snapshot) { image.append(contentsOf: $0) }
        return image
    }

    /// The exact length of ``image(of:)``, so a store can make room for the image before writing it.
    static func imageSize(of snapshot: Snapshot) -> Int {
        var size = imageMagic.count + Writer.varintLength(snapshot.count)
        for position in 0..<snapshot.positions where !snapshot.isDead(position) {
            snapshot.withEntryBytes(at: position) { size += Writer.itemLength($0) }
        }
        return size + Writer.stringsLength(snapshot.removalGuardedIDs)
    }

    /// Encodes the image of `snapshot` in pieces of about `chunkBytes`, handing each to `write` in order:
    /// a store streams it into place, so a fold never holds the whole image (~20 MB per 100k items) and
    /// its copies at once. Reads the snapshot's bytes in place (no `String` or array per item).
    static func writeImage(
        of snapshot: Snapshot, chunkBytes: Int = 1 << 20, _ write: (UnsafeRawBufferPointer) throws -> Void
    ) rethrows {
        var out = Writer(reserving: chunkBytes + 4096, pieces: chunkBytes)
        out.append(imageMagic)
        out.varint(snapshot.count)
        for position in 0..<snapshot.positions where !snapshot.isDead(position) {
            snapshot.withEntryBytes(at: position) { out.item($0) }
            try out.flushIfFull(write)
        }
        out.strings(snapshot.removalGuardedIDs)
        try out.finish(write)
    }

    /// The whole delta of `outcome` (its rows in ``DiffOutcome/upserted``), in one piece.
    static func delta(of outcome: DiffOutcome, guarded: [String]?) -> [UInt8] {
        delta(of: outcome, rows: outcome.upserted.indices, guarded: guarded)
    }

    /// The rows of `outcome`'s delta cut into consecutive pieces (``deltaPieces(of:rowsEach:)``): ranges of
    /// ``DiffOutcome/upserted``, or, when the rows are the whole of `snapshot`
    /// (``DiffOutcome/upsertedIsWholeSnapshot``, a first poll), ranges of its positions. Write each with
    /// ``delta(of:snapshot:rows:guarded:)``.
    static func deltaPieces(of outcome: DiffOutcome, snapshot: Snapshot, rowsEach: Int = 4096) -> [Range<Int>] {
        guard outcome.upsertedIsWholeSnapshot else { return deltaPieces(of: outcome, rowsEach: rowsEach) }
        return pieces(of: 0..<snapshot.positions, rowsEach: rowsEach)
    }

    /// One piece of ``deltaPieces(of:snapshot:rowsEach:)``. For a first poll, the rows are read from the
    /// snapshot's bytes in place: no `TrackedItem` per entry is ever built (~12 MB at 100k items).
    ///
    /// One pass over the entries, into a buffer sized by a guess that grows when short: reading an entry
    /// renders its raw JSON, and a first pass for the exact size cost as much again.
    static func delta(of outcome: DiffOutcome, snapshot: Snapshot, rows: Range<Int>, guarded: [String]?) -> [UInt8] {
        guard outcome.upsertedIsWholeSnapshot else { return delta(of: outcome, rows: rows, guarded: guarded) }
        let last = rows.upperBound == snapshot.positions
        let count = rows.reduce(0) { snapshot.isDead($1) ? $0 : $0 + 1 }
        let size =
            deltaMagic.count + Writer.varintLength(count) + count * guessedRowBytes
            + (last ? Writer.deltaEndLength(of: outcome, guarded: guarded) : Writer.emptyDeltaEndLength)
        var out = Writer(reserving: size)
        out.append(deltaMagic)
        out.varint(count)
        for position in rows where !snapshot.isDead(position) {
            snapshot.withEntryBytes(at: position) { out.item($0) }
        }
        if last { out.deltaEnd(of: outcome, guarded: guarded) } else { out.emptyDeltaEnd() }
        return out.bytes
    }

    /// What a row usually takes: its fields (~100 bytes for DruID's) and its raw JSON (~120).
    private static let guessedRowBytes = 256

    /// The rows of `outcome`'s delta cut into consecutive pieces of at most `rowsEach` (always at least one
    /// piece, for the removals and the guard set). A piece is written with ``delta(of:rows:guarded:)``;
    /// replaying the pieces in order is replaying the one delta: a row only ever replaces the state of its
    /// own id, and the removals come after every row, as in the single delta. A first poll's delta holds
    /// every item (~15 MB per 100k, ~200 MB per 1M); the stores write it as such pieces instead of holding it.
    static func deltaPieces(of outcome: DiffOutcome, rowsEach: Int = 4096) -> [Range<Int>] {
        pieces(of: outcome.upserted.indices, rowsEach: rowsEach)
    }

    private static func pieces(of rows: Range<Int>, rowsEach: Int) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var start = rows.lowerBound
        repeat {
            let end = rows.upperBound - start <= rowsEach ? rows.upperBound : start + rowsEach
            pieces.append(start..<end)
            start = end
        } while start < rows.upperBound
        return pieces
    }

    /// One piece of `outcome`'s delta (``deltaPieces(of:rowsEach:)``): a complete delta of those rows, with the
    /// removals, the guard set and the absence counters when it is the last piece.
    static func delta(of outcome: DiffOutcome, rows: Range<Int>, guarded: [String]?) -> [UInt8] {
        let last = rows.upperBound == outcome.upserted.endIndex
        // Its exact size: a steady poll's piece is a few hundred kB, an idle one a dozen bytes.
        let size =
            outcome.upserted[rows].reduce(deltaMagic.count + Writer.varintLength(rows.count)) {
                $0 + Writer.itemLength($1)
            } + (last ? Writer.deltaEndLength(of: outcome, guarded: guarded) : Writer.emptyDeltaEndLength)
        var out = Writer(reserving: size)
        out.append(deltaMagic)
        out.varint(rows.count)
        // Read in place (`for row in upserted[rows]` copied each row: a retain and release of its strings).
        outcome.upserted.withUnsafeBufferPointer { upserted in
            for index in rows { out.item(upserted[index]) }
        }
        if last { out.deltaEnd(of: outcome, guarded: guarded) } else { out.emptyDeltaEnd() }
        return out.bytes
    }

    // MARK: Decoding

    /// Rebuilds the snapshot from an image (nil: none yet) and the deltas written after it, in order.
    static func snapshot(image: [UInt8]?, deltas: [[UInt8]]) throws -> Snapshot {
        var loader = Loader()
        try image?.withUnsafeBytes { try loader.image($0) }
        for delta in deltas { try delta.withUnsafeBytes { try loader.delta($0) } }
        return loader.finish()
    }

    /// Rebuilds a snapshot from bytes handed to it in order, the image (if any) first, then each delta:
    /// a store hands it the bytes SQLite holds for each row, and the rows go straight into the snapshot one
    /// by one (no copy of the image or of a delta, no array of every row, no dictionary of every id).
    struct Loader {
        private var snapshot = Snapshot()
        private var guarded: [String] = []

        mutating func image(_ bytes: UnsafeRawBufferPointer) throws {
            var reader = Reader(bytes)
            try reader.expect(imageMagic, "image header")
            let count = try reader.varint()
            guard count <= bytes.count else { throw Corrupt(what: "item count \(count)") }
            snapshot.reserveForLoad(count, payloadBytes: bytes.count)
            for _ in 0..<count { snapshot.load(try reader.item()) }
            guarded = try reader.strings()
        }

        mutating func delta(_ bytes: UnsafeRawBufferPointer) throws {
            var reader = Reader(bytes)
            let withCounts = try reader.expect(oneOf: [deltaMagic, deltaMagicWithoutCounts], "delta header") == 0
            for _ in 0..<(try reader.varint()) { snapshot.load(try reader.item()) }
            for bulkId in try reader.strings() { snapshot.unload(bulkId) }
            if try reader.varint() == 1 { guarded = try reader.strings() }
            guard withCounts else { return }
            let counts = try reader.varint()
            guard counts <= bytes.count else { throw Corrupt(what: "absence-counter count \(counts)") }
            for _ in 0..<counts { snapshot.loadAbsentPolls(try reader.string(), try reader.varint()) }
        }

        consuming func finish() -> Snapshot {
            snapshot.finishLoad(removalGuarded: guarded)
            return snapshot
        }
    }

    private struct Writer {
        var bytes: [UInt8] = []
        /// Hand the bytes on once they reach this many (``flushIfFull(_:)``).
        private let pieceBytes: Int

        init(reserving capacity: Int, pieces pieceBytes: Int = .max) {
            self.pieceBytes = pieceBytes
            bytes.reserveCapacity(capacity)
        }

        mutating func flushIfFull(_ write: (UnsafeRawBufferPointer) throws -> Void) rethrows {
            guard bytes.count >= pieceBytes else { return }
            try bytes.withUnsafeBytes(write)
            bytes.removeAll(keepingCapacity: true)
        }

        /// Hands on what is left; the buffer stays for more.
        mutating func finish(_ write: (UnsafeRawBufferPointer) throws -> Void) rethrows {
            if !bytes.isEmpty { try bytes.withUnsafeBytes(write) }
            bytes.removeAll(keepingCapacity: true)
        }

        mutating func append(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }

        mutating func varint(_ value: Int) {
            var rest = UInt64(max(0, value))
            while rest >= 0x80 {
                bytes.append(UInt8(rest & 0x7F) | 0x80)
                rest >>= 7
            }
            bytes.append(UInt8(rest))
        }

        mutating func string(_ text: String) {
            // Native strings are contiguous: read in place. `withUTF8` needs a `var` copy (a retain) to make one so.
            if text.utf8.withContiguousStorageIfAvailable({ counted(UnsafeRawBufferPointer($0)) }) != nil { return }
            var text = text
            text.withUTF8 { counted(UnsafeRawBufferPointer($0)) }
        }

        /// Bytes preceded by their length.
        private mutating func counted(_ utf8: UnsafeRawBufferPointer) {
            varint(utf8.count)
            bytes.append(contentsOf: utf8)
        }

        mutating func optional(_ utf8: UnsafeRawBufferPointer?) {
            guard let utf8 else { return varint(0) }
            varint(utf8.count + 1)
            bytes.append(contentsOf: utf8)
        }

        static func varintLength(_ value: Int) -> Int {
            var rest = UInt64(max(0, value))
            var length = 1
            while rest >= 0x80 {
                rest >>= 7
                length += 1
            }
            return length
        }

        /// The exact length ``item(_:)-(EntryBytes)`` writes.
        static func itemLength(_ entry: EntryBytes) -> Int {
            stringLength(entry.bulkId.count) + optionalLength(entry.status?.count)
                + optionalLength(entry.createdOn?.count) + optionalLength(entry.updatedOn?.count)
                + stringLength(entry.rawJSON.count) + varintLength(entry.absentPolls)
        }

        /// An entry as ``item(_:)`` writes a row, from the snapshot's bytes.
        mutating func item(_ entry: EntryBytes) {
            varint(entry.bulkId.count)
            bytes.append(contentsOf: entry.bulkId)
            optional(entry.status)
            optional(entry.createdOn)
            optional(entry.updatedOn)
            varint(entry.rawJSON.count)
            bytes.append(contentsOf: entry.rawJSON)
            varint(entry.absentPolls)
        }

        /// A delta's end: the removed ids, then 0 (guard set unchanged) or 1 and the guarded ids, then the
        /// absence counters.
        mutating func deltaEnd(of outcome: DiffOutcome, guarded: [String]?) {
            strings(outcome.removed)
            if let guarded {
                varint(1)
                strings(guarded)
            } else {
                varint(0)
            }
            varint(outcome.absenceCounts.count)
            for count in outcome.absenceCounts {
                string(count.bulkId)
                varint(count.absentPolls)
            }
        }

        /// The exact length ``deltaEnd(of:guarded:)`` writes.
        static func deltaEndLength(of outcome: DiffOutcome, guarded: [String]?) -> Int {
            outcome.absenceCounts.reduce(
                stringsLength(outcome.removed) + 1 + (guarded.map(stringsLength) ?? 0)
                    + varintLength(outcome.absenceCounts.count)
            ) { $0 + stringLength($1.bulkId.utf8.count) + varintLength($1.absentPolls) }
        }

        /// The end of a delta piece before the last: nothing removed, guard set unchanged, no counters.
        mutating func emptyDeltaEnd() { bytes.append(contentsOf: [0, 0, 0]) }

        static let emptyDeltaEndLength = 3

        mutating func strings(_ list: [String]) {
            varint(list.count)
            for text in list { string(text) }
        }

        /// The exact length ``item(_:)-(TrackedItem)`` writes.
        static func itemLength(_ row: TrackedItem) -> Int {
            // Read in place (``BulkItem/withFieldBytes(_:)``): each field read on its own copied the item.
            row.item.withFieldBytes { item in
                stringLength(item.bulkId.count) + optionalLength(item.status?.count)
                    + optionalLength(item.createdOn?.count) + optionalLength(item.updatedOn?.count)
                    + stringLength(item.rawJSON.count) + varintLength(row.absentPolls)
            }
        }

        static func stringsLength(_ list: [String]) -> Int {
            list.reduce(varintLength(list.count)) { $0 + stringLength($1.utf8.count) }
        }

        private static func stringLength(_ count: Int) -> Int { varintLength(count) + count }

        private static func optionalLength(_ count: Int?) -> Int { count.map { varintLength($0 + 1) + $0 } ?? 1 }

        mutating func item(_ row: TrackedItem) {
            row.item.withFieldBytes { item in
                counted(item.bulkId)
                optional(item.status)
                optional(item.createdOn)
                optional(item.updatedOn)
                counted(item.rawJSON)
            }
            varint(row.absentPolls)
        }
    }

    /// Reads rows from bytes that outlive it (the caller's buffer, valid while it reads).
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func expect(_ magic: [UInt8], _ what: String) throws {
            _ = try expect(oneOf: [magic], what)
        }

        /// Reads the header, which must be one of `magics` (all of one length); returns which.
        mutating func expect(oneOf magics: [[UInt8]], _ what: String) throws -> Int {
            for (index, magic) in magics.enumerated()
            where bytes.count >= magic.count && bytes.prefix(magic.count).elementsEqual(magic) {
                offset = magic.count
                return index
            }
            throw Corrupt(what: what)
        }

        mutating func varint() throws -> Int {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard offset < bytes.count, shift < 63 else { throw Corrupt(what: "varint at \(offset)") }
                let byte = bytes[offset]
                offset += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { break }
                shift += 7
            }
            guard value <= UInt64(Int.max) else { throw Corrupt(what: "varint at \(offset)") }
            return Int(value)
        }

        mutating func slice(_ count: Int) throws -> UnsafeRawBufferPointer {
            guard count <= bytes.count - offset else { throw Corrupt(what: "length \(count) at \(offset)") }
            defer { offset += count }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        }

        mutating func string() throws -> String {
            String(decoding: try slice(try varint()), as: UTF8.self)
        }

        mutating func optional() throws -> String? {
            let length = try varint()
            guard length > 0 else { return nil }
            return String(decoding: try slice(length - 1), as: UTF8.self)
        }

        mutating func strings() throws -> [String] {
            let count = try varint()
            guard count <= bytes.count - offset else { throw Corrupt(what: "count \(count) at \(offset)") }
            return try (0..<count).map { _ in try string() }
        }

        mutating func item() throws -> TrackedItem {
            let bulkId = try string()
            let status = try optional()
            let createdOn = try optional()
            let updatedOn = try optional()
            let raw = ArraySlice(try slice(try varint()))
            let absent = try varint()
            return TrackedItem(
                item: BulkItem(
                    bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn, rawJSON: raw),
                absentPolls: absent)
        }
    }
}
