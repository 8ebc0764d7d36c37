package import Foundation
import PostgresNIO

/// A lease as stored (DESIGN.md §8): who holds `name`, with which epoch, until when (the database's clock).
package struct Lease: Sendable, Equatable, CustomStringConvertible {
    /// `target:NAME` or `sink:NAME`.
    package var name: String
    package var owner: String
    /// Bumped each time the lease changes hands, never reused: what a fenced write proves it still holds.
    package var epoch: Int64
    /// By the database's clock; in the past (or `distantPast`) once it expired or was released.
    package var expiresAt: Date
    /// Whether it was unexpired by the database's clock when read.
    package var held: Bool

    package init(name: String, owner: String, epoch: Int64, expiresAt: Date, held: Bool) {
        self.name = name
        self.owner = owner
        self.epoch = epoch
        self.expiresAt = expiresAt
        self.held = held
    }

    /// The proof a holder passes to every write it makes under this lease.
    package var fence: StoreFence { StoreFence(lease: name, owner: owner, epoch: epoch) }

    package var description: String { "\(name) (owner \(owner), epoch \(epoch)\(held ? "" : ", expired"))" }
}

extension PostgresStore {
    /// The store's leases: one row per lease name in the `leases` table.
    package var leases: Leases { Leases(store: self) }
}

/// Leases with fencing, kept in the shared database (River's leader election, Temporal's range ids).
///
/// Expiry is judged by the database's clock (`clock_timestamp()`), never a replica's, so replicas
/// whose clocks disagree still agree on who holds what. An epoch only grows: a lease released or
/// expired keeps its row, and whoever takes it next gets the next epoch, so a write fenced with an
/// older epoch is refused (``FencedOut``) even when the same owner took the lease again. A write
/// fenced with a lease locks the lease row `FOR SHARE` while it commits, so nobody takes the lease
/// in the middle of it.
///
/// The single-writer SQLite store has no leases: it is fenced by ``StateLock`` and accepts only
/// ``StoreFence/exclusive``.
package struct Leases: Sendable {
    /// The channel a graceful ``release(_:)`` notifies (payload: the lease name), so that the other
    /// replicas take the lease at once instead of after its expiry.
    package static let channel = "bulkwatch_leases"

    let store: PostgresStore

    /// Takes `name` for `owner` for `ttl` if nobody holds it (free, expired or released), bumping its
    /// epoch. Nil when it is held, including by `owner` itself (that one renews instead).
    package func tryAcquire(_ name: String, owner: String, ttl: Duration) async throws -> Lease? {
        let seconds = Self.seconds(ttl)
        return try await store.mapped {
            for try await (epoch, expiresAt) in try await store.client.query(
                """
                INSERT INTO leases (name, owner, epoch, expires_at)
                VALUES (\(name), \(owner), 1, clock_timestamp() + \(seconds) * interval '1 second')
                ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, epoch = leases.epoch + 1,
                    expires_at = excluded.expires_at
                    WHERE leases.expires_at <= clock_timestamp()
                RETURNING epoch, expires_at
                """, logger: store.logger
            ).decode((Int64, Date).self) {
                return Lease(name: name, owner: owner, epoch: epoch, expiresAt: expiresAt, held: true)
            }
            return nil
        }
    }

    /// Extends `lease` by `ttl` from now if it is still held with the same owner and epoch and has not
    /// expired; false when it was lost (the holder must stop writing: its writes are fenced out anyway).
    package func renew(_ lease: Lease, ttl: Duration) async throws -> Bool {
        try await renew([lease], ttl: ttl).contains(lease.name)
    }

    /// Renews every lease of `leases` still held with its owner and epoch, in one statement (a replica
    /// renews its heartbeat and all its work leases every TTL/3: one round trip, whatever their number);
    /// returns the names renewed. A name missing from the result was lost, as ``renew(_:ttl:)`` false.
    package func renew(_ leases: [Lease], ttl: Duration) async throws -> Set<String> {
        guard !leases.isEmpty else { return [] }
        let seconds = Self.seconds(ttl)
        let names = leases.map(\.name)
        let owners = leases.map(\.owner)
        let epochs = leases.map(\.epoch)
        return try await store.mapped {
            var renewed: Set<String> = []
            for try await name in try await store.client.query(
                """
                UPDATE leases SET expires_at = clock_timestamp() + \(seconds) * interval '1 second'
                FROM unnest(\(names)::text[], \(owners)::text[], \(epochs)::bigint[]) AS held(name, owner, epoch)
                WHERE leases.name = held.name AND leases.owner = held.owner AND leases.epoch = held.epoch
                    AND leases.expires_at > clock_timestamp()
                RETURNING leases.name
                """, logger: store.logger
            ).decode(String.self) {
                renewed.insert(name)
            }
            return renewed
        }
    }

    /// Gives `lease` up at once (a graceful stop) and notifies ``channel``; false when it was no longer
    /// held. The row stays, expired, so that the next holder's epoch is higher.
    @discardableResult
    package func release(_ lease: Lease) async throws -> Bool {
        try await store.transaction { connection in
            var released = false
            for try await _ in try await connection.query(
                """
                UPDATE leases SET expires_at = '-infinity'
                WHERE name = \(lease.name) AND owner = \(lease.owner) AND epoch = \(lease.epoch)
                    AND expires_at > clock_timestamp()
                RETURNING epoch
                """, logger: store.logger)
            {
                released = true
            }
            if released {
                try await connection.query("SELECT pg_notify(\(Self.channel), \(lease.name))", logger: store.logger)
            }
            return released
        }
    }

    /// Every lease, by name, held or not (`/metrics`, `bulkwatch deliveries`).
    package func list() async throws -> [Lease] {
        try await store.mapped {
            var leases: [Lease] = []
            for try await (name, owner, epoch, expiresAt, held) in try await store.client.query(
                """
                SELECT name, owner, epoch,
                    CASE WHEN expires_at = '-infinity' THEN 'epoch'::timestamptz ELSE expires_at END,
                    expires_at > clock_timestamp()
                FROM leases ORDER BY name
                """, logger: store.logger
            ).decode((String, String, Int64, Date, Bool).self) {
                leases.append(Lease(name: name, owner: owner, epoch: epoch, expiresAt: expiresAt, held: held))
            }
            return leases
        }
    }

    private static func seconds(_ ttl: Duration) -> Double {
        Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
    }
}
