import BulkWatchDetect
import BulkWatchSupport

/// The bytes a snapshot is persisted as: an *image* of every tracked item, written now and then, and
/// after it one *delta* per committed poll holding only the rows that poll changed.
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
/// - delta: upserted count, items, removed count, removed ids, then 0 (guard set unchanged) or 1
///   followed by the guarded-id count and ids.
///
/// An item is `bulkId`, `status`, `createdOn`, `updatedOn`, raw JSON, absence counter.
enum SnapshotCodec {
    static let imageMagic: [UInt8] = Array("BWI1".utf8)
    static let deltaMagic: [UInt8] = Array("BWD1".utf8)

    struct Corrupt: Error, CustomStringConvertible {
        var what: String
        var description: String { "stored snapshot is corrupt (\(what))" }
    }

    // MARK: Encoding

    static func image(of snapshot: Snapshot) -> [UInt8] {
        var out = Writer()
        out.bytes.reserveCapacity(snapshot.count * 200 + 64)
        out.append(imageMagic)
        out.varint(snapshot.count)
        for position in 0..<snapshot.positions where !snapshot.isDead(position) {
            out.item(snapshot.tracked(at: position))
        }
        out.strings(snapshot.removalGuardedIDs)
        return out.bytes
    }

    static func delta(of outcome: DiffOutcome, guarded: [String]?) -> [UInt8] {
        var out = Writer()
        out.bytes.reserveCapacity(outcome.upserted.reduce(64) { $0 + $1.item.rawJSON.count + 64 })
        out.append(deltaMagic)
        out.varint(outcome.upserted.count)
        for row in outcome.upserted { out.item(row) }
        out.strings(outcome.removed)
        if let guarded {
            out.varint(1)
            out.strings(guarded)
        } else {
            out.varint(0)
        }
        return out.bytes
    }

    // MARK: Decoding

    /// Rebuilds the snapshot from an image (nil: none yet) and the deltas written after it, in order.
    static func snapshot(image: [UInt8]?, deltas: [[UInt8]]) throws -> Snapshot {
        var items: [TrackedItem] = []
        var position: [String: Int] = [:]
        var removed: [Bool] = []
        var guarded: [String] = []
        if let image {
            var reader = Reader(image)
            try reader.expect(imageMagic, "image header")
            let count = try reader.varint()
            items.reserveCapacity(count)
            position.reserveCapacity(count)
            for _ in 0..<count {
                let row = try reader.item()
                position[row.item.bulkId] = items.count
                items.append(row)
            }
            guarded = try reader.strings()
            removed = [Bool](repeating: false, count: items.count)
        }
        for delta in deltas {
            var reader = Reader(delta)
            try reader.expect(deltaMagic, "delta header")
            for _ in 0..<(try reader.varint()) {
                let row = try reader.item()
                if let at = position[row.item.bulkId] {
                    items[at] = row
                    removed[at] = false
                } else {
                    position[row.item.bulkId] = items.count
                    items.append(row)
                    removed.append(false)
                }
            }
            for bulkId in try reader.strings() {
                if let at = position[bulkId] { removed[at] = true }
            }
            if try reader.varint() == 1 { guarded = try reader.strings() }
        }
        let live = items.indices.lazy.filter { !removed[$0] }.map { items[$0] }
        return Snapshot(tracked: live, removalGuarded: guarded)
    }

    private struct Writer {
        var bytes: [UInt8] = []

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
            var text = text
            text.withUTF8 { utf8 in
                varint(utf8.count)
                bytes.append(contentsOf: utf8)
            }
        }

        mutating func optional(_ text: String?) {
            guard var text else { return optional(nil as UnsafeRawBufferPointer?) }
            text.withUTF8 { optional(UnsafeRawBufferPointer($0)) }
        }

        mutating func optional(_ utf8: UnsafeRawBufferPointer?) {
            guard let utf8 else { return varint(0) }
            varint(utf8.count + 1)
            bytes.append(contentsOf: utf8)
        }

        mutating func strings(_ list: [String]) {
            varint(list.count)
            for text in list { string(text) }
        }

        mutating func item(_ row: TrackedItem) {
            string(row.item.bulkId)
            optional(row.item.status)
            row.item.withCreatedOnUTF8 { optional($0) }
            row.item.withUpdatedOnUTF8 { optional($0) }
            varint(row.item.rawJSON.count)
            bytes.append(contentsOf: row.item.rawJSON)
            varint(row.absentPolls)
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func expect(_ magic: [UInt8], _ what: String) throws {
            guard bytes.count >= magic.count, bytes[0..<magic.count].elementsEqual(magic) else {
                throw Corrupt(what: what)
            }
            offset = magic.count
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

        mutating func slice(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count <= bytes.count - offset else { throw Corrupt(what: "length \(count) at \(offset)") }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
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
            let raw = try slice(try varint())
            let absent = try varint()
            return TrackedItem(
                item: BulkItem(
                    bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn, rawJSON: raw),
                absentPolls: absent)
        }
    }
}
