// A large `content` array is parsed in two halves at once (BulkBodyParser's SecondHalf). These tests force the
// split on small bodies (`parallelFrom: 0`) and require exactly what one thread finds: the same items in the same
// order and form, the same skips, status counts and result, and the same error at the same offset.
import Testing

@testable import BulkWatch

private func decode(_ text: String, parallelFrom: Int) throws(BulkDecodingError) -> DecodedListing {
    try decode(Array(text.utf8), parallelFrom: parallelFrom)
}

private func decode(_ bytes: [UInt8], parallelFrom: Int) throws(BulkDecodingError) -> DecodedListing {
    DecodedListing(try BulkListDecoder.decode(bytes, parallelFrom: parallelFrom))
}

/// One thread and two agree, on a body that decodes, or on the error it is refused with.
private func expectSameBothWays(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectSameBothWays(Array(text.utf8), sourceLocation: sourceLocation)
}

private func expectSameBothWays(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    let alone = Result { () throws(BulkDecodingError) -> DecodedListing in try decode(bytes, parallelFrom: .max) }
    let split = Result { () throws(BulkDecodingError) -> DecodedListing in try decode(bytes, parallelFrom: 0) }
    expectSameOutcome(alone, split, names: ("one thread", "two"), sourceLocation: sourceLocation)
}

private func items(_ count: Int, pretty: Bool = false) -> [String] { decodeTestItems(count, pretty: pretty) }

private func body(_ elements: [String], separator: String = ",") -> String {
    decodeTestBody(elements, separator: separator)
}

@Suite("A large content array decoded in two halves at once")
struct TwoHalvesDecodeTests {
    @Test(arguments: [1, 2, 3, 50, 999, 2_000])
    func twoHalvesFindWhatOneThreadFinds(count: Int) {
        expectSameBothWays(body(items(count)))
        expectSameBothWays(body(items(count, pretty: true), separator: " ,\n  "))
    }

    /// The split point is a guess: a `},{` inside a string or a nested array at the middle of the body must not
    /// be taken for a boundary between items (the first half never reaches it, and parses on alone).
    @Test func aGuessInsideAStringOrANestedValueChangesNothing() {
        let decoy = String(repeating: #"},{"#, count: 4_000)
        let inString = items(40) + [#"{"bulkId":"decoy","note":"\#(decoy)","status":"DONE"}"#] + items(40)
        expectSameBothWays(body(inString))
        let nested = (0..<2_000).map { #"{"x":\#($0)}"# }.joined(separator: ",")
        let inArray = items(40) + [#"{"bulkId":"decoy","list":[\#(nested)],"status":"DONE"}"#] + items(40)
        expectSameBothWays(body(inArray))
        // Both decoy bodies are valid (37 + 1 + 37 items, 6 skipped): two listings are compared, not two errors.
        #expect((try? decode(body(inString), parallelFrom: .max))?.items.count == 75)
        #expect((try? decode(body(inArray), parallelFrom: .max))?.items.count == 75)
    }

    /// An error in either half is reported as one thread reports it: the same code at the same offset.
    @Test func anErrorInEitherHalfIsTheSameError() {
        var broken = items(400)
        broken[300] = #"{"bulkId":"b-300","status":"DONE",}"#  // trailing comma
        expectSameBothWays(body(broken))
        broken = items(400)
        broken[100] = #"{"bulkId":"b-100","status":"DO\qNE"}"#  // invalid escape
        expectSameBothWays(body(broken))
        broken = items(400)
        broken[350] = "17"  // not an object
        expectSameBothWays(body(broken))
        let truncated = body(items(400))
        expectSameBothWays(String(truncated.dropLast(200)))
    }

    /// The decoder's conformance corpus, valid, with repeated keys and invalid, and every prefix of the valid
    /// bodies: the same listing or the same error both ways.
    @Test(arguments: decoderValidCorpus + decoderDuplicateKeyCorpus + decoderInvalidCorpus)
    func theConformanceCorpusDecodesTheSameBothWays(_ body: DecoderCorpusBody) {
        expectSameBothWays(body.bytes)
        if !decoderInvalidCorpus.contains(where: { $0.bytes == body.bytes }) {
            for length in stride(from: 0, to: body.bytes.count, by: 1) {
                expectSameBothWays(Array(body.bytes[..<length]))
            }
        }
    }

    /// With `content` twice the last array wins, also when the first one was split.
    @Test func aRepeatedContentKeyKeepsTheLastArray() {
        let first = #"{"content":["# + items(300).joined(separator: ",") + "],"
        let second = #""content":["# + items(20).joined(separator: ",") + "]}"
        expectSameBothWays(first + second)
        let reversed =
            #"{"content":["# + items(20).joined(separator: ",") + "]," + #""content":["#
            + items(300).joined(separator: ",") + "]}"
        expectSameBothWays(reversed)
    }
}
