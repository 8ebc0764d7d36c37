import BulkWatchSimulator
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch

/// A wall clock that moves only when read: each reading is `step` later than the previous one.
private final class SteppingClock: Sendable {
    private let current: Mutex<Date>
    private let step: TimeInterval

    init(start: Date, step: TimeInterval) {
        current = Mutex(start)
        self.step = step
    }

    func now() -> Date {
        current.withLock { date in
            date += step
            return date
        }
    }
}

@Suite("watcher-health events: one failing and one recovered per outage")
struct TargetHealthTests {
    @Test func aTwoMinuteOutageOnATestClockRaisesFailingOnceAndRecoveredOnce() {
        var tracker = TargetHealthTracker(target: "eu", failingAfter: .seconds(60))
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var raised: [OperationalEvent] = []
        // A poll every 5 s failing for two minutes, then two successful polls.
        for second in stride(from: 0, through: 120, by: 5) {
            if let event = tracker.pollFailed(error: "HTTP 500", at: start + TimeInterval(second)) {
                raised.append(event)
            }
        }
        if let event = tracker.pollSucceeded(at: start + 125) { raised.append(event) }
        if let event = tracker.pollSucceeded(at: start + 130) { raised.append(event) }
        #expect(raised.map(\.kind) == [.targetFailing, .targetRecovered])
        #expect(raised[0].at == start + 60)
        #expect(raised[0].since == start)
        #expect(raised[0].failedAttempts == 13)
        #expect(raised[0].lastError == "HTTP 500")
        #expect(raised[1].since == start)
        #expect(raised[1].failedAttempts == 25)
        #expect(raised[1].at == start + 125)

        // A blip shorter than failing-after says nothing at all, and a later outage starts afresh.
        raised = []
        for second in [200, 230, 259] {
            if let event = tracker.pollFailed(error: "timeout", at: start + TimeInterval(second)) {
                raised.append(event)
            }
        }
        if let event = tracker.pollSucceeded(at: start + 261) { raised.append(event) }
        #expect(raised.isEmpty)
    }

    @Test func aFailingEventThatCouldNotBeJournaledIsRaisedAgainOnTheNextFailure() {
        var tracker = TargetHealthTracker(target: "eu", failingAfter: .seconds(10))
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(tracker.pollFailed(error: "e", at: start) == nil)
        #expect(tracker.pollFailed(error: "e", at: start + 10)?.kind == .targetFailing)
        tracker.failingEventNotRecorded()
        #expect(tracker.pollFailed(error: "e", at: start + 15)?.kind == .targetFailing)
        #expect(tracker.pollFailed(error: "e", at: start + 20) == nil)
    }

    @Test func theWatcherJournalsOneFailingAndOneRecoveredAcrossAnOutageOnATestClock() async throws {
        let simulator = DruIDSimulator(options: .manual())
        try await simulator.start()
        defer { Task { await simulator.stop() } }
        let directory = try makeTemporaryDirectory("health")
        let journal = try SQLiteStore(path: directory + "/state.db")
        let transport = CurlTransport()
        defer { transport.shutdown() }
        let logger = Logger(label: "test")
        let credentials = ClientCredentials(
            tokenURL: simulator.tokenURL, clientID: "bulkwatch-demo", clientSecret: Secret("demo-secret"))
        let tokens = TokenProvider(source: .clientCredentials(credentials), transport: transport, logger: logger)
        let client = BulkStatusClient(
            endpoint: BulkEndpoint(url: simulator.bulkURL), transport: transport, tokens: tokens, logger: logger)
        simulator.upsert(bulkId: "b-1")
        // One good poll, then 12 failing ones: each wall-clock reading is 10 s later, so the outage lasts
        // two minutes of test time; the backoff between the polls passes on the test clock.
        simulator.enqueue(.normal)
        simulator.enqueue(.status(500), times: 12)
        let clock = SteppingClock(start: Date(), step: 10)
        let schedule = TestClock()
        var target = WatchTarget(
            name: "eu", endpoint: BulkEndpoint(url: simulator.bulkURL), interval: .milliseconds(50))
        target.failingAfter = .seconds(60)
        let watcher = try await Watcher(
            target: target, client: client, store: journal, logger: logger, tokens: tokens, now: { clock.now() },
            clock: schedule)
        let running = Task { try await watcher.run() }
        let recovered = try await schedule.advanceUntil {
            let kinds = (try? await journal.allEvents().map(\.kind)) ?? []
            return kinds.contains(.targetRecovered)
        }
        // A few more good polls: they must add nothing.
        let polls = simulator.requestLog.count
        _ = try await schedule.advanceUntil { simulator.requestLog.count >= polls + 3 }
        running.cancel()
        _ = try? await running.value
        #expect(recovered)
        let events = try await journal.allEvents()
        #expect(events.map(\.kind) == [.created, .targetFailing, .targetRecovered])
        let failing = try #require(events.first { $0.kind == .targetFailing })
        #expect(failing.subject == "eu")
        #expect(failing.type == "bulkwatch.target.failing")
        let body = try #require(try JSONSerialization.jsonObject(with: Data(failing.body)) as? [String: Any])
        let data = try #require(body["data"] as? [String: Any])
        #expect((data["lastError"] as? String)?.contains("500") == true)
        #expect((data["failedAttempts"] as? Int).map { $0 >= 6 && $0 <= 8 } == true)
        let recoveredData = try #require(
            (try JSONSerialization.jsonObject(with: Data(events[2].body)) as? [String: Any])?["data"] as? [String: Any])
        #expect(recoveredData["failedAttempts"] as? Int == 12)
        #expect(recoveredData["since"] as? String == data["since"] as? String)
        #expect(recoveredData["recoveredAt"] is String)
    }

    @Test func aWatcherRestartedDuringAnOutageRecoversItInsteadOfRaisingASecondFailing() async throws {
        let simulator = DruIDSimulator(options: .manual())
        try await simulator.start()
        defer { Task { await simulator.stop() } }
        let directory = try makeTemporaryDirectory("health-resume")
        let journal = try SQLiteStore(path: directory + "/state.db")
        let transport = CurlTransport()
        defer { transport.shutdown() }
        let logger = Logger(label: "test")
        let credentials = ClientCredentials(
            tokenURL: simulator.tokenURL, clientID: "bulkwatch-demo", clientSecret: Secret("demo-secret"))
        let tokens = TokenProvider(source: .clientCredentials(credentials), transport: transport, logger: logger)
        let client = BulkStatusClient(
            endpoint: BulkEndpoint(url: simulator.bulkURL), transport: transport, tokens: tokens, logger: logger)
        // The previous run journaled the outage's failing event, then stopped.
        let since = Date(timeIntervalSince1970: 1_800_000_000)
        var target = WatchTarget(
            name: "eu", endpoint: BulkEndpoint(url: simulator.bulkURL), interval: .milliseconds(50))
        target.failingAfter = .seconds(60)
        let before = OperationalEvent(
            kind: .targetFailing, target: "eu", since: since, failedAttempts: 40, lastError: "HTTP 500", at: since + 300
        )
        _ = try await journal.append(operational: before, target: "eu", source: target.source, fence: .exclusive)
        simulator.upsert(bulkId: "b-1")
        simulator.enqueue(.status(500), times: 3)
        let clock = SteppingClock(start: since + 400, step: 60)
        let schedule = TestClock()
        let watcher = try await Watcher(
            target: target, client: client, store: journal, logger: logger, tokens: tokens, now: { clock.now() },
            clock: schedule)
        let running = Task { try await watcher.run() }
        let recovered = try await schedule.advanceUntil {
            ((try? await journal.allEvents().map(\.kind)) ?? []).contains(.targetRecovered)
        }
        running.cancel()
        _ = try? await running.value
        #expect(recovered)
        let events = try await journal.allEvents()
        #expect(events.map(\.kind) == [.targetFailing, .created, .targetRecovered])
        let data = try #require(
            (try JSONSerialization.jsonObject(with: Data(events[2].body)) as? [String: Any])?["data"] as? [String: Any])
        #expect(data["since"] as? String == "2027-01-15T08:00:00.000Z")
        #expect(data["failedAttempts"] as? Int == 43)
        #expect(try await journal.openOutage(target: "eu") == nil)
    }

    @Test func runShowsHealthEventsOnStdoutAndOnlyOptedInSinksGetThem() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1")
        fixture.simulator.enqueue(.normal)
        fixture.simulator.enqueue(.status(500), times: 10)
        let healthLog = fixture.directory + "/health.jsonl"
        let child = try ChildProcess(
            BulkWatchBinary.path,
            fixture.arguments([
                "--interval", "100ms", "--failing-after", "1s", "--sink", "stdout",
                "--sink", "file:\(healthLog)?types=target.failing,target.recovered",
            ]), environment: fixture.environment, directory: fixture.directory)
        let both = await ChildProcess.eventually(timeout: .seconds(90)) {
            let text = (try? String(contentsOfFile: healthLog, encoding: .utf8)) ?? ""
            return nonEmptyLines(text).count >= 2
        }
        #expect(both, "stderr: \(child.stderr)")
        // Let it poll on a while: nothing more may come.
        try await Task.sleep(for: .milliseconds(800))
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(30)) == 0)
        let types = jsonObjects(try String(contentsOfFile: healthLog, encoding: .utf8)).map { $0?["type"] as? String }
        #expect(types == ["bulkwatch.target.failing", "bulkwatch.target.recovered"])
        #expect(fixture.fileEvents.map { $0["type"] as? String } == ["bulk.created"])
        let stdout = nonEmptyLines(child.stdout)
        #expect(stdout.count == 3)
        #expect(stdout.contains { $0.contains("  target.failing  default  ") && $0.contains("failed poll(s) since") })
        #expect(stdout.contains { $0.contains("  target.recovered  default  after ") })
        let listed = try await runBulkWatch(
            ["events", "--state", fixture.statePath, "--type", "target.failing,recovered"], directory: fixture.directory
        )
        #expect(listed.status == 0, "stderr: \(listed.stderr)")
        #expect(jsonObjects(listed.stdout).map { $0?["subject"] as? String } == ["default", "default"])
        let created = try await runBulkWatch(
            ["events", "--state", fixture.statePath, "--type", "created"], directory: fixture.directory)
        #expect(jsonObjects(created.stdout).map { $0?["type"] as? String } == ["bulk.created"])
        await fixture.stop()
    }
}
