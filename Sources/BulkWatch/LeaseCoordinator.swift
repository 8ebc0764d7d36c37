import BulkWatchConfig
import BulkWatchDelivery
import BulkWatchOperate
import BulkWatchStore
import BulkWatchSupport
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Replicated mode's control loop (DESIGN.md §8): takes, renews, spreads and hands over the leases of
/// every target (`target:NAME`) and every sink (`sink:NAME`), and runs a watcher or a dispatcher only
/// while it holds the matching lease.
///
/// Why it is built this way:
/// - **Only the holder works.** A target's watcher is started with its lease's fence when the lease is
///   taken and stopped the moment it is lost: a renewal refused, a write fenced out, or no renewal
///   reaching the database for one TTL (a replica cut off stops polling within one TTL, before the
///   others may take over). Fencing makes a late write harmless anyway; stopping keeps a cut-off replica
///   from polling upstream for nothing.
/// - **Spread.** Each replica renews a `replica:ID` lease as a heartbeat. The live replicas, ranked by
///   id, share the work leases out exactly (`n / live`, the first `n % live` one more), so a replica that
///   joins is handed leases by the ones over their share, and the share of one that dies is taken up.
/// - **Fast failover.** Besides renewing every TTL/3, the loop wakes when the earliest lease held by
///   another replica expires (a dead holder's lease is taken within milliseconds of its expiry) and on
///   each NOTIFY of a released lease (a graceful stop hands over at once).
/// - **Wake-ups across replicas.** A commit NOTIFYs `bulkwatch_journal`; every replica's dispatchers
///   read the journal when it arrives, and still poll it every second should a notification be lost.
final class LeaseCoordinator: Service {
    private struct Holding: Sendable {
        var lease: Lease
        /// Sinks only: the dispatcher running under this lease, and the signals to stop it and hear it stopped.
        var dispatcher: Dispatcher?
        var stop = OneShot()
        var finished = OneShot()
        /// Failed over from an expired holder: the database's time from that expiry to the acquisition,
        /// and when it was acquired here; cleared by the first write that goes through.
        var failover: (sinceExpiry: Duration, acquired: ContinuousClock.Instant)?
    }

    private struct State {
        var held: [String: Holding] = [:]
        var heartbeat: Lease?
        /// When the last renewal round that reached the database started: every lease held is valid,
        /// by the database's clock, until at least this plus the TTL.
        var confirmed: ContinuousClock.Instant = .now
        /// Leases whose holder had a write fenced out, with the epoch it wrote under: the next round drops
        /// them if that is still the epoch held. A holder stopped late (its lease lost while the database was
        /// unreachable) reports its last writes fenced out after the lease was taken again under a new epoch;
        /// counted by name, those reports dropped the new holding, round after round.
        var fencedOut: [String: Int64] = [:]
        var failures = 0
        var stopping = false
    }

    private let store: PostgresStore
    private let leases: Leases
    private let settings: ReplicationSettings
    private let controller: RuntimeController
    private let supervisor: WatcherSupervisor
    private let health: HealthBoard
    private let logger: Logger
    private let state = Mutex(State())
    private let doorbell = Doorbell()
    private let sinkStarts: AsyncStream<Holding>
    private let sinkStartContinuation: AsyncStream<Holding>.Continuation
    private let commits: AsyncStream<Void>
    private let commitContinuation: AsyncStream<Void>.Continuation
    private let changes = Counter(label: LeaseMetric.changes, dimensions: [("change", "acquired")])
    private let losses = Counter(label: LeaseMetric.changes, dimensions: [("change", "lost")])
    private let handovers = Counter(label: LeaseMetric.changes, dimensions: [("change", "released")])
    private let failoverTimer = Metrics.Timer(label: LeaseMetric.failover)
    private let lastFailover = Gauge(label: LeaseMetric.lastFailover)

    private var replicaLease: String { "replica:" + settings.replicaID }

    init(
        store: PostgresStore, settings: ReplicationSettings, controller: RuntimeController,
        supervisor: WatcherSupervisor, health: HealthBoard, logger: Logger
    ) {
        self.store = store
        self.leases = store.leases
        self.settings = settings
        self.controller = controller
        self.supervisor = supervisor
        self.health = health
        self.logger = logger.with("replica", settings.replicaID)
        (sinkStarts, sinkStartContinuation) = AsyncStream.makeStream(of: Holding.self)
        (commits, commitContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        health.setTargets([])
        health.setLeases([])
    }

    /// Every lease this replica works under, in a stable order.
    private var workLeases: [String] {
        controller.configuration.targets.map { "target:" + $0.target.name }
            + controller.preparedRoutes.map { "sink:" + $0.sink.name }
    }

    /// The lease names held now (for tests and `/readyz`).
    var heldLeases: [String] { state.withLock { $0.held.keys.sorted() } }

    func run() async throws {
        do {
            try await store.markConfiguredSinks(controller.preparedRoutes.map(\.sink.name))
        } catch {
            logger.warning("cannot record which sinks are configured: \(error)")
        }
        logger.info(
            "replicated mode: replica \(settings.replicaID), lease TTL \(settings.leaseTTL.shortDescription)")
        await withDiscardingTaskGroup { group in
            group.addTask { await self.listen() }
            group.addTask { await self.announceCommits() }
            group.addTask { await self.watchdog() }
            group.addTask {
                await self.leaseLoop()
                await self.handOverEverything()
                self.sinkStartContinuation.finish()
            }
            for await holding in sinkStarts {
                group.addTask { await self.runSink(holding) }
            }
            // Every lease is handed over: the listener, the announcer and the watchdog end with the group.
            group.cancelAll()
        }
        for route in controller.preparedRoutes { await route.sink.close() }
    }

    // MARK: The loop

    private func leaseLoop() async {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let next = await round()
            let wait = next - .now
            if wait > .zero { await cancelWhenGracefulShutdown { await self.doorbell.wait(timeout: wait) } }
        }
        state.withLock { $0.stopping = true }
    }

    /// One pass: drop what was fenced out, renew, count the live replicas, hand over what is above this
    /// replica's share, take free leases up to it. Returns when the next pass is due.
    private func round() async -> ContinuousClock.Instant {
        let started = ContinuousClock.now
        var next = started + settings.renewInterval
        let ttl = settings.leaseTTL
        let fenced = state.withLock { state -> [String] in
            defer { state.fencedOut = [:] }
            return state.fencedOut.filter { state.held[$0.key]?.lease.epoch == $0.value }.keys.sorted()
        }
        for name in fenced {
            await lose(name, because: "a write under it was fenced out")
        }
        do {
            // The heartbeat and every work lease in one statement: one round trip per round however
            // many leases, and when this replica dies its heartbeat and its work leases run out
            // together, so the others count one replica fewer by the time those are free.
            let (beat, holdings) = state.withLock { ($0.heartbeat, $0.held) }
            let renewed = try await leases.renew(
                (beat.map { [$0] } ?? []) + holdings.values.map(\.lease), ttl: ttl)
            if beat == nil || !renewed.contains(replicaLease) {
                let taken = try await leases.tryAcquire(replicaLease, owner: settings.replicaID, ttl: ttl)
                state.withLock { $0.heartbeat = taken }
            }
            for name in holdings.keys.sorted() where !renewed.contains(name) {
                await lose(name, because: "its renewal was refused (it expired or moved)")
            }
            let recovered = state.withLock { state -> Int in
                state.confirmed = started
                defer { state.failures = 0 }
                return state.failures
            }
            if recovered > 0 { logger.info("the lease database is reachable again") }

            let roster = try await leases.roster()
            let wanted = workLeases
            var live = Set(roster.leases.filter { $0.held && $0.name.hasPrefix("replica:") }.map(\.owner))
            live.insert(settings.replicaID)
            let ranked = live.sorted()
            let rank = ranked.firstIndex(of: settings.replicaID) ?? 0
            let share = wanted.count / ranked.count + (rank < wanted.count % ranked.count ? 1 : 0)
            let held = Set(state.withLock { $0.held.keys })
            if held.count > share {
                for name in held.sorted().suffix(held.count - share) where !isStopping {
                    await handOver(name, because: "\(ranked.count) replicas share \(wanted.count) leases")
                }
            } else if held.count < share {
                let byName = Dictionary(roster.leases.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
                let free = wanted.filter { !held.contains($0) && !(byName[$0]?.held ?? false) }
                var taken = held.count
                for name in free.shuffled() where taken < share && !isStopping {
                    guard let acquired = try await leases.acquire(name, owner: settings.replicaID, ttl: ttl) else {
                        continue
                    }
                    if await take(acquired) { taken += 1 }
                }
            }
            // Wake as the first lease held elsewhere runs out: a dead replica's heartbeat (which changes
            // every share) or a work lease it held, taken within milliseconds of its expiry. A live
            // holder renews well before, so this never wakes earlier than the next renewal would.
            let soonest = roster.leases.filter { $0.held && $0.owner != settings.replicaID }.map(\.expiresAt).min()
            if let soonest {
                let left = max(0, soonest.timeIntervalSince(roster.now))
                next = min(next, .now + .milliseconds(Int64(left * 1000) + 5))
            }
        } catch is CancellationError {
            return .now
        } catch {
            let failures = state.withLock { state -> Int in
                state.failures += 1
                return state.failures
            }
            if failures == 1 || failures.isMultiple(of: 20) {
                logger.error("cannot renew or take leases (attempt \(failures)): \(error)")
            }
            next = min(next, started + .milliseconds(500))
        }
        publish()
        return next
    }

    private var isStopping: Bool { state.withLock { $0.stopping } || Task.isShuttingDownGracefully }

    /// Stops everything once no renewal has reached the database for one TTL: by then the leases may
    /// have expired and been taken, and polling on would only be wasted (its commits are fenced out).
    private func watchdog() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(50))
            // While stopping, the hand-over releases every lease itself (and no renewal round runs).
            let (overdue, names) = state.withLock { state in
                (
                    !state.stopping && ContinuousClock.now - state.confirmed >= settings.leaseTTL,
                    Array(state.held.keys)
                )
            }
            guard overdue, !names.isEmpty else { continue }
            logger.error(
                "no lease renewal reached the database for \(settings.leaseTTL.shortDescription): stopping every watcher and sink"
            )
            state.withLock { $0.heartbeat = nil }
            for name in names.sorted() {
                await lose(name, because: "no renewal reached the database for a TTL (cut off or paused)")
            }
            publish()
        }
    }

    // MARK: Taking and giving up

    /// Starts the watcher or the dispatcher of a lease just taken; false (and the lease given back)
    /// when it cannot start.
    private func take(_ acquired: AcquiredLease) async -> Bool {
        let lease = acquired.lease
        var holding = Holding(lease: lease)
        if let expiry = acquired.previousExpiry {
            let since = max(0, acquired.acquiredAt.timeIntervalSince(expiry))
            holding.failover = (.milliseconds(Int64(since * 1000)), .now)
        }
        let name = lease.name
        let leased = LeasedStore(base: store) { [weak self] fence, fencedOut in
            self?.reported(name: name, fence: fence, fencedOut: fencedOut)
        }
        do {
            if name.hasPrefix("target:") {
                let target = String(name.dropFirst("target:".count))
                let configuration = controller.configuration
                guard let plan = configuration.targets.first(where: { $0.target.name == target }) else {
                    throw RuntimeConfigurationError(description: "no target \(target) is configured")
                }
                state.withLock { $0.held[name] = holding }
                let watcher = try await controller.makeWatcher(
                    plan, configuration: configuration, jitter: false, store: leased, fence: lease.fence,
                    onCommit: { [weak self] in self?.committed() })
                guard state.withLock({ $0.held[name]?.lease == lease }) else { return false }
                supervisor.start(plan, watcher)
                // Refused once the supervisor is shutting down (before this coordinator is): give it back.
                guard supervisor.plans[target] != nil else {
                    throw RuntimeConfigurationError(description: "the watchers are stopping")
                }
            } else {
                let sink = String(name.dropFirst("sink:".count))
                guard let route = controller.preparedRoutes.first(where: { $0.sink.name == sink }) else {
                    throw RuntimeConfigurationError(description: "no sink \(sink) is configured")
                }
                let retained = Dispatcher.Route(
                    sink: RetainedSink(base: route.sink), targets: route.targets, filter: route.filter,
                    operationalByDefault: route.operationalByDefault)
                holding.dispatcher = Dispatcher(
                    store: leased, routes: [retained], logger: logger, health: health,
                    sinkFences: [retained.sink.name: lease.fence])
                state.withLock { $0.held[name] = holding }
                sinkStartContinuation.yield(holding)
            }
        } catch {
            logger.error("took \(lease) but cannot start it: \(error); giving it back")
            state.withLock { _ = $0.held.removeValue(forKey: name) }
            _ = try? await leases.release(lease)
            return false
        }
        changes.increment()
        Gauge(label: LeaseMetric.held, dimensions: [("lease", name)]).record(1)
        let how = holding.failover.map { "failed over, \($0.sinceExpiry.shortDescription) after it expired" }
        logger.info("took \(lease)\(how.map { " (\($0))" } ?? "")")
        publish()
        return true
    }

    /// The lease is gone (or about to be): stop its holder at once, without drain or release.
    private func lose(_ name: String, because reason: String) async {
        guard let holding = state.withLock({ $0.held.removeValue(forKey: name) }) else { return }
        await stopHolder(name, holding, drain: false)
        losses.increment()
        Gauge(label: LeaseMetric.held, dimensions: [("lease", name)]).record(0)
        logger.warning("lost \(holding.lease): \(reason); stopped")
        publish()
    }

    /// Gives the lease up gracefully: the holder stops (a sink drains briefly), then the lease is
    /// released and NOTIFY tells the other replicas to take it now.
    private func handOver(_ name: String, because reason: String) async {
        guard let holding = state.withLock({ $0.held.removeValue(forKey: name) }) else { return }
        await stopHolder(name, holding, drain: true)
        do {
            try await leases.release(holding.lease)
        } catch {
            logger.warning("cannot release \(holding.lease) (it will expire): \(error)")
        }
        handovers.increment()
        Gauge(label: LeaseMetric.held, dimensions: [("lease", name)]).record(0)
        logger.info("handed over \(holding.lease): \(reason)")
        publish()
    }

    private func stopHolder(_ name: String, _ holding: Holding, drain: Bool) async {
        if name.hasPrefix("target:") {
            await supervisor.stop(String(name.dropFirst("target:".count)))
        } else if let dispatcher = holding.dispatcher {
            if drain {
                dispatcher.finish(drainTimeout: .milliseconds(1500))
            } else {
                holding.stop.fire()
            }
            await holding.finished.wait()
        }
    }

    private func handOverEverything() async {
        for name in state.withLock({ $0.held.keys.sorted() }) {
            await handOver(name, because: "this replica is stopping")
        }
        if let beat = state.withLock({ state in
            defer { state.heartbeat = nil }; return state.heartbeat
        }) {
            _ = try? await leases.release(beat)
        }
    }

    private func runSink(_ holding: Holding) async {
        guard let dispatcher = holding.dispatcher else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await dispatcher.run() }
            group.addTask { await holding.stop.wait() }
            await group.next()
            group.cancelAll()
        }
        holding.finished.fire()
    }

    // MARK: Reports from the holders

    /// A fenced write's outcome: a refusal drops the lease at the next round (now); the first write
    /// that goes through after a failover ends it, and its duration is recorded.
    private func reported(name: String, fence: StoreFence, fencedOut: FencedOut?) {
        if fencedOut != nil {
            // Only a refusal of the epoch held now concerns the lease; an earlier holder's is history.
            let current = state.withLock { state -> Bool in
                guard state.held[name]?.lease.epoch == fence.epoch else { return false }
                state.fencedOut[name] = fence.epoch
                return true
            }
            if current { doorbell.ring() }
            return
        }
        let failover = state.withLock { state -> Duration? in
            guard let holding = state.held[name], holding.lease.epoch == fence.epoch,
                let failover = holding.failover
            else { return nil }
            state.held[name]?.failover = nil
            return failover.sinceExpiry + (ContinuousClock.now - failover.acquired)
        }
        guard let failover else { return }
        failoverTimer.recordNanoseconds(failover.nanoseconds)
        lastFailover.record(failover.seconds)
        logger.notice(
            "failover of \(name) complete: first write \(failover.shortDescription) after the previous lease expired")
    }

    /// A local watcher committed events: wake the local dispatchers now and the other replicas' soon.
    private func committed() {
        ringDispatchers()
        commitContinuation.yield()
    }

    private func ringDispatchers() {
        for holding in state.withLock({ Array($0.held.values) }) { holding.dispatcher?.notify() }
    }

    private func announceCommits() async {
        for await _ in commits {
            do { try await leases.announceCommit() } catch { logger.debug("cannot announce a commit: \(error)") }
        }
    }

    /// LISTEN for released leases and commits, reconnecting after a failure.
    private func listen() async {
        while !Task.isCancelled {
            do {
                try await leases.listen { [weak self] channel in
                    guard let self else { return }
                    if channel == Leases.channel { self.doorbell.ring() } else { self.ringDispatchers() }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("lease notifications interrupted: \(error)")
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// What `/readyz` and `/healthz` judge: only the targets this replica polls.
    private func publish() {
        let held = state.withLock { Array($0.held.keys) }
        health.setLeases(held)
        let targets = controller.configuration.targets.filter { held.contains("target:" + $0.target.name) }
        health.setTargets(targets.map { ($0.target.name, $0.target.interval) })
    }
}

/// Metric names of replicated mode (examples/grafana-metrics.md).
enum LeaseMetric {
    /// 1 while this replica holds the lease (label `lease`), 0 after it gave it up or lost it.
    static let held = "bulkwatch_lease_held"
    /// Lease changes by kind: `acquired`, `released` (handed over), `lost`.
    static let changes = "bulkwatch_lease_changes_total"
    /// From the previous holder's expiry to this replica's first write under the lease.
    static let failover = "bulkwatch_failover_duration_seconds"
    static let lastFailover = "bulkwatch_failover_last_seconds"
}

/// A level-triggered doorbell for the lease loop: a ring with nobody waiting is kept for the next wait.
private final class Doorbell: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns after a ring, after `timeout`, or when cancelled.
    func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForRing() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForRing() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
