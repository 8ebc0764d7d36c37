import BulkWatch
import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private let hookKey: [UInt8] = Array("end-to-end webhook key, 32 bytes".utf8)
private let hookSecret = "whsec_" + Data(hookKey).base64EncodedString()

/// A receiver whose answer the test can change while bulkwatch runs.
private final class SwitchableReceiver: Sendable {
    final class Status: Sendable {
        let value: Mutex<Int>
        init(_ value: Int) { self.value = Mutex(value) }
        func withLock<T>(_ body: (inout Int) -> T) -> T { value.withLock { body(&$0) } }
    }

    let status: Status
    let server: LoopbackHTTPServer

    init(status initial: Int = 200) throws {
        let status = Status(initial)
        self.status = status
        server = try LoopbackHTTPServer { _ in .respond(status: status.withLock { $0 }) }
    }

    var url: String { server.baseURL + "/hook" }
    var sinkName: String { "webhook:" + url }
    /// webhook-ids of requests, in arrival order.
    var ids: [String] { server.requests.map { $0.header("webhook-id") ?? "" } }
}

/// HMAC via `openssl dgst`, independent of bulkwatch's signer.
private func expectSigned(_ request: RecordedRequest) throws {
    let id = try #require(request.header("webhook-id"))
    let timestamp = try #require(request.header("webhook-timestamp"))
    let hexKey = hookKey.map { String(format: "%02x", $0) }.joined()
    let output = String(
        decoding: try runProcess(
            "/usr/bin/openssl", ["dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:\(hexKey)"],
            input: Array("\(id).\(timestamp).".utf8) + request.body), as: UTF8.self)
    let hex = Array(output.split(separator: "=").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "")
    let bytes = stride(from: 0, to: hex.count - 1, by: 2).map { UInt8(String(hex[$0...$0 + 1]), radix: 16) ?? 0 }
    #expect(request.header("webhook-signature") == "v1," + Data(bytes).base64EncodedString())
}

private func journalIDs(_ path: String) throws -> [String] {
    try SQLiteStore(path: path).allEventsBlocking().map(\.id)
}

private func deliveries(_ fixture: RunFixture) async throws -> [[String: Any]] {
    let result = try await runBulkWatch(
        ["deliveries", "--state", fixture.statePath, "--format", "json"], directory: fixture.directory)
    #expect(result.status == 0, "stderr: \(result.stderr)")
    return (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]]) ?? []
}

@Suite("bulkwatch run with webhook sinks, as a child process")
struct WebhookRunTests {
    let quick = ["--webhook-backoff-base", "50ms", "--webhook-backoff-cap", "200ms"]

    @Test func runDeliversSignedEventsAndDeliveriesReportsTheSink() async throws {
        let fixture = try await RunFixture()
        let receiver = try SwitchableReceiver()
        defer { receiver.server.stop() }
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)") }
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "webhook:" + receiver.url] + quick),
            environment: fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": hookSecret]) { $1 },
            directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(receiver.ids == (try journalIDs(fixture.statePath)))
        #expect(receiver.ids.count == 3)
        for request in receiver.server.requests { try expectSigned(request) }
        let fileLines = nonEmptyLines(try String(contentsOfFile: fixture.logPath, encoding: .utf8))
        #expect(receiver.server.requests.map { String(decoding: $0.body, as: UTF8.self) } == fileLines)
        let sinks = try await deliveries(fixture)
        let hook = try #require(sinks.first { $0["sink"] as? String == receiver.sinkName })
        #expect(hook["cursor"] as? Int == 3)
        #expect(hook["lag"] as? Int == 0)
        #expect(hook["deadLetters"] as? Int == 0)
        await fixture.stop()
    }

    @Test func killNineWhilePendingThenRestartDeliversEveryEvent() async throws {
        let fixture = try await RunFixture()
        let receiver = try SwitchableReceiver(status: 503)
        defer { receiver.server.stop() }
        for index in 1...4 { fixture.simulator.upsert(bulkId: "b-\(index)") }
        let environment = fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": hookSecret]) { $1 }
        let arguments = fixture.arguments(["--interval", "100ms", "--sink", "webhook:" + receiver.url] + quick)
        let first = try ChildProcess(
            BulkWatchBinary.path, arguments, environment: environment, directory: fixture.directory)
        #expect(await ChildProcess.eventually { receiver.server.requests.count >= 3 })
        first.signal(SIGKILL)
        _ = await first.waitForExit(timeout: .seconds(20))
        let journaled = try journalIDs(fixture.statePath)
        try #require(journaled.count == 4)

        receiver.status.withLock { $0 = 200 }
        let second = try ChildProcess(
            BulkWatchBinary.path, arguments, environment: environment, directory: fixture.directory)
        let delivered = await ChildProcess.eventually {
            (try? SQLiteStore(path: fixture.statePath).cursorBlocking(sink: receiver.sinkName)) == 4
        }
        #expect(delivered, "stderr: \(second.stderr)")
        second.signal(SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(20)) == 0)

        let requests = receiver.server.requests
        // Everything before the switch was refused; after it, each event arrived once, in order.
        let ids = requests.map { $0.header("webhook-id") ?? "" }
        #expect(Set(ids).isSubset(of: Set(journaled)))
        let accepted = Array(ids.drop { $0 == journaled[0] }.prefix(3))
        #expect([journaled[0]] + accepted == journaled)
        await fixture.stop()
    }

    @Test func a400IsDeadLetteredAndRedeliverSendsItAgain() async throws {
        let fixture = try await RunFixture()
        let receiver = try SwitchableReceiver(status: 400)
        defer { receiver.server.stop() }
        fixture.simulator.upsert(bulkId: "b-1")
        let environment = fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": hookSecret]) { $1 }
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "webhook:" + receiver.url] + quick), environment: environment,
            directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(receiver.server.requests.count == 3)
        var hook = try #require(try await deliveries(fixture).first { $0["sink"] as? String == receiver.sinkName })
        #expect(hook["deadLetters"] as? Int == 1)
        #expect(hook["cursor"] as? Int == 1)

        receiver.status.withLock { $0 = 200 }
        let redeliver = try await runBulkWatch(
            ["redeliver", "--state", fixture.statePath, "--sink", receiver.sinkName, "--dead-letters"],
            environment: ["BULKWATCH_WEBHOOK_SECRET": hookSecret], directory: fixture.directory)
        #expect(redeliver.status == 0, "stderr: \(redeliver.stderr)")
        #expect(redeliver.stdout.contains("delivered"))
        let requests = receiver.server.requests
        #expect(requests.count == 4)
        #expect(Set(requests.map { $0.header("webhook-id") }).count == 1)
        try expectSigned(try #require(requests.last))
        hook = try #require(try await deliveries(fixture).first { $0["sink"] as? String == receiver.sinkName })
        #expect(hook["deadLetters"] as? Int == 0)
        await fixture.stop()
    }

    @Test func a410StopsTheWebhookWhileTheFileGetsEverything() async throws {
        let fixture = try await RunFixture()
        let receiver = try SwitchableReceiver(status: 410)
        defer { receiver.server.stop() }
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)") }
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "webhook:" + receiver.url, "--sink", "stdout:json"] + quick),
            environment: fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": hookSecret]) { $1 },
            directory: fixture.directory)
        // A stopped sink could not deliver: `--once` says so with exit 1 (the other sinks got everything).
        #expect(result.status == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("sink \(receiver.sinkName): stopped: 410 Gone"), "\(result.stderr)")
        #expect(fixture.fileEvents.count == 3)
        #expect(jsonObjects(result.stdout).count == 3)
        #expect(receiver.server.requests.count == 1)
        #expect(result.stderr.contains("410 Gone"))
        let table = try await runBulkWatch(["deliveries", "--state", fixture.statePath], directory: fixture.directory)
        #expect(table.status == 0)
        let line = try #require(nonEmptyLines(table.stdout).first { $0.hasPrefix(receiver.sinkName) })
        #expect(line.contains("stopped: 410 Gone"))
        await fixture.stop()
    }

    @Test func redeliverSinceRewindsTheCursorAndTheNextRunResendsWithTheSameIDs() async throws {
        let fixture = try await RunFixture()
        let receiver = try SwitchableReceiver()
        defer { receiver.server.stop() }
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)") }
        let environment = fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": hookSecret]) { $1 }
        let arguments = fixture.arguments(["--once", "--sink", "webhook:" + receiver.url] + quick)
        #expect(try await runBulkWatch(arguments, environment: environment, directory: fixture.directory).status == 0)
        let rewind = try await runBulkWatch(
            ["redeliver", "--state", fixture.statePath, "--sink", receiver.sinkName, "--since", "1"],
            directory: fixture.directory)
        #expect(rewind.status == 0, "stderr: \(rewind.stderr)")
        #expect(try await runBulkWatch(arguments, environment: environment, directory: fixture.directory).status == 0)
        let ids = try journalIDs(fixture.statePath)
        try #require(ids.count == 3)
        #expect(receiver.ids == ids + Array(ids[1...]))
        await fixture.stop()
    }

    @Test func badWebhookSecretsAreConfigurationErrorsThatNeverEchoTheSecret() async throws {
        let fixture = try await RunFixture()
        let arguments = fixture.arguments(["--once", "--sink", "webhook:http://127.0.0.1:9/hook"])
        for secret in ["topsecretvalue", "whsec_top$ecretvalue", "whsec_"] {
            let result = try await runBulkWatch(
                arguments, environment: fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": secret]) { $1 },
                directory: fixture.directory)
            #expect(result.status == 78)
            #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
            #expect(!result.stderr.contains("ecretvalue"))
        }
        let missing = try await runBulkWatch(arguments, environment: fixture.environment, directory: fixture.directory)
        #expect(missing.status == 78)
        #expect(missing.stderr.contains("BULKWATCH_WEBHOOK_SECRET"))

        let file = fixture.directory + "/webhook.secret"
        _ = FileManager.default.createFile(atPath: file, contents: Data((hookSecret + "\n").utf8))
        chmod(file, 0o644)
        let loose = try await runBulkWatch(
            arguments + ["--webhook-secret-file", file], environment: fixture.environment, directory: fixture.directory)
        #expect(loose.status == 78)
        #expect(loose.stderr.contains("chmod 600"))
        #expect(!loose.stderr.contains(hookSecret))

        let generated = try await runBulkWatch(["webhook-secret"], directory: fixture.directory)
        #expect(generated.status == 0)
        let secret = generated.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.hasPrefix("whsec_"))
        #expect(Data(base64Encoded: String(secret.dropFirst(6)))?.count == 32)
        await fixture.stop()
    }
}
