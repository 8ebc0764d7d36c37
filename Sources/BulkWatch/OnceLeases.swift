import BulkWatchStore
import BulkWatchSupport
import Logging
import ServiceLifecycle

/// `run --once` on a shared PostgreSQL state: the leases of every target and sink it is about to poll
/// and deliver, taken up front, renewed while it runs, handed back when it ends.
///
/// Why: replicas may be running on the same database. A `--once` that wrote as the single writer would
/// poll a target beside its lease holder and journal the same change twice, or move a sink's cursor under
/// the dispatcher that owns it. So it takes the same `target:NAME` / `sink:NAME` leases the replicas take,
/// and every commit and cursor move carries their fences: if one is lost meanwhile (the process was paused
/// past the TTL), the write is refused like any replica's. When a lease is held by someone else, `--once`
/// refuses to start instead of waiting: the replica holding it is already doing the job.
final class OnceLeases: Service {
    private let leases: Leases
    private let held: [Lease]
    private let ttl: Duration
    private let logger: Logger

    /// The fence of each target's lease, by target name.
    let targetFences: [String: StoreFence]
    /// The fence of each sink's lease, by sink name.
    let sinkFences: [String: StoreFence]

    /// Takes every lease or none: when one is held by another owner, gives back those already taken and
    /// throws ``LeasesHeldElsewhere`` naming the holders.
    init(store: PostgresStore, targets: [String], sinks: [String], settings: ReplicationSettings, logger: Logger)
        async throws
    {
        let leases = store.leases
        let owner = settings.replicaID
        var taken: [Lease] = []
        var refused: [String] = []
        let names = targets.map { ("target:" + $0, $0) } + sinks.map { ("sink:" + $0, $0) }
        do {
            for (name, _) in names {
                if let lease = try await leases.tryAcquire(name, owner: owner, ttl: settings.leaseTTL) {
                    taken.append(lease)
                } else {
                    refused.append(name)
                }
            }
        } catch {
            for lease in taken { _ = try? await leases.release(lease) }
            throw error
        }
        if !refused.isEmpty {
            for lease in taken { _ = try? await leases.release(lease) }
            let holders = Dictionary(
                (try? await leases.list())?.map { ($0.name, $0.owner) } ?? [], uniquingKeysWith: { first, _ in first })
            throw LeasesHeldElsewhere(held: refused.map { ($0, holders[$0]) })
        }
        self.leases = leases
        self.held = taken
        self.ttl = settings.leaseTTL
        self.logger = logger
        let byName = Dictionary(uniqueKeysWithValues: taken.map { ($0.name, $0.fence) })
        targetFences = Dictionary(
            uniqueKeysWithValues: targets.compactMap { name in byName["target:" + name].map { (name, $0) } })
        sinkFences = Dictionary(
            uniqueKeysWithValues: sinks.compactMap { name in byName["sink:" + name].map { (name, $0) } })
    }

    /// Renews every TTL/3 until graceful shutdown (the group shuts this down after the watchers and the
    /// dispatcher), then releases every lease, which NOTIFYs the replicas to take them at once.
    func run() async throws {
        let interval = ttl / 3
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            guard !Task.isShuttingDownGracefully && !Task.isCancelled else { break }
            do {
                let renewed = try await leases.renew(held, ttl: ttl)
                for lease in held where !renewed.contains(lease.name) {
                    logger.error("--once: lost the lease \(lease.name); its remaining writes will be refused")
                }
            } catch {
                logger.warning("--once: cannot renew the leases: \(error)")
            }
        }
        for lease in held { _ = try? await leases.release(lease) }
    }
}

/// `--once` found leases held by running replicas: one line naming them, and what to do.
package struct LeasesHeldElsewhere: Error, CustomStringConvertible {
    package var held: [(name: String, owner: String?)]

    package var description: String {
        let names = held.map { name, owner in owner.map { "\(name) (held by \($0))" } ?? name }
        return "--once: \(names.joined(separator: ", ")) \(held.count == 1 ? "is" : "are") held by a running"
            + " replica, which polls and delivers it already; stop the replicas first, or leave it to them"
    }
}
