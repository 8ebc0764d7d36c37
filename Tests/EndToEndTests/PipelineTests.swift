import BulkWatchSimulator
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch

@Suite("Schedule and backoff")
struct ScheduleTests {
    @Test func ticksStayOnTheFixedRateGridAndSkipMissedOnes() {
        let start = ContinuousClock.now
        let interval = Duration.seconds(5)
        #expect(Schedule.nextTick(after: start, start: start, interval: interval) == start + .seconds(5))
        #expect(
            Schedule.nextTick(after: start + .milliseconds(300), start: start, interval: interval) == start
                + .seconds(5))
        // A poll that overran two whole intervals: the next tick is the next grid point, not three queued ones.
        #expect(
            Schedule.nextTick(after: start + .seconds(12), start: start, interval: interval) == start + .seconds(15))
    }

    @Test func backoffIsExponentialWithFullJitterAndCapped() {
        var generator = SystemRandomNumberGenerator()
        for failures in 1...12 {
            let ceiling = min(Duration.seconds(30), .seconds(1) * (1 << (failures - 1)))
            for _ in 0..<50 {
                let delay = Schedule.backoff(
                    failures: failures, base: .seconds(1), cap: .seconds(30), retryAfter: nil, using: &generator)
                #expect(delay >= .zero && delay <= ceiling)
            }
        }
    }

    @Test func retryAfterWinsWhenLonger() {
        var generator = SystemRandomNumberGenerator()
        let delay = Schedule.backoff(
            failures: 1, base: .seconds(1), cap: .seconds(5), retryAfter: .seconds(20), using: &generator)
        #expect(delay == .seconds(20))
    }

    @Test func parsesDurations() {
        #expect(Duration(parsing: "300ms") == .milliseconds(300))
        #expect(Duration(parsing: "30s") == .seconds(30))
        #expect(Duration(parsing: "5m") == .seconds(300))
        #expect(Duration(parsing: "1.5s") == .milliseconds(1500))
        #expect(Duration(parsing: "7d") == .seconds(7 * 86400))
        #expect(Duration(parsing: "soon") == nil)
        #expect(Duration(parsing: "-1s") == nil)
    }
}

/// A sink that refuses every batch, to show it holds up nobody else.
final class RefusingSink: EventSink {
    let name = "refusing"
    let attempts = Mutex(0)

    func deliver(_ events: [JournalEvent]) async throws {
        attempts.withLock { $0 += 1 }
        throw SinkRefused()
    }

    struct SinkRefused: Error {}
}

/// A manual simulator, a temp directory with a journal, and a client for it.
private func pipelineParts() async throws -> (DruIDSimulator, String, SQLiteStore, CurlTransport, BulkStatusClient) {
    let simulator = DruIDSimulator(options: .manual())
    try await simulator.start()
    let directory = try makeTemporaryDirectory("pipeline")
    let journal = try SQLiteStore(path: directory + "/state.db")
    let transport = CurlTransport()
    let logger = Logger(label: "test")
    let credentials = ClientCredentials(
        tokenURL: simulator.tokenURL, clientID: "bulkwatch-demo", clientSecret: Secret("demo-secret"))
    let tokens = TokenProvider(source: .clientCredentials(credentials), transport: transport, logger: logger)
    let client = BulkStatusClient(
        endpoint: BulkEndpoint(url: simulator.bulkURL), transport: transport, tokens: tokens, logger: logger)
    return (simulator, directory, journal, transport, client)
}

@Suite("Watcher and dispatcher in-process")
struct PipelineTests {
    @Test func aFailingSinkNeverBlocksAnotherAndKeepsItsCursor() async throws {
        let (simulator, directory, journal, transport, client) = try await pipelineParts()
        let logger = Logger(label: "test")
        let file = try FileSink(path: directory + "/events.jsonl")
        let refusing = RefusingSink()
        let dispatcher = Dispatcher(store: journal, sinks: [refusing, file], logger: logger)
        let watcher = try await Watcher(
            target: WatchTarget(endpoint: BulkEndpoint(url: simulator.bulkURL), interval: .milliseconds(100)),
            client: client, store: journal, logger: logger, onCommit: { dispatcher.notify() })
        for index in 1...3 { simulator.upsert(bulkId: "b-\(index)") }

        let group = ServiceGroup(services: [dispatcher, watcher], logger: logger)
        let running = Task { try await group.run() }
        let delivered = await ChildProcess.eventually(timeout: .seconds(30)) {
            (try? journal.cursorBlocking(sink: file.name)) == 3
        }
        #expect(delivered)
        simulator.upsert(bulkId: "b-4")
        #expect(
            await ChildProcess.eventually(timeout: .seconds(30)) { (try? journal.cursorBlocking(sink: file.name)) == 4 }
        )
        await group.triggerGracefulShutdown()
        try await running.value

        #expect(refusing.attempts.withLock { $0 } >= 1)
        #expect(try await (journal.cursor(sink: "refusing") ?? 0) == 0)
        let lines = nonEmptyLines(try String(contentsOfFile: directory + "/events.jsonl", encoding: .utf8))
        #expect(lines.count == 4)
        transport.shutdown()
        await simulator.stop()
    }

    @Test func aFailedPollChangesNothingAndTheNextOneCatchesUp() async throws {
        let (simulator, _, journal, transport, client) = try await pipelineParts()
        let logger = Logger(label: "test")
        let watcher = try await Watcher(
            target: WatchTarget(endpoint: BulkEndpoint(url: simulator.bulkURL)), client: client, store: journal,
            logger: logger)
        simulator.upsert(bulkId: "b-1")
        simulator.upsert(bulkId: "b-2")
        #expect(try await watcher.pollOnce().events.count == 2)
        for fault in [SimulatedResponse.emptyList, .emptyList] {
            // Two empty lists in a row would expire both items; but these polls fail first.
            simulator.enqueue(.status(500))
            await #expect(throws: FetchError.self) { try await watcher.pollOnce() }
            simulator.enqueue(fault)
            _ = try await watcher.pollOnce()
            _ = try await watcher.pollOnce()
        }
        // Empty, full, empty, full: never two consecutive absences, so nothing expired.
        #expect(try await journal.allEvents().map(\.kind) == [.created, .created])
        #expect(try await journal.loadSnapshot(target: "default").snapshot.count == 2)
        transport.shutdown()
        await simulator.stop()
    }
}
