package import Foundation
import PostgresNIO

/// What a replica reads to decide which leases to take: every lease and the database's clock, read in
/// one statement, so that "expired" and "how long until it expires" are judged on the same clock.
package struct LeaseRoster: Sendable {
    /// `clock_timestamp()` when the roster was read.
    package var now: Date
    package var leases: [Lease]

    package init(now: Date, leases: [Lease]) {
        self.now = now
        self.leases = leases
    }
}

/// A lease just taken, and when the previous holder's lease ran out (nil: it never had a holder, or it
/// was released by a graceful stop), so the new holder can measure how long the target went unpolled.
package struct AcquiredLease: Sendable {
    package var lease: Lease
    package var previousExpiry: Date?
    /// The database's clock at the moment it was taken.
    package var acquiredAt: Date
}

extension Leases {
    /// The channel committers notify after a commit with events, so that every replica's dispatcher
    /// reads the journal at once instead of at its next idle poll.
    package static let journalChannel = "bulkwatch_journal"

    /// ``tryAcquire(_:owner:ttl:)`` that also reports when the previous holder's lease expired.
    ///
    /// The previous expiry is read in the same statement (a CTE sees the row as it was before the
    /// update); a released lease (`-infinity`) reports nil: it was handed over, not failed over.
    package func acquire(_ name: String, owner: String, ttl: Duration) async throws -> AcquiredLease? {
        let seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        return try await store.mapped {
            for try await (epoch, expiresAt, previous, now) in try await store.client.query(
                """
                WITH previous AS (SELECT expires_at FROM leases WHERE name = \(name))
                INSERT INTO leases (name, owner, epoch, expires_at)
                VALUES (\(name), \(owner), 1, clock_timestamp() + \(seconds) * interval '1 second')
                ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, epoch = leases.epoch + 1,
                    expires_at = excluded.expires_at
                    WHERE leases.expires_at <= clock_timestamp()
                RETURNING epoch, expires_at,
                    (SELECT CASE WHEN expires_at = '-infinity' THEN NULL ELSE expires_at END FROM previous),
                    clock_timestamp()
                """, logger: store.logger
            ).decode((Int64, Date, Date?, Date).self) {
                return AcquiredLease(
                    lease: Lease(name: name, owner: owner, epoch: epoch, expiresAt: expiresAt, held: true),
                    previousExpiry: previous, acquiredAt: now)
            }
            return nil
        }
    }

    /// Every lease with the database's clock (``LeaseRoster``).
    package func roster() async throws -> LeaseRoster {
        try await store.mapped {
            var leases: [Lease] = []
            var now = Date()
            for try await (name, owner, epoch, expiresAt, held, clock) in try await store.client.query(
                """
                SELECT name, owner, epoch,
                    CASE WHEN expires_at = '-infinity' THEN 'epoch'::timestamptz ELSE expires_at END,
                    expires_at > clock_timestamp(), clock_timestamp()
                FROM leases ORDER BY name
                """, logger: store.logger
            ).decode((String, String, Int64, Date, Bool, Date).self) {
                leases.append(Lease(name: name, owner: owner, epoch: epoch, expiresAt: expiresAt, held: held))
                now = clock
            }
            if leases.isEmpty {
                for try await clock in try await store.client.query("SELECT clock_timestamp()", logger: store.logger)
                    .decode(Date.self)
                {
                    now = clock
                }
            }
            return LeaseRoster(now: now, leases: leases)
        }
    }

    /// Tells the other replicas that events were committed (``journalChannel``).
    package func announceCommit() async throws {
        try await store.mapped {
            _ = try await store.client.query("SELECT pg_notify(\(Self.journalChannel), '')", logger: store.logger)
        }
    }

    /// Listens on ``channel`` and ``journalChannel`` on one pooled connection and calls `received` with
    /// the channel of each notification, until the connection fails (throws) or the task is cancelled.
    package func listen(_ received: @escaping @Sendable (String) -> Void) async throws {
        try await store.mapped {
            try await store.client.withConnection { connection in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for channel in [Self.channel, Self.journalChannel] {
                        group.addTask {
                            try await connection.listen(on: channel) { notifications in
                                for try await _ in notifications { received(channel) }
                            }
                        }
                    }
                    // The first to end (a broken connection) ends both: the caller listens again.
                    defer { group.cancelAll() }
                    try await group.next()
                }
            }
        }
    }
}
