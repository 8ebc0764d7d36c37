import BulkWatchAuth
import BulkWatchConfig
import BulkWatchDelivery
import BulkWatchOperate
import BulkWatchSource
import BulkWatchStore
import BulkWatchSupport
import BulkWatchTransport
import BulkWatchWatcher
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The control plane of a running bulkwatch: it builds watchers and sinks from a configuration,
/// hands them to the ``WatcherSupervisor`` and the ``DeliveryService``, and then reacts to what
/// happens: SIGHUP (reopen files, reload), `--once` completing, every sink stopping by itself.
///
/// It is the last service of the group, so graceful shutdown reaches it first: it stops reacting,
/// then the supervisor stops the watchers, then the dispatcher drains.
final class RuntimeController: Service {
    private let store: any Store
    private let transport: CurlTransport
    private let health: HealthBoard
    private let supervisor: WatcherSupervisor
    private let delivery: DeliveryService
    private let reloader: ConfigurationReloader?
    /// Sinks an embedding program added in code; they stay across reloads.
    private let extraRoutes: [Dispatcher.Route]
    private let logger: Logger
    /// Replicated mode: the ``LeaseCoordinator`` starts watchers and sinks as it takes their leases.
    private let replicated: Bool
    /// `--once` on a shared PostgreSQL state: the leases it polls and delivers under (a service of the group).
    let onceLeases: OnceLeases?

    private struct State {
        var configuration: RuntimeConfiguration
        var sinks: PreparedSinks
        /// Prepared at init so that opening errors surface before `run`; taken by `run`.
        var preparedWatchers: [(TargetPlan, Watcher)]?
    }

    private let state: Mutex<State>
    private let everySinkStopped: AsyncStream<String>
    private let everySinkStoppedContinuation: AsyncStream<String>.Continuation

    var configuration: RuntimeConfiguration { state.withLock { $0.configuration } }

    /// Opens every sink and loads every snapshot; throws (before any network call) when one cannot be opened.
    init(
        configuration: RuntimeConfiguration, store: any Store, transport: CurlTransport, health: HealthBoard,
        supervisor: WatcherSupervisor, delivery: DeliveryService, reloader: ConfigurationReloader?,
        extraRoutes: [Dispatcher.Route], logger: Logger, replicated: Bool = false,
        onceLeasing: (store: PostgresStore, settings: ReplicationSettings)? = nil
    ) async throws {
        self.replicated = replicated
        self.store = store
        self.transport = transport
        self.health = health
        self.supervisor = supervisor
        self.delivery = delivery
        self.reloader = reloader
        self.extraRoutes = extraRoutes
        self.logger = logger
        (everySinkStopped, everySinkStoppedContinuation) = AsyncStream.makeStream(of: String.self)
        let sinks = try PreparedSinks(configuration: configuration, transport: transport, extra: extraRoutes)
        state = Mutex(State(configuration: configuration, sinks: sinks))
        if let (leaseStore, settings) = onceLeasing {
            onceLeases = try await OnceLeases(
                store: leaseStore, targets: configuration.targets.map(\.target.name), sinks: sinks.names,
                settings: settings, logger: logger)
        } else {
            onceLeases = nil
        }
        let spread = configuration.targets.count > 1 && !configuration.once
        var watchers: [(TargetPlan, Watcher)] = []
        // A replica loads a target's snapshot when it takes the lease: another replica may commit before.
        for plan in configuration.targets where !replicated {
            let fence = onceLeases?.targetFences[plan.target.name] ?? .exclusive
            watchers.append(
                (plan, try await makeWatcher(plan, configuration: configuration, jitter: spread, fence: fence)))
        }
        state.withLock { $0.preparedWatchers = watchers }
        if !replicated { health.setTargets(configuration.targets.map { ($0.target.name, $0.target.interval) }) }
    }

    /// The routes of the configured sinks, opened once (replicated mode runs each on its own dispatcher).
    var preparedRoutes: [Dispatcher.Route] { state.withLock { $0.sinks.routes } }

    func run() async throws {
        let (watchers, sinks) = state.withLock { state in
            defer { state.preparedWatchers = nil }
            return (state.preparedWatchers ?? [], state.sinks)
        }
        for (plan, watcher) in watchers { supervisor.start(plan, watcher) }
        if !replicated { await startDispatcher(sinks) }
        if configuration.once {
            try await finishOnce()
            return
        }
        let stopped: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask { await self.handleSighup() }
            group.addTask {
                for await reasons in self.everySinkStopped { return reasons }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if let stopped {
            // The command line says why in its one exit line.
            await supervisor.stopAll()
            throw EverySinkStopped(reasons: stopped)
        }
    }

    /// `--once`: waits for every watcher's one poll, lets the dispatcher drain, reports the first failure.
    private func finishOnce() async throws {
        let failure = await supervisor.waitForAll()
        let outcomes = await delivery.finish(drainTimeout: nil)
        if let failure { throw failure }
        let problems = outcomes.compactMap { outcome in outcome.problem.map { "sink \(outcome.sink): \($0)" } }
        if !problems.isEmpty { throw OnceUndelivered(problems: problems.sorted()) }
    }

    /// A watcher for `plan`; replicated mode passes the lease's fence, the store that reports fenced
    /// writes and a commit hook that also wakes the other replicas.
    func makeWatcher(
        _ plan: TargetPlan, configuration: RuntimeConfiguration, jitter: Bool, store: (any Store)? = nil,
        fence: StoreFence = .exclusive, onCommit: (@Sendable () -> Void)? = nil
    ) async throws -> Watcher {
        let tokens = TokenProvider(
            source: plan.tokenSource, transport: transport, logger: logger.with("target", plan.target.name))
        let client = BulkStatusClient(
            endpoint: plan.target.endpoint, transport: transport, tokens: tokens, logger: logger)
        // Several targets: spread first polls over up to 5 s (never more than the interval), so
        // they do not all hit the token endpoints and the journal in the same instant.
        let window = min(plan.target.interval, .seconds(5))
        let delay: Duration = jitter ? .nanoseconds(Int64.random(in: 0...max(0, window.nanoseconds))) : .zero
        let name = plan.target.name
        return try await Watcher(
            target: plan.target, client: client, store: store ?? self.store, logger: logger,
            once: configuration.once, firstPollDelay: delay, tokens: tokens, health: health,
            sinksForPruning: { [weak self] in self?.state.withLock { $0.sinks.names(routing: name) } ?? [] },
            fence: fence, onCommit: onCommit ?? { [delivery] in delivery.notify() })
    }

    private func startDispatcher(_ sinks: PreparedSinks) async {
        do {
            try await store.markConfiguredSinks(sinks.names)
        } catch {
            logger.warning("cannot record which sinks are configured: \(error)")
        }
        let continuation = everySinkStoppedContinuation
        let dispatcher = Dispatcher(
            store: store, routes: sinks.routes, logger: logger, health: health,
            sinkFences: onceLeases?.sinkFences ?? [:], onEverySinkStopped: { continuation.yield($0) })
        await delivery.replace(with: dispatcher)
    }

    /// Reopens file sinks and reloads the configuration on each SIGHUP, until graceful shutdown.
    private func handleSighup() async -> String? {
        await cancelWhenGracefulShutdown {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                await self.reopenFileSinks()
                guard let reloader = self.reloader else {
                    self.logger.info("SIGHUP: reopened file sinks")
                    continue
                }
                do {
                    let configuration = try reloader()
                    try await self.apply(configuration)
                    Counter(label: MetricName.configReloads, dimensions: [("outcome", "applied")]).increment()
                    self.logger.info("SIGHUP: configuration reloaded")
                } catch {
                    Counter(label: MetricName.configReloads, dimensions: [("outcome", "rejected")]).increment()
                    self.logger.error("SIGHUP: new configuration rejected, the running one stays: \(error)")
                }
            }
        }
        return nil
    }

    private func reopenFileSinks() async {
        for sink in state.withLock({ $0.sinks.fileSinks }) {
            do { try await sink.reopen() } catch { logger.error("cannot reopen \(sink.name): \(error)") }
        }
    }

    /// Applies a new configuration: targets added, removed or changed; sinks rebuilt when they
    /// changed. Everything that can fail (opening sinks, loading snapshots) is tried before
    /// anything running is touched, so a failure leaves the old configuration running.
    func apply(_ new: RuntimeConfiguration) async throws {
        try new.validate()
        guard !replicated else {
            throw RuntimeConfigurationError(
                description: "reload is not supported in replicated mode yet; restart the replicas one at a time")
        }
        let (old, oldSinks) = state.withLock { ($0.configuration, $0.sinks) }
        guard new.statePath == old.statePath else {
            throw RuntimeConfigurationError(
                description: "state cannot change on reload (\(old.statePath) → \(new.statePath)); restart instead")
        }
        if new.listen != old.listen {
            logger.warning(
                "listen changes take effect on restart; still serving on \(old.listen.map { "\($0)" } ?? "nothing")")
        }
        if new.transport.caFile != old.transport.caFile { logger.warning("ca-file changes take effect on restart") }
        if new.logSettings != old.logSettings {
            logger.warning("log-level and log-format changes take effect on restart")
        }
        let newPlans = try new.sinkPlans()
        let sinksChanged =
            newPlans != oldSinks.plans || new.webhook != old.webhook
            || new.fileMaxBytes != old.fileMaxBytes || new.fileKeep != old.fileKeep
        let preparedSinks =
            sinksChanged ? try PreparedSinks(configuration: new, transport: transport, extra: extraRoutes) : nil

        let current = supervisor.plans
        let wanted = Dictionary(uniqueKeysWithValues: new.targets.map { ($0.target.name, $0) })
        let stopping = current.filter { name, plan in wanted[name] != plan }
        let starting = new.targets.filter { current[$0.target.name] != $0 }
        for name in stopping.keys.sorted() {
            await supervisor.stop(name)
            logger.info("target \(name) \(wanted[name] == nil ? "removed" : "stopped for its new settings")")
        }
        for plan in starting {
            do {
                let watcher = try await makeWatcher(plan, configuration: new, jitter: false)
                supervisor.start(plan, watcher)
                let verb = current[plan.target.name] == nil ? "added" : "restarted with its new settings"
                logger.info("target \(plan.target.name) \(verb)")
            } catch {
                logger.error("target \(plan.target.name) cannot start: \(error)")
            }
        }
        health.setTargets(new.targets.map { ($0.target.name, $0.target.interval) })
        if let preparedSinks {
            _ = await delivery.finish(drainTimeout: .milliseconds(1500))
            state.withLock { $0.sinks = preparedSinks }
            health.resetSinks()
            await startDispatcher(preparedSinks)
            let names = newPlans.map { URLRedaction.sinkName($0.spec.name) }
            logger.info("sinks reconfigured: \(names.joined(separator: ", "))")
        }
        state.withLock { $0.configuration = new }
    }
}
