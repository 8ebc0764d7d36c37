// The two forms of a decoded item in BulkListing: offsets into the body (the common case) and an item kept
// whole (escapes, items of 64 KiB or more, listings built from items). Both must read the same everywhere.
import Testing

@testable import BulkWatch

/// An item's key fields as the differ reads them (``BulkListing/withKeys(_:)``), as strings.
private func keys(of listing: BulkListing) -> [[String?]] {
    listing.withKeys { reader in
        (0..<reader.count).map { index in
            reader.keys(at: index) { keys in
                [
                    String(decoding: keys.bulkId, as: UTF8.self),
                    keys.status.map { String(decoding: $0, as: UTF8.self) },
                    keys.updatedOn.map { String(decoding: $0, as: UTF8.self) },
                ]
            }
        }
    }
}

/// The same fields from the built items.
private func fields(of items: [BulkItem]) -> [[String?]] {
    items.map { [$0.bulkId, $0.status, $0.updatedOn] }
}

@Suite("Decoded listing: offsets into the body, or items kept whole")
struct ListingFormTests {
    @Test func plainEscapedAndLiteralItemsReadTheSameAsBuiltOnes() throws {
        let objects = [
            #"{"bulkId":"b-1","status":"RUNNING","createdOn":"2026-11-28T10:00:00Z","updatedOn":"2026-11-28T10:00:03Z","x":[1,{"y":null}]}"#,
            #"{"bulkId":"b-\u0032","status":"DO\"NE","updatedOn":"2026-11-28T10:00:04Z"}"#,
            #"{"status":null,"bulkId":123,"updatedOn":1764324963}"#,
            #"{ "bulkId" : "b-4" , "createdOn" : "c" }"#,
            #"{"bulkId":"b-5","status":"","updatedOn":""}"#,
        ]
        let body = Array(("{\"content\":[" + objects.joined(separator: ",") + "]}").utf8)
        let listing = try BulkListDecoder.decode(body)
        let items = listing.items
        #expect(listing.count == 5)
        #expect(
            fields(of: items) == [
                ["b-1", "RUNNING", "2026-11-28T10:00:03Z"], ["b-2", "DO\"NE", "2026-11-28T10:00:04Z"],
                ["123", nil, "1764324963"], ["b-4", nil, nil], ["b-5", "", ""],
            ])
        #expect(items.map(\.createdOn) == ["2026-11-28T10:00:00Z", nil, nil, "c", nil])
        #expect(items.map { String(decoding: $0.rawJSON, as: UTF8.self) } == objects)
        // What the differ reads without building items is what the built items say, in both forms.
        #expect(keys(of: listing) == fields(of: items))
        let built = BulkListing(items: items)
        #expect(keys(of: built) == fields(of: items))
        #expect(built.items == items)
    }

    /// Offsets inside an item are 16 bits: an item of 64 KiB or more is kept whole, and reads the same.
    @Test func anItemOfSixtyFourKiBOrMoreIsKeptWholeAndReadsTheSame() throws {
        let filler = String(repeating: "x", count: 70_000)
        let big = #"{"bulkId":"big","note":"\#(filler)","status":"DONE","updatedOn":"2026-11-28T10:00:05Z"}"#
        let small = #"{"bulkId":"small","status":"RUNNING"}"#
        let body = Array(#"{"content":[\#(small),\#(big),\#(small)]}"#.utf8)
        let listing = try BulkListDecoder.decode(body)
        let items = listing.items
        #expect(
            fields(of: items) == [
                ["small", "RUNNING", nil], ["big", "DONE", "2026-11-28T10:00:05Z"], ["small", "RUNNING", nil],
            ])
        #expect(items[1].rawJSON.count == big.utf8.count)
        #expect(items[1].rawJSON.elementsEqual(big.utf8))
        #expect(keys(of: listing) == fields(of: items))
    }

    /// A repeated `content` key: the last array wins, nothing of the first is kept (in either form).
    @Test func aRepeatedContentKeepsOnlyTheLastArray() throws {
        let body = Array(
            #"{"content":[{"bulkId":"a"},{"bulkId":"\u0062"}],"content":[{"bulkId":"c","status":"\u0044"}]}"#.utf8)
        let listing = try BulkListDecoder.decode(body)
        #expect(fields(of: listing.items) == [["c", "D", nil]])
        #expect(keys(of: listing) == [["c", "D", nil]])
    }
}
