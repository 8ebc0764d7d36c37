import Foundation

/// The few fields of an event body that filters and formats read. A targeted parse: a body that
/// does not parse yields nils, never a crash.
package enum EventFields {
    package static func statuses(of body: [UInt8]) -> (status: String?, previousStatus: String?) {
        guard let data = object(body)?["data"] as? [String: Any] else { return (nil, nil) }
        return (scalar(data["status"]), scalar((data["previous"] as? [String: Any])?["status"]))
    }

    package static func object(_ body: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }

    package static func scalar(_ value: Any?) -> String? {
        switch value {
        case let string as String: return string
        case let number as NSNumber: return number.stringValue
        default: return nil
        }
    }
}
