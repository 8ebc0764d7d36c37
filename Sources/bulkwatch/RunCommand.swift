import ArgumentParser
import BulkWatch
import Foundation
import Logging

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Watch one or more DruID bulk-status endpoints until SIGINT/SIGTERM.",
        discussion: """
            With --config FILE, every target of the file is watched; flags given on the command line override \
            the file for every target, and SIGHUP reloads the file. Without it, the flags describe one target. \
            Secrets are never taken from the command line: BULKWATCH_CLIENT_SECRET, --client-secret-file, \
            --oauthconf, a systemd credential, or env:/file:/credential: references in the file. \
            BULKWATCH_TOKEN supplies a fixed app token instead (no refresh).
            """)

    @Option(help: "YAML configuration file with several targets (see examples/bulkwatch.yaml).")
    var config: String?

    @Flag(
        help: """
            Poll once, deliver, exit (exit 1 when the poll fails or a sink could not deliver everything). \
            On a postgres:// state it works under the replicas' leases, and exits 1 when a running replica holds one.
            """)
    var once = false

    @OptionGroup var target: TargetOptions
    @OptionGroup var process: ProcessOptions

    @Option(help: "Replicated mode (--state postgres://): this replica's name among the others. [HOSTNAME-PID]")
    var replicaID: String?

    @Option(
        help: """
            Replicated mode: how long a lease lasts unrenewed (renewed every third of it); a dead replica's \
            targets are polled again within this plus one interval. [15s]
            """)
    var leaseTTL: String?

    func validate() throws {
        try validateOptions(config: config, target: target, process: process)
        if let leaseTTL {
            guard let ttl = Duration(parsing: leaseTTL), ttl >= .milliseconds(300) else {
                throw ValidationError("--lease-ttl: '\(leaseTTL)' is not a duration of at least 300ms (e.g. 15s)")
            }
        }
        if let replicaID, replicaID.isEmpty || replicaID.count > 200 {
            throw ValidationError("--replica-id must be 1 to 200 characters")
        }
    }

    /// Leases for a `postgres://` state: a replica takes its share and keeps them; `--once` takes them all
    /// for its one poll, or refuses when running replicas hold them.
    private func replication(state: String) -> ReplicationSettings? {
        guard StoreLocation.isPostgres(state) else { return nil }
        return ReplicationSettings(
            replicaID: replicaID, leaseTTL: leaseTTL.flatMap { Duration(parsing: $0) } ?? .seconds(15))
    }

    func run() async throws {
        let resolver = try makeResolver(config: config, target: target, process: process, once: once)
        let configuration = try resolveOrExit(resolver)
        let global = try resolveGlobalOrExit(resolver)
        let logger = LogSetup.bootstrapStderr(level: global.logLevel ?? "info", format: global.logFormat ?? .text)
        let registry = configuration.listen != nil ? PrometheusMetrics.bootstrap() : nil
        for warning in StartupWarnings.all(configuration) { logger.warning("\(warning)") }
        try await withStateStore(configuration.statePath, logger: logger, leased: true) { store in
            let runtime: BulkWatchRuntime
            do {
                // The reloader re-reads the file with the same flags and environment (SIGHUP).
                let reloader: ConfigurationReloader? = config == nil ? nil : { @Sendable in try resolver.resolve() }
                runtime = try await BulkWatchRuntime(
                    configuration: configuration, logger: logger, reloader: reloader, store: store,
                    replication: replication(state: configuration.statePath))
            } catch let error as StateInUse {
                throw RuntimeFailure(error.description)
            } catch let error as LeasesHeldElsewhere {
                throw RuntimeFailure(error.description)
            } catch {
                throw ConfigurationError("\(error)")
            }
            for plan in configuration.targets {
                let cadence =
                    plan.target.activeInterval.map { ", \($0.shortDescription) while operations are in progress" } ?? ""
                logger.info(
                    "watching \(plan.target.endpoint.url) every \(plan.target.interval.shortDescription)\(cadence)",
                    metadata: ["target": "\(plan.target.name)"])
            }
            logger.info("state \(configuration.statePath)")
            try await runMappingFailures { try await runtime.run(registry: registry) }
        }
    }
}

/// Opens a PostgreSQL `--state` for the watcher's lifetime (nil for SQLite, which the runtime opens);
/// a `--state` that cannot be used is a configuration error (exit 78).
///
/// `leased`: every write will carry a lease's fence (`run` on PostgreSQL), so one without is refused as a bug.
func withStateStore(
    _ state: String, logger: Logger, leased: Bool = false, _ body: ((any Store)?) async throws -> Void
) async throws {
    var opened = false
    do {
        try await StoreLocation.withWatcherStore(state, logger: logger, acceptsExclusive: !leased) { store in
            opened = true
            try await body(store)
        }
    } catch {
        throw opened ? error : ConfigurationError("\(error)")
    }
}

/// Runs the service group; a run that ended because nothing could be delivered is one line and exit 1.
func runMappingFailures(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as EverySinkStopped {
        throw RuntimeFailure(error.description)
    } catch let error as OnceUndelivered {
        throw RuntimeFailure(error.description)
    }
}

/// Builds the resolver from `--config` and the flag layers (usage errors: exit 64).
func makeResolver(config: String?, target: TargetOptions, process: ProcessOptions, once: Bool) throws
    -> ConfigurationResolver
{
    ConfigurationResolver(
        configPath: config, flagGlobal: try process.settings(), flagTarget: try target.settings(), once: once)
}

/// Resolves everything or fails with one line and exit 78.
func resolveOrExit(_ resolver: ConfigurationResolver) throws -> RuntimeConfiguration {
    do {
        return try resolver.resolve()
    } catch {
        throw ConfigurationError(error.description)
    }
}

func resolveGlobalOrExit(_ resolver: ConfigurationResolver) throws -> GlobalSettings {
    do {
        return try resolver.globalSettings()
    } catch {
        throw ConfigurationError(error.description)
    }
}
