import ArgumentParser
import BulkWatch
import Foundation
import Logging

/// Shows where each sink stands: cursor, lag, last error, dead letters (reads the state file;
/// safe while `bulkwatch run` writes it).
struct DeliveriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveries", abstract: "Show each sink's cursor, lag, last error and dead letters.")

    @Option(name: .customLong("state"), help: "SQLite state file, or a postgres:// URL.")
    var statePath = "./bulkwatch.db"

    @Option(help: "text (a table) or json (one object per sink, in an array).")
    var format = "text"

    func validate() throws {
        guard format == "text" || format == "json" else { throw ValidationError("--format must be text or json") }
    }

    func run() async throws { try await StateFile.with(statePath) { try await run(journal: $0) } }

    func run(journal: any Store) async throws {
        let statuses = try await journal.sinkStatuses()
        // Events each sink's filter passed over (DESIGN.md §9); they moved its cursor too.
        let filtered = try await journal.filteredCounts()
        // Replicated mode: which replica delivers each sink now (nil: SQLite, where the one watcher does).
        var owners: [String: String]?
        if let store = journal as? PostgresStore {
            owners = [:]
            for lease in try await store.leases.list() where lease.held && lease.name.hasPrefix("sink:") {
                owners?[String(lease.name.dropFirst("sink:".count))] = lease.owner
            }
        }
        if format == "json" {
            let objects: [[String: Any]] = statuses.map { status in
                var object: [String: Any] = [
                    "sink": URLRedaction.sinkName(status.sink), "cursor": status.cursor, "lag": status.lag,
                    "lastError": status.lastError ?? NSNull(), "deadLetters": status.deadLetters,
                    "updatedAt": status.updatedAt ?? NSNull(), "stale": status.stale,
                    "filtered": filtered[status.sink] ?? 0,
                ]
                if let owners { object["owner"] = owners[status.sink] ?? NSNull() }
                return object
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
            return
        }
        guard !statuses.isEmpty else {
            print("no sink has run against \(statePath) yet")
            return
        }
        // A stale sink is one the running configuration no longer names: its cursor pins nothing.
        var rows =
            [["SINK", "CURSOR", "LAG", "DEAD", "FILTERED", "LAST ERROR"]]
            + statuses.map {
                [
                    URLRedaction.sinkName($0.sink) + ($0.stale ? " (stale)" : ""), "\($0.cursor)", "\($0.lag)",
                    "\($0.deadLetters)", "\(filtered[$0.sink] ?? 0)",
                    $0.lastError.map(EscapingLogHandler.escape) ?? "-",
                ]
            }
        if let owners {
            rows[0].insert("OWNER", at: 5)
            for (index, status) in statuses.enumerated() { rows[index + 1].insert(owners[status.sink] ?? "-", at: 5) }
        }
        let last = rows[0].count - 1
        let widths = (0..<last).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let padded = (0..<last).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
            print((padded + [row[last]]).joined(separator: "  "))
        }
    }
}

/// Opening an existing state for the operator commands: a missing SQLite file, a bad URL or a
/// database that cannot be reached is a configuration error; `body`'s own errors pass through.
enum StateFile {
    static func with(_ value: String, _ body: (any Store) async throws -> Void) async throws {
        let location: StoreLocation
        do { location = try StoreLocation(value) } catch { throw ConfigurationError("\(error)") }
        if case .sqlite(let path) = location, !FileManager.default.fileExists(atPath: path) {
            throw ConfigurationError("no state file at \(path) (pass --state PATH)")
        }
        var opened = false
        do {
            try await location.withStore(logger: Logger(label: "bulkwatch")) { store in
                opened = true
                try await body(store)
            }
        } catch {
            throw opened ? error : ConfigurationError("\(error)")
        }
    }
}
