import Foundation
import Testing

@testable import BulkWatch
@testable import BulkWatchStore

/// The CloudEvent `source` never carries userinfo (issue 11), whatever source it is given.
@Suite("CloudEvent source without credentials")
struct CloudEventSourceTests {
    private func event(source: String) throws -> [String: Any] {
        let json = #"{"bulkId":"b-1","status":"DONE"}"#
        let item = BulkItem(bulkId: "b-1", status: "DONE", updatedOn: nil, rawJSON: Array(json.utf8)[...])
        let encoded = CloudEventEncoder.encode(
            DetectedChange(kind: .created, item: item), source: source, sequence: 1, time: "2026-12-01T00:00:00.000Z")
        return try #require(try JSONSerialization.jsonObject(with: Data(encoded.body)) as? [String: Any])
    }

    @Test func userinfoIsDroppedFromTheSource() throws {
        let object = try event(source: "https://user:pw@api.example.com/activityid/v1/user/bulk")
        #expect(object["source"] as? String == "https://api.example.com/activityid/v1/user/bulk")
    }

    @Test func anOrdinarySourceIsKeptAsIs() throws {
        let source = "https://api.example.com/activityid/v1/user/bulk?x=a@b"
        #expect(try event(source: source)["source"] as? String == source)
    }
}
