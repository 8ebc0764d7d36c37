import Foundation
import Logging
import PostgresNIO

/// The PostgreSQL schema of ``PostgresStore``, as numbered migrations.
///
/// Several replicas start at once against one database (DESIGN.md §8), so migrating must be safe to
/// race: all of it runs in one transaction that first takes a transaction-scoped advisory lock, then
/// reads which versions `schema_versions` already lists and applies only the others. The replica
/// that waited on the lock finds every version recorded and does nothing; a failed migration rolls
/// back whole, lock included. Versions are only ever appended: a released one is never edited.
package enum PostgresSchema {
    /// The advisory lock key all bulkwatch migrations serialize on (`"bulkwatch"` as ASCII bytes).
    static let migrationLock: Int64 = 0x62_75_6c_6b_77_61_74_63

    struct Migration: Sendable {
        var version: Int
        var name: String
        var statements: [String]
    }

    /// Every migration, in order. The journal row is seeded separately (it needs a fresh random id).
    static let migrations: [Migration] = [
        Migration(
            version: 1, name: "journal, snapshots, events, cursors, dead letters, leases",
            statements: [
                """
                CREATE TABLE journal (
                    singleton integer PRIMARY KEY CHECK (singleton = 1),
                    journal_id text NOT NULL,
                    last_sequence bigint NOT NULL
                )
                """,
                """
                CREATE TABLE targets (
                    target text PRIMARY KEY,
                    successful_polls bigint NOT NULL DEFAULT 0,
                    last_success text
                )
                """,
                """
                CREATE TABLE snapshot_images (
                    target text PRIMARY KEY,
                    through_delta bigint NOT NULL,
                    image bytea NOT NULL
                )
                """,
                """
                CREATE TABLE snapshot_deltas (
                    id bigserial PRIMARY KEY,
                    target text NOT NULL,
                    delta bytea NOT NULL
                )
                """,
                "CREATE INDEX snapshot_deltas_by_target ON snapshot_deltas (target, id)",
                """
                CREATE TABLE events (
                    seq bigint PRIMARY KEY,
                    id text NOT NULL,
                    target text NOT NULL,
                    type text NOT NULL,
                    subject text NOT NULL,
                    time text NOT NULL,
                    body bytea NOT NULL
                )
                """,
                """
                CREATE TABLE incarnations (
                    target text NOT NULL,
                    bulk_id text NOT NULL,
                    incarnation bigint NOT NULL,
                    expired_at text,
                    PRIMARY KEY (target, bulk_id)
                )
                """,
                """
                CREATE TABLE cursors (
                    sink text PRIMARY KEY,
                    seq bigint NOT NULL,
                    updated_at text,
                    last_error text,
                    rewound boolean NOT NULL DEFAULT false,
                    configured boolean NOT NULL DEFAULT true,
                    filtered bigint NOT NULL DEFAULT 0
                )
                """,
                """
                CREATE TABLE dead_letters (
                    sink text NOT NULL,
                    seq bigint NOT NULL,
                    event_id text NOT NULL,
                    reason text NOT NULL,
                    attempts integer NOT NULL,
                    dead_at text NOT NULL,
                    PRIMARY KEY (sink, seq)
                )
                """,
                """
                CREATE TABLE leases (
                    name text PRIMARY KEY,
                    owner text NOT NULL,
                    epoch bigint NOT NULL,
                    expires_at timestamptz NOT NULL
                )
                """,
            ])
    ]

    static var currentVersion: Int { migrations.last?.version ?? 0 }

    /// Applies the migrations `connection`'s database lacks, in one transaction under the advisory lock.
    static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS schema_versions (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query(
                "SELECT version FROM schema_versions", logger: logger
            ).decode(Int.self) {
                applied.insert(version)
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                if migration.version == 1 {
                    let journalID = UUID().uuidString.lowercased()
                    try await connection.query(
                        "INSERT INTO journal (singleton, journal_id, last_sequence) VALUES (1, \(journalID), 0)",
                        logger: logger)
                }
                try await connection.query(
                    "INSERT INTO schema_versions (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger)
                logger.info("migrated the PostgreSQL state to version \(migration.version) (\(migration.name))")
            }
        }
    }
}
