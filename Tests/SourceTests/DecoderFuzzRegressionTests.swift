// Behaviour of BulkListDecoder pinned by inputs the libFuzzer target in Fuzz/ turned up
// (scripts/fuzz.sh decoder).
import BulkWatch
import Testing

@Suite struct DecoderFuzzRegressionTests {
    /// The fuzzer's oracle disagreed here: JSONSerialization on Linux drops a raw U+FEFF at the start
    /// of a string and right after an escape, so it reads `"\u{FEFF}status"` as `status`. The bytes
    /// say otherwise; the decoder (like JSONDecoder) keeps the character, in values and in keys.
    @Test func aByteOrderMarkOpeningAStringIsPartOfIt() throws {
        let body = Array("{\"content\":[{\"bulkId\":\"\u{FEFF}b\"}],\"result\":{\"\u{FEFF}status\":500}}".utf8)
        let listing = try BulkListDecoder.decode(body)
        #expect(listing.items.map { Array($0.bulkId.unicodeScalars) } == [["\u{FEFF}", "b"]])
        #expect(listing.resultStatus == nil)
    }

    @Test func aByteOrderMarkAfterAnEscapeIsKept() throws {
        let body = Array("{\"content\":[{\"bulkId\":\"c\\/\u{FEFF}d\"}]}".utf8)
        let listing = try BulkListDecoder.decode(body)
        #expect(listing.items.map { Array($0.bulkId.unicodeScalars) } == [["c", "/", "\u{FEFF}", "d"]])
    }
}
