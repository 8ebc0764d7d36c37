// Uses only what `import BulkWatch` makes public: this target is built with `packageAccess: false`,
// so a `package` declaration is as invisible here as it is to another package (issue 16).
import BulkWatch
import BulkWatchSimulator
import Foundation
import Logging
import Synchronization
import Testing

/// A sink of the embedder's own: keeps what it was handed, in order.
private final class RecordingSink: EventSink {
    let name: String
    private let received = Mutex<[JournalEvent]>([])

    init(name: String) { self.name = name }

    var events: [JournalEvent] { received.withLock { $0 } }

    func deliver(_ events: [JournalEvent]) async throws {
        received.withLock { $0 += events }
    }
}

/// A sink that refuses its first attempt, to show the dispatcher's retries reach custom sinks too.
private final class FlakySink: EventSink {
    let name = "flaky"
    private let attempts = Mutex(0)
    private let received = Mutex<[JournalEvent]>([])
    var deliveryPolicy: DeliveryPolicy {
        DeliveryPolicy(backoffBase: .milliseconds(10), backoffCap: .milliseconds(20), maxAge: nil)
    }

    var events: [JournalEvent] { received.withLock { $0 } }

    func deliver(_ events: [JournalEvent]) async throws {
        let attempt = attempts.withLock { count in
            count += 1
            return count
        }
        if attempt == 1 { throw DeliveryFailure(.retry(retryAfter: nil), reason: "first attempt refused") }
        received.withLock { $0 += events }
    }
}

@Suite("the public sink API, as another package uses it")
struct CustomSinkTests {
    /// Runs `body` against a simulator of `operations` items that change only when told to.
    private static func withSimulator(operations: Int, _ body: (DruIDSimulator) async throws -> Void) async throws {
        let simulator = DruIDSimulator(
            options: SimulatorOptions(initialOperations: operations, automaticChurn: false),
            logger: Logger(label: "test.simulator"))
        try await simulator.start(port: 0)
        do {
            try await body(simulator)
        } catch {
            await simulator.stop()
            throw error
        }
        await simulator.stop()
    }

    private static func builder(simulator: DruIDSimulator, state: String) throws -> BulkWatchBuilder {
        var builder = BulkWatchBuilder(environment: ["PUBLIC_API_TEST_SECRET": simulator.options.clientSecret])
        try builder.set("endpoint", simulator.bulkURL)
        try builder.set("token-url", simulator.tokenURL)
        try builder.set("client-id", simulator.options.clientID)
        try builder.set("client-secret", "env:PUBLIC_API_TEST_SECRET")
        try builder.set("state", state)
        builder.once = true
        builder.handlesSignals = false
        return builder
    }

    private static func temporaryState() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("public-api-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("state.db").path
    }

    @Test func aCustomSinkGetsEveryEventExactlyOnceAcrossARestart() async throws {
        try await Self.withSimulator(operations: 25) { simulator in try await checkExactlyOnce(simulator) }
    }

    private func checkExactlyOnce(_ simulator: DruIDSimulator) async throws {
        let state = try Self.temporaryState()
        let sink = RecordingSink(name: "my-queue")
        let logger = Logger(label: "test.public-api")

        var first = try Self.builder(simulator: simulator, state: state)
        first.addSink(sink)
        try await first.build(logger: logger).run()
        #expect(sink.events.count == 25, "the first poll reports every operation as created")
        #expect(sink.events.allSatisfy { $0.kind == .created })

        // A restart (a new watcher on the same state) after changes upstream: only the changes arrive.
        simulator.upsert(bulkId: "public-api-new", status: "PENDING")
        #expect(simulator.remove(bulkId: sink.events[0].subject))
        var second = try Self.builder(simulator: simulator, state: state)
        second.addSink(sink)
        try await second.build(logger: logger).run()
        // The removal needs a second missing poll to be confirmed (expire-after 2).
        var third = try Self.builder(simulator: simulator, state: state)
        third.addSink(sink)
        try await third.build(logger: logger).run()

        let events = sink.events
        #expect(events.map(\.sequence) == Array(1...Int64(events.count)), "no event lost, none repeated")
        #expect(Set(events.map(\.id)).count == events.count)
        #expect(events.dropFirst(25).map(\.kind) == [.created, .expired])
        #expect(events.last?.subject == events[0].subject)
        let body = try #require(events.last.map { String(decoding: $0.body, as: UTF8.self) })
        #expect(body.contains("\"type\":\"bulk.expired\""), "the body is the CloudEvent, as every sink gets it")
    }

    @Test func theDispatcherRetriesACustomSinkWithItsOwnPolicy() async throws {
        try await Self.withSimulator(operations: 3) { simulator in
            let sink = FlakySink()
            var builder = try Self.builder(simulator: simulator, state: try Self.temporaryState())
            builder.addSink(sink)
            try await builder.build(logger: Logger(label: "test.public-api")).run()
            #expect(sink.events.map(\.sequence) == [1, 2, 3])
        }
    }

    @Test func anUnknownOrBadSettingIsOneClearError() throws {
        var builder = BulkWatchBuilder(environment: [:])
        #expect(throws: BulkWatchBuilderError.self) { try builder.set("no-such-setting", "1") }
        do {
            try builder.set("interval", "soon")
            Issue.record("a bad interval was accepted")
        } catch {
            #expect("\(error)".hasPrefix("interval: invalid duration 'soon'"))
        }
    }
}
