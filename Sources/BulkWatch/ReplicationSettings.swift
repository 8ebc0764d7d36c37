import BulkWatchDelivery
import BulkWatchStore

#if canImport(Glibc)
    import Glibc
#endif

/// How this process takes part in replicated mode (DESIGN.md §8): its name among the replicas and how
/// long its leases last without renewal.
///
/// The TTL is the failover bound's main term: a dead replica's targets are polled again at most one
/// TTL plus one interval after it died, and a replica cut off from the database stops polling within
/// one TTL. Leases are renewed every third of it, so two renewals may fail before a lease is lost.
package struct ReplicationSettings: Sendable, Equatable {
    package var replicaID: String
    package var leaseTTL: Duration

    package init(replicaID: String? = nil, leaseTTL: Duration = .seconds(15)) {
        self.replicaID = replicaID ?? Self.defaultReplicaID
        self.leaseTTL = leaseTTL
    }

    /// `HOSTNAME-PID`: unique per process on a host, so a restarted replica is a new replica (its
    /// predecessor's leases expire instead of being silently inherited).
    package static var defaultReplicaID: String {
        var name = [CChar](repeating: 0, count: 256)
        let host =
            gethostname(&name, name.count) == 0
            ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "bulkwatch"
        return "\(host)-\(getpid())"
    }

    var renewInterval: Duration { leaseTTL / 3 }
}

/// A sink shared by the dispatchers that a replica starts and stops as the sink's lease comes and goes:
/// everything is forwarded except `close`, which the dispatcher calls at the end of each run (a file
/// sink would be unusable after it). The coordinator closes the real sink once, when the replica stops.
struct RetainedSink: EventSink {
    let base: any EventSink

    var name: String { base.name }
    var preferredBatchSize: Int { base.preferredBatchSize }
    var deliveryPolicy: DeliveryPolicy { base.deliveryPolicy }
    func deliver(_ events: [JournalEvent]) async throws { try await base.deliver(events) }
    func lastDelivered() async throws -> DeliveredMark? { try await base.lastDelivered() }
    func close() async {}
}
