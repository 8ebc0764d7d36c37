package import BulkWatch
package import BulkWatchSimulator
import Foundation

/// The journal held against the simulator's own history (``DruIDSimulator/history``): the truth of the fault
/// and crash tests.
///
/// Every `created`/`changed` change should be journaled exactly once as the event of the same kind carrying
/// the same `status` and `updatedOn`, every `removed` exactly once as `expired`; any other event is false.
/// This holds as long as the watcher saw every state, which the tests arrange by changing an item at most
/// once between two of the watcher's successful polls.
package struct JournalTruth: CustomStringConvertible {
    /// Changes with no matching event: lost.
    package var missing: [String] = []
    /// Keys journaled more than once.
    package var duplicated: [String] = []
    /// Events that match no change: false events.
    package var unexpected: [String] = []
    /// Event ids that occur more than once.
    package var repeatedIDs: [String] = []

    package var isExact: Bool { missing.isEmpty && duplicated.isEmpty && unexpected.isEmpty && repeatedIDs.isEmpty }
    /// No false event and no duplicate, though some changes may still be on their way.
    package var hasNoFalseEvents: Bool { duplicated.isEmpty && unexpected.isEmpty && repeatedIDs.isEmpty }

    package init(events: [JournalEvent], history: [SimulatorChange]) {
        var expected: [String: Int] = [:]
        for change in history { expected[Self.key(change), default: 0] += 1 }
        var seen: [String: Int] = [:]
        var ids: Set<String> = []
        for event in events {
            let key = Self.key(event)
            seen[key, default: 0] += 1
            if !ids.insert(event.id).inserted { repeatedIDs.append(event.id) }
            if expected[key] == nil { unexpected.append("\(event.sequence): \(key)") }
        }
        for (key, count) in seen where count > 1 && count > (expected[key] ?? 0) { duplicated.append(key) }
        for change in history where seen[Self.key(change)] == nil { missing.append(Self.key(change)) }
    }

    package var description: String {
        guard !isExact else { return "journal matches the simulator's history" }
        var parts: [String] = []
        if !missing.isEmpty {
            parts.append("missing \(missing.prefix(5))\(missing.count > 5 ? " (\(missing.count))" : "")")
        }
        if !duplicated.isEmpty { parts.append("duplicated \(duplicated.prefix(5))") }
        if !unexpected.isEmpty { parts.append("false events \(unexpected.prefix(5))") }
        if !repeatedIDs.isEmpty { parts.append("repeated ids \(repeatedIDs.prefix(5))") }
        return parts.joined(separator: "; ")
    }

    static func key(_ change: SimulatorChange) -> String {
        switch change.kind {
        case .created: "created \(change.bulkId) \(change.status ?? "-") \(change.updatedOn ?? "-")"
        case .changed: "changed \(change.bulkId) \(change.status ?? "-") \(change.updatedOn ?? "-")"
        case .removed: "expired \(change.bulkId)"
        }
    }

    static func key(_ event: JournalEvent) -> String {
        let object = (try? JSONSerialization.jsonObject(with: Data(event.body))) as? [String: Any]
        let data = object?["data"] as? [String: Any]
        let status = data?["status"] as? String ?? "-"
        let updatedOn = data?["updatedOn"] as? String ?? "-"
        switch event.kind {
        case .created: return "created \(event.subject) \(status) \(updatedOn)"
        case .changed: return "changed \(event.subject) \(status) \(updatedOn)"
        case .expired: return "expired \(event.subject)"
        case .targetFailing, .targetRecovered: return "\(event.kind.rawValue) \(event.subject)"
        }
    }
}
