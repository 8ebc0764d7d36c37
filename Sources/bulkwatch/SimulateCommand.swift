import ArgumentParser
import BulkWatchSimulator
import Foundation
import Logging
import ServiceLifecycle

/// Serves the DruID simulator until SIGINT/SIGTERM, for trying bulkwatch (or anything else) against it.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Serve the DruID simulator (token + bulk endpoints) on 127.0.0.1.")

    @Option(help: "Port (0 picks a free one).")
    var port = 8080

    @Option(name: .customLong("client-id"), help: "Client id the token endpoint accepts.")
    var clientID = "bulkwatch-demo"

    @Option(help: "Client secret the token endpoint accepts (a test credential; SIMULATOR_CLIENT_SECRET also works).")
    var clientSecret: String?

    @Option(help: "Seed of the simulated world.")
    var seed: UInt64 = 42

    @Option(help: "Operations present at start.")
    var initial = 8

    @Option(help: "New operations per second.")
    var rate = 0.5

    @Option(help: "Mean seconds an operation spends in PENDING and in PROCESSING.")
    var step = 5.0

    @Option(help: "Seconds a finished operation stays listed.")
    var retention = 60.0

    @Option(help: "Token lifetime in seconds.")
    var tokenLifetime = 900.0

    @Option(
        help:
            "Fault rates, e.g. 500=0.1,504=0.05,401=0.02,400=0.01,malformed=0.05,truncated=0.05,html=0.05,empty=0.02,half=0.02"
    )
    var faults: String?

    @Option(help: "Added latency per bulk request, in seconds.")
    var latency = 0.0

    @Option(help: "Log level.")
    var logLevel = "info"

    @Flag(help: "Record every change of the world and serve it at GET /simulator/history (for crash tests).")
    var history = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        guard rate >= 0, step > 0, retention >= 0, tokenLifetime > 0, initial >= 0, latency >= 0 else {
            throw ValidationError(
                "--rate, --step, --retention, --token-lifetime, --initial and --latency must be positive")
        }
        if let faults { _ = try Self.parseFaults(faults) }
    }

    static func parseFaults(_ text: String) throws -> SimulatorFaults {
        var faults = SimulatorFaults()
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "=")
            guard pieces.count == 2, let rate = Double(pieces[1]), (0...1).contains(rate) else {
                throw ValidationError("invalid --faults entry '\(part)': expected NAME=RATE with RATE in 0...1")
            }
            switch pieces[0] {
            case "400": faults.badRequestRate = rate
            case "401": faults.unauthorizedRate = rate
            case "500": faults.serverErrorRate = rate
            case "504": faults.gatewayTimeoutRate = rate
            case "malformed": faults.malformedJSONRate = rate
            case "truncated": faults.truncatedBodyRate = rate
            case "html": faults.htmlErrorPageRate = rate
            case "empty": faults.emptyListRate = rate
            case "half": faults.halfListRate = rate
            default: throw ValidationError("unknown fault '\(pieces[0])'")
            }
        }
        return faults
    }

    func run() async throws {
        signal(SIGHUP, SIG_DFL)  // `main` ignores it for the daemon; the simulator has nothing to reload
        let logger = LogSetup.bootstrapStderr(level: logLevel)
        var faults = try faults.map(Self.parseFaults) ?? SimulatorFaults()
        faults.latency = latency
        let secret = clientSecret ?? ProcessInfo.processInfo.environment["SIMULATOR_CLIENT_SECRET"] ?? "demo-secret"
        // The built-in demo credential is public and printed for convenience; one the operator chose is not.
        let isDemoSecret = secret == "demo-secret"
        let shownSecret = isDemoSecret ? secret : "(as configured; not shown)"
        let options = SimulatorOptions(
            clientID: clientID, clientSecret: secret, seed: seed, tokenLifetime: tokenLifetime,
            initialOperations: initial, creationsPerSecond: rate, stepSeconds: step, retentionSeconds: retention,
            faults: faults, recordsHistory: history)
        let simulator = DruIDSimulator(options: options, logger: logger)
        do {
            try await simulator.start(port: port)
        } catch {
            throw RuntimeFailure("cannot listen on 127.0.0.1:\(port): \(error)")
        }
        FileHandle.standardOutput.write(
            Data(
                """
                DruID simulator listening on \(simulator.baseURL)
                  bulk endpoint:  \(simulator.bulkURL)
                  token endpoint: \(simulator.tokenURL)
                  client id:      \(clientID)
                  client secret:  \(shownSecret)
                Try: BULKWATCH_CLIENT_SECRET=\(isDemoSecret ? secret : "...") bulkwatch run --endpoint \(simulator.bulkURL) \
                --token-url \(simulator.tokenURL) --client-id \(clientID) --interval 2s --state /tmp/bulkwatch-sim.db

                """.utf8))
        let group = ServiceGroup(
            services: [SimulatorService(simulator: simulator)], gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
    }
}
