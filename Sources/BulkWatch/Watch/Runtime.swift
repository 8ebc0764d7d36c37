import Foundation
public import Logging
import Metrics
public import Prometheus
public import ServiceLifecycle
import Synchronization
import UnixSignals

/// How webhook sinks sign, time out and retry (`--webhook-*` options).
public struct WebhookSettings: Sendable, Equatable {
    /// Every configured `whsec_` secret; each attempt carries one signature per secret.
    public var secrets: [WebhookSecret]
    /// Per-request deadline, connection included.
    public var timeout: Duration
    public var policy: DeliveryPolicy

    public init(secrets: [WebhookSecret] = [], timeout: Duration = .seconds(10), policy: DeliveryPolicy = .webhook) {
        self.secrets = secrets
        self.timeout = timeout
        self.policy = policy
    }
}

/// A configuration that cannot work (e.g. a webhook sink without a signing secret). One line.
public struct RuntimeConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// One target with its credentials and its sinks.
public struct TargetPlan: Sendable, Equatable {
    public var target: WatchTarget
    public var tokenSource: TokenSource
    public var sinks: [SinkSpec]

    public init(target: WatchTarget, tokenSource: TokenSource, sinks: [SinkSpec]) {
        self.target = target
        self.tokenSource = tokenSource
        self.sinks = sinks
    }
}

/// Everything `bulkwatch run` needs, already validated and with secrets resolved.
public struct RuntimeConfiguration: Sendable {
    public var targets: [TargetPlan]
    public var statePath: String
    public var transport: TransportConfiguration
    public var once: Bool
    public var fileMaxBytes: Int64
    public var fileKeep: Int
    public var webhook: WebhookSettings
    /// How long an `exec:` sink's program may run per batch before it is stopped and retried.
    public var execTimeout: Duration = ExecSink.defaultTimeout
    /// Where `/metrics`, `/healthz` and `/readyz` are served; nil: not served.
    public var listen: ListenAddress?
    /// Level and format as configured; applied once at start (logging is bootstrapped once), kept
    /// here so a reload can say that a change needs a restart.
    public var logSettings: [String] = []

    public init(
        targets: [TargetPlan], statePath: String, transport: TransportConfiguration = TransportConfiguration(),
        once: Bool = false, fileMaxBytes: Int64 = 64 << 20, fileKeep: Int = 5,
        webhook: WebhookSettings = WebhookSettings(),
        listen: ListenAddress? = nil
    ) {
        self.targets = targets
        self.statePath = statePath
        self.transport = transport
        self.once = once
        self.fileMaxBytes = fileMaxBytes
        self.fileKeep = fileKeep
        self.webhook = webhook
        self.listen = listen
    }

    /// The single-target form (command-line flags, `demo`).
    public init(
        target: WatchTarget, tokenSource: TokenSource, statePath: String, sinks: [SinkSpec],
        transport: TransportConfiguration = TransportConfiguration(), once: Bool = false,
        fileMaxBytes: Int64 = 64 << 20, fileKeep: Int = 5, webhook: WebhookSettings = WebhookSettings(),
        listen: ListenAddress? = nil
    ) {
        self.init(
            targets: [TargetPlan(target: target, tokenSource: tokenSource, sinks: sinks)], statePath: statePath,
            transport: transport, once: once, fileMaxBytes: fileMaxBytes, fileKeep: fileKeep, webhook: webhook,
            listen: listen)
    }

    /// The first target (single-target callers).
    public var target: WatchTarget { targets[0].target }

    /// Each distinct sink once, with the targets that feed it.
    ///
    /// Sinks are keyed by name: two targets listing `file:/var/log/bulk.jsonl` share one file and
    /// one cursor. The same name configured two ways (different `batch=`) is an error. The target
    /// set is always explicit, never "all": the journal may hold events of targets no longer
    /// configured (removed by a reload, or renamed), and a sink must not pick those up.
    public func sinkPlans() throws -> [SinkPlan] {
        var order: [String] = []
        var plans: [String: SinkPlan] = [:]
        for plan in targets {
            for spec in plan.sinks {
                if var existing = plans[spec.name] {
                    guard existing.spec == spec else {
                        throw RuntimeConfigurationError(
                            description: "sink \(URLRedaction.sinkName(spec.name)) is configured differently "
                                + "for two targets (batch, filter or format)")
                    }
                    existing.targets?.insert(plan.target.name)
                    plans[spec.name] = existing
                } else {
                    order.append(spec.name)
                    plans[spec.name] = SinkPlan(spec: spec, targets: [plan.target.name])
                }
            }
        }
        return order.compactMap { plans[$0] }
    }

    /// Checks what can be checked without opening anything: unique target names, consistent sinks,
    /// a signing secret for every webhook sink.
    public func validate() throws {
        var names: Set<String> = []
        for plan in targets where !names.insert(plan.target.name).inserted {
            throw RuntimeConfigurationError(description: "target \(plan.target.name) is given twice")
        }
        guard !targets.isEmpty else { throw RuntimeConfigurationError(description: "no target to watch") }
        for plan in try sinkPlans() {
            // A template that does not parse is a configuration error now, not a failure at the first event.
            if case .template(let path) = plan.spec.format { _ = try TemplateFormat(path: path) }
            if case .webhook(let url, _) = plan.spec.destination, webhook.secrets.isEmpty {
                throw RuntimeConfigurationError(
                    description:
                        "webhook sink \(url) needs a signing secret: set BULKWATCH_WEBHOOK_SECRET, pass --webhook-secret-file or set webhook-secret in the file"
                )
            }
        }
    }
}

/// A sink and the targets it receives events from.
public struct SinkPlan: Sendable, Equatable {
    public var spec: SinkSpec
    public var targets: Set<String>?

    public init(spec: SinkSpec, targets: Set<String>?) {
        self.spec = spec
        self.targets = targets
    }
}

/// Re-reads the configuration on SIGHUP; throws (one line) when the new one is invalid.
public typealias ConfigurationReloader = @Sendable () throws -> RuntimeConfiguration

/// Wires transport → token → client → watchers → store → dispatcher → sinks and runs them as one
/// service group: SIGTERM/SIGINT shut down gracefully (watchers first, then the dispatcher
/// drains), SIGHUP reopens file sinks (log rotation) and, with a configuration file, reloads it.
///
/// All targets share one curl multi loop and one store; each has its own watcher, token
/// provider, snapshot and (through its sinks) cursors.
public final class BulkWatchRuntime: Sendable {
    public let store: any Store
    public let health: HealthBoard
    private let lock: StateLock?
    private let transport: CurlTransport
    private let logger: Logger
    private let reloader: ConfigurationReloader?
    private let pipeline: Pipeline

    /// Opens the state and every sink and loads every snapshot; throws (before any network call)
    /// when one cannot be opened. `store`: one the caller opened and runs (PostgreSQL); nil opens the
    /// SQLite file `statePath` under its ``StateLock``.
    public init(
        configuration: RuntimeConfiguration, logger: Logger, reloader: ConfigurationReloader? = nil,
        store: (any Store)? = nil
    ) async throws {
        try configuration.validate()
        self.logger = logger
        self.reloader = reloader
        // Before anything else touches the state: a second watcher would poll and deliver everything twice.
        self.lock = store == nil ? try StateLock(statePath: configuration.statePath) : nil
        let store = try store ?? SQLiteStore(path: configuration.statePath)
        self.store = store
        let transport = CurlTransport(configuration: configuration.transport)
        self.transport = transport
        let health = HealthBoard()
        self.health = health
        self.pipeline = try await Pipeline(
            configuration: configuration, store: store, transport: transport, health: health, logger: logger)
    }

    /// Runs until SIGINT/SIGTERM (or after one poll with `once`), then shuts down gracefully.
    /// `registry` is what `/metrics` renders when the configuration has `listen`.
    public func run(extraServices: [any Service] = [], registry: PrometheusCollectorRegistry? = nil) async throws {
        let terminate = ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior.gracefullyShutdownGroup
        var services = extraServices
        if let listen = pipeline.configuration.listen {
            services.append(OperationsServer(address: listen, registry: registry, health: health, logger: logger))
        }
        // Last, so that it is shut down first: the watchers stop before anything they feed.
        services.append(PipelineService(pipeline: pipeline, reloader: reloader, logger: logger))
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map {
                .init(service: $0, successTerminationBehavior: terminate, failureTerminationBehavior: terminate)
            },
            logger: logger)
        groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint]
        groupConfiguration.logger = logger
        defer { transport.shutdown() }
        try await ServiceGroup(configuration: groupConfiguration).run()
        _ = lock
    }
}

/// Every sink stopped by itself (a closed stdout, a 410): nothing is left to deliver to, so `run`
/// ends with exit 1, as a filter whose reader went away does.
public struct EverySinkStopped: Error, Sendable, CustomStringConvertible {
    public var reasons: String
    public var description: String { "every sink has stopped (\(reasons)); exiting" }
}

/// `--once` polled, but a sink could not deliver everything: the cron job must hear about it (exit 1).
public struct OnceUndelivered: Error, Sendable, CustomStringConvertible {
    public var problems: [String]
    public var description: String { problems.joined(separator: "; ") }
}

/// The running watchers and dispatcher, and how to swap them on reload.
private final class Pipeline: Sendable {
    private struct Running {
        var configuration: RuntimeConfiguration
        var watchers: [String: (plan: TargetPlan, task: Task<Void, any Error>)] = [:]
        var dispatcher: Dispatcher?
        var dispatcherTask: Task<Void, Never>?
        var sinkPlans: [SinkPlan] = []
        var fileSinks: [FileSink] = []
    }

    private let store: any Store
    private let transport: CurlTransport
    private let health: HealthBoard
    private let logger: Logger
    private let running: Mutex<Running>
    /// Prepared at init so that opening errors surface before `run`; taken by `start`.
    private let prepared: Mutex<(watchers: [(TargetPlan, Watcher)], sinks: PreparedSinks)?>

    var configuration: RuntimeConfiguration { running.withLock { $0.configuration } }

    init(
        configuration: RuntimeConfiguration, store: any Store, transport: CurlTransport, health: HealthBoard,
        logger: Logger
    ) async throws {
        self.store = store
        self.transport = transport
        self.health = health
        self.logger = logger
        self.running = Mutex(Running(configuration: configuration))
        (everySinkStopped, everySinkStoppedContinuation) = AsyncStream.makeStream(of: String.self)
        let sinks = try PreparedSinks(configuration: configuration, transport: transport)
        running.withLock { $0.sinkPlans = sinks.plans }
        self.prepared = Mutex(nil)
        let spread = configuration.targets.count > 1 && !configuration.once
        var watchers: [(TargetPlan, Watcher)] = []
        for plan in configuration.targets {
            watchers.append((plan, try await makeWatcher(plan, configuration: configuration, jitter: spread)))
        }
        prepared.withLock { $0 = (watchers, sinks) }
        health.setTargets(configuration.targets.map { ($0.target.name, $0.target.interval) })
    }

    /// The dispatcher is notified through this box, so watchers keep working across a sink swap.
    private let currentDispatcher = Mutex<Dispatcher?>(nil)

    /// Yields once when every sink of the running dispatcher stopped by itself.
    let everySinkStopped: AsyncStream<String>
    private let everySinkStoppedContinuation: AsyncStream<String>.Continuation

    /// The sinks the running configuration routes `target` to: retention keeps what they have not delivered.
    private func sinks(routing target: String) -> [String] {
        running.withLock { running in
            running.sinkPlans.filter { $0.targets?.contains(target) ?? true }.map(\.spec.name)
        }
    }

    private func makeWatcher(_ plan: TargetPlan, configuration: RuntimeConfiguration, jitter: Bool) async throws
        -> Watcher
    {
        let tokens = TokenProvider(
            source: plan.tokenSource, transport: transport, logger: logger.with("target", plan.target.name))
        let client = BulkStatusClient(
            endpoint: plan.target.endpoint, transport: transport, tokens: tokens, logger: logger)
        // Several targets: spread first polls over up to 5 s (never more than the interval), so
        // they do not all hit the token endpoints and the journal in the same instant.
        let window = min(plan.target.interval, .seconds(5))
        let delay: Duration = jitter ? .nanoseconds(Int64.random(in: 0...max(0, window.nanoseconds))) : .zero
        return try await Watcher(
            target: plan.target, client: client, store: store, logger: logger, once: configuration.once,
            firstPollDelay: delay, tokens: tokens, health: health,
            sinksForPruning: { [weak self] in self?.sinks(routing: plan.target.name) ?? [] },
            onCommit: { [weak self] in self?.currentDispatcher.withLock { $0 }?.notify() })
    }

    /// Starts what init prepared. Called once, from the pipeline service's task (so that the
    /// tasks inherit its graceful-shutdown context).
    func start() async {
        guard
            let (watchers, sinks) = prepared.withLock({ state in
                defer { state = nil }; return state
            })
        else { return }
        for (plan, watcher) in watchers {
            let task = Task { try await watcher.run() }
            running.withLock { $0.watchers[plan.target.name] = (plan, task) }
        }
        await startDispatcher(sinks)
    }

    private func startDispatcher(_ sinks: PreparedSinks) async {
        do {
            try await store.markConfiguredSinks(sinks.plans.map(\.spec.name))
        } catch {
            logger.warning("cannot record which sinks are configured: \(error)")
        }
        let continuation = everySinkStoppedContinuation
        let dispatcher = Dispatcher(
            store: store, routes: sinks.routes, logger: logger, health: health,
            onEverySinkStopped: { continuation.yield($0) })
        let task = Task<Void, Never> { try? await dispatcher.run() }
        currentDispatcher.withLock { $0 = dispatcher }
        running.withLock {
            $0.dispatcher = dispatcher
            $0.dispatcherTask = task
            $0.sinkPlans = sinks.plans
            $0.fileSinks = sinks.fileSinks
        }
        dispatcher.notify()
    }

    /// `--once`: waits for every watcher's one poll, lets the dispatcher drain, reports the first failure.
    func finishOnce() async throws {
        let tasks = running.withLock { $0.watchers.values.map(\.task) }
        var failure: (any Error)?
        for task in tasks {
            do { try await task.value } catch { failure = failure ?? error }
        }
        let (dispatcher, dispatcherTask) = running.withLock { ($0.dispatcher, $0.dispatcherTask) }
        dispatcher?.finish(drainTimeout: nil)
        await dispatcherTask?.value
        if let failure { throw failure }
        let problems = (dispatcher?.sinkOutcomes ?? []).compactMap { outcome in
            outcome.problem.map { "sink \(outcome.sink): \($0)" }
        }
        if !problems.isEmpty { throw OnceUndelivered(problems: problems.sorted()) }
    }

    /// Stops the watchers (every sink stopped by itself, so polling on would only fill the journal).
    func stopWatchers() async {
        let tasks = running.withLock { $0.watchers.values.map(\.task) }
        for task in tasks { task.cancel() }
        for task in tasks { _ = try? await task.value }
    }

    /// Waits for everything to stop after a graceful shutdown: watchers first, then the dispatcher.
    func waitForShutdown() async {
        let tasks = running.withLock { $0.watchers.values.map(\.task) }
        for task in tasks { _ = try? await task.value }
        let dispatcherTask = running.withLock { $0.dispatcherTask }
        await dispatcherTask?.value
    }

    func reopenFileSinks() async {
        for sink in running.withLock({ $0.fileSinks }) {
            do { try await sink.reopen() } catch { logger.error("cannot reopen \(sink.name): \(error)") }
        }
    }

    /// Applies a new configuration: targets added, removed or changed; sinks rebuilt when they
    /// changed. Everything that can fail (opening sinks, loading snapshots) is tried before
    /// anything running is touched, so a failure leaves the old configuration running.
    func apply(_ new: RuntimeConfiguration) async throws {
        try new.validate()
        let old = running.withLock { $0.configuration }
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
            newPlans != running.withLock({ $0.sinkPlans }) || new.webhook != old.webhook
            || new.fileMaxBytes != old.fileMaxBytes || new.fileKeep != old.fileKeep
        let preparedSinks = sinksChanged ? try PreparedSinks(configuration: new, transport: transport) : nil

        let current = running.withLock { $0.watchers }
        let wanted = Dictionary(uniqueKeysWithValues: new.targets.map { ($0.target.name, $0) })
        let stopping = current.filter { name, entry in wanted[name] != entry.plan }
        let starting = new.targets.filter { current[$0.target.name]?.plan != $0 }
        for (name, entry) in stopping {
            entry.task.cancel()
            _ = try? await entry.task.value
            running.withLock { _ = $0.watchers.removeValue(forKey: name) }
            logger.info("target \(name) \(wanted[name] == nil ? "removed" : "stopped for its new settings")")
        }
        for plan in starting {
            do {
                let watcher = try await makeWatcher(plan, configuration: new, jitter: false)
                let task = Task { try await watcher.run() }
                running.withLock { $0.watchers[plan.target.name] = (plan, task) }
                logger.info(
                    "target \(plan.target.name) \(current[plan.target.name] == nil ? "added" : "restarted with its new settings")"
                )
            } catch {
                logger.error("target \(plan.target.name) cannot start: \(error)")
            }
        }
        health.setTargets(new.targets.map { ($0.target.name, $0.target.interval) })
        if let preparedSinks {
            let (dispatcher, task) = running.withLock { ($0.dispatcher, $0.dispatcherTask) }
            dispatcher?.finish(drainTimeout: .milliseconds(1500))
            await task?.value
            health.resetSinks()
            await startDispatcher(preparedSinks)
            let names = newPlans.map { URLRedaction.sinkName($0.spec.name) }
            logger.info("sinks reconfigured: \(names.joined(separator: ", "))")
        }
        running.withLock { $0.configuration = new }
    }
}

/// Sinks opened for a configuration (files are opened, so errors show before anything runs).
private struct PreparedSinks: Sendable {
    var plans: [SinkPlan]
    var routes: [Dispatcher.Route]
    var fileSinks: [FileSink]

    init(configuration: RuntimeConfiguration, transport: CurlTransport) throws {
        plans = try configuration.sinkPlans()
        routes = []
        fileSinks = []
        for plan in plans {
            let sink: any EventSink
            switch plan.spec.destination {
            case .stdout(let format):
                sink = StdoutSink(format: format)
            case .file(let path):
                let fileSink = try FileSink(
                    path: path, maxBytes: configuration.fileMaxBytes, keep: configuration.fileKeep)
                fileSinks.append(fileSink)
                sink = fileSink
            case .webhook(let url, let batch):
                sink = WebhookSink(
                    url: url, signer: WebhookSigner(secrets: configuration.webhook.secrets), transport: transport,
                    batchSize: batch, timeout: configuration.webhook.timeout, policy: configuration.webhook.policy,
                    body: try WebhookBody(format: plan.spec.format, link: plan.spec.link))
            case .exec(let program, let batch, let arguments, let environment):
                sink = try ExecSink(
                    program: program, arguments: arguments, passEnvironment: environment, batchSize: batch,
                    timeout: configuration.execTimeout, policy: configuration.webhook.policy)
            }
            routes.append(
                Dispatcher.Route(
                    sink: sink, targets: plan.targets, filter: plan.spec.filter,
                    operationalByDefault: plan.spec.receivesOperationalByDefault))
        }
    }
}

/// Runs the pipeline inside the service group: starts it, handles SIGHUP, and on shutdown waits
/// for the watchers and then the dispatcher.
private struct PipelineService: Service {
    let pipeline: Pipeline
    let reloader: ConfigurationReloader?
    let logger: Logger

    func run() async throws {
        await pipeline.start()
        if pipeline.configuration.once {
            try await pipeline.finishOnce()
            return
        }
        let stopped: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask { await self.handleSighup() }
            group.addTask {
                for await reasons in pipeline.everySinkStopped { return reasons }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if let stopped {
            // The command line says why in its one exit line.
            await pipeline.stopWatchers()
            throw EverySinkStopped(reasons: stopped)
        }
        await pipeline.waitForShutdown()
    }

    /// Reopens file sinks and reloads the configuration on each SIGHUP, until graceful shutdown.
    private func handleSighup() async -> String? {
        await cancelWhenGracefulShutdown {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                await pipeline.reopenFileSinks()
                guard let reloader else {
                    logger.info("SIGHUP: reopened file sinks")
                    continue
                }
                do {
                    let configuration = try reloader()
                    try await pipeline.apply(configuration)
                    Counter(label: MetricName.configReloads, dimensions: [("outcome", "applied")]).increment()
                    logger.info("SIGHUP: configuration reloaded")
                } catch {
                    Counter(label: MetricName.configReloads, dimensions: [("outcome", "rejected")]).increment()
                    logger.error("SIGHUP: new configuration rejected, the running one stays: \(error)")
                }
            }
        }
        return nil
    }
}
