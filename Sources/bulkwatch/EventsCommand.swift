import ArgumentParser
import BulkWatch
import Foundation

/// Prints the journal, optionally following it like `tail -f` (reads the state file; safe while
/// `bulkwatch run` writes it, thanks to SQLite WAL).
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print the event journal.")

    @Option(name: .customLong("state"), help: "SQLite state file, or a postgres:// URL.")
    var statePath = "./bulkwatch.db"

    @Option(help: "Only events with a sequence greater than this.")
    var since: Int64 = 0

    @Flag(help: "Keep printing new events as they are committed.")
    var follow = false

    @Option(
        name: .customLong("type"),
        help: "Only these types: created, changed, expired, target.failing, target.recovered (repeatable, or A,B).")
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

    private func kinds() throws -> Set<JournalEvent.Kind>? {
        let names = types.flatMap { $0.split(separator: ",") }.map(String.init)
        guard !names.isEmpty else { return nil }
        return Set(
            try names.map { name in
                guard let kind = SinkFilter.kind(named: name) else {
                    throw ValidationError(
                        "unknown --type '\(name)': expected created, changed, expired, target.failing or target.recovered"
                    )
                }
                return kind
            })
    }

    func run() async throws { try await StateFile.with(statePath) { try await run(journal: $0) } }

    func run(journal: any Store) async throws {
        let kinds = try kinds()
        // The journal query knows the bulk kinds; operational ones are picked out after reading.
        let bulkOnly = kinds.map { $0.allSatisfy(\.isBulk) } ?? false
        let filter = EventFilter(
            kinds: bulkOnly ? kinds.map { Set($0.compactMap(\.change)) } : nil, subject: subject)
        let output = StdoutSink(format: StdoutSink.Format(rawValue: format) ?? .json)
        var cursor = since
        while true {
            let batch = try await journal.events(after: cursor, limit: 1000, filter: filter)
            if let last = batch.last {
                let shown = kinds.map { kinds in batch.filter { kinds.contains($0.kind) } } ?? batch
                if !shown.isEmpty { try await output.deliver(shown) }
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
