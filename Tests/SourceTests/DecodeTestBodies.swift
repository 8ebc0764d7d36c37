// Bodies, and a comparable form of what a decode found, for the suites that decode one body two ways (in two
// halves at once, or while it arrives) and require exactly what the plain decode finds.
import Testing

@testable import BulkWatch

/// What a decode found, in a form two decodes can be compared by: the items in order and form, the skips, the
/// result, and the status counts.
struct DecodedListing: Equatable {
    var items: [BulkItem]
    var skipped: Int
    var resultStatus: Int?
    var resultMessage: String?
    var running: Int
    var withoutStatus: Int

    init(_ listing: BulkListing) {
        items = listing.items
        skipped = listing.skippedWithoutId
        resultStatus = listing.resultStatus
        resultMessage = listing.resultMessage
        running = listing.countItems { $0.map { String(decoding: $0, as: UTF8.self) == "RUNNING" } ?? false }
        withoutStatus = listing.countItems { $0 == nil }
    }
}

private let statuses = ["RUNNING", "DONE", "FAILED", "PENDING", "RUNNING"]

/// `count` items of every kind the listing holds: plain ones (offsets), escaped ones every `escapedEvery`
/// (kept whole), literal ids, items without a usable id (skipped), without a status, with nested values, with
/// whitespace around keys; `pretty` puts a line break after some commas.
func decodeTestItems(_ count: Int, pretty: Bool = false, escapedEvery: Int = 11) -> [String] {
    (0..<count).map { index in
        let status = statuses[index % statuses.count]
        let sep = pretty ? ",\n    " : ","
        if index % escapedEvery == 3 {
            return #"{"bulkId":"esc-\#(index)\u0041","status":"\#(status)"\#(sep)"updatedOn":"2026-11-28T10:00:00Z"}"#
        }
        switch index % 11 {
        case 5: return #"{"bulkId":\#(index)\#(sep)"status":"\#(status)"}"#
        case 7: return #"{"bulkId":null,"status":"\#(status)"}"#
        case 8: return #"{"bulkId":"b-\#(index)","nested":[{"a":1},{"b":{"c":[]}}]\#(sep)"status":"\#(status)"}"#
        case 9: return #"{ "bulkId" : "b-\#(index)" , "updatedOn":"2026-11-28T10:00:0\#(index % 10)Z" }"#
        default:
            return
                #"{"bulkId":"b-\#(index)","status":"\#(status)"\#(sep)"createdOn":"2026-11-28T09:00:00Z","updatedOn":"2026-11-28T10:00:00Z"}"#
        }
    }
}

/// A body whose `content` array holds `elements`: `before` goes between `{` and `"content"`, `after` after the
/// array (by default a `result`).
func decodeTestBody(
    _ elements: [String], separator: String = ",", before: String = "",
    after: String = #","result":{"status":200,"message":"ok"}"#
) -> String {
    #"{"# + before + #""content":["# + elements.joined(separator: separator) + "]" + after + "}"
}

/// Two decodes of one body agree: the same listing, or the same error at the same offset. `names` say which
/// decode was which in a failure.
func expectSameOutcome(
    _ one: Result<DecodedListing, BulkDecodingError>, _ two: Result<DecodedListing, BulkDecodingError>,
    names: (String, String), sourceLocation: SourceLocation
) {
    switch (one, two) {
    case (.success(let first), .success(let second)):
        #expect(first.items.count == second.items.count, sourceLocation: sourceLocation)
        #expect(first == second, sourceLocation: sourceLocation)
    case (.failure(let first), .failure(let second)):
        #expect(first == second, sourceLocation: sourceLocation)
    default:
        Issue.record("\(names.0): \(one), \(names.1): \(two)", sourceLocation: sourceLocation)
    }
}
