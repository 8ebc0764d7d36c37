package import BulkWatchStore
import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The `stdout` and `stdout:json` sinks: events on standard output, for a person watching a terminal or for
/// the next program in a pipe (`bulkwatch run --sink stdout:json | jq …`).
///
/// Guarantees:
/// - Each batch goes out in one `write(2)` loop (partial writes and EINTR resumed), so a reader never sees
///   one event's line interleaved with another's.
/// - `json`: exactly the event body plus `\n` per event, byte for byte as the journal holds it (DESIGN.md §4).
/// - `text`: one line per event; ANSI colour only when the descriptor is a terminal and `NO_COLOR` is unset
///   or empty (https://no-color.org) and `TERM` is not `dumb`. Control characters coming from upstream
///   data are replaced, so a hostile `bulkId` cannot drive the terminal.
/// - A closed pipe (EPIPE; SIGPIPE is ignored process-wide) throws ``SinkIOError`` with code `.brokenPipe`
///   rather than killing the daemon; the dispatcher decides what to do with the sink.
///
/// Writes happen on a private serial queue, so a stalled reader blocks only this sink, not the
/// cooperative thread pool.
package struct StdoutSink: EventSink {
    /// How events are rendered.
    package enum Format: String, Sendable, CaseIterable {
        /// One readable line per event, for people.
        case text
        /// The CloudEvents JSON object per line, for programs.
        case json
    }

    /// `stdout` or `stdout:json`, matching the `--sink` spec, so each format keeps its own cursor.
    package let name: String
    package let format: Format
    let fileDescriptor: Int32
    let colour: Bool
    private let queue: DispatchQueue

    /// - Parameters:
    ///   - format: `.text` for people, `.json` for pipes.
    ///   - fileDescriptor: where to write; 1 in production, a pipe or file in tests. Not closed by the sink.
    ///   - colour: force colour on or off; `nil` decides from the descriptor and the environment.
    package init(format: Format = .text, fileDescriptor: Int32 = 1, colour: Bool? = nil) {
        self.format = format
        self.name = format == .text ? "stdout" : "stdout:json"
        self.fileDescriptor = fileDescriptor
        let environment = ProcessInfo.processInfo.environment
        let wanted = colour ?? Self.shouldColour(fileDescriptor: fileDescriptor, environment: environment)
        self.colour = format == .text && wanted
        self.queue = DispatchQueue(label: "bulkwatch.sink.stdout")
    }

    package func deliver(_ events: [JournalEvent]) async throws {
        guard !events.isEmpty else { return }
        let bytes = render(events)
        let fd = fileDescriptor
        try await runBlocking(on: queue) {
            do throws(PartialWrite) {
                try writeFully(fd, bytes)
            } catch {
                throw SinkIOError.system("write to", path: "stdout", errno: error.errno)
            }
        }
    }

    /// The bytes one batch becomes: everything goes out in a single write loop.
    func render(_ events: [JournalEvent]) -> [UInt8] {
        var bytes: [UInt8] = []
        switch format {
        case .json:
            bytes.reserveCapacity(events.reduce(0) { $0 + $1.body.count + 1 })
            for event in events {
                bytes += event.body
                bytes.append(UInt8(ascii: "\n"))
            }
        case .text:
            for event in events {
                bytes += Array(TextLine(event).rendered(colour: colour).utf8)
                bytes.append(UInt8(ascii: "\n"))
            }
        }
        return bytes
    }

    /// Colour only for a terminal whose user has not opted out: piped or redirected output stays plain text
    /// that `grep` and log collectors can read.
    static func shouldColour(fileDescriptor: Int32, environment: [String: String]) -> Bool {
        if let noColour = environment["NO_COLOR"], !noColour.isEmpty { return false }
        if environment["TERM"] == "dumb" { return false }
        return isatty(fileDescriptor) == 1
    }
}

/// The human rendering of one event: `time  kind  bulkId  detail`, where detail is the status for
/// `created`, `PREVIOUS → STATUS` for `changed`, and `(last STATUS)` for `expired`.
struct TextLine {
    var time: String
    var kind: JournalEvent.Kind
    var subject: String
    var detail: String

    init(_ event: JournalEvent) {
        time = event.time
        kind = event.kind
        subject = event.subject
        if !event.kind.isBulk {
            detail = Self.operationalDetail(event)
            return
        }
        let fields = Self.statusFields(of: event.body)
        let status = fields.status ?? "?"
        switch event.kind {
        case .created:
            detail = status
        case .expired:
            detail = "(last \(status))"
        case .changed:
            if let previous = fields.previousStatus, previous != fields.status {
                detail = "\(previous) → \(status)"
            } else {
                // Same status, newer updatedOn: say what moved, not a confusing `X → X`.
                let before = fields.previousUpdatedOn ?? "?"
                let after = fields.updatedOn ?? "?"
                detail = "\(status) (updatedOn \(before) → \(after))"
            }
        case .targetFailing, .targetRecovered:
            detail = ""
        }
    }

    /// `12 failed poll(s) since T: last error` (failing), `after 12 failed poll(s) since T` (recovered).
    static func operationalDetail(_ event: JournalEvent) -> String {
        let data = EventFields.object(event.body)?["data"] as? [String: Any]
        let attempts = EventFields.scalar(data?["failedAttempts"]) ?? "?"
        let since = EventFields.scalar(data?["since"]) ?? "?"
        if event.kind == .targetRecovered { return "after \(attempts) failed poll(s) since \(since)" }
        return "\(attempts) failed poll(s) since \(since): \(EventFields.scalar(data?["lastError"]) ?? "?")"
    }

    func rendered(colour: Bool) -> String {
        let time = Self.printable(time)
        let subject = Self.printable(subject)
        let detail = Self.printable(detail)
        guard colour else { return "\(time)  \(kind.rawValue)  \(subject)  \(detail)" }
        let kindColour: String
        switch kind {
        case .created: kindColour = "\u{1B}[32m"
        case .changed: kindColour = "\u{1B}[33m"
        case .expired: kindColour = "\u{1B}[31m"
        case .targetFailing: kindColour = "\u{1B}[1;35m"
        case .targetRecovered: kindColour = "\u{1B}[36m"
        }
        let reset = "\u{1B}[0m"
        return "\u{1B}[2m\(time)\(reset)  \(kindColour)\(kind.rawValue)\(reset)  \u{1B}[1m\(subject)\(reset)  \(detail)"
    }

    /// `data.status`, `data.updatedOn` and `data.previous.{status,updatedOn}` from the body. A targeted
    /// parse is enough: text mode is for people, and a body that does not parse still yields a line.
    static func statusFields(
        of body: [UInt8]
    ) -> (status: String?, updatedOn: String?, previousStatus: String?, previousUpdatedOn: String?) {
        guard
            let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let data = object["data"] as? [String: Any]
        else { return (nil, nil, nil, nil) }
        let previous = data["previous"] as? [String: Any]
        return (
            scalar(data["status"]), scalar(data["updatedOn"]), scalar(previous?["status"]),
            scalar(previous?["updatedOn"])
        )
    }

    private static func scalar(_ value: Any?) -> String? {
        switch value {
        case let string as String: return string
        case let number as NSNumber: return number.stringValue
        default: return nil
        }
    }

    /// Replaces control characters (ESC, CR, newline, …) so upstream data can neither forge extra lines nor
    /// send escape sequences to the terminal.
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            scalars.append(isControl(scalar) ? "\u{FFFD}" : scalar)
        }
        return String(scalars)
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: return true
        default: return scalar.properties.isBidiControl
        }
    }
}
