package import BulkWatchConfig
package import BulkWatchDelivery
package import BulkWatchOperate
package import BulkWatchStore
import BulkWatchTransport
import Foundation
package import Logging
package import Prometheus
public import ServiceLifecycle

/// The composition root: wires transport → token → client → watchers → store → dispatcher →
/// sinks and runs them as one `ServiceGroup` (DESIGN.md §7):
///
/// ```
/// TransportService  ← shut down last (the libcurl loop everything else uses)
/// extra services    ← the demo's simulator
/// OperationsServer  ← /metrics /healthz /readyz, when `listen` is set
/// DeliveryService   ← the dispatcher, swapped on reload
/// WatcherSupervisor ← one watcher per target, in one task group
/// RuntimeController ← SIGHUP, reload, `--once`, every sink stopped; shut down first
/// ```
///
/// SIGTERM/SIGINT shut the group down in reverse order: the controller stops reacting, the
/// watchers stop, the dispatcher drains, then the server and the transport stop. `run`, `--once`
/// and `demo` are the same graph with different configurations; nothing runs outside the group.
public final class BulkWatchRuntime: Service, Sendable {
    package let store: any Store
    package let health: HealthBoard
    private let lock: StateLock?
    private let transport: CurlTransport
    private let logger: Logger
    private let supervisor: WatcherSupervisor
    private let delivery: DeliveryService
    private let controller: RuntimeController
    private let handlesSignals: Bool
    /// Replicated mode (a PostgreSQL store and ``ReplicationSettings``): takes the leases and runs what they cover.
    private let coordinator: LeaseCoordinator?

    /// Opens the state and every sink and loads every snapshot; throws (before any network call)
    /// when one cannot be opened. `extraSinks` are sinks built in code by an embedding program;
    /// they receive every target's events after the configured ones, with durable cursors of their own.
    /// `store`: one the caller opened and runs (PostgreSQL); nil opens the SQLite file `statePath`
    /// under its ``StateLock``.
    package init(
        configuration: RuntimeConfiguration, logger: Logger, reloader: ConfigurationReloader? = nil,
        store: (any Store)? = nil, extraSinks: [Dispatcher.Route] = [], handlesSignals: Bool = true,
        replication: ReplicationSettings? = nil
    ) async throws {
        try configuration.validate()
        self.logger = logger
        self.handlesSignals = handlesSignals
        // Before anything else touches the state: a second watcher would poll and deliver everything twice.
        self.lock = store == nil ? try StateLock(statePath: configuration.statePath) : nil
        let store = try store ?? SQLiteStore(path: configuration.statePath)
        self.store = store
        let transport = CurlTransport(configuration: configuration.transport)
        self.transport = transport
        let health = HealthBoard()
        self.health = health
        let supervisor = WatcherSupervisor(logger: logger)
        self.supervisor = supervisor
        let delivery = DeliveryService()
        self.delivery = delivery
        let shared = replication == nil ? nil : store as? PostgresStore
        // `--once` beside possible replicas takes their leases for one poll; a running replica coordinates.
        let onceLeasing = configuration.once ? shared.map { ($0, replication!) } : nil
        let coordinated = configuration.once ? nil : shared
        do {
            let controller = try await RuntimeController(
                configuration: configuration, store: store, transport: transport, health: health,
                supervisor: supervisor, delivery: delivery, reloader: reloader, extraRoutes: extraSinks,
                logger: logger, replicated: coordinated != nil, onceLeasing: onceLeasing)
            self.controller = controller
            self.coordinator = coordinated.map { shared in
                LeaseCoordinator(
                    store: shared, settings: replication!, controller: controller, supervisor: supervisor,
                    health: health, logger: logger)
            }
        } catch {
            transport.shutdown()
            throw error
        }
    }

    /// Runs until graceful shutdown (SIGTERM/SIGINT, or the `ServiceGroup` it runs in), or after one
    /// poll with `once`; then stops the watchers and lets every sink deliver what it can.
    public func run() async throws {
        try await run(extraServices: [], registry: nil)
    }

    /// Runs until SIGINT/SIGTERM (or after one poll with `once`), then shuts down gracefully.
    /// `registry` is what `/metrics` renders when the configuration has `listen`.
    package func run(extraServices: [any Service] = [], registry: PrometheusCollectorRegistry? = nil) async throws {
        var services: [any Service] = [TransportService(transport: transport)]
        // Shut down after the watchers and the dispatcher: the leases are released once nothing writes.
        if let onceLeases = controller.onceLeases { services.append(onceLeases) }
        services += extraServices
        if let listen = controller.configuration.listen {
            services.append(OperationsServer(address: listen, registry: registry, health: health, logger: logger))
        }
        services.append(delivery)
        if let coordinator { services.append(coordinator) }
        services += [supervisor, controller]
        let terminate = ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior.gracefullyShutdownGroup
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map {
                .init(service: $0, successTerminationBehavior: terminate, failureTerminationBehavior: terminate)
            },
            logger: logger)
        if handlesSignals { groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint] }
        try await ServiceGroup(configuration: groupConfiguration).run()
        withExtendedLifetime(lock) {}
    }
}
