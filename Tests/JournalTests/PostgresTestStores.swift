import Foundation
import Logging
import TestSupport
import Testing

@testable import BulkWatch

/// Runs the pools of the PostgreSQL stores a test opens inside that test's own task group, and
/// stops them when the test ends (`.runsPostgresStores` on a suite or test).
struct RunsPostgresStores: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil else { return try await function() }
        let (stream, continuation) = AsyncStream.makeStream(of: PostgresStore.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { running in
                    for await store in stream { running.addTask { await store.run() } }
                }
            }
            defer {
                continuation.finish()
                group.cancelAll()
            }
            try await PostgresTestStores.$running.withValue(continuation) { try await function() }
        }
    }
}

extension Trait where Self == RunsPostgresStores {
    static var runsPostgresStores: Self { RunsPostgresStores() }
}

enum PostgresTestStores {
    @TaskLocal static var running: AsyncStream<PostgresStore>.Continuation?

    struct NotInScope: Error, CustomStringConvertible {
        var description: String { "a PostgreSQL store was opened outside a test with the .runsPostgresStores trait" }
    }

    /// The settings of the shared cluster's database for `key` (created the first time).
    static func settings(_ key: String) throws -> PostgresSettings {
        let cluster = try PostgresCluster.shared()
        let database = try cluster.database(for: key)
        return try PostgresSettings(
            url: cluster.url(database: database), environment: ["PGPASSWORD": cluster.password])
    }

    /// Opens (running and migrating) a store on `settings`; the same settings reach the same database.
    static func open(_ settings: PostgresSettings, acceptsExclusive: Bool = true) async throws -> PostgresStore {
        guard let running else { throw NotInScope() }
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .warning
        let store = PostgresStore(settings: settings, acceptsExclusive: acceptsExclusive, logger: logger)
        running.yield(store)
        try await store.migrate()
        return store
    }

    /// The store named `name` of the test owning `directory` (its own database).
    static func open(_ directory: String, _ name: String) async throws -> PostgresStore {
        try await open(try settings(directory + "/" + name))
    }
}
