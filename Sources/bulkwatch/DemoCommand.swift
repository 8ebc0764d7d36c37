import ArgumentParser
import BulkWatch
import BulkWatchSimulator
import Foundation
import Logging
import ServiceLifecycle

/// Runs the simulator in-process and watches it: live events within seconds, no credentials.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the built-in DruID simulator and watch it (no credentials needed).")

    @Option(help: "Poll interval.")
    var interval = "1s"

    @Option(name: .customLong("for"), help: "Stop after this long (e.g. 20s); default: until Ctrl-C.")
    var duration: String?

    @Option(help: "Simulator seed (same seed, same operations).")
    var seed: UInt64 = 42

    @Option(help: "Poll interval while any operation is in progress, e.g. 300ms. [off]")
    var activeInterval: String?

    @Option(
        name: .customLong("sink"),
        help: "Where events go; repeatable: stdout, stdout:json, file:PATH, webhook:URL. [stdout]")
    var sinks: [String] = []

    @Option(help: "Consecutive successful polls an item must be missing from before it expires. [2]")
    var expireAfter: String?

    @Option(help: "First run: 'emit' or 'skip'. [emit]")
    var initial: String?

    @OptionGroup var process: ProcessOptions

    func validate() throws {
        guard let value = Duration(parsing: interval), value >= .milliseconds(50) else {
            throw ValidationError("invalid --interval '\(interval)'")
        }
        if let duration, Duration(parsing: duration) == nil {
            throw ValidationError("invalid --for '\(duration)'")
        }
        _ = try targetSettings(bulkURL: "http://127.0.0.1/", tokenURL: "http://127.0.0.1/")
        _ = try process.settings()
    }

    /// The demo's target: the simulator's URLs and credential, plus the flags given.
    private func targetSettings(bulkURL: String, tokenURL: String) throws -> TargetSettings {
        let pairs: [(String, String?)] = [
            ("endpoint", bulkURL), ("token-url", tokenURL), ("client-id", SimulatorOptions().clientID),
            ("interval", interval), ("active-interval", activeInterval), ("expire-after", expireAfter),
            ("initial", initial),
        ]
        var settings = try TargetOptions.settings(
            pairs.compactMap { key, value in value.map { (key, SettingValue.scalar($0)) } }
                + (sinks.isEmpty ? [] : [("sinks", .list(sinks))]))
        // The simulator's built-in demo credential, handed over like any secret: by reference.
        settings.clientSecret = SecretReference.environment(Self.secretVariable)
        return settings
    }

    private static let secretVariable = "BULKWATCH_DEMO_CLIENT_SECRET"

    func run() async throws {
        let options = SimulatorOptions(
            seed: seed, initialOperations: 6, creationsPerSecond: 0.7, stepSeconds: 3, retentionSeconds: 12)
        var environment = ProcessInfo.processInfo.environment
        environment[Self.secretVariable] = options.clientSecret
        environment["BULKWATCH_TOKEN"] = nil
        // Resolve with placeholder URLs first: configuration errors must show before anything starts.
        let probe = ConfigurationResolver(
            configPath: nil, flagGlobal: try process.settings(),
            flagTarget: try targetSettings(bulkURL: "http://127.0.0.1/", tokenURL: "http://127.0.0.1/"),
            environment: environment)
        _ = try resolveOrExit(probe)
        let global = try resolveGlobalOrExit(probe)
        let logger = LogSetup.bootstrapStderr(level: global.logLevel ?? "info", format: global.logFormat ?? .text)
        let simulator = DruIDSimulator(options: options, logger: logger)
        do {
            try await simulator.start(port: 0)
        } catch {
            throw RuntimeFailure("cannot start the simulator: \(error)")
        }
        let resolver = ConfigurationResolver(
            configPath: nil, flagGlobal: try process.settings(),
            flagTarget: try targetSettings(bulkURL: simulator.bulkURL, tokenURL: simulator.tokenURL),
            environment: environment)
        let configuration: RuntimeConfiguration
        do {
            configuration = try resolveOrExit(resolver)
        } catch {
            await simulator.stop()
            throw error
        }
        logger.info("DruID simulator at \(simulator.baseURL); state \(configuration.statePath); Ctrl-C to stop")
        let registry = configuration.listen != nil ? PrometheusMetrics.bootstrap() : nil
        try await withStateStore(configuration.statePath, logger: logger) { store in
            let runtime: BulkWatchRuntime
            do {
                runtime = try await BulkWatchRuntime(configuration: configuration, logger: logger, store: store)
            } catch let error as StateInUse {
                await simulator.stop()
                throw RuntimeFailure(error.description)
            } catch {
                await simulator.stop()
                throw ConfigurationError("\(error)")
            }
            var extra: [any Service] = [SimulatorService(simulator: simulator)]
            if let duration, let limit = Duration(parsing: duration) {
                extra.append(StopAfter(limit))
            }
            try await runMappingFailures { try await runtime.run(extraServices: extra, registry: registry) }
        }
    }
}

/// Keeps the in-process simulator alive for the life of the service group; stops it last.
struct SimulatorService: Service {
    let simulator: DruIDSimulator

    func run() async throws {
        try? await gracefulShutdown()
        await simulator.stop()
    }
}

/// Ends the service group after a fixed time (`demo --for 20s`).
struct StopAfter: Service {
    let limit: Duration

    init(_ limit: Duration) { self.limit = limit }

    func run() async throws {
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: limit) }
    }
}
