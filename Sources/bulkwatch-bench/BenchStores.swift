// The store a bench run measures: an SQLite file (the embedded default), or a database on a throwaway PostgreSQL
// cluster that the bench starts itself (replicated mode's backend), so both can be printed side by side.
import BulkWatch
import Foundation
import Synchronization
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Which backend a run measures (`--store sqlite|postgres`).
enum BenchBackend: String, CaseIterable {
    case sqlite
    case postgres

    init(parsing value: String) throws {
        guard let backend = BenchBackend(rawValue: value) else {
            throw BenchError("--store must be sqlite or postgres, not '\(value)'")
        }
        self = backend
    }
}

/// A store opened for one bench phase, and how to close it.
struct BenchStore {
    let store: any Store
    private let stop: @Sendable () async -> Void

    /// The SQLite file at `sqlitePath`, or, with `postgresURL`, that database (password from `PGPASSWORD`), its pool
    /// running in a task until ``close()``. Both are migrated and empty when fresh.
    static func open(sqlitePath: String, postgresURL: String?) async throws -> BenchStore {
        guard let postgresURL else { return BenchStore(store: try SQLiteStore(path: sqlitePath), stop: {}) }
        let settings = try PostgresSettings(url: postgresURL, environment: ProcessInfo.processInfo.environment)
        let store = PostgresStore(settings: settings, logger: Bench.quietLogger("bulkwatch-bench.postgres"))
        let running = Task { await store.run() }
        try await store.migrate()
        return BenchStore(
            store: store,
            stop: {
                running.cancel()
                await running.value
            })
    }

    func close() async { await stop() }
}

/// The bench's PostgreSQL: one throwaway cluster per bench process, started on first use with PostgreSQL's durable
/// defaults (`fsync`, `synchronous_commit` and `full_page_writes` on: a commit is on disk when it returns, as with
/// SQLite's `synchronous=FULL`), on a loopback port, stopped when the process ends. Each run gets a fresh database.
enum BenchPostgres {
    private static let cluster = Mutex<PostgresCluster?>(nil)

    /// A `postgres://` URL of a new empty database; `PGPASSWORD` is set for this process and its children.
    static func freshDatabaseURL() throws -> String {
        let cluster = try cluster.withLock { cluster in
            if let cluster { return cluster }
            Bench.progress("starting a throwaway PostgreSQL cluster (durable settings)")
            let started = try PostgresCluster.dedicated(durable: true)
            setenv("PGPASSWORD", started.password, 1)
            cluster = started
            return started
        }
        return cluster.url(database: try cluster.database(for: UUID().uuidString))
    }
}
