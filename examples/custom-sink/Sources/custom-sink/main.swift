import BulkWatch
import Foundation
import GRDB
import Logging

/// Writes every bulkwatch event into this program's own `bulk_events` table.
///
/// Idempotent on the event id: after a crash between the insert and bulkwatch's cursor write the
/// dispatcher hands the same event again (at-least-once), and `INSERT OR IGNORE` keeps one row.
final class SQLiteTableSink: EventSink {
    let name = "sqlite-table:bulk_events"
    private let database: DatabaseQueue

    init(path: String) throws {
        database = try DatabaseQueue(path: path)
        try database.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS bulk_events (
                        id TEXT PRIMARY KEY, sequence INTEGER NOT NULL, type TEXT NOT NULL,
                        bulk_id TEXT NOT NULL, time TEXT NOT NULL, body TEXT NOT NULL)
                    """)
        }
    }

    /// One transaction per batch: either the whole batch is stored or bulkwatch retries it.
    var preferredBatchSize: Int { 500 }

    func deliver(_ events: [JournalEvent]) async throws {
        try await database.write { db in
            for event in events {
                try db.execute(
                    sql: """
                        INSERT OR IGNORE INTO bulk_events (id, sequence, type, bulk_id, time, body)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        event.id, event.sequence, event.type, event.subject, event.time,
                        String(decoding: event.body, as: UTF8.self),
                    ])
            }
        }
    }
}

// Usage: custom-sink ENDPOINT [EVENTS_DB]
//   DRUID_TOKEN_URL and DRUID_CLIENT_ID name the OAuth2 client, DRUID_CLIENT_SECRET holds its
//   secret (read by bulkwatch through a reference, never copied into a setting).
let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: custom-sink ENDPOINT [EVENTS_DB]\n".utf8))
    exit(64)
}
let logger = Logger(label: "custom-sink")
do {
    var builder = BulkWatchBuilder()
    let environment = ProcessInfo.processInfo.environment
    try builder.set("endpoint", arguments[1])
    if let tokenURL = environment["DRUID_TOKEN_URL"] { try builder.set("token-url", tokenURL) }
    if let clientID = environment["DRUID_CLIENT_ID"] { try builder.set("client-id", clientID) }
    if environment["DRUID_CLIENT_SECRET"] != nil { try builder.set("client-secret", "env:DRUID_CLIENT_SECRET") }
    try builder.set("state", "./custom-sink-bulkwatch.db")
    builder.addSink(try SQLiteTableSink(path: arguments.count > 2 ? arguments[2] : "./events.db"))
    let watcher = try await builder.build(logger: logger)
    try await watcher.run()
} catch {
    FileHandle.standardError.write(Data("custom-sink: \(error)\n".utf8))
    exit(1)
}
