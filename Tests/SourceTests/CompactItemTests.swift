// Items in the shape the endpoint writes, `{"bulkId":"…","status":"…","createdOn":"…","updatedOn":"…"}`, take a fast
// path in the decoder (BulkBodyParser.compactItem). It must append exactly what the general path appends, and hand
// everything else (other shapes, escapes, non-ASCII, control bytes, bytes that end mid-item) to the general path
// untouched, so that errors are the same, at the same offsets. These tests decode with the fast path on and off and
// require the same outcome, on the conformance corpus (and every prefix of its valid bodies) and on items built
// around the fast path's edges; and they check that the fast path is taken where it should be.
import Testing

@testable import BulkWatch
@testable import BulkWatchSource

private func decode(_ bytes: [UInt8], compactItems: Bool) throws(BulkDecodingError) -> DecodedListing {
    DecodedListing(try BulkListDecoder.decode(bytes, parallelFrom: .max, arrived: nil, compactItems: compactItems))
}

private func expectSameWithAndWithout(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    let fast = Result { () throws(BulkDecodingError) -> DecodedListing in try decode(bytes, compactItems: true) }
    let general = Result { () throws(BulkDecodingError) -> DecodedListing in try decode(bytes, compactItems: false) }
    expectSameOutcome(fast, general, names: ("fast path", "general path"), sourceLocation: sourceLocation)
}

private func body(_ items: [String]) -> [UInt8] {
    Array((#"{"content":["# + items.joined(separator: ",") + #"],"result":{"status":200}}"#).utf8)
}

private func compact(_ id: String, _ status: String, _ created: String, _ updated: String) -> String {
    #"{"bulkId":"\#(id)","status":"\#(status)","createdOn":"\#(created)","updatedOn":"\#(updated)"}"#
}

/// Valid values whose lengths straddle the eight-byte scan's steps, and the bytes that must leave the fast path.
private let edgeValues = [
    "", "a", "abcdefg", "abcdefgh", "abcdefghi", String(repeating: "x", count: 15), String(repeating: "y", count: 16),
    String(repeating: "z", count: 17), "2026-12-07T10:00:00.000Z", "3f0c1a52-8a4e-4b1e-9a43-5b2f1c7d9e10",
    #"esc\"aped"#, #"back\\slash"#, #"uni\u00e9"#, "caf\u{e9}", "del\u{7f}", "~!@#$%^&*()_+{}[]|:;'<>?,./",
]

@Suite("the decoder's fast path for compact items")
struct CompactItemTests {
    @Test func theWordsAreTheKeysBytes() {
        func literal(_ text: String) -> BulkBodyParser.WordLiteral {
            let bytes = Array(text.utf8)
            func word(_ slice: ArraySlice<UInt8>) -> UInt64 {
                slice.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            }
            return BulkBodyParser.WordLiteral(
                head: word(bytes[0..<8]), tail: word(bytes[(bytes.count - 8)...]), count: bytes.count)
        }
        for (word, text) in [
            (BulkBodyParser.itemOpen, #"{"bulkId":""#), (BulkBodyParser.statusKey, #"","status":""#),
            (BulkBodyParser.createdOnKey, #"","createdOn":""#), (BulkBodyParser.updatedOnKey, #"","updatedOn":""#),
        ] {
            let expected = literal(text)
            #expect(word.head == expected.head && word.tail == expected.tail && word.count == expected.count, "\(text)")
        }
    }

    @Test func theCompactShapeTakesTheFastPathAndOthersDoNot() {
        #expect(BulkBodyParser.takesCompactPath(Array(compact("b-1", "DONE", "2026-12-07T10:00:00.000Z", "x").utf8)))
        #expect(BulkBodyParser.takesCompactPath(Array(compact("b", "", "", "").utf8)))
        let others = [
            compact("", "DONE", "c", "u"),  // empty bulkId: skipped by the general path
            compact(#"b\"1"#, "DONE", "c", "u"), compact("b", "caf\u{e9}", "c", "u"), compact("b", "D", "c\t", "u"),
            #"{"bulkId": "b","status":"DONE","createdOn":"c","updatedOn":"u"}"#,
            #"{"bulkId":"b","status":"DONE","createdOn":"c","updatedOn":"u","extra":1}"#,
            #"{"bulkId":"b","status":"DONE","updatedOn":"u","createdOn":"c"}"#,
            #"{"bulkId":"b","status":"DONE","createdOn":"c"}"#,
            #"{"bulkId":"b","status":null,"createdOn":"c","updatedOn":"u"}"#,
            #"{"bulkId":17,"status":"DONE","createdOn":"c","updatedOn":"u"}"#,
            #"{"bulkId":"b","status":"DONE","createdOn":"c","updatedOn":"u" }"#,
        ]
        for item in others {
            #expect(!BulkBodyParser.takesCompactPath(Array(item.utf8)), "\(item)")
        }
        // Cut anywhere, a compact item is not taken (the general path reports the truncation).
        let whole = Array(compact("b-1", "DONE", "2026-12-07T10:00:00.000Z", "2026-12-07T10:00:01.000Z").utf8)
        for length in 0..<whole.count {
            #expect(!BulkBodyParser.takesCompactPath(Array(whole[..<length])), "cut at \(length)")
        }
    }

    @Test(arguments: decoderValidCorpus + decoderDuplicateKeyCorpus + decoderInvalidCorpus)
    func theConformanceCorpusDecodesTheSameWithAndWithout(_ corpusBody: DecoderCorpusBody) {
        expectSameWithAndWithout(corpusBody.bytes)
        if !decoderInvalidCorpus.contains(where: { $0.bytes == corpusBody.bytes }) {
            for length in 0..<corpusBody.bytes.count {
                expectSameWithAndWithout(Array(corpusBody.bytes[..<length]))
            }
        }
    }

    @Test func itemsAroundTheFastPathsEdgesDecodeTheSameWithAndWithout() {
        var items: [String] = []
        for (index, value) in edgeValues.enumerated() {
            let other = edgeValues[(index * 7 + 3) % edgeValues.count]
            items.append(compact(value.isEmpty ? "id-\(index)" : value, value, other, value))
            items.append(compact("id-\(index)", other, value, "2026-12-07T10:00:00.000Z"))
        }
        items.append(compact("", "DONE", "c", "u"))  // an empty bulkId: skipped
        items += decodeTestItems(200)
        expectSameWithAndWithout(body(items))
        // A valid body: two listings are compared, not two errors.
        #expect((try? decode(body(items), compactItems: true)) != nil)
        // Every cut of a body of compact items: the same listing prefix error, at the same offset.
        let short = body(Array(items.prefix(6)))
        for length in 0..<short.count {
            expectSameWithAndWithout(Array(short[..<length]))
        }
        // Invalid bytes inside a compact item (a lone continuation byte, a raw control character, a bad escape).
        for broken in [
            compact("b\u{1}", "DONE", "c", "u"), compact("b", "DO\\qNE", "c", "u"), compact("b", "D", "tab\tin", "u"),
        ] {
            expectSameWithAndWithout(body(items.prefix(3) + [broken]))
        }
        var invalidUTF8 = body(Array(items.prefix(2)) + [compact("b-x", "DONE", "c", "u")])
        let at = invalidUTF8.lastIndex(of: UInt8(ascii: "x"))!
        invalidUTF8[at] = 0x80
        expectSameWithAndWithout(invalidUTF8)
    }
}
