import ArgumentParser
import BulkWatch
import Foundation

/// Prints the journal, optionally following it like `tail -f` (reads the state file; safe while
/// `bulkwatch run` writes it, thanks to SQLite WAL).
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print the event journal.")

    @Option(name: .customLong("state"), help: "SQLite state file.")
    var statePath = "./bulkwatch.db"

    @Option(help: "Only events with a sequence greater than this.")
    var since: Int64 = 0

    @Flag(help: "Keep printing new events as they are committed.")
    var follow = false

    @Option(name: .customLong("type"), help: "Only these types (created, changed, expired; repeatable or comma-separated).")
    var types: [String] = []

    @Option(help: "Only events about this bulkId.")
    var subject: String?

    @Option(help: "json (CloudEvents, one per line) or text.")
    var format = "json"

    func validate() throws {
        guard since >= 0 else { throw ValidationError("--since must be >= 0") }
        guard StdoutSink.Format(rawValue: format) != nil else { throw ValidationError("--format must be json or text") }
        _ = try kinds()
    }

    private func kinds() throws -> Set<DetectedChange.Kind>? {
        let names = types.flatMap { $0.split(separator: ",") }.map { $0.hasPrefix("bulk.") ? String($0.dropFirst(5)) : String($0) }
        guard !names.isEmpty else { return nil }
        return Set(try names.map { name in
            guard let kind = DetectedChange.Kind(rawValue: name) else {
                throw ValidationError("unknown --type '\(name)': expected created, changed or expired")
            }
            return kind
        })
    }

    func run() async throws {
        guard FileManager.default.fileExists(atPath: statePath) else {
            throw ConfigurationError("no state file at \(statePath) (pass --state PATH)")
        }
        let journal = try StateFile.open(statePath)
        let filter = EventFilter(kinds: try kinds(), subject: subject)
        let output = StdoutSink(format: StdoutSink.Format(rawValue: format) ?? .json)
        var cursor = since
        while true {
            let batch = try await journal.events(after: cursor, limit: 1000, filter: filter)
            if let last = batch.last {
                try await output.deliver(batch)
                cursor = last.sequence
                continue
            }
            guard follow else { return }
            // `main` ignores SIGHUP for the daemon; a follower in a terminal ends with the terminal.
            signal(SIGHUP, SIG_DFL)
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
