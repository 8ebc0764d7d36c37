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

    @OptionGroup var pipeline: PipelineOptions

    func validate() throws {
        guard let value = Duration(parsing: interval), value >= .milliseconds(50) else {
            throw ValidationError("invalid --interval '\(interval)'")
        }
        if let duration, Duration(parsing: duration) == nil {
            throw ValidationError("invalid --for '\(duration)'")
        }
    }

    func run() async throws {
        let logger = LogSetup.bootstrapStderr(level: pipeline.logLevel)
        let webhook = try pipeline.webhookSettings()
        let options = SimulatorOptions(
            seed: seed, initialOperations: 6, creationsPerSecond: 0.7, stepSeconds: 3, retentionSeconds: 12)
        let simulator = DruIDSimulator(options: options, logger: logger)
        do {
            try await simulator.start(port: 0)
        } catch {
            throw RuntimeFailure("cannot start the simulator: \(error)")
        }
        logger.info("DruID simulator at \(simulator.baseURL); state \(pipeline.statePath); Ctrl-C to stop")
        let target = WatchTarget(
            endpoint: BulkEndpoint(url: simulator.bulkURL), interval: Duration(parsing: interval) ?? .seconds(1),
            policy: pipeline.policy, retain: Duration(parsing: pipeline.retain) ?? .seconds(86400))
        let credentials = ClientCredentials(
            tokenURL: simulator.tokenURL, clientID: options.clientID, clientSecret: Secret(options.clientSecret))
        let configuration = RuntimeConfiguration(
            target: target, tokenSource: .clientCredentials(credentials), statePath: pipeline.statePath,
            sinks: pipeline.sinkSpecs, fileMaxBytes: Int64(ByteSize.parse(pipeline.fileMaxSize) ?? 64 << 20),
            fileKeep: pipeline.fileKeep, webhook: webhook)
        let runtime: BulkWatchRuntime
        do {
            runtime = try BulkWatchRuntime(configuration: configuration, logger: logger)
        } catch {
            await simulator.stop()
            throw ConfigurationError("\(error)")
        }
        var extra: [any Service] = [SimulatorService(simulator: simulator)]
        if let duration, let limit = Duration(parsing: duration) {
            extra.append(StopAfter(limit))
        }
        try await runtime.run(extraServices: extra)
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
