import BulkWatchSimulator
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A simulator plus a temp directory, and the `bulkwatch run` arguments that point at them.
struct RunFixture {
    let simulator: DruIDSimulator
    let directory: String
    var statePath: String { directory + "/state.db" }
    var logPath: String { directory + "/events.jsonl" }
    let environment = ["BULKWATCH_CLIENT_SECRET": "demo-secret"]

    init(options: SimulatorOptions = .manual()) async throws {
        simulator = DruIDSimulator(options: options)
        try await simulator.start()
        directory = try makeTemporaryDirectory("e2e")
    }

    func arguments(_ extra: [String] = []) -> [String] {
        [
            "run", "--endpoint", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id", "bulkwatch-demo",
            "--state", statePath, "--sink", "file:" + logPath,
        ] + extra
    }

    var fileEvents: [[String: Any]] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return jsonObjects(text).compactMap { $0 }
    }

    func stop() async { await simulator.stop() }
}

@Suite("bulkwatch run, as a child process against the simulator")
struct RunCommandTests {
    @Test func onceDeliversEveryItemToTheFileAndStdout() async throws {
        let fixture = try await RunFixture()
        for index in 1...5 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "PENDING") }
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "stdout:json"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let fromFile = fixture.fileEvents
        let fromStdout = jsonObjects(result.stdout).compactMap { $0 }
        #expect(fromFile.count == 5)
        #expect(fromStdout.count == 5)
        #expect(fromFile.map { $0["subject"] as? String } == (1...5).map { "b-\($0)" })
        #expect(
            fromFile.allSatisfy { $0["type"] as? String == "bulk.created" && $0["specversion"] as? String == "1.0" })
        #expect(fromFile.map { $0["id"] as? String } == fromStdout.map { $0["id"] as? String })
        var info = stat()
        #expect(stat(fixture.statePath, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(stat(fixture.logPath, &info) == 0 && info.st_mode & 0o777 == 0o600)
        await fixture.stop()
    }

    @Test func aRestartEmitsOnlyWhatChangedSince() async throws {
        let fixture = try await RunFixture()
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "PENDING") }
        let first = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(first.status == 0, "stderr: \(first.stderr)")
        fixture.simulator.upsert(bulkId: "b-2", status: "FINISHED")
        let second = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(second.status == 0, "stderr: \(second.stderr)")
        let types = fixture.fileEvents.map { "\($0["type"] ?? "")/\($0["subject"] ?? "")" }
        #expect(types == ["bulk.created/b-1", "bulk.created/b-2", "bulk.created/b-3", "bulk.changed/b-2"])
        let changed = try #require(fixture.fileEvents.last)
        let data = try #require(changed["data"] as? [String: Any])
        let previous = try #require(data["previous"] as? [String: Any])
        #expect(data["status"] as? String == "FINISHED")
        #expect(previous["status"] as? String == "PENDING")
        #expect(changed["sequence"] as? String == "4")
        await fixture.stop()
    }

    @Test func aFailedOncePollExitsNonZeroAndChangesNothing() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1")
        fixture.simulator.enqueue(.malformedJSON)
        let result = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(result.status == 1)
        #expect(result.stderr.contains("poll failed: malformed body"))
        #expect(fixture.fileEvents.isEmpty)
        await fixture.stop()
    }

    @Test func initialSkipRecordsTheBaselineSilently() async throws {
        let fixture = try await RunFixture()
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)") }
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--initial", "skip"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(fixture.fileEvents.isEmpty)
        fixture.simulator.upsert(bulkId: "b-4")
        _ = try await runBulkWatch(
            fixture.arguments(["--once", "--initial", "skip"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(fixture.fileEvents.map { $0["subject"] as? String } == ["b-4"])
        await fixture.stop()
    }

    @Test func sigtermStopsGracefullyWithExitZero() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1")
        let child = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(["--interval", "200ms"]), environment: fixture.environment,
            directory: fixture.directory)
        let delivered = await ChildProcess.eventually { fixture.fileEvents.count == 1 }
        #expect(delivered)
        child.signal(SIGTERM)
        let status = await child.waitForExit(timeout: .seconds(20))
        #expect(status == 0, "stderr: \(child.stderr)")
        await fixture.stop()
    }

    @Test func followsLiveChangesAndExpiresVanishedItems() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "PENDING")
        fixture.simulator.upsert(bulkId: "b-2", status: "PENDING")
        let child = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(["--interval", "100ms"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(await ChildProcess.eventually { fixture.fileEvents.count == 2 })
        fixture.simulator.upsert(bulkId: "b-1", status: "PROCESSING")
        #expect(await ChildProcess.eventually { fixture.fileEvents.count == 3 })
        fixture.simulator.remove(bulkId: "b-2")
        #expect(await ChildProcess.eventually { fixture.fileEvents.count == 4 })
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(20)) == 0)
        let summary = fixture.fileEvents.map { "\($0["type"] ?? "")/\($0["subject"] ?? "")" }
        #expect(summary == ["bulk.created/b-1", "bulk.created/b-2", "bulk.changed/b-1", "bulk.expired/b-2"])
        let expired = try #require(fixture.fileEvents.last?["data"] as? [String: Any])
        #expect(expired["status"] as? String == "PENDING")
        await fixture.stop()
    }

    @Test func upstreamFaultsNeverProduceFalseEvents() async throws {
        var options = SimulatorOptions.manual(seed: 7)
        options.faults = SimulatorFaults()
        options.faults.badRequestRate = 0.05
        options.faults.unauthorizedRate = 0.05
        options.faults.serverErrorRate = 0.05
        options.faults.gatewayTimeoutRate = 0.05
        options.faults.malformedJSONRate = 0.05
        options.faults.truncatedBodyRate = 0.05
        options.faults.htmlErrorPageRate = 0.05
        options.faults.emptyListRate = 0.04
        options.faults.halfListRate = 0.04
        let fixture = try await RunFixture(options: options)
        for index in 1...20 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "FINISHED") }
        let child = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(["--interval", "50ms"]), environment: fixture.environment,
            directory: fixture.directory)
        // Let it see plenty of faulty answers (backoff is capped at the 50 ms interval).
        _ = await ChildProcess.eventually(timeout: .seconds(60)) { fixture.simulator.stats.bulkRequests >= 120 }
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(20)) == 0)
        let types = fixture.fileEvents.map { $0["type"] as? String }
        #expect(types.count == 20)
        #expect(types.allSatisfy { $0 == "bulk.created" })
        #expect(fixture.simulator.requestLog.contains { $0.status >= 400 })
        #expect(child.stderr.contains("poll failed"))
        await fixture.stop()
    }

    @Test func neverPrintsTheSecretOrTheToken() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1")
        fixture.simulator.enqueue(.status(401), times: 2)
        fixture.simulator.enqueue(.status(500))
        let child = try ChildProcess(
            BulkWatchBinary.path,
            fixture.arguments(["--interval", "100ms", "--log-level", "trace", "--sink", "stdout"]),
            environment: fixture.environment, directory: fixture.directory)
        #expect(await ChildProcess.eventually { fixture.fileEvents.count == 1 })
        child.signal(SIGTERM)
        _ = await child.waitForExit(timeout: .seconds(20))
        let output = child.stdout + child.stderr
        #expect(output.contains("poll failed"))
        #expect(!output.contains("demo-secret"))
        let tokens = fixture.simulator.requestLog.compactMap { $0.header("Authorization") }
            .map { String($0.dropFirst("Bearer ".count)) }
        #expect(!tokens.isEmpty)
        for token in tokens { #expect(!output.contains(token)) }
        await fixture.stop()
    }

    @Test func honoursTheHTTPProxyVariable() async throws {
        let proxy = try LoopbackHTTPServer { request in
            request.path.hasSuffix("/oauth2/token")
                ? .json(200, #"{"access_token":"t","expires_in":60}"#)
                : .json(200, #"{"content":[{"bulkId":"via-proxy","status":"PENDING"}],"result":{"status":200}}"#)
        }
        defer { proxy.stop() }
        let directory = try makeTemporaryDirectory("proxy")
        let result = try await runBulkWatch(
            [
                "run", "--once", "--endpoint", "http://druid.invalid/activityid/v1/user/bulk", "--token-url",
                "http://druid.invalid/oauth2/token", "--client-id", "x", "--state", directory + "/s.db", "--sink",
                "stdout:json",
            ],
            environment: [
                "BULKWATCH_CLIENT_SECRET": "s", "http_proxy": proxy.baseURL, "no_proxy": "", "NO_PROXY": "",
            ], directory: directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(
            proxy.requests.map(\.path) == [
                "http://druid.invalid/oauth2/token", "http://druid.invalid/activityid/v1/user/bulk",
            ])
        #expect(result.stdout.contains("via-proxy"))
    }
}

@Suite("Command-line validation: one line, the right exit code, no network call")
struct CommandLineValidationTests {
    func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32?, String, String) {
        let directory = try makeTemporaryDirectory("cli")
        let result = try await runBulkWatch(arguments, environment: environment, directory: directory)
        return (result.status, result.stdout, result.stderr)
    }

    @Test(arguments: [
        ["run"],
        ["run", "--endpoint", "not a url", "--token-url", "http://x/t", "--client-id", "c"],
        ["run", "--endpoint", "http://x/b", "--token-url", "http://x/t", "--client-id", "c", "--interval", "soon"],
        ["run", "--endpoint", "http://x/b", "--token-url", "http://x/t", "--client-id", "c", "--sink", "email:me"],
        ["run", "--endpoint", "http://x/b", "--token-url", "http://x/t", "--client-id", "c", "--initial", "maybe"],
        ["run", "--endpoint", "http://x/b", "--token-url", "http://x/t", "--client-id", "c", "--expire-after", "1"],
        ["run", "--endpoint", "http://x/b", "--client-id", "c"],
        ["events", "--format", "xml"],
        ["frobnicate"],
    ])
    func usageErrorsExit64(arguments: [String]) async throws {
        let (status, stdout, stderr) = try await run(arguments, environment: ["BULKWATCH_CLIENT_SECRET": "s"])
        #expect(status == 64, "stderr: \(stderr)")
        #expect(stdout.isEmpty)
        #expect(stderr.contains("Error:"))
    }

    @Test func aMissingSecretIsAConfigurationError() async throws {
        let simulator = DruIDSimulator(options: .manual())
        try await simulator.start()
        let (status, _, stderr) = try await run([
            "run", "--endpoint", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id", "c",
        ])
        #expect(status == 78)
        #expect(nonEmptyLines(stderr).count == 1)
        #expect(stderr.contains("BULKWATCH_CLIENT_SECRET"))
        #expect(simulator.requestLog.isEmpty)
        await simulator.stop()
    }

    @Test func aSecretFileReadableByOthersIsRefused() async throws {
        let directory = try makeTemporaryDirectory("secret")
        let path = directory + "/secret"
        try "demo-secret\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        let (status, _, stderr) = try await run([
            "run", "--endpoint", "http://127.0.0.1:9/b", "--token-url", "http://127.0.0.1:9/t", "--client-id", "c",
            "--client-secret-file", path, "--state", directory + "/s.db",
        ])
        #expect(status == 78)
        #expect(stderr.contains("chmod 600"))
        #expect(!stderr.contains("demo-secret"))
    }

    @Test func anUnusableStatePathIsAConfigurationError() async throws {
        let (status, _, stderr) = try await run(
            [
                "run", "--endpoint", "http://127.0.0.1:9/b", "--token-url", "http://127.0.0.1:9/t", "--client-id", "c",
                "--state", "/nonexistent-dir/state.db",
            ], environment: ["BULKWATCH_CLIENT_SECRET": "s"])
        #expect(status == 78)
        #expect(nonEmptyLines(stderr).count == 1)
        #expect(stderr.contains("/nonexistent-dir/state.db"))
    }

    @Test func demoShowsLiveEventsWithinSeconds() async throws {
        let directory = try makeTemporaryDirectory("demo")
        let result = try await runBulkWatch(
            ["demo", "--for", "3s", "--interval", "200ms", "--state", directory + "/demo.db"], directory: directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("created"))
    }
}
