// A large answer's `content` array is parsed while the answer arrives (ArrivingContent, on a thread of its own),
// and the decode of the complete body takes that work over. These tests stand in for the transport: they publish
// a body in chunks to an ArrivingBody, as the curl thread does, with the reader started from the first byte, then
// decode the complete body. They require exactly what the decode finds alone: the same items in the same order
// and form, the same skips, status counts and result, and the same error at the same offset.
import Foundation
import Testing

@testable import BulkWatch

/// How the test publishes a body: in chunks of `chunk` bytes, pausing now and then so that the reader catches up
/// and waits for bytes; `moveAt` moves the buffer once that many bytes are published (as the transport does when a
/// compressed body outgrows its announced length); `smallestSplit` decides whether the decode splits what is left.
private struct Arrival: CustomTestStringConvertible {
    var chunk: Int
    var pauses = true
    /// Pause after every chunk, not every 8 KiB: the reader then meets the end of the bytes at every offset.
    var pauseEachChunk = false
    var moveAt: Int?
    var smallestSplit = 0

    var testDescription: String {
        "chunks of \(chunk)" + (pauses ? "" : ", no pauses") + (moveAt.map { ", moved at \($0)" } ?? "")
            + (smallestSplit == 0 ? "" : ", no split")
    }
}

private let arrivals = [
    Arrival(chunk: 1), Arrival(chunk: 7), Arrival(chunk: 100), Arrival(chunk: 4_096), Arrival(chunk: 1 << 20),
    Arrival(chunk: 100, pauses: false), Arrival(chunk: 333, moveAt: 2_000), Arrival(chunk: 64, smallestSplit: .max),
]

/// Publishes `bytes` as `arrival` says, then decodes the complete body, taking over what the reader parsed.
/// Returns the listing and whether the reader had started.
private func decodeArriving(
    _ bytes: [UInt8], _ arrival: Arrival
) -> (Result<DecodedListing, BulkDecodingError>, readerStarted: Bool) {
    let arrived = ArrivingContent(threshold: 1, smallestSplit: arrival.smallestSplit)
    let body = arrived.body()
    var buffer: [UInt8] = []
    buffer.reserveCapacity(bytes.count)
    var sent = 0
    var moved = false
    while sent < bytes.count {
        let end = min(bytes.count, sent + arrival.chunk)
        if let moveAt = arrival.moveAt, !moved, end > moveAt {
            // The storage changes: withdrawn first, then published again from its new place.
            body.withdraw()
            var bigger: [UInt8] = []
            bigger.reserveCapacity(bytes.count + 1)
            bigger.append(contentsOf: buffer)
            buffer = bigger
            moved = true
        }
        buffer.append(contentsOf: bytes[sent..<end])
        buffer.withUnsafeBufferPointer { body.publish($0.baseAddress!, count: $0.count) }
        // A pause every 8 KiB: the reader catches up, and waits for bytes in the middle of an element.
        if arrival.pauseEachChunk || (arrival.pauses && sent >> 13 != end >> 13) { usleep(300) }
        sent = end
    }
    body.end(with: buffer)
    let started = arrived.hasReader
    let result = Result { () throws(BulkDecodingError) -> DecodedListing in
        DecodedListing(try BulkListDecoder.decode(buffer, parallelFrom: .max, arrived: arrived))
    }
    return (result, started)
}

private func decodeAlone(_ bytes: [UInt8]) -> Result<DecodedListing, BulkDecodingError> {
    Result { () throws(BulkDecodingError) -> DecodedListing in
        DecodedListing(try BulkListDecoder.decode(bytes, parallelFrom: .max))
    }
}

/// The decode alone and the decode that takes over agree, on a body that decodes or on the error it is refused
/// with.
private func expectSameAsAlone(
    _ bytes: [UInt8], _ arrival: Arrival, readerStarts: Bool? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    let (arriving, started) = decodeArriving(bytes, arrival)
    expectSameOutcome(decodeAlone(bytes), arriving, names: ("alone", "arriving"), sourceLocation: sourceLocation)
    if let readerStarts {
        #expect(started == readerStarts, sourceLocation: sourceLocation)
    }
}

private func items(_ count: Int, escapedEvery: Int = 11) -> [String] {
    decodeTestItems(count, escapedEvery: escapedEvery)
}

private func body(_ elements: [String], separator: String = ",", before: String = "", after: String? = nil)
    -> [UInt8]
{
    Array(
        (after.map { decodeTestBody(elements, separator: separator, before: before, after: $0) }
            ?? decodeTestBody(elements, separator: separator, before: before)).utf8)
}

@Suite("A large answer decoded while it arrives")
struct ArrivingDecodeTests {
    @Test(arguments: arrivals)
    fileprivate func whatArrivesIsDecodedAsTheCompleteBodyIs(_ arrival: Arrival) {
        // Escapes every 11th item: the reader leaves the rest to the decode at the first one.
        expectSameAsAlone(body(items(2_000)), arrival, readerStarts: true)
        // No escapes: the reader gets through the whole array unless the decode stops it.
        expectSameAsAlone(body(items(2_000, escapedEvery: .max)), arrival, readerStarts: true)
        expectSameAsAlone(body(items(700, escapedEvery: .max), separator: " ,\n  "), arrival, readerStarts: true)
        expectSameAsAlone(body(items(1, escapedEvery: .max)), arrival, readerStarts: true)
    }

    /// The reader guesses where the array starts from the bytes alone. A `"content":[{` inside a string before
    /// the array, an array that is not the top-level `content`, or a second `content` key must not change what the
    /// decode finds.
    @Test(arguments: arrivals.prefix(4))
    fileprivate func aWrongGuessOfWhereTheArrayStartsChangesNothing(_ arrival: Arrival) {
        let plain = items(500, escapedEvery: .max)
        let decoy = #""result":{"status":200,"message":"\"content\":[{\"bulkId\":\"x\"}]"},"#
        expectSameAsAlone(body(plain, before: decoy, after: ""), arrival)
        let nested = #""meta":{"content":[{"bulkId":"nested"}]},"#
        expectSameAsAlone(body(plain, before: nested), arrival)
        // Twice: the last array wins, also when the reader parsed the first.
        let first = #""content":["# + items(300, escapedEvery: .max).joined(separator: ",") + "],"
        expectSameAsAlone(body(items(20), before: first), arrival)
        let second = #","content":["# + items(300, escapedEvery: .max).joined(separator: ",") + "]"
        expectSameAsAlone(body(items(20, escapedEvery: .max), after: second), arrival)
        // `content` that is not an array, or is empty.
        expectSameAsAlone(Array(#"{"content":{"bulkId":"a"}}"#.utf8), arrival)
        expectSameAsAlone(Array(#"{"content":[],"result":{"status":200}}"#.utf8), arrival)
        expectSameAsAlone(Array(#"{"content":[ ] }"#.utf8), arrival)
    }

    /// An error anywhere is reported as the decode alone reports it: the same code at the same offset, whether the
    /// reader met it, the decode's own part did, or the body ends early.
    @Test(arguments: arrivals.prefix(6))
    fileprivate func anErrorIsTheSameError(_ arrival: Arrival) {
        var broken = items(400, escapedEvery: .max)
        broken[300] = #"{"bulkId":"b-300","status":"DONE",}"#  // trailing comma
        expectSameAsAlone(body(broken), arrival)
        broken = items(400, escapedEvery: .max)
        broken[10] = #"{"bulkId":"b-10","status":"DO\qNE"}"#  // invalid escape
        expectSameAsAlone(body(broken), arrival)
        broken = items(400, escapedEvery: .max)
        broken[350] = "17"  // not an object
        expectSameAsAlone(body(broken), arrival)
        broken = items(400, escapedEvery: .max)
        broken[200] = #"{"bulkId":"b-200","status":"\#u{1}"}"#  // control character
        expectSameAsAlone(body(broken), arrival)
        let whole = body(items(400, escapedEvery: .max))
        for cut in [1, 2, 20, 200, whole.count / 2, whole.count - 3] {
            expectSameAsAlone(Array(whole.dropLast(cut)), arrival)
        }
    }

    /// The bytes at hand can end anywhere in the whitespace between two elements, also after the comma: the
    /// reader must go on skipping it when more arrive, not take the whitespace for the next element (which made
    /// the decode refuse a valid pretty-printed body as "expected an item object"). A pause after every byte
    /// makes the reader meet each such end.
    @Test func theBytesCanEndInTheWhitespaceBetweenElements() {
        let elements = items(30, escapedEvery: .max)
        let bytes = body(elements, separator: " \n ,\n\t  \r\n  ")
        expectSameAsAlone(bytes, Arrival(chunk: 1, pauseEachChunk: true), readerStarts: true)
        expectSameAsAlone(Array(bytes.dropLast(60)), Arrival(chunk: 1, pauseEachChunk: true), readerStarts: true)
        #expect((try? BulkListDecoder.decode(bytes))?.count == 27)  // three of the thirty have no usable id
    }

    /// An item of 64 KiB or more cannot be kept as offsets; the reader leaves it, and the rest, to the decode.
    @Test func aLargeItemIsLeftToTheDecode() {
        let large = #"{"bulkId":"large","status":"DONE","note":""# + String(repeating: "n", count: 70_000) + #""}"#
        let elements = items(300, escapedEvery: .max) + [large] + items(300, escapedEvery: .max)
        for arrival in [Arrival(chunk: 512), Arrival(chunk: 1 << 20)] {
            expectSameAsAlone(body(elements), arrival, readerStarts: true)
        }
    }

    /// Every prefix of the conformance corpus's valid bodies, and the corpus itself, published one byte at a time.
    @Test(arguments: decoderValidCorpus + decoderDuplicateKeyCorpus + decoderInvalidCorpus)
    func theConformanceCorpusDecodesTheSame(_ body: DecoderCorpusBody) {
        expectSameAsAlone(body.bytes, Arrival(chunk: 1))
        expectSameAsAlone(body.bytes, Arrival(chunk: 5, pauses: false))
        if !decoderInvalidCorpus.contains(where: { $0.bytes == body.bytes }) {
            for length in stride(from: 0, to: body.bytes.count, by: 3) {
                expectSameAsAlone(Array(body.bytes[..<length]), Arrival(chunk: 2))
            }
        }
    }

    /// A body that never reaches the threshold starts no reader, and a failed transfer leaves the decode nothing to
    /// take over: the reader stops where the bytes stopped, and is waited for.
    @Test func noReaderBelowTheThresholdAndNoneLeftBehindAfterAFailure() {
        let small = ArrivingContent(threshold: 1 << 20)
        let smallBody = small.body()
        let bytes = body(items(10))
        bytes.withUnsafeBufferPointer { smallBody.publish($0.baseAddress!, count: $0.count) }
        smallBody.end(with: bytes)
        #expect(!small.hasReader)
        #expect((try? BulkListDecoder.decode(bytes, arrived: small))?.count == 9)  // one of the ten has no id

        let failed = ArrivingContent(threshold: 1)
        let failedBody = failed.body()
        let half = Array(body(items(400))[..<5_000])
        half.withUnsafeBufferPointer { failedBody.publish($0.baseAddress!, count: $0.count) }
        failedBody.end(with: nil)
        #expect(failed.hasReader)
        failed.finish()  // returns: the reader saw the end
        failed.finish()  // and again
    }
}
