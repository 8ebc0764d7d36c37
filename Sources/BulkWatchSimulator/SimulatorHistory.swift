/// One change of the simulated world, as a client polling the full list could observe it.
///
/// The simulator keeps these (when ``SimulatorOptions/recordsHistory`` is on) so that fault and crash tests have
/// an independent truth to compare a watcher's journal against: every `created` and `changed` here should appear
/// once as the matching event, every `removed` once as `expired`, and nothing else.
public struct SimulatorChange: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// A `bulkId` appeared in the list.
        case created
        /// Its `status` or `updatedOn` changed (other fields alone are not a change a watcher reports).
        case changed
        /// It left the list; ``SimulatorChange/status`` and ``SimulatorChange/updatedOn`` are its last state.
        case removed
    }

    public var kind: Kind
    public var bulkId: String
    /// The field as rendered in the list: the JSON string's text, the raw JSON for a non-string, nil when absent.
    public var status: String?
    /// As ``status``; timestamps appear exactly as the list renders them (ISO-8601 UTC, milliseconds).
    public var updatedOn: String?
    /// Simulated time of the change, milliseconds since 1970 (with automatic churn: the wall clock).
    public var atMillis: Int64

    public init(kind: Kind, bulkId: String, status: String?, updatedOn: String?, atMillis: Int64) {
        self.kind = kind
        self.bulkId = bulkId
        self.status = status
        self.updatedOn = updatedOn
        self.atMillis = atMillis
    }

    /// One JSON object: `{"kind":…,"bulkId":…,"status":…,"updatedOn":…,"at":…}` (absent fields as null).
    func appendJSON(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"kind":""#.utf8)
        out.append(contentsOf: kind.rawValue.utf8)
        out.append(contentsOf: #"","bulkId":"#.utf8)
        BodyRenderer.appendJSONString(bulkId, to: &out)
        out.append(contentsOf: #","status":"#.utf8)
        if let status { BodyRenderer.appendJSONString(status, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","updatedOn":"#.utf8)
        if let updatedOn {
            BodyRenderer.appendJSONString(updatedOn, to: &out)
        } else {
            out.append(contentsOf: "null".utf8)
        }
        out.append(contentsOf: #","at":\#(atMillis)}"#.utf8)
    }

    /// `{"nowMillis":N,"changes":[…]}`, the body of `GET /simulator/history`.
    static func renderHistory(_ changes: [SimulatorChange], nowMillis: Int64) -> [UInt8] {
        var out: [UInt8] = Array(#"{"nowMillis":\#(nowMillis),"changes":["#.utf8)
        out.reserveCapacity(changes.count * 120 + 64)
        for (index, change) in changes.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            change.appendJSON(to: &out)
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }
}

extension FieldValue {
    /// The value as ``SimulatorChange`` records it.
    var historyText: String? {
        switch self {
        case .millis(let millis): BodyRenderer.iso8601(millis: millis)
        case .string(let text): text
        case .raw(let json): json
        case .absent: nil
        }
    }
}
