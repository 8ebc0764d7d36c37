import ArgumentParser
import BulkWatch
import Foundation
import Logging

/// `bulkwatch check`: validates the configuration, reads every secret (never printing it) and
/// performs one authenticated fetch per target, so a deploy can fail fast instead of at 3 a.m.
///
/// Output is one line per target, `OK` or `FAIL` with the exact problem; exit 0 when every
/// target is OK, 1 when one is not, 78 when the configuration itself is invalid.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the configuration and fetch each target once (OK / the problem, per target).")

    @Option(help: "YAML configuration file (see examples/bulkwatch.yaml).")
    var config: String?

    @OptionGroup var target: TargetOptions
    @OptionGroup var process: ProcessOptions

    func validate() throws {
        try validateOptions(config: config, target: target, process: process)
    }

    func run() async throws {
        let resolver = try makeResolver(config: config, target: target, process: process, once: true)
        let configuration = try resolveOrExit(resolver)
        print("configuration OK: \(configuration.targets.count) target(s), state \(configuration.statePath)")
        let logger: Logger = {
            var logger = Logger(label: "bulkwatch.check")
            logger.logLevel = .critical
            return logger
        }()
        let transport = CurlTransport(configuration: configuration.transport)
        defer { transport.shutdown() }
        var failures = 0
        // Concurrently, like the watcher; printed in configuration order.
        let results = await withTaskGroup(of: (Int, String).self) { group in
            for (index, plan) in configuration.targets.enumerated() {
                group.addTask { (index, await Self.check(plan, transport: transport, logger: logger)) }
            }
            var collected: [(Int, String)] = []
            for await result in group { collected.append(result) }
            return collected.sorted { $0.0 < $1.0 }.map(\.1)
        }
        for line in results {
            if line.hasPrefix("FAIL") { failures += 1 }
            print(line)
        }
        if failures > 0 {
            throw RuntimeFailure("\(failures) of \(configuration.targets.count) target(s) failed the check")
        }
    }

    private static func check(_ plan: TargetPlan, transport: CurlTransport, logger: Logger) async -> String {
        let name = plan.target.name
        let tokens = TokenProvider(source: plan.tokenSource, transport: transport, logger: logger)
        let started = ContinuousClock.now
        do {
            _ = try await tokens.token()
        } catch {
            return "FAIL  \(name)  token: \(error)"
        }
        let tokenTime = ContinuousClock.now - started
        let client = BulkStatusClient(
            endpoint: plan.target.endpoint, transport: transport, tokens: tokens, logger: logger)
        let fetchStarted = ContinuousClock.now
        do {
            let listing = try await client.fetch()
            let active = plan.target.activeCount(in: listing)
            return
                "OK    \(name)  \(listing.count) operation(s), \(active) in progress; token \(tokenTime.shortDescription), "
                + "list \((ContinuousClock.now - fetchStarted).shortDescription) (\(plan.target.endpoint.url))"
        } catch {
            return "FAIL  \(name)  \(plan.target.endpoint.url): \(error)"
        }
    }
}
