// libFuzzer target for BulkListDecoder (see Fuzz/README.md).
//
// Finding = any trap (the decoder promises to throw, never trap, whatever the bytes) or a broken
// oracle: a body the decoder accepts must also be accepted by JSONSerialization and decode to the
// same fields, as the conformance tests demand for their fixed corpus.
import BulkWatch
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBulkListDecoder(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    let listing: BulkListing
    do {
        listing = try BulkListDecoder.decode(body)
    } catch {
        // The watcher logs the description, which quotes from the body: build it too.
        _ = error.description
        return 0
    }
    DecoderOracle(body: body).check(listing)
    return 0
}

/// The documented rules applied to `JSONSerialization`'s object tree, compared with the decoder's answer.
struct DecoderOracle {
    let body: [UInt8]

    func check(_ listing: BulkListing) {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(body))
        } catch {
            // Documented difference: numbers are checked against the grammar only, so `1e999` is
            // accepted by the decoder and refused by JSONSerialization.
            if "\(error)".contains("not representable") { return }
            fail("accepted a body JSONSerialization refuses: \(error)")
        }
        // Found by this fuzzer: JSONSerialization on Linux drops a raw U+FEFF at the start of a string
        // and right after an escape (`{"\u{FEFF}status":500}` reads as `status`, `"\/\u{FEFF}d"` as
        // "/d"); the decoder, like JSONDecoder, keeps it. Its tree is no reference for bodies with a
        // U+FEFF past the document's own byte-order mark; only its acceptance is.
        if Self.hasByteOrderMarkInside(body) { return }
        guard let top = object as? [String: Any], let content = top["content"] as? [Any] else {
            fail("accepted a body whose top level is not an object with a 'content' array")
        }
        var expectedItems: [[String: Any]] = []
        var skipped = 0
        for element in content {
            guard let item = element as? [String: Any] else { fail("accepted a non-object item") }
            if Self.isUsableId(item["bulkId"]) {
                expectedItems.append(item)
            } else {
                skipped += 1
            }
        }
        guard listing.items.count == expectedItems.count, listing.skippedWithoutId == skipped else {
            fail("items \(listing.items.count)/\(listing.skippedWithoutId) skipped, want \(expectedItems.count)/\(skipped)")
        }
        let bodyBase = body.withUnsafeBufferPointer { $0.baseAddress }
        for (index, (item, expected)) in zip(listing.items, expectedItems).enumerated() {
            expectField(item.bulkId, expected["bulkId"], "item \(index) bulkId")
            expectField(item.status, expected["status"], "item \(index) status")
            expectField(item.createdOn, expected["createdOn"], "item \(index) createdOn")
            expectField(item.updatedOn, expected["updatedOn"], "item \(index) updatedOn")
            let sliceBase = item.rawJSON.withUnsafeBufferPointer { $0.baseAddress }
            guard sliceBase == bodyBase.map({ $0 + item.rawJSON.startIndex }) else {
                fail("item \(index) rawJSON is not a slice of the body")
            }
            guard item.rawJSON.first == UInt8(ascii: "{"), item.rawJSON.last == UInt8(ascii: "}"),
                let reparsed = try? JSONSerialization.jsonObject(with: Data(item.rawJSON))
            else { fail("item \(index) rawJSON is not an object") }
            guard Self.canonical(reparsed) == Self.canonical(expected) else {
                fail("item \(index) rawJSON re-parses to a different object")
            }
        }
        let result = top["result"] as? [String: Any]
        var expectedStatus: Int?
        if let number = result?["status"] as? NSNumber, !Self.isBool(number) {
            if number.doubleValue >= 400 { fail("accepted result.status \(number)") }
            expectedStatus = Int(exactly: number.doubleValue)
            // Past 2^53 NSDecimalNumber's doubleValue may be an ulp off the decoder's correctly rounded one.
            if abs(number.doubleValue) > 0x1p53 { expectedStatus = listing.resultStatus }
        }
        guard listing.resultStatus == expectedStatus else {
            fail("resultStatus \(String(describing: listing.resultStatus)), want \(String(describing: expectedStatus))")
        }
        expectField(listing.resultMessage, result?["message"], "result.message")
    }

    /// A field is the decoded string, the literal text of a number or boolean, or nil for anything else.
    private func expectField(_ actual: String?, _ expected: Any?, _ what: String) {
        let matches: Bool
        switch expected {
        case let string as String:
            matches = actual.map { Array($0.unicodeScalars) == Array(string.unicodeScalars) } ?? false
        case let number as NSNumber where Self.isBool(number):
            matches = actual == (number.boolValue ? "true" : "false")
        case let number as NSNumber:
            let value = number.doubleValue
            if let parsed = actual.flatMap({ Double($0) }) {
                matches = parsed == value || abs(parsed - value) <= abs(value) * 1e-15
            } else {
                matches = false
            }
        default:
            matches = actual == nil
        }
        if !matches { fail("\(what) is \(actual.map { "\"\($0)\"" } ?? "nil"), want \(expected ?? "nil")") }
    }

    private static func hasByteOrderMarkInside(_ body: [UInt8]) -> Bool {
        let mark: [UInt8] = [0xEF, 0xBB, 0xBF]
        guard body.count > mark.count else { return false }
        return (1...(body.count - mark.count)).contains { body[$0..<($0 + mark.count)].elementsEqual(mark) }
    }

    private static func isUsableId(_ value: Any?) -> Bool {
        switch value {
        case let string as String: !string.isEmpty
        case is NSNumber: true
        default: false
        }
    }

    /// On Linux booleans come back as NSNumbers too; their objCType is "c" (char), never a JSON number's.
    private static func isBool(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }

    private static func canonical(_ value: Any) -> Data? {
        guard JSONSerialization.isValidJSONObject(value) else { return nil }
        return try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
    }

    private func fail(_ message: String) -> Never {
        fatalError("BulkListDecoder oracle: \(message); body: \(String(decoding: body.prefix(300), as: UTF8.self))")
    }
}
