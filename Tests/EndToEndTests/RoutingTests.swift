import BulkWatch
import BulkWatchSimulator
import Foundation
import Synchronization
import TestSupport
import Testing

private let routingKey: [UInt8] = Array("routing end-to-end key, 32 bytes".utf8)
private let routingSecret = "whsec_" + Data(routingKey).base64EncodedString()

private func deliveries(_ fixture: RunFixture) async throws -> [String: [String: Any]] {
    let result = try await runBulkWatch(
        ["deliveries", "--state", fixture.statePath, "--format", "json"], directory: fixture.directory)
    #expect(result.status == 0, "stderr: \(result.stderr)")
    let rows = (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]]) ?? []
    return Dictionary(uniqueKeysWithValues: rows.map { ($0["sink"] as? String ?? "?", $0) })
}

@Suite("bulkwatch run with sink filters and chat formats, as a child process")
struct RoutingTests {
    @Test func aFilteredSlackWebhookGetsOnlyFailuresAndDeliveriesCountsTheRest() async throws {
        let fixture = try await RunFixture()
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        fixture.simulator.upsert(bulkId: "b-1", status: "PENDING")
        fixture.simulator.upsert(bulkId: "b-2", status: "FAILED")
        let environment = fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": routingSecret]) { $1 }
        let hook = "webhook:\(server.baseURL)/services/T/B/X"
        let spec =
            hook + "?format=slack&statuses=FAILED,FINISHED_WITH_ERRORS&link=https%3A%2F%2Fc.example%2F%7BbulkId%7D"
        let first = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", spec]), environment: environment, directory: fixture.directory)
        #expect(first.status == 0, "stderr: \(first.stderr)")
        fixture.simulator.advance(by: 60)
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED_WITH_ERRORS")
        fixture.simulator.upsert(bulkId: "b-2", status: "FAILED")
        let second = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", spec]), environment: environment, directory: fixture.directory)
        #expect(second.status == 0, "stderr: \(second.stderr)")

        let requests = server.requests
        #expect(requests.map(\.path) == ["/services/T/B/X", "/services/T/B/X", "/services/T/B/X"])
        let texts = try requests.map { request in
            try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])["text"]
                as? String
        }
        #expect(texts.count == 3)
        #expect(texts[0]?.contains("[default] created b-2: FAILED at ") == true)
        #expect(texts[0]?.contains("https://c.example/b-2") == true)
        #expect(texts[1]?.contains("changed b-1: PENDING → FINISHED_WITH_ERRORS") == true)
        #expect(texts[2]?.contains("changed b-2: FAILED (updated)") == true)
        let journal = try SQLiteStore(path: fixture.statePath)
        let ids = try await journal.allEvents().filter { ["b-2", "b-1"].contains($0.subject) }.map(\.id)
        #expect(Set(requests.compactMap { $0.header("webhook-id") }).isSubset(of: Set(ids)))
        let sinks = try await deliveries(fixture)
        // The sink is named without bulkwatch's parameters; its cursor is past every event.
        let row = try #require(sinks[hook])
        #expect(row["cursor"] as? Int == 4)
        #expect(row["lag"] as? Int == 0)
        #expect(row["filtered"] as? Int == 1)
        #expect(sinks["file:" + fixture.logPath]?["filtered"] as? Int == 0)
        await fixture.stop()
    }

    @Test func yamlSinkObjectsRouteByTargetAndType() async throws {
        let fixture = try await RunFixture()
        // Two DruID applications (one source each: the same item on one source would be one event).
        let other = DruIDSimulator(options: .manual())
        try await other.start()
        fixture.simulator.upsert(bulkId: "b-1", status: "PENDING")
        other.upsert(bulkId: "b-1", status: "PENDING")
        let config = fixture.directory + "/bulkwatch.yaml"
        try """
        state: \(fixture.statePath)
        defaults:
          token-url: \(fixture.simulator.tokenURL)
          client-id: bulkwatch-demo
          sinks:
            - file:all.jsonl
            - {sink: "file:only-b.jsonl", targets: [b], types: [created]}
            - sink: "stdout:json"
              types: [changed]
        targets:
          - name: a
            endpoint: \(fixture.simulator.bulkURL)
          - name: b
            endpoint: \(other.bulkURL)
            token-url: \(other.tokenURL)
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try await runBulkWatch(
            ["run", "--config", config, "--once"], environment: fixture.environment, directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let all = jsonObjects(try String(contentsOfFile: fixture.directory + "/all.jsonl", encoding: .utf8))
        #expect(all.count == 2)
        let onlyB = jsonObjects(try String(contentsOfFile: fixture.directory + "/only-b.jsonl", encoding: .utf8))
        #expect(onlyB.count == 1)
        #expect(onlyB.first??["subject"] as? String == "b-1")
        // Both targets saw b-1; only b's event went to the filtered file.
        let journal = try SQLiteStore(path: fixture.statePath)
        let bEvent = try await journal.routableEvents(after: 0, limit: 10, targets: ["b"]).first
        #expect(onlyB.first??["id"] as? String == bEvent?.id)
        #expect(result.stdout.isEmpty)
        let sinks = try await deliveries(fixture)
        #expect(sinks["file:" + fixture.directory + "/only-b.jsonl"]?["filtered"] as? Int == 1)
        #expect(sinks["stdout:json"]?["filtered"] as? Int == 2)
        await other.stop()
        await fixture.stop()
    }

    @Test func aChatSinksDeadLettersAreResentInItsFormat() async throws {
        let fixture = try await RunFixture()
        let status = Mutex(400)
        let server = try LoopbackHTTPServer { _ in .respond(status: status.withLock { $0 }) }
        defer { server.stop() }
        fixture.simulator.upsert(bulkId: "b-1", status: "FAILED")
        let environment = fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": routingSecret]) { $1 }
        let spec = "webhook:\(server.baseURL)/hook?format=mattermost"
        let run = try await runBulkWatch(
            fixture.arguments([
                "--once", "--sink", spec, "--webhook-backoff-base", "20ms", "--webhook-backoff-cap", "50ms",
            ]), environment: environment, directory: fixture.directory)
        #expect(run.status == 0, "stderr: \(run.stderr)")
        let name = "webhook:\(server.baseURL)/hook"
        #expect(try await SQLiteStore(path: fixture.statePath).deadLetters(sink: name).count == 1)
        #expect(server.requests.count == 3)

        status.withLock { $0 = 200 }
        let resent = try await runBulkWatch(
            ["redeliver", "--state", fixture.statePath, "--sink", spec, "--dead-letters"], environment: environment,
            directory: fixture.directory)
        #expect(resent.status == 0, "stdout: \(resent.stdout) stderr: \(resent.stderr)")
        let last = try #require(server.requests.last)
        let body = try #require(try JSONSerialization.jsonObject(with: Data(last.body)) as? [String: Any])
        #expect(body.keys.sorted() == ["text"])
        #expect((body["text"] as? String)?.contains("created `b-1`: FAILED at ") == true)
        #expect(last.header("webhook-id") == server.requests.first?.header("webhook-id"))
        #expect(try await SQLiteStore(path: fixture.statePath).deadLetters(sink: name).isEmpty)
        await fixture.stop()
    }

    @Test func aTemplateThatDoesNotParseStopsRunAndCheckWithExit78() async throws {
        let fixture = try await RunFixture()
        let template = fixture.directory + "/broken.mustache"
        try "{\"text\": \"{{#events}}{{bulkId}}\"}\n".write(toFile: template, atomically: true, encoding: .utf8)
        let environment = fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": routingSecret]) { $1 }
        for command in ["run", "check"] {
            var arguments = fixture.arguments(["--sink", "webhook:http://127.0.0.1:9/hook?template=\(template)"])
            arguments[0] = command
            let result = try await runBulkWatch(arguments, environment: environment, directory: fixture.directory)
            #expect(result.status == 78, "\(command): \(result.stderr)")
            let lines = nonEmptyLines(result.stderr)
            #expect(lines.count == 1, "\(command): \(result.stderr)")
            #expect(
                lines.first?.hasPrefix("bulkwatch: template \(template):2:1: ") == true, "\(command): \(result.stderr)")
            #expect(lines.first?.contains("does not parse: a section ({{#name}} or {{^name}}) is never closed") == true)
        }
        #expect(fixture.simulator.requestLog.isEmpty)
        await fixture.stop()
    }
}
