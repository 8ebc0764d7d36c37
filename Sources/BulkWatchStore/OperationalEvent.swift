import BulkWatchSupport
import Crypto
package import Foundation

/// An event about the watcher itself (DESIGN.md §9): a target that keeps failing, or recovered.
///
/// It travels like every other event (journal, cursors, sinks) so that a revoked credential is
/// not silence: whoever opted in by type hears about it. The CloudEvent's `subject` is the target
/// name and `data` says what is known about the outage:
/// `{"target","since","failedAttempts","lastError"}` plus `"recoveredAt"` when recovered.
package struct OperationalEvent: Sendable, Equatable {
    package var kind: JournalEvent.Kind
    package var target: String
    /// When the first failed poll of this outage happened.
    package var since: Date
    /// Failed polls in a row, so far (failing) or in all (recovered).
    package var failedAttempts: Int
    /// The last poll error, one line.
    package var lastError: String
    /// When this event was raised (the CloudEvents `time`).
    package var at: Date

    package init(kind: JournalEvent.Kind, target: String, since: Date, failedAttempts: Int, lastError: String, at: Date)
    {
        precondition(!kind.isBulk, "an operational event has an operational kind")
        self.kind = kind
        self.target = target
        self.since = since
        self.failedAttempts = failedAttempts
        self.lastError = lastError
        self.at = at
    }

    /// The stored CloudEvent. The id derives from (source, target, type, since): one outage has one
    /// failing and one recovered id, so a re-emission after a crash is deduplicated.
    func encoded(source: String, sequence: Int64) -> JournalEvent {
        let time = RFC3339.millisecondsUTC(at)
        let sinceText = RFC3339.millisecondsUTC(since)
        let id = Self.stableID(source: source, target: target, type: kind.type, since: sinceText)
        var out: [UInt8] = []
        out.append(contentsOf: #"{"specversion":"1.0","id":""#.utf8)
        out.append(contentsOf: id.utf8)
        out.append(contentsOf: #"","source":"#.utf8)
        JSONText.appendString(source, to: &out)
        out.append(contentsOf: #","type":""#.utf8)
        out.append(contentsOf: kind.type.utf8)
        out.append(contentsOf: #"","subject":"#.utf8)
        JSONText.appendString(target, to: &out)
        out.append(contentsOf: #","time":""#.utf8)
        out.append(contentsOf: time.utf8)
        out.append(contentsOf: #"","datacontenttype":"application/json","sequence":""#.utf8)
        out.append(contentsOf: String(sequence).utf8)
        out.append(contentsOf: #"","data":{"target":"#.utf8)
        JSONText.appendString(target, to: &out)
        out.append(contentsOf: #","since":""#.utf8)
        out.append(contentsOf: sinceText.utf8)
        out.append(contentsOf: #"","failedAttempts":"#.utf8)
        out.append(contentsOf: String(failedAttempts).utf8)
        out.append(contentsOf: #","lastError":"#.utf8)
        JSONText.appendString(lastError, to: &out)
        if kind == .targetRecovered {
            out.append(contentsOf: #","recoveredAt":""#.utf8)
            out.append(contentsOf: time.utf8)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: "}}".utf8)
        var event = JournalEvent(sequence: sequence, id: id, kind: kind, subject: target, time: time, body: out)
        event.target = target
        return event
    }

    static func stableID(source: String, target: String, type: String, since: String) -> String {
        var hasher = SHA256()
        for part in [source, target, type, since] {
            hasher.update(data: Array(part.utf8) + [0])
        }
        var bytes = Array(hasher.finalize().prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        let parts = [
            hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4),
            hex.dropFirst(20),
        ]
        return parts.joined(separator: "-")
    }
}
