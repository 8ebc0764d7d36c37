import Foundation
import Testing

@testable import BulkWatch
@testable import BulkWatchStore

/// Event ids and bodies are part of the contract (receivers dedupe by id, DESIGN.md §4): these are pinned byte for
/// byte, as the encoder wrote them before it read items in place (``BulkItem/withFieldBytes(_:)``), for items whose
/// fields lie in the raw JSON, in strings of their own, or nowhere, with escapes, and for a later incarnation.
@Suite("Event ids and bodies, byte for byte")
struct EventBodyTests {
    private static let source = CloudEventEncoder.Source("https://api.example.com/activityid/v1/user/bulk")
    private static let time = "2026-12-07T10:00:00.000Z"

    /// An item as the decoder builds one: timestamps where they lie in its raw JSON.
    private static func decoded(_ json: String) -> BulkItem {
        let bytes = Array(json.utf8)
        func range(of key: String) -> (offset: UInt32, count: UInt32)? {
            guard let keyRange = json.range(of: "\"\(key)\":\"") else { return nil }
            let start = json.utf8.distance(from: json.startIndex, to: keyRange.upperBound)
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\""))!
            return (UInt32(start), UInt32(end - start))
        }
        func text(_ key: String) -> BulkItem.Text {
            range(of: key).map { .inRaw(offset: $0.offset, count: $0.count) } ?? .absent
        }
        let object = try! JSONSerialization.jsonObject(with: Data(bytes)) as! [String: Any]
        return BulkItem(
            bulkId: object["bulkId"] as! String, status: object["status"] as? String, createdOn: text("createdOn"),
            updatedOn: text("updatedOn"), rawJSON: bytes[...])
    }

    private static let changes: [(DetectedChange, incarnation: Int64)] = [
        (
            DetectedChange(
                kind: .created,
                item: decoded(
                    #"{"bulkId":"b-1","status":"PENDING","createdOn":"2026-12-07T09:00:00Z","updatedOn":"2026-12-07T09:00:00Z"}"#
                )), 0
        ),
        (
            DetectedChange(
                kind: .changed,
                item: decoded(
                    #"{"bulkId":"3f2c9a4e-7b1d-4c55-9e0a-1d2b3c4d5e6f","status":"FINISHED_WITH_ERRORS","updatedOn":"2026-12-07T09:30:00.123Z","extra":[1,{"a":null}]}"#
                ),
                previous: PreviousState(status: "PROCESSING \"late\"", updatedOn: "2026-12-07T09:10:00Z")), 0
        ),
        (
            DetectedChange(
                kind: .expired,
                item: BulkItem(
                    bulkId: "quote\"back\\slash\ttab", status: nil, createdOn: "2026-01-01T00:00:00Z",
                    updatedOn: "2026-01-02T00:00:00Z", rawJSON: Array(#"{"bulkId":"x"}"#.utf8)[...])), 2
        ),
        (
            DetectedChange(
                kind: .created, item: BulkItem(bulkId: "b-empty", status: "", rawJSON: Array("{ }".utf8)[...])), 0
        ),
        (
            DetectedChange(
                kind: .changed, item: BulkItem(bulkId: "b-odd", status: "DONE", rawJSON: Array("[1]".utf8)[...]),
                previous: PreviousState(status: nil, updatedOn: nil)), 1
        ),
    ]

    // Printed by this test with BULKWATCH_PRINT_GOLDEN=1 at 1908ed1, before the change.
    private static let golden: [(id: String, body: String)] = [
        (
            "fa270598-2571-8b1f-9199-b2a4eb69d8c7",
            "{\"specversion\":\"1.0\",\"id\":\"fa270598-2571-8b1f-9199-b2a4eb69d8c7\",\"source\":\"https://api.example.com/activityid/v1/user/bulk\",\"type\":\"bulk.created\",\"subject\":\"b-1\",\"time\":\"2026-12-07T10:00:00.000Z\",\"datacontenttype\":\"application/json\",\"sequence\":\"40\",\"data\":{\"bulkId\":\"b-1\",\"status\":\"PENDING\",\"createdOn\":\"2026-12-07T09:00:00Z\",\"updatedOn\":\"2026-12-07T09:00:00Z\",\"previous\":null}}"
        ),
        (
            "03824405-3bf0-8482-948d-e0fb95976199",
            "{\"specversion\":\"1.0\",\"id\":\"03824405-3bf0-8482-948d-e0fb95976199\",\"source\":\"https://api.example.com/activityid/v1/user/bulk\",\"type\":\"bulk.changed\",\"subject\":\"3f2c9a4e-7b1d-4c55-9e0a-1d2b3c4d5e6f\",\"time\":\"2026-12-07T10:00:00.000Z\",\"datacontenttype\":\"application/json\",\"sequence\":\"41\",\"data\":{\"bulkId\":\"3f2c9a4e-7b1d-4c55-9e0a-1d2b3c4d5e6f\",\"status\":\"FINISHED_WITH_ERRORS\",\"updatedOn\":\"2026-12-07T09:30:00.123Z\",\"extra\":[1,{\"a\":null}],\"previous\":{\"status\":\"PROCESSING \\\"late\\\"\",\"updatedOn\":\"2026-12-07T09:10:00Z\"}}}"
        ),
        (
            "ad2882f8-5668-8e01-8a77-ba6e4bf5dc15",
            "{\"specversion\":\"1.0\",\"id\":\"ad2882f8-5668-8e01-8a77-ba6e4bf5dc15\",\"source\":\"https://api.example.com/activityid/v1/user/bulk\",\"type\":\"bulk.expired\",\"subject\":\"quote\\\"back\\\\slash\\ttab\",\"time\":\"2026-12-07T10:00:00.000Z\",\"datacontenttype\":\"application/json\",\"sequence\":\"42\",\"data\":{\"bulkId\":\"x\",\"previous\":null}}"
        ),
        (
            "d490cf4a-e688-8ac5-85de-266337a87aa3",
            "{\"specversion\":\"1.0\",\"id\":\"d490cf4a-e688-8ac5-85de-266337a87aa3\",\"source\":\"https://api.example.com/activityid/v1/user/bulk\",\"type\":\"bulk.created\",\"subject\":\"b-empty\",\"time\":\"2026-12-07T10:00:00.000Z\",\"datacontenttype\":\"application/json\",\"sequence\":\"43\",\"data\":{ \"previous\":null}}"
        ),
        (
            "9aa3017e-c9b6-8d21-a8e8-2d5432b75d16",
            "{\"specversion\":\"1.0\",\"id\":\"9aa3017e-c9b6-8d21-a8e8-2d5432b75d16\",\"source\":\"https://api.example.com/activityid/v1/user/bulk\",\"type\":\"bulk.changed\",\"subject\":\"b-odd\",\"time\":\"2026-12-07T10:00:00.000Z\",\"datacontenttype\":\"application/json\",\"sequence\":\"44\",\"data\":{\"previous\":null}}"
        ),
    ]

    @Test func idsAndBodiesAreThoseOfTheEncoderBefore() throws {
        let encoded = Self.changes.enumerated().map { index, entry in
            CloudEventEncoder.encode(
                entry.0, source: Self.source, sequence: 40 + Int64(index), time: Self.time,
                incarnation: entry.incarnation)
        }
        if ProcessInfo.processInfo.environment["BULKWATCH_PRINT_GOLDEN"] != nil {
            for event in encoded {
                print(
                    "GOLDEN (\(String(reflecting: event.id)), \(String(reflecting: String(decoding: event.body, as: UTF8.self))))"
                )
            }
        }
        #expect(encoded.count == Self.golden.count)
        for (event, expected) in zip(encoded, Self.golden) {
            #expect(event.id == expected.id)
            #expect(String(decoding: event.body, as: UTF8.self) == expected.body)
        }
    }

    /// What the encoders read in place is what the item's own accessors give.
    @Test func anItemsFieldBytesAreItsFields() {
        for (change, _) in Self.changes {
            let item = change.item
            item.withFieldBytes { bytes in
                func text(_ field: UnsafeRawBufferPointer?) -> String? {
                    field.map { String(decoding: $0, as: UTF8.self) }
                }
                #expect(text(bytes.bulkId) == item.bulkId)
                #expect(text(bytes.status) == item.status)
                #expect(text(bytes.createdOn) == item.createdOn)
                #expect(text(bytes.updatedOn) == item.updatedOn)
                #expect(Array(bytes.rawJSON) == Array(item.rawJSON))
            }
        }
    }
}
