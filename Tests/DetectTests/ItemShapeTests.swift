import Foundation
import Testing

@testable import BulkWatch
@testable import BulkWatchDetect

/// The snapshot keeps an item's raw JSON as a shape number when the bytes are one of a few layouts filled with
/// the item's own fields (``ItemShape``). Whatever it keeps, every item must come back byte for byte as DruID
/// sent it: the raw JSON is the `data` of the item's events.
@Suite("Item shapes")
struct ItemShapeTests {
    @Test func itemsOfOneLayoutKeepAShapeInsteadOfTheirBytesAndComeBackExact() throws {
        var objects: [String] = []
        for n in 0..<2_000 {
            let created = "2026-12-07T00:\(n % 60):00.000Z"
            // Half were never updated: createdOn and updatedOn equal, so the first shape may swap them.
            let updated = n % 2 == 0 ? created : "2026-12-07T01:\(n % 60):00.000Z"
            objects.append(
                #"{"bulkId":"op-\#(n)","status":"\#(n % 3 == 0 ? "DONE" : "QUEUED")","createdOn":"\#(created)","#
                    + #""updatedOn":"\#(updated)"}"#)
        }
        let items = try decoded(objects)
        var snapshot = Snapshot()
        for item in items { snapshot.append(TrackedItem(item: item), hash: ByteKeys.hash(item.bulkId)) }
        #expect(snapshot.payloads.shapes.count <= 2)
        // createdOn (25 bytes and its length) and a shape code: no raw bytes at all.
        #expect(snapshot.payloads.bytes.count < items.count * 30, "\(snapshot.payloads.bytes.count) bytes")
        expectExact(snapshot, items)
        snapshot.closeHoles(spareFraction: 2)
        expectExact(snapshot, items)
    }

    @Test func everyOtherLayoutComesBackExactShapedOrNot() throws {
        let objects = [
            #"{"bulkId":"a","status":"QUEUED","createdOn":"2026-01-01T00:00:00Z","updatedOn":"2026-01-01T00:00:00Z"}"#,
            // Another key order, spaces, an extra field, fields left out.
            #"{ "updatedOn": "2026-01-02T00:00:00Z", "bulkId": "b", "status": "DONE" }"#,
            #"{"bulkId":"c","status":"DONE","result":{"status":"OK","message":"DONE"},"updatedOn":"t"}"#,
            #"{"bulkId":"d"}"#,
            // An escaped value is not itself in the bytes: kept as bytes.
            #"{"bulkId":"e\u0041","status":"QUE\"UED","createdOn":"x","updatedOn":"y"}"#,
            // A value equal to a key or to another value, and an empty one.
            #"{"bulkId":"status","status":"status","createdOn":"","updatedOn":""}"#,
            #"{"bulkId":"g","status":"bulkId","createdOn":"g","updatedOn":"g"}"#,
            #"{"bulkId":"h","status":"QUEUED","createdOn":"2026-01-01T00:00:00Z","updatedOn":"2026-03-01T00:00:00Z"}"#,
            #"{"bulkId":"i","status":"","createdOn":null,"updatedOn":"2026-03-01T00:00:00Z"}"#,
            #"{"status":"DONE","bulkId":"j","updatedOn":"2026-03-01T00:00:00Z","createdOn":"2026-01-01T00:00:00Z"}"#,
        ]
        let items = try decoded(objects)
        var snapshot = Snapshot()
        for item in items { snapshot.append(TrackedItem(item: item), hash: ByteKeys.hash(item.bulkId)) }
        expectExact(snapshot, items)
        // Each item takes another's layout and state (its own id), then the storage is rewritten in reverse.
        var model: [String: BulkItem] = [:]
        for (position, item) in items.enumerated() {
            let other = String(decoding: items[(position + 3) % items.count].rawJSON, as: UTF8.self)
            // Every id here is plain text, so it can be written into the JSON as it is.
            let replacement = try decoded([
                other.replacingFirst(#/"bulkId": ?"[^"\\]*(\\.[^"\\]*)*"/#, with: #""bulkId":"\#(item.bulkId)""#)
            ])[0]
            #expect(replacement.bulkId == item.bulkId)
            snapshot.replaceItem(at: position, with: replacement)
            model[item.bulkId] = replacement
        }
        snapshot.compact(order: Array((0..<items.count).reversed()))
        expectExact(snapshot, Array(model.values))
    }

    @Test func layoutsPastTheShapeLimitKeepTheirBytes() throws {
        var objects: [String] = []
        for n in 0..<(PayloadArena.maximumShapes * 3) {
            objects.append(#"{"bulkId":"op-\#(n)","pad\#(n)":\#(n),"status":"QUEUED"}"#)
        }
        let items = try decoded(objects)
        var snapshot = Snapshot()
        for item in items { snapshot.append(TrackedItem(item: item), hash: ByteKeys.hash(item.bulkId)) }
        #expect(snapshot.payloads.shapes.count == PayloadArena.maximumShapes)
        expectExact(snapshot, items)
    }

    @Test func randomLayoutsAndValuesComeBackExactThroughReplacementsAndCompactions() throws {
        var random = StorageRandom(seed: 12)
        let pieces = ["QUEUED", "DONE", "", "bulkId", "status", "a\\\"b", "\\u00e9t\\u00e9", "2026", "x y", "op"]
        func value() -> String { pieces[Int(random.next() % UInt64(pieces.count))] }
        func object(_ id: String) -> String {
            var fields = [#""bulkId":"\#(id)""#]
            if random.next() % 5 != 0 { fields.append(#""status":"\#(value())""#) }
            if random.next() % 4 != 0 { fields.append(#""createdOn":"\#(value())""#) }
            if random.next() % 4 != 0 { fields.append(#""updatedOn":"\#(value())""#) }
            if random.next() % 6 == 0 { fields.append(#""extra":[1,"\#(value())"]"#) }
            fields.shuffle(using: &random)
            let separator = random.next() % 3 == 0 ? ", " : ","
            return "{" + fields.joined(separator: separator) + "}"
        }
        var snapshot = Snapshot()
        var model: [String: BulkItem] = [:]
        for round in 0..<60 {
            for n in 0..<20 {
                let id = "id-\(Int(random.next() % 200))" + (n % 7 == 0 ? value() : "")
                let item = try decoded([object(id)])[0]
                if let position = snapshot.position(of: item.bulkId) {
                    snapshot.replaceItem(at: position, with: item)
                } else {
                    snapshot.append(TrackedItem(item: item), hash: ByteKeys.hash(item.bulkId))
                }
                model[item.bulkId] = item
            }
            if round % 9 == 0 { snapshot.closeHoles(spareFraction: 2) }
            if round % 13 == 0 {
                var order = Array(0..<snapshot.positions)
                order.shuffle(using: &random)
                snapshot.compact(order: order)
            }
            for (bulkId, item) in model {
                let position = try #require(snapshot.position(of: bulkId))
                let kept = snapshot.entries[position].item
                #expect(Array(kept.rawJSON) == Array(item.rawJSON), "round \(round): \(bulkId)")
                #expect(kept.status == item.status && kept.createdOn == item.createdOn)
                #expect(kept.updatedOn == item.updatedOn)
                snapshot.withEntryBytes(at: position) { entry in
                    #expect(Array(entry.rawJSON) == Array(item.rawJSON))
                }
            }
        }
    }

    @Test func aShapeMatchesOnlyTheWholeBytes() throws {
        func values<R>(_ id: String, _ status: String, _ body: (ItemShape.Values) -> R) -> R {
            ByteKeys.withBytes(id) { id in
                ByteKeys.withBytes(status) { status in body(ItemShape.Values(bulkId: id, status: status)) }
            }
        }
        func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
        let shape = try #require(
            bytes(#"{"bulkId":"a","status":"Q"}"#).withUnsafeBytes { raw in
                values("a", "Q") { ItemShape.derive(from: raw, $0) }
            })
        func matches(_ raw: String, _ id: String, _ status: String) -> Bool {
            bytes(raw).withUnsafeBytes { raw in values(id, status) { shape.matches(raw, $0) } }
        }
        #expect(matches(#"{"bulkId":"bb","status":"DONE"}"#, "bb", "DONE"))
        #expect(!matches(#"{"bulkId":"bb","status":"DONE"} "#, "bb", "DONE"), "a byte after the shape")
        #expect(!matches(#"{"bulkId":"bb","status":"DONE""#, "bb", "DONE"), "a byte short")
        #expect(!matches(#"{"bulkId":"bb","status":"DONE"}"#, "b", "DONE"), "another id")
        #expect(!matches(#"{"bulkId":"bb", "status":"DONE"}"#, "bb", "DONE"), "another layout")
        // A value that is not in the bytes as a JSON string (escaped there) gives no shape.
        let escaped = bytes(#"{"bulkId":"\u0061","status":"Q"}"#).withUnsafeBytes { raw in
            values("a", "Q") { ItemShape.derive(from: raw, $0) }
        }
        #expect(escaped == nil)
    }

    private func decoded(_ objects: [String]) throws -> [BulkItem] {
        let body = "{\"content\":[" + objects.joined(separator: ",") + "]}"
        return try BulkListDecoder.decode(Array(body.utf8)).items
    }

    private func expectExact(
        _ snapshot: Snapshot, _ items: [BulkItem], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(snapshot.count == items.count, sourceLocation: sourceLocation)
        for item in items {
            guard let position = snapshot.position(of: item.bulkId) else {
                Issue.record("\(item.bulkId) is missing", sourceLocation: sourceLocation)
                continue
            }
            let kept = snapshot.entries[position].item
            #expect(Array(kept.rawJSON) == Array(item.rawJSON), "\(item.bulkId)", sourceLocation: sourceLocation)
            snapshot.withEntryBytes(at: position) { entry in
                #expect(Array(entry.rawJSON) == Array(item.rawJSON), sourceLocation: sourceLocation)
            }
        }
    }
}

extension String {
    fileprivate func replacingFirst(_ pattern: some RegexComponent, with replacement: String) -> String {
        guard let match = firstMatch(of: pattern) else { return self }
        return replacingCharacters(in: match.range, with: replacement)
    }
}
