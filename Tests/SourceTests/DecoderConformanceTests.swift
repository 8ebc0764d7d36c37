// Conformance of BulkListDecoder against Foundation on a corpus of valid and invalid bodies, every
// truncation of the valid ones, seeded random bodies and random corruptions of them.
import BulkWatchSimulator
import Foundation
import Testing

@testable import BulkWatch

// MARK: - Corpus

/// One body of the corpus, named so a failure says which.
struct DecoderCorpusBody: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    /// Bodies with repeated keys: Foundation's `JSONDecoder` (first wins on Linux) is not a reference
    /// for them, `JSONSerialization` (last wins, like the decoder) still is.
    var hasDuplicateKeys = false

    init(_ name: String, _ text: String, duplicates: Bool = false) {
        self.name = name
        self.bytes = Array(text.utf8)
        self.hasDuplicateKeys = duplicates
    }

    init(_ name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }

    var testDescription: String { name }
}

private func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

private let deepUnknownValue: String = {
    var open = ""
    var close = ""
    for level in 0..<200 {
        open += level.isMultiple(of: 2) ? #"{"k\#(level)":["# : #"[{"q":"]}[{\"","x":"#
        close = (level.isMultiple(of: 2) ? "]}" : "}]") + close
    }
    return open + "null" + close
}()

let decoderValidCorpus: [DecoderCorpusBody] = [
    DecoderCorpusBody("minimal with result", #"{"content":[],"result":{"status":200,"message":"OK"}}"#),
    DecoderCorpusBody("empty object items and empty content", #"{"content":[{}],"result":{}}"#),
    DecoderCorpusBody(
        "typical items",
        #"""
        {"content":[{"bulkId":"3f2c8a9e-4b1d-4c2a-9e7f-1a2b3c4d5e6f","status":"IN_PROGRESS",\#
        "createdOn":"2026-11-28T10:16:03Z","updatedOn":"2026-11-28T10:17:45.123Z"},{"bulkId":"b2",\#
        "status":"COMPLETED","createdOn":"2026-11-27T08:00:00+01:00","updatedOn":null}],"result":{"status":200,\#
        "message":"Success"}}
        """#),
    DecoderCorpusBody(
        "escapes in every field",
        #"""
        {"content":[{"bulkId":"a\"b\\c\/d\n\t\r\b\f","status":"\u0041\u00e9\u4E2D","createdOn":"x\ud83d\ude00y",\#
        "updatedOn":"\u0000\u001f\u007f"}],"result":{"status":200,"message":"caf\u00e9 \"ok\""}}
        """#),
    DecoderCorpusBody(
        "raw unicode including emoji",
        #"{"content":[{"bulkId":"é中😀","status":"Ünïcödé","createdOn":"𝄞 music","#
            + #""updatedOn":"\#u{FFFF}\#u{10FFFF}"}]}"#),
    DecoderCorpusBody(
        "numbers and booleans where strings are expected",
        #"""
        {"content":[{"bulkId":123,"status":true,"createdOn":1764324963,"updatedOn":-1.5e3},{"bulkId":false,\#
        "status":false,"createdOn":1764324963123,"updatedOn":0},{"bulkId":0,"status":-0,"createdOn":1E+2,\#
        "updatedOn":0.5e-3}],"result":{"status":200,"message":42}}
        """#),
    DecoderCorpusBody(
        "null and missing fields",
        #"""
        {"content":[{"bulkId":"a","status":null,"createdOn":null,"updatedOn":null},{"bulkId":"b"},{"updatedOn":"u",\#
        "bulkId":"c"}]}
        """#),
    DecoderCorpusBody(
        "objects and arrays where strings are expected",
        #"{"content":[{"bulkId":"c","status":{"x":1},"createdOn":[1,"2",[]],"updatedOn":{}}]}"#),
    DecoderCorpusBody(
        "unknown and nested fields with braces and quotes in strings",
        #"""
        {"content":[{"bulkId":"n1","meta":{"a":[{"b":"}{][\"\\"},null,true,1e10,[[]],{}],"c":"\"}"},"tags":["{","}",\#
        "[","]",",",":"],"status":"DONE","z":"\"bulkId\":\"fake\""}],"extra":{"content":"not this one"}}
        """#),
    DecoderCorpusBody(
        "whitespace everywhere",
        " \r\n\t{ \n\t\"content\" \r:\n [ \t{ \"bulkId\"\t:\t\"w1\" ,\n \"status\" : \"S\" \r\n} ,"
            + "\n{\"bulkId\":\"w2\"}\n ] ,"
            + " \"result\" : { \"status\" : 200 , \"message\" : \"m\" } \n}\n\t \r\n"),
    DecoderCorpusBody(
        "items without a usable bulkId",
        #"""
        {"content":[{},{"bulkId":null},{"bulkId":""},{"bulkId":{}},{"bulkId":[]},{"bulkId":["x"]},{"status":"x"},\#
        {"bulkId":"ok"},{"BulkId":"x","bulkid":"y"}]}
        """#),
    DecoderCorpusBody("missing result", #"{"content":[{"bulkId":"a"}]}"#),
    DecoderCorpusBody("null result", #"{"content":[{"bulkId":"a"}],"result":null}"#),
    DecoderCorpusBody("result that is not an object", #"{"result":[500],"content":[]}"#),
    DecoderCorpusBody(
        "result status as a string is not an error",
        #"""
        {"content":[],"result":{"status":"500","message":"boom"}}
        """#),
    DecoderCorpusBody("result status as float", #"{"content":[],"result":{"status":2e2,"message":null}}"#),
    DecoderCorpusBody("result status below 400 non-integral", #"{"content":[],"result":{"status":399.5}}"#),
    DecoderCorpusBody(
        "result with unknown fields",
        #"""
        {"content":[],"result":{"x":{"status":500},"status":201,"y":[]}}
        """#),
    DecoderCorpusBody(
        "big numbers",
        #"""
        {"content":[{"bulkId":123456789012345678901234567890,"status":-98765432109876543210,\#
        "createdOn":1.7976931348623157e308,"updatedOn":4.9e-324,"x":123456789012345678901234567890123456789}]}
        """#),
    DecoderCorpusBody(
        "deeply nested unknown value",
        #"{"content":[{"bulkId":"deep","x":\#(deepUnknownValue)}],"y":\#(deepUnknownValue)}"#),
    DecoderCorpusBody(
        "content after result and unknown top-level keys",
        #"""
        {"version":3,"result":{"status":200},"meta":{"content":[{"bulkId":"no"}]},"content":[{"bulkId":"yes"}],\#
        "z":null}
        """#),
    DecoderCorpusBody(
        "keys with escapes",
        #"""
        {"cont\u0065nt":[{"bulk\u0049d":"k","st\u0061tus":"S","\u0063reatedOn":"c"}]}
        """#),
    DecoderCorpusBody("leading byte order mark", "\u{FEFF}{\"content\":[{\"bulkId\":\"bom\"}]}"),
    DecoderCorpusBody(
        "many distinct statuses and escaped status",
        "{\"content\":["
            + (0..<40).map { #"{"bulkId":"i\#($0)","status":"STATUS_NUMBER_\#($0 % 20)"}"# }.joined(separator: ",")
            + #",{"bulkId":"e1","status":"IN\u005fPROGRESS"},{"bulkId":"e2","status":"IN_PROGRESS"},"#
            + #"{"bulkId":"e3","status":""},{"bulkId":"e4","status":"A"},{"bulkId":"e5","status":"AB"}]}"#),
    DecoderCorpusBody(
        "long strings with specials at every alignment",
        "{\"content\":["
            + (0..<24).map { index in
                let pad = String(repeating: "x", count: index)
                return #"{"bulkId":"\#(pad)\"\#(pad)é\#(pad)\\n","status":"\#(pad)😀","createdOn":"\#(pad)\u00e9"}"#
            }.joined(separator: ",")
            + #",{"bulkId":"\#(String(repeating: "long-id-", count: 200))\n"}]}"#),
]

/// Bodies with repeated keys. The decoder keeps the last occurrence, as `JSONSerialization` does.
let decoderDuplicateKeyCorpus: [DecoderCorpusBody] = [
    DecoderCorpusBody(
        "duplicate item fields", #"{"content":[{"bulkId":"first","status":"A","bulkId":"second","status":null}]}"#,
        duplicates: true),
    DecoderCorpusBody(
        "duplicate content", #"{"content":[{"bulkId":"old"}],"content":[{"bulkId":"new"},{"bulkId":"newer"}]}"#,
        duplicates: true),
    DecoderCorpusBody(
        "duplicate result, the last one is fine",
        #"{"content":[],"result":{"status":500},"result":{"status":200,"message":"ok"}}"#, duplicates: true),
    DecoderCorpusBody("content null then array", #"{"content":null,"content":[]}"#, duplicates: true),
    DecoderCorpusBody(
        "duplicate key spelled with an escape", #"{"content":[{"bulkId":"a","bulk\u0049d":"b"}]}"#, duplicates: true),
]

let decoderInvalidCorpus: [DecoderCorpusBody] = {
    var corpus: [DecoderCorpusBody] = [
        DecoderCorpusBody("empty body", ""),
        DecoderCorpusBody("whitespace only", " \n\t "),
        DecoderCorpusBody("HTML error page", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        DecoderCorpusBody("top-level array", #"[{"bulkId":"a"}]"#),
        DecoderCorpusBody("top-level string", #""content""#),
        DecoderCorpusBody("top-level number", "42"),
        DecoderCorpusBody("top-level null", "null"),
        DecoderCorpusBody("content missing", #"{"result":{"status":200,"message":"OK"}}"#),
        DecoderCorpusBody("content null", #"{"content":null,"result":{"status":200}}"#),
        DecoderCorpusBody("content object", #"{"content":{"bulkId":"a"}}"#),
        DecoderCorpusBody("content string", #"{"content":"[]"}"#),
        DecoderCorpusBody("content number", #"{"content":0}"#),
        DecoderCorpusBody("item is a number", #"{"content":[{"bulkId":"a"},1]}"#),
        DecoderCorpusBody("item is null", #"{"content":[null]}"#),
        DecoderCorpusBody("item is a string", #"{"content":["a"]}"#),
        DecoderCorpusBody("item is an array", #"{"content":[[{"bulkId":"a"}]]}"#),
        DecoderCorpusBody(
            "result status 500",
            #"""
            {"content":[{"bulkId":"a"}],"result":{"status":500,"message":"Internal"}}
            """#),
        DecoderCorpusBody("result status 401", #"{"content":[],"result":{"status":401}}"#),
        DecoderCorpusBody("result status 400.0", #"{"content":[],"result":{"status":400.0}}"#),
        DecoderCorpusBody("result status 4e2", #"{"content":[],"result":{"status":4e2}}"#),
        DecoderCorpusBody("trailing garbage", #"{"content":[]}x"#),
        DecoderCorpusBody("second document", #"{"content":[]}{"content":[]}"#),
        DecoderCorpusBody("trailing form feed", "{\"content\":[]}\u{0C}"),
        DecoderCorpusBody("trailing comma after document", #"{"content":[]},"#),
        DecoderCorpusBody("invalid escape", #"{"content":[{"bulkId":"a\x"}]}"#),
        DecoderCorpusBody("invalid escape in unknown field", #"{"content":[{"bulkId":"a","u":"\a"}]}"#),
        DecoderCorpusBody("single-quote escape", #"{"content":[{"bulkId":"\'"}]}"#),
        DecoderCorpusBody("short unicode escape", #"{"content":[{"bulkId":"\u12"}]}"#),
        DecoderCorpusBody("non-hex unicode escape", #"{"content":[{"bulkId":"\u12G4"}]}"#),
        DecoderCorpusBody("uppercase U escape", #"{"content":[{"bulkId":"\U0041"}]}"#),
        DecoderCorpusBody("lone high surrogate", #"{"content":[{"bulkId":"\ud800"}]}"#),
        DecoderCorpusBody("lone high surrogate in unknown field", #"{"content":[{"bulkId":"a","u":"\ud83dx"}]}"#),
        DecoderCorpusBody("high surrogate followed by a non-surrogate", #"{"content":[{"bulkId":"\ud800\u0041"}]}"#),
        DecoderCorpusBody("lone low surrogate", #"{"content":[{"bulkId":"\udc00"}]}"#),
        DecoderCorpusBody("reversed surrogate pair", #"{"content":[{"bulkId":"\ude00\ud83d"}]}"#),
        DecoderCorpusBody("raw tab in string", "{\"content\":[{\"bulkId\":\"a\tb\"}]}"),
        DecoderCorpusBody("raw newline in unknown field", "{\"content\":[{\"bulkId\":\"a\",\"u\":\"x\ny\"}]}"),
        DecoderCorpusBody("raw NUL in key", "{\"content\":[{\"bulk\u{0}Id\":\"a\"}]}"),
        DecoderCorpusBody("raw 0x1F in status", "{\"content\":[{\"bulkId\":\"a\",\"status\":\"\u{1F}\"}]}"),
        DecoderCorpusBody("number with leading zero", #"{"content":[],"x":01}"#),
        DecoderCorpusBody("lone minus", #"{"content":[],"x":-}"#),
        DecoderCorpusBody("number ending in dot", #"{"content":[],"x":1.}"#),
        DecoderCorpusBody("number starting with dot", #"{"content":[],"x":.5}"#),
        DecoderCorpusBody("number with plus sign", #"{"content":[],"x":+1}"#),
        DecoderCorpusBody("empty exponent", #"{"content":[],"x":1e}"#),
        DecoderCorpusBody("signed empty exponent", #"{"content":[],"x":1e+}"#),
        DecoderCorpusBody("hex number", #"{"content":[],"x":0x10}"#),
        DecoderCorpusBody("two dots", #"{"content":[],"x":1.5.5}"#),
        DecoderCorpusBody("NaN", #"{"content":[],"x":NaN}"#),
        DecoderCorpusBody("Infinity", #"{"content":[{"bulkId":-Infinity}]}"#),
        DecoderCorpusBody("misspelled true", #"{"content":[{"bulkId":"a","x":tru}]}"#),
        DecoderCorpusBody("capitalised null", #"{"content":[{"bulkId":NULL}]}"#),
        DecoderCorpusBody("missing colon", #"{"content" []}"#),
        DecoderCorpusBody("missing comma between items", #"{"content":[{"bulkId":"a"} {"bulkId":"b"}]}"#),
        DecoderCorpusBody("missing comma between members", #"{"content":[{"bulkId":"a" "status":"b"}]}"#),
        DecoderCorpusBody("mismatched brackets", #"{"content":[}"#),
        DecoderCorpusBody("mismatched item brace", #"{"content":[{"bulkId":"a"]]}"#),
        DecoderCorpusBody("unquoted key", #"{content:[]}"#),
        DecoderCorpusBody("single-quoted strings", #"{'content':[]}"#),
        DecoderCorpusBody("line comment", "{\"content\":[] // none\n}"),
        DecoderCorpusBody("block comment", #"{"content":[/* none */]}"#),
        DecoderCorpusBody("empty member", #"{"content":[],,"x":1}"#),
        DecoderCorpusBody("leading comma in array", #"{"content":[,{"bulkId":"a"}]}"#),
        DecoderCorpusBody("key is not a string", #"{"content":[{1:"a"}]}"#),
        DecoderCorpusBody(
            "nesting deeper than 512",
            #"{"content":[],"x":"# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "}"),
        DecoderCorpusBody(
            "nesting of 512 inside an item",
            #"{"content":[{"bulkId":"a","x":"# + String(repeating: "[", count: 510) + String(repeating: "]", count: 510)
                + "}]}"),
    ]
    let prefix = utf8(#"{"content":[{"bulkId":"a"#)
    let suffix = utf8(#""}]}"#)
    let invalidSequences: [(String, [UInt8])] = [
        ("0xFF byte", [0xFF]),
        ("overlong NUL", [0xC0, 0x80]),
        ("overlong slash", [0xE0, 0x80, 0xAF]),
        ("UTF-8 encoded surrogate", [0xED, 0xA0, 0x80]),
        ("code point above U+10FFFF", [0xF4, 0x90, 0x80, 0x80]),
        ("cut three-byte sequence", [0xE2, 0x82]),
        ("lone continuation byte", [0x80]),
        ("five-byte lead", [0xF8, 0x88, 0x80, 0x80, 0x80]),
        ("two-byte lead then ASCII", [0xC3, 0x41]),
    ]
    for (name, sequence) in invalidSequences {
        corpus.append(DecoderCorpusBody("invalid UTF-8 (\(name)) in bulkId", bytes: prefix + sequence + suffix))
    }
    corpus.append(
        DecoderCorpusBody(
            "invalid UTF-8 in unknown field",
            bytes: utf8(#"{"content":[{"bulkId":"a","u":""#) + [0xC3, 0x28] + utf8(#""}]}"#)))
    corpus.append(
        DecoderCorpusBody("invalid UTF-8 in key", bytes: utf8(#"{"content":[{"bulk"#) + [0xFE] + utf8(#"Id":"a"}]}"#)))
    corpus.append(DecoderCorpusBody("invalid UTF-8 after the document", bytes: utf8(#"{"content":[]}"#) + [0xFF]))
    return corpus
}()

// MARK: - Foundation references

/// What a field should decode to, as a Foundation parser sees it.
enum DecoderExpectedScalar: Equatable, Sendable {
    case absent
    case string(String)
    case bool(Bool)
    /// A JSON number; the decoder must return literal text that parses to the same `Double`.
    case number(Double)
    /// Exact text (used by the generator, which knows what it wrote).
    case literal(String)

    func matches(_ actual: String?) -> Bool {
        switch self {
        case .absent:
            return actual == nil
        case .string(let value), .literal(let value):
            return actual == value
        case .bool(let value):
            return actual == (value ? "true" : "false")
        case .number(let value):
            // NSDecimalNumber's doubleValue may be an ulp away from a correctly rounded parse.
            guard let parsed = actual.flatMap({ Double($0) }) else { return false }
            return parsed == value || abs(parsed - value) <= abs(value) * 1e-15
        }
    }

    var isUsableId: Bool {
        switch self {
        case .absent: false
        case .string(let value): !value.isEmpty
        case .bool, .number, .literal: true
        }
    }
}

struct DecoderExpectedItem: Equatable, Sendable {
    var bulkId = DecoderExpectedScalar.absent
    var status = DecoderExpectedScalar.absent
    var createdOn = DecoderExpectedScalar.absent
    var updatedOn = DecoderExpectedScalar.absent
    /// Canonical JSON of the element (sorted keys), when known.
    var canonical: String?
}

struct DecoderExpectedListing: Sendable {
    var items: [DecoderExpectedItem] = []
    var skippedWithoutId = 0
    var resultStatus: Int?
    var resultMessage = DecoderExpectedScalar.absent

    /// Applies the documented rules to a list of elements and the `result.status` scalar; nil = rejected.
    init?(elements: [DecoderExpectedItem], resultStatus: DecoderExpectedScalar, resultMessage: DecoderExpectedScalar) {
        for element in elements {
            if element.bulkId.isUsableId {
                items.append(element)
            } else {
                skippedWithoutId += 1
            }
        }
        if case .number(let status) = resultStatus {
            if status >= 400 { return nil }
            self.resultStatus = Int(exactly: status)
        }
        if case .literal(let text) = resultStatus, let status = Double(text) {
            if status >= 400 { return nil }
            self.resultStatus = Int(exactly: status)
        }
        self.resultMessage = resultMessage
    }
}

/// The tolerant `Decodable` model: the same rules expressed with `JSONDecoder`.
struct FoundationReferenceScalar: Decodable {
    var value: DecoderExpectedScalar

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            value = .absent
        } else if let string = try? container.decode(String.self) {
            value = .string(string)
        } else if let bool = try? container.decode(Bool.self) {
            value = .bool(bool)
        } else if let number = try? container.decode(Double.self) {
            value = .number(number)
        } else {
            value = .absent  // object or array
        }
    }
}

struct FoundationReferenceItem: Decodable {
    var bulkId: FoundationReferenceScalar?
    var status: FoundationReferenceScalar?
    var createdOn: FoundationReferenceScalar?
    var updatedOn: FoundationReferenceScalar?
}

struct FoundationReferenceResult: Decodable {
    var status: FoundationReferenceScalar?
    var message: FoundationReferenceScalar?

    private enum CodingKeys: String, CodingKey { case status, message }

    init(from decoder: any Decoder) throws {
        guard let container = try? decoder.container(keyedBy: CodingKeys.self) else { return }  // not an object
        status = try container.decodeIfPresent(FoundationReferenceScalar.self, forKey: .status)
        message = try container.decodeIfPresent(FoundationReferenceScalar.self, forKey: .message)
    }
}

struct FoundationReferenceBody: Decodable {
    /// Not optional: missing or null `content` fails the decode, as the rules demand.
    var content: [FoundationReferenceItem]
    var result: FoundationReferenceResult?
}

enum FoundationBulkReference {
    /// `JSONDecoder` skips unused values without validating them, so the body is also required to
    /// pass `JSONSerialization`, which validates everything.
    static func viaJSONDecoder(_ body: [UInt8]) -> DecoderExpectedListing? {
        let data = Data(body)
        guard (try? JSONSerialization.jsonObject(with: data)) != nil,
            let decoded = try? JSONDecoder().decode(FoundationReferenceBody.self, from: data)
        else { return nil }
        let elements = decoded.content.map { item in
            DecoderExpectedItem(
                bulkId: item.bulkId?.value ?? .absent, status: item.status?.value ?? .absent,
                createdOn: item.createdOn?.value ?? .absent, updatedOn: item.updatedOn?.value ?? .absent)
        }
        return DecoderExpectedListing(
            elements: elements, resultStatus: decoded.result?.status?.value ?? .absent,
            resultMessage: decoded.result?.message?.value ?? .absent)
    }

    /// The same rules over `JSONSerialization`'s object tree (last duplicate wins), also recording each
    /// element's canonical JSON for the `rawJSON` check.
    static func viaJSONSerialization(_ body: [UInt8]) -> DecoderExpectedListing? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)),
            let top = object as? [String: Any],
            let content = top["content"] as? [Any]
        else { return nil }
        var elements: [DecoderExpectedItem] = []
        for element in content {
            guard let item = element as? [String: Any] else { return nil }
            elements.append(
                DecoderExpectedItem(
                    bulkId: scalar(item["bulkId"]), status: scalar(item["status"]),
                    createdOn: scalar(item["createdOn"]), updatedOn: scalar(item["updatedOn"]),
                    canonical: canonicalJSON(item)))
        }
        let result = top["result"] as? [String: Any]
        return DecoderExpectedListing(
            elements: elements, resultStatus: scalar(result?["status"]), resultMessage: scalar(result?["message"]))
    }

    static func scalar(_ value: Any?) -> DecoderExpectedScalar {
        guard let value, !(value is NSNull) else { return .absent }
        if let string = value as? String { return .string(string) }
        if let number = value as? NSNumber {
            // On Linux booleans are NSNumbers too; their objCType is "c" (char), never a JSON number's.
            if String(cString: number.objCType) == "c" { return .bool(number.boolValue) }
            return .number(number.doubleValue)
        }
        return .absent
    }

    static func canonicalJSON(_ value: Any) -> String? {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Checks a decoded listing against an expectation, including that `rawJSON` is the element's bytes,
/// sliced from `body` without a copy, and re-parses to the same object as the element.
func expectDecodedListing(
    _ listing: BulkListing, matches expected: DecoderExpectedListing, body: [UInt8], reference: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(listing.items.count == expected.items.count, "\(reference): item count", sourceLocation: sourceLocation)
    #expect(
        listing.skippedWithoutId == expected.skippedWithoutId, "\(reference): skipped", sourceLocation: sourceLocation)
    #expect(listing.resultStatus == expected.resultStatus, "\(reference): resultStatus", sourceLocation: sourceLocation)
    #expect(
        expected.resultMessage.matches(listing.resultMessage),
        "\(reference): resultMessage \(listing.resultMessage ?? "nil")",
        sourceLocation: sourceLocation)
    let bodyBase = body.withUnsafeBufferPointer { $0.baseAddress }
    for (item, want) in zip(listing.items, expected.items) {
        #expect(want.bulkId.matches(item.bulkId), "\(reference): bulkId \(item.bulkId)", sourceLocation: sourceLocation)
        #expect(
            want.status.matches(item.status), "\(reference): status of \(item.bulkId)", sourceLocation: sourceLocation)
        #expect(
            want.createdOn.matches(item.createdOn), "\(reference): createdOn of \(item.bulkId)",
            sourceLocation: sourceLocation)
        #expect(
            want.updatedOn.matches(item.updatedOn), "\(reference): updatedOn of \(item.bulkId)",
            sourceLocation: sourceLocation)
        let sliceBase = item.rawJSON.withUnsafeBufferPointer { $0.baseAddress }
        #expect(
            sliceBase == bodyBase.map { $0 + item.rawJSON.startIndex }, "rawJSON must be a slice of the body",
            sourceLocation: sourceLocation)
        #expect(item.rawJSON.first == UInt8(ascii: "{") && item.rawJSON.last == UInt8(ascii: "}"))
        if let canonical = want.canonical {
            let reparsed = (try? JSONSerialization.jsonObject(with: Data(item.rawJSON))).flatMap {
                FoundationBulkReference.canonicalJSON($0)
            }
            #expect(
                reparsed == canonical, "rawJSON of \(item.bulkId) re-parses differently", sourceLocation: sourceLocation
            )
        }
    }
}

private func decodeOrNil(_ body: [UInt8]) -> BulkListing? {
    try? BulkListDecoder.decode(body)
}

private func decodingError(_ body: [UInt8]) -> BulkDecodingError? {
    do {
        _ = try BulkListDecoder.decode(body)
        return nil
    } catch {
        return error
    }
}

// MARK: - Corpus tests

@Suite("BulkListDecoder conformance")
struct DecoderConformanceTests {
    @Test("valid bodies decode like Foundation's JSONDecoder and JSONSerialization", arguments: decoderValidCorpus)
    func validBodyMatchesFoundation(_ body: DecoderCorpusBody) throws {
        let listing = try BulkListDecoder.decode(body.bytes)
        let viaDecoder = try #require(FoundationBulkReference.viaJSONDecoder(body.bytes), "JSONDecoder rejected it")
        let viaSerialization = try #require(
            FoundationBulkReference.viaJSONSerialization(body.bytes), "JSONSerialization rejected it")
        expectDecodedListing(listing, matches: viaDecoder, body: body.bytes, reference: "JSONDecoder")
        expectDecodedListing(listing, matches: viaSerialization, body: body.bytes, reference: "JSONSerialization")
    }

    @Test("duplicate keys: the last occurrence wins, as with JSONSerialization", arguments: decoderDuplicateKeyCorpus)
    func duplicateKeysLastOccurrenceWins(_ body: DecoderCorpusBody) throws {
        let listing = try BulkListDecoder.decode(body.bytes)
        let viaSerialization = try #require(FoundationBulkReference.viaJSONSerialization(body.bytes))
        expectDecodedListing(listing, matches: viaSerialization, body: body.bytes, reference: "JSONSerialization")
    }

    @Test func duplicateKeysResolveToTheLastValue() throws {
        let first = try BulkListDecoder.decode(decoderDuplicateKeyCorpus[0].bytes)
        #expect(first.items.map(\.bulkId) == ["second"])
        #expect(first.items.first?.status == nil)
        #expect(try BulkListDecoder.decode(decoderDuplicateKeyCorpus[1].bytes).items.map(\.bulkId) == ["new", "newer"])
        #expect(try BulkListDecoder.decode(decoderDuplicateKeyCorpus[2].bytes).resultStatus == 200)
        #expect(try BulkListDecoder.decode(decoderDuplicateKeyCorpus[4].bytes).items.map(\.bulkId) == ["b"])
        #expect(throws: BulkDecodingError.self) {
            try BulkListDecoder.decode(utf8(#"{"content":[{"bulkId":"a"}],"content":null}"#))
        }
        #expect(throws: BulkDecodingError.self) {
            try BulkListDecoder.decode(utf8(#"{"content":[],"result":{"status":200},"result":{"status":503}}"#))
        }
    }

    @Test("invalid bodies are rejected by the decoder and by Foundation", arguments: decoderInvalidCorpus)
    func invalidBodyIsRejected(_ body: DecoderCorpusBody) {
        #expect(throws: BulkDecodingError.self) { try BulkListDecoder.decode(body.bytes) }
        #expect(FoundationBulkReference.viaJSONDecoder(body.bytes) == nil, "Foundation accepted it")
        #expect(FoundationBulkReference.viaJSONSerialization(body.bytes) == nil, "JSONSerialization accepted it")
    }

    @Test(
        "every truncation of a valid body is rejected as truncated",
        arguments: decoderValidCorpus + decoderDuplicateKeyCorpus)
    func everyTruncationIsRejected(_ body: DecoderCorpusBody) {
        var bytes = body.bytes
        while let last = bytes.last, [0x20, 0x09, 0x0A, 0x0D].contains(last) { bytes.removeLast() }
        let hasBOM = bytes.starts(with: [0xEF, 0xBB, 0xBF])
        var failures: [Int] = []
        for length in 0..<bytes.count {
            do {
                _ = try BulkListDecoder.decode(Array(bytes[..<length]))
                failures.append(length)
            } catch {
                if error.code != .truncated && !(hasBOM && length < 3) { failures.append(length) }
            }
        }
        let allTruncated = failures.isEmpty
        #expect(allTruncated, "prefixes accepted or not reported as truncated: \(failures.prefix(10))")
        // Foundation agrees that none of them is a body (checked on a sample to keep the suite fast).
        for length in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 50)) {
            #expect(FoundationBulkReference.viaJSONSerialization(Array(bytes[..<length])) == nil)
        }
    }

    // MARK: Rules, spelled out

    @Test func numbersAndBooleansBecomeTheirLiteralText() throws {
        let listing = try BulkListDecoder.decode(decoderValidCorpus[5].bytes)
        #expect(listing.items.map(\.bulkId) == ["123", "false", "0"])
        #expect(listing.items.map(\.status) == ["true", "false", "-0"])
        #expect(listing.items.map(\.createdOn) == ["1764324963", "1764324963123", "1E+2"])
        #expect(listing.items.map(\.updatedOn) == ["-1.5e3", "0", "0.5e-3"])
        #expect(listing.resultMessage == "42")
        let big = try BulkListDecoder.decode(decoderValidCorpus[18].bytes)
        #expect(big.items.first?.bulkId == "123456789012345678901234567890")
        #expect(big.items.first?.status == "-98765432109876543210")
    }

    @Test func escapesAndSurrogatePairsAreDecoded() throws {
        let item = try #require(try BulkListDecoder.decode(decoderValidCorpus[3].bytes).items.first)
        #expect(item.bulkId == "a\"b\\c/d\n\t\r\u{8}\u{C}")
        #expect(item.status == "Aé中")
        #expect(item.createdOn == "x😀y")
        #expect(item.updatedOn == "\u{0}\u{1F}\u{7F}")
        let keys = try #require(try BulkListDecoder.decode(decoderValidCorpus[21].bytes).items.first)
        #expect(keys.bulkId == "k" && keys.status == "S" && keys.createdOn == "c")
    }

    /// Timestamps stay where they are in the body until asked for (``BulkItem/Text``): the byte views, the
    /// strings, equality and a replaced `rawJSON` must all say the same as an item built from strings.
    @Test func timestampsReadInPlaceAgreeWithTheirStrings() throws {
        let body = utf8(
            #"{"content":[{"bulkId":"p","status":"S","createdOn":"2026-11-28T10:00:00.000Z","updatedOn":17},"#
                + #"{"bulkId":"e","createdOn":"a\u00e9b","updatedOn":"x\"y"},{"bulkId":"n","updatedOn":null}]}"#)
        let items = try BulkListDecoder.decode(body).items
        #expect(items.map(\.createdOn) == ["2026-11-28T10:00:00.000Z", "a\u{E9}b", nil])
        #expect(items.map(\.updatedOn) == ["17", "x\"y", nil])
        for item in items {
            let built = BulkItem(
                bulkId: item.bulkId, status: item.status, createdOn: item.createdOn, updatedOn: item.updatedOn,
                rawJSON: item.rawJSON)
            #expect(item == built)
            #expect(item.updatedOnUTF8Count == item.updatedOn?.utf8.count)
            #expect(item.createdOnUTF8Count == item.createdOn?.utf8.count)
            #expect(item.withUpdatedOnUTF8 { $0.map { Array($0) } } == item.updatedOn.map { Array($0.utf8) })
            #expect(item.withCreatedOnUTF8 { $0.map { Array($0) } } == item.createdOn.map { Array($0.utf8) })
            // A replaced object no longer holds the old bytes: the values must not move with it.
            var moved = item
            moved.rawJSON = Array(#"{"other":"bytes entirely, longer than the item was before"}"#.utf8)[...]
            #expect(moved.createdOn == item.createdOn && moved.updatedOn == item.updatedOn)
        }
        #expect(items[0] != items[1])
    }

    @Test func itemsWithoutUsableIdAreSkippedAndCounted() throws {
        let listing = try BulkListDecoder.decode(decoderValidCorpus[10].bytes)
        #expect(listing.items.map(\.bulkId) == ["ok"])
        #expect(listing.skippedWithoutId == 8)
    }

    @Test func keysThatOnlyStartLikeFieldNamesAreUnknownFields() throws {
        let body = utf8(
            #"{"content":[{"bulkIdx":"no","bulkId":"yes","statusCode":"no","status":"S","createdOnX":1,"#
                + #""createdOn":"c","updatedO":"u","updatedOn" :"u2","BULKID":"no"}]}"#)
        let item = try #require(try BulkListDecoder.decode(body).items.first)
        #expect(item.bulkId == "yes" && item.status == "S" && item.createdOn == "c" && item.updatedOn == "u2")
        let viaSerialization = try #require(FoundationBulkReference.viaJSONSerialization(body))
        expectDecodedListing(
            try BulkListDecoder.decode(body), matches: viaSerialization, body: body, reference: "JSONSerialization")
    }

    @Test func containersWhereStringsAreExpectedBecomeNil() throws {
        let item = try #require(try BulkListDecoder.decode(decoderValidCorpus[7].bytes).items.first)
        #expect(item.status == nil && item.createdOn == nil && item.updatedOn == nil)
    }

    @Test func unknownFieldsSurviveInRawJSONOnly() throws {
        let body = decoderValidCorpus[8].bytes
        let listing = try BulkListDecoder.decode(body)
        let item = try #require(listing.items.first)
        #expect(item.bulkId == "n1" && item.status == "DONE")
        let raw = String(decoding: item.rawJSON, as: UTF8.self)
        #expect(raw.hasPrefix(#"{"bulkId":"n1","meta":"#) && raw.hasSuffix(#""z":"\"bulkId\":\"fake\""}"#))
        #expect(Array(body[item.rawJSON.indices]) == Array(item.rawJSON))
    }

    @Test func emptyContentIsAnEmptyListButMissingContentIsAnError() throws {
        let empty = try BulkListDecoder.decode(utf8(#"{"content":[]}"#))
        #expect(empty.items.isEmpty && empty.skippedWithoutId == 0 && empty.resultStatus == nil)
        for body in [#"{}"#, #"{"content":null}"#, #"{"result":{"status":200}}"#] {
            #expect(decodingError(utf8(body))?.code == .contentMissing)
        }
        #expect(decodingError(utf8(#"{"content":{}}"#))?.code == .contentNotArray)
    }

    @Test func nonObjectItemFailsThePollInsteadOfBeingSkipped() {
        #expect(decodingError(utf8(#"{"content":[{"bulkId":"a"},null]}"#))?.code == .itemNotObject)
    }

    @Test func resultStatusOf400OrMoreIsAnError() throws {
        #expect(decodingError(utf8(#"{"content":[],"result":{"status":503,"message":"x"}}"#))?.code == .errorStatus)
        #expect(try BulkListDecoder.decode(utf8(#"{"content":[],"result":{"status":399}}"#)).resultStatus == 399)
        #expect(try BulkListDecoder.decode(utf8(#"{"content":[],"result":{"status":"503"}}"#)).resultStatus == nil)
    }

    @Test func nestingLimitMatchesFoundation() throws {
        func body(depth: Int) -> [UInt8] {
            // The top-level object is level 1, so `depth - 1` arrays reach exactly `depth`.
            utf8(
                #"{"content":[],"x":"# + String(repeating: "[", count: depth - 1)
                    + String(repeating: "]", count: depth - 1) + "}")
        }
        #expect(try BulkListDecoder.decode(body(depth: BulkListDecoder.maximumDepth)).items.isEmpty)
        #expect(FoundationBulkReference.viaJSONSerialization(body(depth: BulkListDecoder.maximumDepth)) != nil)
        #expect(decodingError(body(depth: BulkListDecoder.maximumDepth + 1))?.code == .nestingTooDeep)
        #expect(FoundationBulkReference.viaJSONSerialization(body(depth: BulkListDecoder.maximumDepth + 1)) == nil)
    }

    @Test func trailingCommasAreRejectedAlthoughFoundationAcceptsThem() {
        for text in [#"{"content":[{"bulkId":"a"},]}"#, #"{"content":[{"bulkId":"a",}]}"#, #"{"content":[],}"#] {
            #expect(throws: BulkDecodingError.self) { try BulkListDecoder.decode(utf8(text)) }
        }
    }

    @Test func utf16BodiesAreRejectedAlthoughFoundationDetectsThem() {
        let body: [UInt8] = [0xFF, 0xFE] + utf8(#"{"content":[]}"#).flatMap { [$0, 0] }
        #expect(decodingError(body)?.code == .syntax)
    }

    @Test func errorDescriptionIsOneShortLineWithTheOffset() throws {
        let secret = String(repeating: "secret-token ", count: 10_000)
        let body = utf8(#"{"content":[{"bulkId":"\#(secret)"}], oops}"#)
        do {
            _ = try BulkListDecoder.decode(body)
            Issue.record("accepted a malformed body")
        } catch {
            #expect(error.code == .syntax)
            #expect(error.offset == body.count - 5)
            #expect(error.description.count < 160)
            #expect(!error.description.contains("\n") && !error.description.contains("secret"))
            #expect(error.description.contains("\(body.count - 5)"))
        }
    }

    @Test func rawJSONSharesTheBodyStorage() throws {
        let body = decoderValidCorpus[2].bytes
        let listing = try BulkListDecoder.decode(body)
        #expect(listing.items.count == 2)
        body.withUnsafeBufferPointer { whole in
            for item in listing.items {
                item.rawJSON.withUnsafeBufferPointer { slice in
                    #expect(slice.baseAddress == whole.baseAddress! + item.rawJSON.startIndex)
                }
            }
        }
    }

    // MARK: Randomised

    @Test("random bodies decode like the generator and Foundation say", arguments: [1, 2, 3, 4, 5] as [UInt64])
    func randomBodiesMatchReferences(seed: UInt64) throws {
        var generator = RandomBulkBodyGenerator(seed: seed, allowDuplicates: seed > 3)
        for _ in 0..<150 {
            let (body, expected, hasDuplicates) = generator.makeBody()
            let listing = try #require(
                try? BulkListDecoder.decode(body), "rejected: \(String(decoding: body, as: UTF8.self))")
            expectDecodedListing(listing, matches: expected, body: body, reference: "generator")
            let viaSerialization = try #require(FoundationBulkReference.viaJSONSerialization(body))
            expectDecodedListing(listing, matches: viaSerialization, body: body, reference: "JSONSerialization")
            if !hasDuplicates {
                let viaDecoder = try #require(FoundationBulkReference.viaJSONDecoder(body))
                expectDecodedListing(listing, matches: viaDecoder, body: body, reference: "JSONDecoder")
            }
        }
    }

    @Test("random corruptions never trap, and are accepted only when Foundation accepts them too")
    func randomCorruptionsAreNeverMoreLenientThanFoundation() throws {
        var generator = RandomBulkBodyGenerator(seed: 42, allowDuplicates: true)
        var accepted = 0
        var rejected = 0
        let replacements: [UInt8] = Array(#"{}[]",:\ 0a"#.utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xED, 0xFF]
        for round in 0..<1_500 {
            var body = generator.makeBody().body
            guard !body.isEmpty else { continue }
            let position = Int(generator.rng.next() % UInt64(body.count))
            switch round % 3 {
            case 0: body[position] = replacements[Int(generator.rng.next() % UInt64(replacements.count))]
            case 1: body.remove(at: position)
            default: body.insert(replacements[Int(generator.rng.next() % UInt64(replacements.count))], at: position)
            }
            guard let listing = decodeOrNil(body) else {
                rejected += 1
                continue
            }
            accepted += 1
            let reference = try #require(
                FoundationBulkReference.viaJSONSerialization(body),
                "accepted what Foundation rejects: \(String(decoding: body, as: UTF8.self))")
            expectDecodedListing(listing, matches: reference, body: body, reference: "JSONSerialization")
        }
        #expect(accepted > 0 && rejected > 0)
    }

    // MARK: Timestamps

    @Test(
        "timestamps parse to UTC milliseconds",
        arguments: [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.001Z", 1),
            ("1969-12-31T23:59:59.999Z", -1),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("2026-11-28T10:16:03Z", 1_795_860_963_000),
            ("2026-11-28 10:16:03Z", 1_795_860_963_000),
            ("2026-11-28t10:16:03z", 1_795_860_963_000),
            ("2026-11-28T10:16:03", 1_795_860_963_000),
            ("2026-11-28T10:16:03.1Z", 1_795_860_963_100),
            ("2026-11-28T10:16:03.123456789Z", 1_795_860_963_123),
            ("2026-11-28T12:16:03+02:00", 1_795_860_963_000),
            ("2026-11-28T04:46:03.5-05:30", 1_795_860_963_500),
            ("2026-11-28T12:16:03+0200", 1_795_860_963_000),
            ("2026-11-28T12:16:03+02", 1_795_860_963_000),
            ("1764324963", 1_764_324_963_000),
            ("1764324963.25", 1_764_324_963_250),
            ("1764324963123", 1_764_324_963_123),
            ("99999999999", 99_999_999_999_000),
            ("100000000000", 100_000_000_000),
            ("-1", -1_000),
            ("-1.0005", -1_001),
            ("0", 0),
            ("1.764324963e9", 1_764_324_963_000),
        ] as [(String, Int64)])
    func timestampParsesToMillis(_ text: String, _ millis: Int64) {
        #expect(Timestamp.instantMillis(text) == millis)
    }

    @Test(
        "malformed or out-of-range timestamps are nil",
        arguments: [
            "", "abc", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-28T24:00:00Z",
            "2026-11-28T10:60:00Z", "2026-11-28T10:16:60Z", "2026-11-28T10:16:03.Z", "2026-11-28T10:16:03+25:00",
            "2026-11-28T10:16:03+02:60", "2026-11-28T10:16:03Zjunk", "2026-11-28", "2026-11-28T10:16Z",
            "2026-1-28T10:16:03Z", " 2026-11-28T10:16:03Z", "2026-11-28X10:16:03Z", "1e999", "0123", "12abc", "--1",
            "1.", "-", "+5", "1764324963 ",
        ])
    func malformedTimestampIsNil(_ text: String) {
        #expect(Timestamp.instantMillis(text) == nil)
    }

    @Test func timestampsAgreeWithISO8601DateFormatter() throws {
        let plain = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let samples = [
            "2026-11-28T10:16:03Z", "1999-12-31T23:59:59Z", "2024-02-29T12:00:00+05:30", "1970-01-01T00:00:00-08:00",
            "2038-01-19T03:14:08Z", "1901-12-13T20:45:52Z",
        ]
        for text in samples {
            let date = try #require(plain.date(from: text))
            #expect(Timestamp.instantMillis(text) == Int64((date.timeIntervalSince1970 * 1_000).rounded()), "\(text)")
        }
        for text in ["2026-11-28T10:16:03.123Z", "2026-11-28T10:16:03.5+01:00", "2001-09-09T01:46:40.007Z"] {
            let date = try #require(fractional.date(from: text))
            #expect(Timestamp.instantMillis(text) == Int64((date.timeIntervalSince1970 * 1_000).rounded()), "\(text)")
        }
    }
}

// MARK: - Random body generator

/// Writes random bodies that follow the documented shape, and knows what each must decode to.
struct RandomBulkBodyGenerator {
    var rng: SplitMix64
    var allowDuplicates: Bool

    init(seed: UInt64, allowDuplicates: Bool) {
        rng = SplitMix64(seed: seed)
        self.allowDuplicates = allowDuplicates
    }

    private mutating func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }
    private mutating func below(_ bound: Int) -> Int { Int(rng.next() % UInt64(bound)) }

    private mutating func whitespace() -> String {
        guard chance(15) else { return "" }
        return [" ", "\n", "\t", "\r\n  ", "  "][below(5)]
    }

    /// A JSON string literal and its decoded value.
    mutating func string() -> (json: String, value: String) {
        let pieces: [(String, String)] = [
            ("a", "a"), ("Z", "Z"), ("0", "0"), (" ", " "), (#"\""#, "\""), (#"\\"#, "\\"), (#"\/"#, "/"), ("/", "/"),
            (#"\n"#, "\n"), (#"\t"#, "\t"), (#"\u0001"#, "\u{1}"), ("é", "é"), (#"\u00e9"#, "é"), ("中", "中"),
            ("😀", "😀"), (#"\ud83d\ude00"#, "😀"), ("{", "{"), ("}", "}"), ("[", "["), ("]", "]"), (",", ","),
            (":", ":"), ("-", "-"), ("\u{7F}", "\u{7F}"),
        ]
        var json = "\""
        var value = ""
        let length = chance(10) ? below(60) : below(20)
        for _ in 0..<length {
            let piece = chance(70) ? pieces[below(4)] : pieces[below(pieces.count)]
            json += piece.0
            value += piece.1
        }
        return (json + "\"", value)
    }

    mutating func number() -> String {
        switch below(6) {
        case 0: String(below(1_000_000))
        case 1: "-" + String(below(1_000))
        case 2: String(below(100)) + "." + String(below(1_000))
        case 3: String(below(9) + 1) + ["e", "E", "e+", "e-"][below(4)] + String(below(20))
        case 4: "1234567890123456789012" + String(below(10))
        default: "0"
        }
    }

    /// Any JSON value (used for unknown fields).
    mutating func value(depth: Int) -> String {
        switch below(depth > 3 ? 5 : 7) {
        case 0: return string().json
        case 1: return number()
        case 2: return ["true", "false"][below(2)]
        case 3: return "null"
        case 4: return string().json
        case 5:
            let members = (0..<below(4)).map { _ in
                whitespace() + string().json + whitespace() + ":" + whitespace() + value(depth: depth + 1)
                    + whitespace()
            }
            return "{" + members.joined(separator: ",") + whitespace() + "}"
        default:
            let elements = (0..<below(4)).map { _ in whitespace() + value(depth: depth + 1) + whitespace() }
            return "[" + elements.joined(separator: ",") + whitespace() + "]"
        }
    }

    /// A value in field position and what the decoder must make of it.
    mutating func field(allowEmpty: Bool = true) -> (json: String, expected: DecoderExpectedScalar) {
        switch below(10) {
        case 0:
            let text = number()
            return (text, .literal(text))
        case 1:
            let flag = chance(50)
            return (flag ? "true" : "false", .bool(flag))
        case 2: return ("null", .absent)
        case 3: return (chance(50) ? #"[1,{"a":"}"}]"# : #"{"bulkId":"x"}"#, .absent)
        default:
            let (json, value) = string()
            return (json, .string(value))
        }
    }

    mutating func makeBody() -> (body: [UInt8], expected: DecoderExpectedListing, hasDuplicates: Bool) {
        var hasDuplicates = false
        var elements: [DecoderExpectedItem] = []
        var itemTexts: [String] = []
        let names = ["bulkId", "status", "createdOn", "updatedOn"]
        for _ in 0..<below(12) {
            var item = DecoderExpectedItem()
            var members: [String] = []
            for (index, name) in names.enumerated() where chance(index == 0 ? 92 : 75) {
                let occurrences = allowDuplicates && chance(10) ? 2 : 1
                hasDuplicates = hasDuplicates || occurrences > 1
                for _ in 0..<occurrences {
                    let (json, expected) = index == 0 && chance(85) ? idField() : field()
                    members.append("\"\(name)\"" + whitespace() + ":" + whitespace() + json)
                    switch index {
                    case 0: item.bulkId = expected
                    case 1: item.status = expected
                    case 2: item.createdOn = expected
                    default: item.updatedOn = expected
                    }
                }
            }
            for _ in 0..<below(4) {
                members.append(
                    "\"x\(below(1000))_\(members.count)\"" + whitespace() + ":" + whitespace() + value(depth: 0))
            }
            // Shuffle without disturbing the relative order of duplicated names (last must stay last).
            if !hasDuplicates { members.shuffle(using: &rng) }
            itemTexts.append(
                "{" + whitespace() + members.map { $0 + whitespace() }.joined(separator: "," + whitespace()) + "}")
            elements.append(item)
        }

        var resultJSON: String?
        var resultStatus = DecoderExpectedScalar.absent
        var resultMessage = DecoderExpectedScalar.absent
        switch below(5) {
        case 0: resultJSON = nil
        case 1: resultJSON = "null"
        default:
            let status = ["200", "201", "\"500\"", "null", "399", "200.0"][below(6)]
            let message = field()
            resultJSON = #"{"status":\#(status),"message":\#(message.json),"extra":\#(value(depth: 1))}"#
            resultStatus = status.hasPrefix("\"") || status == "null" ? .absent : .literal(status)
            resultMessage = message.expected
        }

        var topMembers = [
            "\"content\"" + whitespace() + ":" + whitespace() + "[" + itemTexts.joined(separator: ",") + "]"
        ]
        if let resultJSON { topMembers.append("\"result\":" + whitespace() + resultJSON) }
        for _ in 0..<below(3) { topMembers.append("\"top\(below(100))_\(topMembers.count)\":" + value(depth: 0)) }
        topMembers.shuffle(using: &rng)
        let text = whitespace() + "{" + topMembers.joined(separator: "," + whitespace()) + "}" + whitespace()
        let expected = DecoderExpectedListing(
            elements: elements, resultStatus: resultStatus, resultMessage: resultMessage)
        return (Array(text.utf8), expected!, hasDuplicates)
    }

    private mutating func idField() -> (json: String, expected: DecoderExpectedScalar) {
        if chance(10) {
            let text = String(below(1_000_000))
            return (text, .literal(text))
        }
        let (json, value) = string()
        return (json, .string(value))
    }
}
