import BulkWatch
import BulkWatchSimulator
import Foundation
import Logging
import PostgresNIO
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Several `bulkwatch run` replicas on one PostgreSQL database (DESIGN.md §8), against the simulator:
/// three targets and one webhook sink, each a lease.
final class ReplicaFixture: @unchecked Sendable {
    static let ttl = Duration.seconds(2)
    static let interval = Duration.milliseconds(500)
    static let targets = ["a", "b", "c"]

    let simulator: DruIDSimulator
    let receiver: FaultyReceiver
    let directory: String
    let url: String
    let environment: [String: String]
    let configPath: String
    let store: PostgresStore
    private(set) var replicas: [String: ChildProcess] = [:]
    /// stderr of the replicas that were killed or stopped, by replica id.
    private(set) var finishedStderr: [String: String] = [:]
    private var generation = 0
    private var round = 0
    private var lastCreated: String?

    init(replicaUser: (name: String, password: String)? = nil) async throws {
        var options = SimulatorOptions.manual(seed: 41)
        options.recordsHistory = true
        options.requestLogLimit = 1_000_000
        simulator = DruIDSimulator(options: options)
        try await simulator.start()
        receiver = try FaultyReceiver()
        directory = try makeTemporaryDirectory("failover")
        let cluster = try PostgresCluster.shared()
        let database = try cluster.database(for: directory)
        var logger = Logger(label: "test.failover")
        logger.logLevel = .warning
        store = PostgresStore(
            settings: try PostgresSettings(
                url: cluster.url(database: database), environment: ["PGPASSWORD": cluster.password]),
            logger: logger)
        if let replicaUser {
            url = cluster.url(database: database).replacingOccurrences(
                of: "\(cluster.user)@", with: "\(replicaUser.name)@")
            environment = [
                "PGPASSWORD": replicaUser.password, "BULKWATCH_CLIENT_SECRET": "demo-secret",
                "BULKWATCH_WEBHOOK_SECRET": FaultHarness.webhookSecret,
            ]
        } else {
            url = cluster.url(database: database)
            environment = [
                "PGPASSWORD": cluster.password, "BULKWATCH_CLIENT_SECRET": "demo-secret",
                "BULKWATCH_WEBHOOK_SECRET": FaultHarness.webhookSecret,
            ]
        }
        configPath = directory + "/bulkwatch.yaml"
        let targets = Self.targets.map { name in
            "  - name: \(name)\n    endpoint: \(simulator.bulkURL)?target=\(name)\n"
        }.joined()
        let config = """
            defaults:
              token-url: \(simulator.tokenURL)
              client-id: bulkwatch-demo
              sinks:
                - webhook:\(receiver.url)
            targets:
            \(targets)
            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        for index in 1...12 { simulator.upsert(bulkId: String(format: "b-%02d", index), status: "PENDING") }
    }

    /// Starts a new replica process and returns its id.
    @discardableResult
    func startReplica(leaseTTL: String = "2s") throws -> String {
        generation += 1
        let id = "r\(generation)"
        let arguments = [
            "run", "--config", configPath, "--state", url, "--replica-id", id, "--lease-ttl", leaseTTL,
            "--interval", "500ms", "--timeout", "1s", "--webhook-timeout", "1s", "--webhook-backoff-base", "50ms",
            "--webhook-backoff-cap", "300ms",
        ]
        replicas[id] = try ChildProcess(
            BulkWatchBinary.path, arguments, environment: environment, directory: directory)
        return id
    }

    func signal(_ id: String, _ signal: Int32) { replicas[id]?.signal(signal) }

    /// SIGKILLs a replica and forgets it (keeping its stderr).
    func kill(_ id: String) async {
        guard let child = replicas.removeValue(forKey: id) else { return }
        child.signal(SIGKILL)
        await child.waitForExit(timeout: .seconds(10))
        finishedStderr[id] = child.stderr
    }

    func stderr(_ id: String) -> String { finishedStderr[id] ?? replicas[id]?.stderr ?? "" }
    var runningIDs: [String] { replicas.keys.sorted() }

    /// SIGTERMs every replica; their exit statuses.
    func stopAll() async -> [String: Int32?] {
        var statuses: [String: Int32?] = [:]
        for (_, child) in replicas { child.signal(SIGTERM) }
        for (id, child) in replicas {
            statuses[id] = await child.waitForExit(timeout: .seconds(30))
            finishedStderr[id] = child.stderr
        }
        replicas = [:]
        return statuses
    }

    /// One round of upstream changes (at most one per item between two polls, for ``JournalTruth``).
    func mutate() {
        round += 1
        simulator.advance(by: 1)
        simulator.upsert(bulkId: "b-01", status: round % 2 == 1 ? "PROCESSING" : "PENDING")
        _ = simulator.remove(bulkId: lastCreated ?? "b-12")
        let created = String(format: "n-%02d", round)
        simulator.upsert(bulkId: created, status: "PENDING")
        lastCreated = created
    }

    // MARK: Reading the database

    func leases() async throws -> [Lease] { try await store.leases.list() }

    func owner(of lease: String) async throws -> String? {
        try await leases().first { $0.name == lease && $0.held }?.owner
    }

    /// The wall time of `target`'s last committed poll.
    func lastSuccess(_ target: String) async throws -> Date? {
        for try await text in try await store.client.query(
            "SELECT last_success FROM targets WHERE target = \(target)", logger: Logger(label: "test")
        ).decode(String?.self) {
            return text.flatMap { Timestamp.instantMillis($0) }.map { Date(timeIntervalSince1970: Double($0) / 1000) }
        }
        return nil
    }

    func events() async throws -> [JournalEvent] {
        var all: [JournalEvent] = []
        while true {
            let page = try await store.events(after: all.last?.sequence ?? 0, limit: 1000, filter: EventFilter())
            if page.isEmpty { return all }
            all += page
        }
    }

    /// Per target, the journal against the simulator's history.
    func truths() async throws -> [String: JournalTruth] {
        let events = try await events()
        let history = simulator.history
        var truths: [String: JournalTruth] = [:]
        for target in Self.targets {
            truths[target] = JournalTruth(events: events.filter { $0.target == target }, history: history)
        }
        return truths
    }

    func journalMatches() async -> Bool {
        guard let truths = try? await truths() else { return false }
        return truths.values.allSatisfy(\.isExact)
    }

    /// Polls of `target` the simulator answered.
    func polls(of target: String) -> Int {
        simulator.requestLog.filter { $0.path.hasSuffix("?target=\(target)") }.count
    }
}

@Suite("replicated mode: leases, fencing, failover", .serialized)
struct FailoverTests {
    /// Three replicas, a churning upstream, a flapping receiver; SIGKILL the owner of a random target
    /// 20 times (starting a new replica each time) and SIGSTOP one past its lease. Every change is
    /// journaled exactly once, every event delivered (repeats only with the same id and body), and
    /// each failover — from the kill to the next committed poll of that target — stays within
    /// TTL + one interval.
    @Test(.timeLimit(.minutes(8)))
    func killingOwnersLosesNothingAndFailsOverWithinTheBound() async throws {
        let fixture = try await ReplicaFixture()
        try await fixture.store.whileRunning {
            try await fixture.store.migrate()
            for _ in 0..<3 { try fixture.startReplica() }
            #expect(
                await ChildProcess.eventually(timeout: .seconds(60)) { await fixture.journalMatches() },
                "the replicas never journaled the initial items")
            let flapping = Mutex(true)
            async let flapper: Void = {
                var accept = true
                while flapping.withLock({ $0 }) {
                    accept.toggle()
                    fixture.receiver.set(accept ? .accept : .status(503))
                    try? await Task.sleep(for: .milliseconds(Int.random(in: 200...900)))
                }
                fixture.receiver.set(.accept)
            }()

            var failovers: [Duration] = []
            var generator = SystemRandomNumberGenerator()
            let kills = 20
            for kill in 0..<kills {
                fixture.mutate()
                let target = ReplicaFixture.targets.randomElement(using: &generator)!
                let owner = try await ChildProcess.eventually(timeout: .seconds(20)) {
                    try await fixture.owner(of: "target:" + target) != nil
                }
                guard owner, let id = try await fixture.owner(of: "target:" + target) else {
                    Issue.record("kill \(kill): nobody holds target:\(target)")
                    continue
                }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...400, using: &generator)))
                let killedAt = Date()
                await fixture.kill(id)
                try fixture.startReplica()
                let resumed = try await ChildProcess.eventually(timeout: .seconds(20)) {
                    (try await fixture.lastSuccess(target)).map { $0 > killedAt } ?? false
                }
                #expect(resumed, "kill \(kill): target \(target) was never polled again after \(id) died")
                if let last = try await fixture.lastSuccess(target), resumed {
                    failovers.append(.milliseconds(Int64(last.timeIntervalSince(killedAt) * 1000)))
                }
                let matches = await ChildProcess.eventually(timeout: .seconds(30)) { await fixture.journalMatches() }
                let truths = matches ? [:] : try await fixture.truths()
                #expect(matches, "kill \(kill): the journal does not match: \(truths)")
            }

            // SIGSTOP a target's owner past its lease: the others take over; after SIGCONT it finds its
            // leases gone, and none of its writes goes through.
            let paused = try #require(try await fixture.owner(of: "target:a"))
            fixture.signal(paused, SIGSTOP)
            try await Task.sleep(for: ReplicaFixture.ttl + .seconds(1))
            fixture.mutate()
            #expect(
                await ChildProcess.eventually(timeout: .seconds(30)) {
                    let owner = try? await fixture.owner(of: "target:a")
                    return owner != nil && owner != paused
                }, "target:a never moved away from the paused replica")
            #expect(await ChildProcess.eventually(timeout: .seconds(30)) { await fixture.journalMatches() })
            fixture.signal(paused, SIGCONT)
            #expect(
                await ChildProcess.eventually(timeout: .seconds(20)) {
                    fixture.stderr(paused).contains("lost target:a")
                }, "the resumed replica never noticed it lost target:a: \(fixture.stderr(paused).suffix(2000))")
            fixture.mutate()
            #expect(await ChildProcess.eventually(timeout: .seconds(30)) { await fixture.journalMatches() })

            flapping.withLock { $0 = false }
            await flapper
            let events = try await fixture.events()
            let ids = Set(events.map(\.id))
            #expect(
                await ChildProcess.eventually(timeout: .seconds(60)) {
                    Set(fixture.receiver.acceptedIDs).isSuperset(of: ids)
                }, "not every event reached the receiver")
            let repeatedWithOtherBodies = fixture.receiver.acceptedBodies.filter { $0.value.count > 1 }
            #expect(repeatedWithOtherBodies.isEmpty, "an event was delivered twice with different bodies")
            let unknown = Set(fixture.receiver.acceptedIDs).subtracting(ids)
            #expect(unknown.isEmpty, "the receiver got events that are not journaled: \(unknown.prefix(3))")

            let statuses = await fixture.stopAll()
            #expect(statuses.values.allSatisfy { $0 == 0 }, "a replica did not stop cleanly: \(statuses)")
            let stillHeld = try await fixture.leases().filter { $0.held && !$0.name.hasPrefix("replica:r") }
            #expect(stillHeld.isEmpty, "a graceful stop hands every lease over: \(stillHeld)")
            // Exactly once, after everything: a commit by a fenced-out replica would show as a duplicate.
            for (target, truth) in try await fixture.truths() {
                #expect(truth.isExact, "target \(target): \(truth)")
            }
            let duplicateDeliveries = fixture.receiver.acceptedIDs.count - Set(fixture.receiver.acceptedIDs).count
            let fencedWrites = fixture.finishedStderr.values.map { $0.components(separatedBy: "lease lost:").count - 1 }
                .reduce(0, +)
            let maximum = failovers.max() ?? .zero
            let mean = failovers.isEmpty ? 0 : failovers.map(\.seconds).reduce(0, +) / Double(failovers.count)
            print(
                "failover: \(failovers.count) kills, max \(maximum.seconds)s, mean \(String(format: "%.3f", mean))s, "
                    + "sorted \(failovers.map { String(format: "%.2f", $0.seconds) }.sorted()); "
                    + "\(events.count) events, \(duplicateDeliveries) repeated deliveries, "
                    + "\(fencedWrites) writes refused by fencing")
            #expect(failovers.count >= kills)
            #expect(
                maximum <= ReplicaFixture.ttl + ReplicaFixture.interval,
                "failover took \(maximum) (bound: TTL 2s + interval 500ms)")
            await fixture.simulator.stop()
            fixture.receiver.stop()
        }
    }

    /// A replica whose database connections are cut (its role may no longer log in, its backends are
    /// terminated) stops polling within one TTL, and says so.
    @Test(.timeLimit(.minutes(3)))
    func replicaCutOffFromTheDatabaseStopsPollingWithinOneTTL() async throws {
        let password = UUID().uuidString
        let role = "replica_" + String(UInt32.random(in: 0...UInt32.max))
        let fixture = try await ReplicaFixture(replicaUser: (role, password))
        try await fixture.store.whileRunning {
            try await fixture.store.migrate()
            let logger = Logger(label: "test")
            try await fixture.store.client.query(
                PostgresQuery(unsafeSQL: "CREATE ROLE \(role) LOGIN PASSWORD '\(password)'"), logger: logger)
            try await fixture.store.client.query(
                PostgresQuery(unsafeSQL: "GRANT ALL ON ALL TABLES IN SCHEMA public TO \(role)"), logger: logger)
            try await fixture.store.client.query(
                PostgresQuery(unsafeSQL: "GRANT CREATE, USAGE ON SCHEMA public TO \(role)"), logger: logger)
            try await fixture.store.client.query(
                PostgresQuery(unsafeSQL: "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \(role)"), logger: logger)
            let id = try fixture.startReplica()
            #expect(
                await ChildProcess.eventually(timeout: .seconds(60)) { await fixture.journalMatches() },
                "the replica never journaled the initial items: \(fixture.stderr(id).suffix(2000))")
            #expect(fixture.polls(of: "a") > 0)

            let cutAt = ContinuousClock.now
            try await fixture.store.client.query(
                PostgresQuery(unsafeSQL: "ALTER ROLE \(role) NOLOGIN"), logger: logger)
            try await fixture.store.client.query(
                PostgresQuery(
                    unsafeSQL: "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(role)'"),
                logger: logger)
            let stopped = await ChildProcess.eventually(timeout: .seconds(10)) {
                fixture.stderr(id).contains("no lease renewal reached the database")
            }
            let noticed = ContinuousClock.now - cutAt
            #expect(stopped, "the replica never stopped: \(fixture.stderr(id).suffix(2000))")
            #expect(noticed <= ReplicaFixture.ttl + .milliseconds(200), "it took \(noticed) to stop polling")
            // No poll after that: the watchers are stopped, not just failing to commit.
            let polls = ReplicaFixture.targets.map(fixture.polls(of:))
            try await Task.sleep(for: ReplicaFixture.interval * 4)
            #expect(ReplicaFixture.targets.map(fixture.polls(of:)) == polls, "the cut-off replica still polls")
            print("cut off from the database: stopped polling \(noticed) after the cut (TTL 2s)")

            try await fixture.store.client.query(PostgresQuery(unsafeSQL: "ALTER ROLE \(role) LOGIN"), logger: logger)
            // Within a few TTLs. It took ~30 s in about two runs of five when a write its old watchers had left
            // in flight, fenced out once the database was back, dropped the leases the replica had just
            // taken again (a report by lease name, not by epoch).
            let back = ContinuousClock.now
            #expect(
                await ChildProcess.eventually(timeout: .seconds(30)) {
                    ReplicaFixture.targets.map(fixture.polls(of:)) != polls
                }, "the replica did not resume once the database was back: \(fixture.stderr(id).suffix(2000))")
            let resumed = ContinuousClock.now - back
            #expect(
                resumed <= ReplicaFixture.ttl * 4,
                "it took \(resumed) to resume polling: \(fixture.stderr(id).suffix(3000))")
            print("database back: polling resumed \(resumed) later")
            // And it keeps what it took again: nothing but this replica writes here, so no lease taken after the
            // database came back (epoch 2 on) may be lost to a fenced-out write. Before the fix, writes its old
            // watchers had left in flight, refused once the database was back, dropped them (by lease name).
            try await Task.sleep(for: ReplicaFixture.ttl)
            let stolen = fixture.stderr(id).split(separator: "\n").filter {
                $0.contains("a write under it was fenced out") && !$0.contains("epoch 1)")
            }
            #expect(stolen.isEmpty, "leases taken again were dropped: \(stolen.joined(separator: "\n"))")
            _ = await fixture.stopAll()
            await fixture.simulator.stop()
            fixture.receiver.stop()
        }
    }
}
