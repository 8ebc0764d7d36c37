import BulkWatch
import Foundation
import Logging
import PostgresNIO
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension ReplicaFixture {
    /// `bulkwatch run --once` on the fixture's database: its exit status and stderr.
    func runOnce(replicaID: String) async throws -> (status: Int32?, stderr: String) {
        let child = try ChildProcess(
            BulkWatchBinary.path,
            [
                "run", "--once", "--config", configPath, "--state", url, "--replica-id", replicaID, "--timeout", "5s",
                "--webhook-timeout", "2s",
            ], environment: environment, directory: directory)
        let status = await child.waitForExit(timeout: .seconds(60))
        return (status, child.stderr)
    }
}

@Suite("replicated mode: fenced writes and --once under leases", .serialized)
struct LeaseFencingTests {
    /// A write under a lease that was taken away is refused by the database, end to end: the replica's
    /// next commit after the takeover carries the old epoch and journals nothing, the replica stops that
    /// watcher, and takes the target up again (at a new epoch) once the lease is handed back.
    @Test(.timeLimit(.minutes(3)))
    func aCommitUnderALeaseTakenAwayIsFencedOutAndWritesNothing() async throws {
        let fixture = try await ReplicaFixture()
        try await fixture.store.whileRunning {
            try await fixture.store.migrate()
            // A long TTL: the next renewal is ~20 s away, so the watcher's next commit (every 500 ms) is
            // what meets the takeover first.
            let id = try fixture.startReplica(leaseTTL: "60s")
            #expect(
                await ChildProcess.eventually(timeout: .seconds(60)) { await fixture.journalMatches() },
                "the replica never journaled the initial items: \(fixture.stderr(id).suffix(2000))")
            let before = try await fixture.store.lastSequence()
            let original = try #require(try await fixture.leases().first { $0.name == "target:a" && $0.held })
            #expect(original.owner == id)

            // What another replica does once this one stalled past its TTL, without the stall.
            let intruder = Lease(
                name: "target:a", owner: "intruder", epoch: original.epoch + 1, expiresAt: Date(), held: true)
            try await fixture.store.client.query(
                """
                UPDATE leases SET owner = \(intruder.owner), epoch = \(intruder.epoch),
                    expires_at = clock_timestamp() + interval '60 seconds'
                WHERE name = 'target:a'
                """, logger: Logger(label: "test"))
            fixture.mutate()
            let refusal = "lost target:a (owner \(id), epoch \(original.epoch)): a write under it was fenced out"
            #expect(
                await ChildProcess.eventually(timeout: .seconds(20)) { fixture.stderr(id).contains(refusal) },
                "no commit was fenced out: \(fixture.stderr(id).suffix(2000))")
            #expect(
                await ChildProcess.eventually(timeout: .seconds(20)) {
                    let truths = try? await fixture.truths()
                    return truths?["b"]?.isExact == true && truths?["c"]?.isExact == true
                }, "the other targets went on")
            let afterTakeover = try await fixture.events().filter { $0.sequence > before && $0.target == "a" }
            #expect(afterTakeover.isEmpty, "a fenced-out commit wrote: \(afterTakeover.map(\.id))")
            #expect(try await fixture.owner(of: "target:a") == "intruder")

            // Handed back (released, with its NOTIFY): the replica takes it at a new epoch and catches up.
            #expect(try await fixture.store.leases.release(intruder))
            #expect(
                await ChildProcess.eventually(timeout: .seconds(30)) { await fixture.journalMatches() },
                "target a never caught up: \(fixture.stderr(id).suffix(2000))")
            let retaken = try #require(try await fixture.leases().first { $0.name == "target:a" && $0.held })
            #expect(retaken.owner == id)
            #expect(retaken.epoch == intruder.epoch + 1)

            // SIGHUP: reload is refused in replicated mode, in one logged line, and the replica goes on.
            fixture.signal(id, SIGHUP)
            #expect(
                await ChildProcess.eventually(timeout: .seconds(10)) {
                    fixture.stderr(id).contains(
                        "new configuration rejected, the running one stays: reload is not"
                            + " supported in replicated mode")
                }, "\(fixture.stderr(id).suffix(1000))")
            fixture.mutate()
            #expect(await ChildProcess.eventually(timeout: .seconds(30)) { await fixture.journalMatches() })
            let statuses = await fixture.stopAll()
            #expect(statuses.values.allSatisfy { $0 == 0 }, "\(statuses)")
            await fixture.simulator.stop()
            fixture.receiver.stop()
        }
    }

    /// `run --once` on a shared database polls and delivers under the same leases as the replicas, and
    /// hands them back when it ends.
    @Test(.timeLimit(.minutes(2)))
    func onceTakesEveryLeaseForItsPollAndHandsThemBack() async throws {
        let fixture = try await ReplicaFixture()
        try await fixture.store.whileRunning {
            try await fixture.store.migrate()
            let (status, stderr) = try await fixture.runOnce(replicaID: "once-1")
            #expect(status == 0, "\(stderr.suffix(2000))")
            #expect(await fixture.journalMatches())
            let events = try await fixture.events()
            #expect(events.count >= 12 * ReplicaFixture.targets.count)
            #expect(Set(fixture.receiver.acceptedIDs).isSuperset(of: events.map(\.id)), "every event delivered")
            let leases = try await fixture.leases()
            let names = leases.map(\.name)
            #expect(names.filter { $0.hasPrefix("target:") } == ReplicaFixture.targets.map { "target:" + $0 })
            #expect(names.filter { $0.hasPrefix("sink:") }.count == 1, "one lease per sink: \(names)")
            #expect(leases.allSatisfy { $0.owner == "once-1" && !$0.held }, "every lease handed back: \(leases)")
            await fixture.simulator.stop()
            fixture.receiver.stop()
        }
    }

    /// `run --once` beside a replica that holds one of the leases refuses in one line, polls nothing,
    /// writes nothing and keeps no lease.
    @Test(.timeLimit(.minutes(2)))
    func onceRefusesWhileAReplicaHoldsALease() async throws {
        let fixture = try await ReplicaFixture()
        try await fixture.store.whileRunning {
            try await fixture.store.migrate()
            _ = try #require(try await fixture.store.leases.tryAcquire("target:b", owner: "r-live", ttl: .seconds(60)))
            let (status, stderr) = try await fixture.runOnce(replicaID: "once-2")
            #expect(status == 1, "\(stderr.suffix(2000))")
            let lines = stderr.split(separator: "\n").filter { $0.contains("held by") }
            #expect(lines.count == 1, "\(stderr.suffix(2000))")
            #expect(lines.first?.contains("target:b (held by r-live)") == true, "\(stderr.suffix(2000))")
            #expect(try await fixture.store.lastSequence() == 0, "nothing journaled")
            #expect(fixture.polls(of: "a") == 0, "nothing polled")
            let held = try await fixture.leases().filter(\.held)
            #expect(held.map(\.description) == ["target:b (owner r-live, epoch 1)"], "nothing kept: \(held)")
            await fixture.simulator.stop()
            fixture.receiver.stop()
        }
    }
}
