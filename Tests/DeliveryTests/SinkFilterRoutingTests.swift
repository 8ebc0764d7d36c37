import Foundation
import Logging
import TestSupport
import Testing

@testable import BulkWatch

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a dispatcher over `routes` until `condition` holds (or a generous timeout), then stops it.
private func dispatch(
    _ journal: any Store, routes: [Dispatcher.Route], until condition: () async throws -> Bool
)
    async rethrows -> Bool
{
    let dispatcher = Dispatcher(
        store: journal, routes: routes, logger: Logger(label: "test"), drainTimeout: .milliseconds(200),
        idlePoll: .milliseconds(50))
    let running = Task { try await dispatcher.run() }
    let reached = try await ChildProcess.eventually(timeout: .seconds(90), condition)
    running.cancel()
    _ = try? await running.value
    return reached
}

/// `type subject status` of each line of a JSON-lines file.
private func lines(_ path: String) -> [String] {
    jsonObjects((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").map { object in
        let data = object?["data"] as? [String: Any]
        return "\(object?["type"] as? String ?? "?") \(object?["subject"] as? String ?? "?") \(data?["status"] ?? "-")"
    }
}

@Suite("per-sink filters: only matching events are delivered, the cursor moves past the rest")
struct SinkFilterRoutingTests {
    @Test func aTypeFilterDeliversOnlyThatTypeAndCountsTheRest() async throws {
        let fixture = try RoutingJournal()
        try await fixture.set("b-1", "PENDING")
        try await fixture.set("b-2", "PENDING")
        try await fixture.set("b-1", "FAILED")
        try await fixture.remove("b-2")
        let last = try await fixture.journal.lastSequence()
        #expect(last == 4)
        let path = fixture.directory + "/changed.jsonl"
        let sink = try FileSink(path: path)
        let route = Dispatcher.Route(sink: sink, filter: SinkFilter(types: [.changed]))
        #expect(
            try await dispatch(fixture.journal, routes: [route]) {
                try await fixture.journal.cursor(sink: sink.name) == last
            }
        )
        #expect(lines(path) == ["bulk.changed b-1 FAILED"])
        #expect(try await fixture.journal.filteredCounts()[sink.name] == 3)
    }

    @Test func aStatusFilterMatchesTheNewStatusAndOptionallyThePreviousOne() async throws {
        let fixture = try RoutingJournal()
        try await fixture.set("b-1", "PENDING")
        try await fixture.set("b-1", "RUNNING")
        try await fixture.set("b-1", "FAILED")  // RUNNING → FAILED
        try await fixture.set("b-2", "FINISHED_WITH_ERRORS")  // created
        try await fixture.set("b-3", "PENDING")
        try await fixture.set("b-3", "FAILED")  // PENDING → FAILED
        try await fixture.set("b-4", "FINISHED")
        let last = try await fixture.journal.lastSequence()
        let anyFailure = try FileSink(path: fixture.directory + "/failures.jsonl")
        let fromRunning = try FileSink(path: fixture.directory + "/from-running.jsonl")
        let routes = [
            Dispatcher.Route(sink: anyFailure, filter: SinkFilter(statuses: ["FAILED", "FINISHED_WITH_ERRORS"])),
            Dispatcher.Route(
                sink: fromRunning,
                filter: SinkFilter(types: [.changed], statuses: ["FAILED"], previousStatuses: ["RUNNING"])),
        ]
        #expect(
            try await dispatch(fixture.journal, routes: routes) {
                let first = try await fixture.journal.cursor(sink: anyFailure.name) == last
                let second = try await fixture.journal.cursor(sink: fromRunning.name) == last
                return first && second
            })
        #expect(
            lines(anyFailure.path) == [
                "bulk.changed b-1 FAILED", "bulk.created b-2 FINISHED_WITH_ERRORS", "bulk.changed b-3 FAILED",
            ])
        #expect(lines(fromRunning.path) == ["bulk.changed b-1 FAILED"])
        let counts = try await fixture.journal.filteredCounts()
        #expect(counts[anyFailure.name] == Int64(last) - 3)
        #expect(counts[fromRunning.name] == Int64(last) - 1)
    }

    @Test func aTargetFilterKeepsOtherTargetsOut() async throws {
        let fixture = try RoutingJournal()
        try await fixture.set("b-1", "PENDING", target: "eu")
        try await fixture.set("b-1", "PENDING", target: "us")
        try await fixture.set("b-2", "FAILED", target: "us")
        try await fixture.set("b-3", "FAILED", target: "eu")
        let last = try await fixture.journal.lastSequence()
        let sink = try FileSink(path: fixture.directory + "/us.jsonl")
        let route = Dispatcher.Route(sink: sink, filter: SinkFilter(targets: ["us"]))
        #expect(
            try await dispatch(fixture.journal, routes: [route]) {
                try await fixture.journal.cursor(sink: sink.name) == last
            }
        )
        let sources = jsonObjects(try String(contentsOfFile: sink.path, encoding: .utf8)).map {
            $0?["source"] as? String
        }
        #expect(sources == ["https://api.example.com/us/bulk", "https://api.example.com/us/bulk"])
        #expect(try await fixture.journal.filteredCounts()[sink.name] == 2)
    }

    @Test func operationalEventsReachStdoutByDefaultAndOtherSinksOnlyWhenNamed() async throws {
        let fixture = try RoutingJournal()
        try await fixture.set("b-1", "PENDING")
        let since = Date(timeIntervalSince1970: 1_800_000_000)
        let failing = OperationalEvent(
            kind: .targetFailing, target: "default", since: since, failedAttempts: 7, lastError: "HTTP 500",
            at: since + 300)
        let stored = try #require(
            try await fixture.journal.append(
                operational: failing, target: "default", source: "https://api.example.com/bulk", fence: .exclusive))
        #expect(stored.type == "bulkwatch.target.failing")
        #expect(stored.subject == "default")
        // The same outage journaled twice (a re-emission after a crash) is stored once.
        #expect(
            try await fixture.journal.append(
                operational: failing, target: "default", source: "https://api.example.com/bulk", fence: .exclusive)
                == nil)
        try await fixture.set("b-1", "FAILED")
        let last = try await fixture.journal.lastSequence()
        #expect(last == 3)

        let plain = try FileSink(path: fixture.directory + "/plain.jsonl")
        let health = try FileSink(path: fixture.directory + "/health.jsonl")
        let stdoutPath = fixture.directory + "/stdout.jsonl"
        let descriptor = open(stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(descriptor >= 0)
        let stdout = StdoutSink(format: .json, fileDescriptor: descriptor, colour: false)
        let routes = [
            Dispatcher.Route(sink: plain),
            Dispatcher.Route(sink: health, filter: SinkFilter(types: [.targetFailing, .targetRecovered])),
            Dispatcher.Route(sink: stdout, operationalByDefault: true),
        ]
        #expect(
            try await dispatch(fixture.journal, routes: routes) {
                for name in [plain.name, health.name, stdout.name] {
                    guard try await fixture.journal.cursor(sink: name) == last else { return false }
                }
                return true
            })
        close(descriptor)
        #expect(lines(plain.path) == ["bulk.created b-1 PENDING", "bulk.changed b-1 FAILED"])
        #expect(lines(health.path) == ["bulkwatch.target.failing default -"])
        let healthEvent = try #require(
            jsonObjects(try String(contentsOfFile: health.path, encoding: .utf8)).first ?? nil)
        let data = try #require(healthEvent["data"] as? [String: Any])
        #expect(data["failedAttempts"] as? Int == 7)
        #expect(data["lastError"] as? String == "HTTP 500")
        #expect(data["since"] as? String == "2027-01-15T08:00:00.000Z")
        let piped = try String(contentsOfFile: stdoutPath, encoding: .utf8)
        #expect(
            jsonObjects(piped).map { $0?["type"] as? String } == [
                "bulk.created", "bulkwatch.target.failing", "bulk.changed",
            ])
        let counts = try await fixture.journal.filteredCounts()
        #expect(counts[plain.name] == 1)
        #expect(counts[health.name] == 2)
        #expect(counts[stdout.name] == 0)
    }

    @Test func anUnbatchedWebhookWithAFilterSkipsAheadToMatchingEvents() async throws {
        let fixture = try RoutingJournal()
        for index in 1...150 { try await fixture.set("b-\(index)", index % 50 == 0 ? "FAILED" : "PENDING") }
        let last = try await fixture.journal.lastSequence()
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        let route = Dispatcher.Route(sink: sink, filter: SinkFilter(statuses: ["FAILED"]))
        #expect(
            try await dispatch(fixture.journal, routes: [route]) {
                try await fixture.journal.cursor(sink: sink.name) == last
            }
        )
        let subjects = try server.requests.map { request in
            try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])["subject"]
                as? String
        }
        #expect(subjects == ["b-50", "b-100", "b-150"])
        #expect(try await fixture.journal.filteredCounts()[sink.name] == 147)
    }
}
