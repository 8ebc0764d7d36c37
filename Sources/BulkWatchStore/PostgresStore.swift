package import BulkWatchDetect
import BulkWatchSupport
package import Foundation
package import Logging
package import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The replicated ``Store`` (DESIGN.md §8): one PostgreSQL database shared by any number of replicas.
///
/// It keeps the semantics of ``SQLiteStore`` method for method (the store suite runs against both),
/// and adds what sharing needs:
/// - **Sequences in commit order.** The last number assigned lives in the single `journal` row; a
///   commit with events bumps it with `UPDATE … RETURNING` inside its transaction, so the row lock
///   orders committers and a later commit always gets higher numbers. A `bigserial` would not do:
///   two transactions may commit in the opposite order of their numbers, and a reader already past
///   the larger one would never see the smaller.
/// - **Fencing.** A write with a lease fence first checks, in the same transaction and with the lease
///   row locked `FOR SHARE` (so nobody can take the lease until the write committed), that the lease
///   still has that owner and epoch and has not expired by the database's clock; otherwise it throws
///   ``FencedOut`` and writes nothing. ``StoreFence/exclusive`` skips the check: it is accepted only
///   when the store was opened with `acceptsExclusive` (one replica, the default), because two
///   replicas writing as "exclusive" would both poll and deliver.
/// - **Leases** themselves: ``leases``.
///
/// The store owns a connection pool that must be running while it is used: run the store (it is a
/// `Service`, for a `ServiceGroup`, or await ``run()`` in a child task) before the first call, and
/// call ``migrate()`` once before the others (``StoreLocation/withStore(logger:exclusive:_:)`` does both).
package final class PostgresStore: Store, Service {
    /// The connection URL without any password.
    package let location: String
    package let client: PostgresClient
    let logger: Logger
    private let settings: PostgresSettings
    private let acceptsExclusive: Bool
    /// Per target: bytes of the image and of the deltas after it (when to compact), and the last delta
    /// this process wrote or read (what a new image may claim to include).
    private let sizes = Mutex<[String: (image: Int, deltas: Int, lastDelta: Int64)]>([:])

    /// Prepares a store for the database at `settings` (no connection is made until it runs).
    /// `acceptsExclusive`: whether ``StoreFence/exclusive`` writes are allowed (a single replica).
    package init(settings: PostgresSettings, acceptsExclusive: Bool = true, logger: Logger) {
        location = settings.description
        self.settings = settings
        self.logger = logger
        self.acceptsExclusive = acceptsExclusive
        client = PostgresClient(configuration: settings.clientConfiguration, backgroundLogger: logger)
    }

    /// Runs the connection pool until the task is cancelled or a graceful shutdown is requested.
    package func run() async {
        await client.run()
    }

    /// Brings the schema up to date; safe while other replicas do the same (``PostgresSchema``).
    ///
    /// First connects once outside the pool: the pool retries a refused login or an unreachable server
    /// for a long time and then reports only that it gave up, while this probe fails at once with the
    /// server's reason (a wrong password, a missing database).
    package func migrate() async throws {
        try await mapped {
            let connection = try await PostgresConnection.connect(
                on: PostgresConnection.defaultEventLoopGroup.any(),
                configuration: try settings.connectionConfiguration(),
                id: 0, logger: logger
            ).get()
            try? await connection.close()
            try await PostgresSchema.migrate(client, logger: logger)
        }
    }

    package func journalID() async throws -> String {
        try await one("SELECT journal_id FROM journal", String.self) ?? ""
    }

    // MARK: - Queries

    /// Runs `body` in one transaction on one pooled connection; any error rolls it back and is rethrown
    /// as is (``FencedOut``), database errors as one-line ``JournalError``s.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await mapped {
            try await client.withConnection { connection in
                try await connection.query("BEGIN", logger: logger)
                do {
                    let value = try await body(connection)
                    try await connection.query("COMMIT", logger: logger)
                    return value
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
    }

    /// Turns PostgreSQL errors (whose description hides everything) into one line with the server's message.
    func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError {
            throw JournalError(description: "PostgreSQL state \(location): \(Self.describe(error))")
        } catch let error as FencedOut {
            throw error
        } catch let error as JournalError {
            throw error
        } catch let error as CancellationError {
            throw error
        } catch {
            // The pool's and NIO's errors (a tripped circuit breaker, a refused connection, TLS).
            let text = "\(error)".replacingOccurrences(of: "\n", with: " ")
            throw JournalError(description: "PostgreSQL state \(location): \(text)")
        }
    }

    static func describe(_ error: PSQLError) -> String {
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return (message + state).replacingOccurrences(of: "\n", with: " ")
        }
        return "\(error.code)"
    }

    private func one<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, _ type: T.Type) async throws -> T? {
        try await mapped {
            for try await value in try await client.query(query, logger: logger).decode(T.self) { return value }
            return nil
        }
    }

    /// Checks `fence` inside the caller's transaction, keeping the lease row locked until it ends.
    private func check(_ fence: StoreFence, on connection: PostgresConnection) async throws {
        guard let lease = fence.lease else {
            guard acceptsExclusive else { throw FencedOut(fence: fence) }
            return
        }
        let rows = try await connection.query(
            """
            SELECT 1 FROM leases WHERE name = \(lease) AND owner = \(fence.owner) AND epoch = \(fence.epoch)
                AND expires_at > clock_timestamp() FOR SHARE
            """, logger: logger)
        for try await _ in rows { return }
        throw FencedOut(fence: fence)
    }

    // MARK: - Snapshot

    package func loadSnapshot(target: String) async throws -> StoredSnapshot {
        let (stored, imageBytes, deltaBytes, lastDelta) = try await transaction {
            connection -> (StoredSnapshot, Int, Int, Int64) in
            var through: Int64 = 0
            var image: [UInt8]?
            for try await (delta, bytes) in try await connection.query(
                "SELECT through_delta, image FROM snapshot_images WHERE target = \(target)", logger: logger
            ).decode((Int64, Data).self) {
                through = delta
                image = Array(bytes)
            }
            var deltas: [[UInt8]] = []
            var deltaBytes = 0
            var lastDelta = through
            for try await (id, bytes) in try await connection.query(
                "SELECT id, delta FROM snapshot_deltas WHERE target = \(target) AND id > \(through) ORDER BY id",
                logger: logger
            ).decode((Int64, Data).self) {
                deltaBytes += bytes.count
                deltas.append(Array(bytes))
                lastDelta = id
            }
            var polls: Int64 = 0
            for try await count in try await connection.query(
                "SELECT successful_polls FROM targets WHERE target = \(target)", logger: logger
            ).decode(Int64.self) {
                polls = count
            }
            let snapshot = try SnapshotCodec.snapshot(image: image, deltas: deltas)
            return (
                StoredSnapshot(snapshot: snapshot, hasBaseline: polls > 0), image?.count ?? 0, deltaBytes, lastDelta
            )
        }
        sizes.withLock { $0[target] = (imageBytes, deltaBytes, lastDelta) }
        return stored
    }

    /// Commits one poll: the fence check, the target's counters (locking its row, which orders its
    /// deltas), one delta, and the events numbered under the journal row's lock, in one transaction.
    /// Bytes of `target`'s image and of the deltas after it, as of the last load, commit or fold (nil before
    /// any): what decides when ``maintain(target:snapshot:)`` folds.
    package func snapshotFootprint(target: String) -> (image: Int, deltas: Int)? {
        sizes.withLock { $0[target].map { ($0.image, $0.deltas) } }
    }

    package func commit(_ poll: PollCommit, fence: StoreFence) async throws -> CommitSummary {
        let outcome = poll.outcome
        let guarded = outcome.removalGuardChanged ? poll.snapshot.removalGuardedIDs : nil
        let time = RFC3339.millisecondsUTC(poll.detectedAt)
        let target = poll.target
        let source = poll.source
        let (firstSequence, deltaID, deltaBytes) = try await transaction { connection -> (Int64, Int64, Int) in
            try await check(fence, on: connection)
            try await connection.query(
                """
                INSERT INTO targets (target, successful_polls, last_success) VALUES (\(target), 1, \(time))
                ON CONFLICT (target) DO UPDATE SET successful_polls = targets.successful_polls + 1,
                    last_success = excluded.last_success
                """, logger: logger)
            // In pieces, as the SQLite store writes them: a first poll's whole delta is ~200 MB at 1M items.
            var deltaID: Int64 = 0
            var deltaBytes = 0
            for rows in SnapshotCodec.deltaPieces(of: outcome, snapshot: poll.snapshot) {
                let piece = Data(
                    SnapshotCodec.delta(of: outcome, snapshot: poll.snapshot, rows: rows, guarded: guarded))
                deltaBytes += piece.count
                for try await id in try await connection.query(
                    "INSERT INTO snapshot_deltas (target, delta) VALUES (\(target), \(piece)) RETURNING id",
                    logger: logger
                ).decode(Int64.self) {
                    deltaID = id
                }
            }
            guard !outcome.changes.isEmpty else { return (0, deltaID, deltaBytes) }
            let incarnations = try await self.incarnations(of: outcome.changes, target: target, at: time, connection)
            // Taken last, so that committers of other targets wait on it as briefly as possible.
            let count = Int64(outcome.changes.count)
            var last: Int64 = 0
            for try await value in try await connection.query(
                "UPDATE journal SET last_sequence = last_sequence + \(count) RETURNING last_sequence", logger: logger
            ).decode(Int64.self) {
                last = value
            }
            let first = last - count + 1
            var next = first
            let eventSource = CloudEventEncoder.Source(source)
            // One statement per 4,096 events: a first poll of 1M items held every event (~600 MB) for one
            // statement of them all.
            var batch: [JournalEvent] = []
            batch.reserveCapacity(min(outcome.changes.count, Self.insertBatch))
            for (change, incarnation) in zip(outcome.changes, incarnations) {
                batch.append(
                    CloudEventEncoder.encode(
                        change, source: eventSource, sequence: next, time: time, incarnation: incarnation))
                next += 1
                if batch.count == Self.insertBatch {
                    try await insert(batch, target: target, connection)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            if !batch.isEmpty { try await insert(batch, target: target, connection) }
            return (first, deltaID, deltaBytes)
        }
        sizes.withLock { sizes in
            var entry = sizes[target] ?? (0, 0, 0)
            entry.deltas += deltaBytes
            entry.lastDelta = deltaID
            sizes[target] = entry
        }
        return CommitSummary(outcome, firstSequence: firstSequence)
    }

    /// Events per insert statement of a commit.
    private static let insertBatch = 4_096

    /// Inserts `events` in one statement (arrays unnested), whatever their number.
    private func insert(_ events: [JournalEvent], target: String, _ connection: PostgresConnection) async throws {
        let sequences = events.map(\.sequence)
        let ids = events.map(\.id)
        let types = events.map(\.type)
        let subjects = events.map(\.subject)
        let times = events.map(\.time)
        let bodies = events.map { ByteBuffer(bytes: $0.body) }
        try await connection.query(
            """
            INSERT INTO events (seq, id, target, type, subject, time, body)
            SELECT seq, id, \(target), type, subject, time, body
            FROM unnest(\(sequences)::bigint[], \(ids)::text[], \(types)::text[], \(subjects)::text[],
                \(times)::text[], \(bodies)::bytea[]) AS e(seq, id, type, subject, time, body)
            """, logger: logger)
    }

    /// Which life of its operation each change belongs to (the rules of ``SQLiteStore``'s incarnation
    /// book): one read of the rows of the changed operations, one batched write of the new states.
    private func incarnations(
        of changes: [DetectedChange], target: String, at time: String, _ connection: PostgresConnection
    ) async throws -> [Int64] {
        let bulkIDs = Array(Set(changes.map(\.item.bulkId)))
        var recorded: [String: Int64] = [:]
        for try await (bulkID, incarnation) in try await connection.query(
            """
            SELECT bulk_id, incarnation FROM incarnations WHERE target = \(target) AND bulk_id = ANY(\(bulkIDs)::text[])
            """, logger: logger
        ).decode((String, Int64).self) {
            recorded[bulkID] = incarnation
        }
        var writes: [String: (incarnation: Int64, expiredAt: String?)] = [:]
        var result: [Int64] = []
        result.reserveCapacity(changes.count)
        for change in changes {
            let bulkID = change.item.bulkId
            switch change.kind {
            case .created:
                if let previous = recorded[bulkID] {
                    recorded[bulkID] = previous + 1
                    writes[bulkID] = (previous + 1, nil)
                    result.append(previous + 1)
                } else {
                    result.append(0)
                }
            case .changed:
                result.append(recorded[bulkID] ?? 0)
            case .expired:
                let current = recorded[bulkID] ?? 0
                recorded[bulkID] = current
                writes[bulkID] = (current, time)
                result.append(current)
            }
        }
        guard !writes.isEmpty else { return result }
        let ids = Array(writes.keys)
        let numbers = ids.map { writes[$0]!.incarnation }
        // '' stands for "not expired" in the array (unnest cannot carry an optional element here).
        let expired = ids.map { writes[$0]!.expiredAt ?? "" }
        try await connection.query(
            """
            INSERT INTO incarnations (target, bulk_id, incarnation, expired_at)
            SELECT \(target), bulk_id, incarnation, NULLIF(expired_at, '')
            FROM unnest(\(ids)::text[], \(numbers)::bigint[], \(expired)::text[]) AS i(bulk_id, incarnation, expired_at)
            ON CONFLICT (target, bulk_id) DO UPDATE SET incarnation = excluded.incarnation,
                expired_at = excluded.expired_at
            """, logger: logger)
        return result
    }

    /// Folds `target`'s deltas into a new image once they are larger than half the image (at least
    /// 1 MiB). Only when the newest delta is still the one this process wrote or read last (checked
    /// under the target row's lock, which every commit takes): `snapshot` then includes every delta the
    /// image claims, even if another replica owned the target meanwhile.
    package func maintain(target: String, snapshot: Snapshot) async throws {
        let (due, through) = sizes.withLock { sizes -> (Bool, Int64) in
            guard let entry = sizes[target] else { return (false, 0) }
            return (entry.deltas > max(1 << 20, entry.image / 2), entry.lastDelta)
        }
        guard due, through > 0 else { return }
        let image = SnapshotCodec.image(of: snapshot)
        let written = try await transaction { connection -> Bool in
            try await connection.query(
                "SELECT 1 FROM targets WHERE target = \(target) FOR UPDATE", logger: logger)
            for try await newest in try await connection.query(
                "SELECT COALESCE(MAX(id), 0) FROM snapshot_deltas WHERE target = \(target)", logger: logger
            ).decode(Int64.self) where newest != through {
                return false
            }
            try await connection.query(
                """
                INSERT INTO snapshot_images (target, through_delta, image) VALUES (\(target), \(through), \(Data(image)))
                ON CONFLICT (target) DO UPDATE SET through_delta = excluded.through_delta, image = excluded.image
                """, logger: logger)
            try await connection.query(
                "DELETE FROM snapshot_deltas WHERE target = \(target) AND id <= \(through)", logger: logger)
            return true
        }
        if written { sizes.withLock { $0[target] = (image.count, 0, through) } }
    }

    // MARK: - Reading events

    /// The `WHERE` conditions of `filter`, appended with their bindings.
    private static func conditions(_ filter: EventFilter, _ bindings: inout PostgresBindings) -> String {
        var sql = ""
        if let kinds = filter.kinds {
            bindings.append(kinds.map { "bulk.\($0.rawValue)" }.sorted())
            sql += " AND type = ANY($\(bindings.count)::text[])"
        }
        if let subject = filter.subject {
            bindings.append(subject)
            sql += " AND subject = $\(bindings.count)"
        }
        if let targets = filter.targets {
            bindings.append(targets.sorted())
            sql += " AND target = ANY($\(bindings.count)::text[])"
        }
        return sql
    }

    package func events(after: Int64, limit: Int, filter: EventFilter) async throws -> [JournalEvent] {
        var bindings = PostgresBindings()
        bindings.append(after)
        var sql = "SELECT seq, id, type, subject, time, body, target FROM events WHERE seq > $1"
        sql += Self.conditions(filter, &bindings)
        bindings.append(Int64(clamping: limit))
        sql += " ORDER BY seq LIMIT $\(bindings.count)"
        return try await eventRows(PostgresQuery(unsafeSQL: sql, binds: bindings), withTarget: true)
    }

    private func eventRows(_ query: PostgresQuery, withTarget: Bool) async throws -> [JournalEvent] {
        try await mapped {
            var events: [JournalEvent] = []
            for try await (seq, id, type, subject, time, body, target) in try await client.query(
                query, logger: logger
            ).decode((Int64, String, String, String, String, Data, String).self) {
                guard let kind = JournalEvent.Kind(type: type) else { continue }
                var event = JournalEvent(
                    sequence: seq, id: id, kind: kind, subject: subject, time: time, body: Array(body))
                if withTarget { event.target = target }
                events.append(event)
            }
            return events
        }
    }

    package func count(after: Int64, filter: EventFilter) async throws -> Int {
        var bindings = PostgresBindings()
        bindings.append(after)
        let sql = "SELECT COUNT(*) FROM events WHERE seq > $1" + Self.conditions(filter, &bindings)
        return Int(try await one(PostgresQuery(unsafeSQL: sql, binds: bindings), Int64.self) ?? 0)
    }

    package func lastSequence() async throws -> Int64 {
        try await one("SELECT last_sequence FROM journal", Int64.self) ?? 0
    }

    package func event(sequence: Int64) async throws -> JournalEvent? {
        try await eventRows(
            "SELECT seq, id, type, subject, time, body, target FROM events WHERE seq = \(sequence)", withTarget: false
        ).first
    }

    /// A scan, as in SQLite: only operator commands look events up by id.
    package func event(id: String) async throws -> JournalEvent? {
        try await eventRows(
            """
            SELECT seq, id, type, subject, time, body, target FROM events WHERE id = \(id) ORDER BY seq DESC LIMIT 1
            """, withTarget: false
        ).first
    }

    package func routableEvents(after: Int64, limit: Int, targets: Set<String>?) async throws -> [JournalEvent] {
        try await events(after: after, limit: limit, filter: EventFilter(targets: targets))
    }

    /// Numbered like a poll's events; the stable-id check runs under the journal row's lock, so two
    /// writers re-emitting the same event cannot both journal it.
    package func append(operational event: OperationalEvent, target: String, source: String, fence: StoreFence)
        async throws -> JournalEvent?
    {
        try await transaction { connection -> JournalEvent? in
            try await check(fence, on: connection)
            var last: Int64 = 0
            for try await value in try await connection.query(
                "SELECT last_sequence FROM journal FOR UPDATE", logger: logger
            ).decode(Int64.self) {
                last = value
            }
            let stored = event.encoded(source: source, sequence: last + 1)
            for try await _ in try await connection.query(
                "SELECT 1 FROM events WHERE target = \(target) AND type = \(stored.type) AND id = \(stored.id) LIMIT 1",
                logger: logger)
            {
                return nil
            }
            try await insert([stored], target: target, connection)
            try await connection.query("UPDATE journal SET last_sequence = \(stored.sequence)", logger: logger)
            return stored
        }
    }

    package func openOutage(target: String) async throws -> (since: Date, failedAttempts: Int)? {
        let row = try await mapped { () -> (String, Data)? in
            for try await row in try await client.query(
                """
                SELECT type, body FROM events WHERE target = \(target)
                    AND type IN ('bulkwatch.target.failing', 'bulkwatch.target.recovered')
                ORDER BY seq DESC LIMIT 1
                """, logger: logger
            ).decode((String, Data).self) {
                return row
            }
            return nil
        }
        guard let row, row.0 == JournalEvent.Kind.targetFailing.type else { return nil }
        let data = EventFields.object(Array(row.1))?["data"] as? [String: Any]
        guard let since = (data?["since"] as? String).flatMap(Timestamp.instantMillis) else { return nil }
        let attempts = (data?["failedAttempts"] as? Int) ?? 0
        return (Date(timeIntervalSince1970: Double(since) / 1000), attempts)
    }

    // MARK: - Cursors

    package func cursorState(sink: String) async throws -> CursorState? {
        try await mapped {
            for try await (seq, rewound) in try await client.query(
                "SELECT seq, rewound FROM cursors WHERE sink = \(sink)", logger: logger
            ).decode((Int64, Bool).self) {
                return CursorState(sequence: seq, rewound: rewound)
            }
            return nil
        }
    }

    package func recordSinkError(sink: String, message: String) async throws {
        _ = try await transaction { connection in
            try await connection.query(
                """
                INSERT INTO cursors (sink, seq, last_error) VALUES (\(sink), 0, \(message))
                ON CONFLICT (sink) DO UPDATE SET last_error = excluded.last_error
                """, logger: logger)
            return true
        }
    }

    package func advanceCursor(
        sink: String, from expected: Int64, to sequence: Int64, filtered: Int, fence: StoreFence
    ) async throws -> Bool {
        try await transaction { connection in
            try await check(fence, on: connection)
            guard try await compareAndSetCursor(connection, sink: sink, expected: expected, to: sequence) else {
                return false
            }
            if filtered > 0 {
                try await connection.query(
                    "UPDATE cursors SET filtered = filtered + \(Int64(filtered)) WHERE sink = \(sink)", logger: logger)
            }
            return true
        }
    }

    package func filteredCounts() async throws -> [String: Int64] {
        try await mapped {
            var counts: [String: Int64] = [:]
            for try await (sink, filtered) in try await client.query(
                "SELECT sink, filtered FROM cursors", logger: logger
            ).decode((String, Int64).self) {
                counts[sink] = filtered
            }
            return counts
        }
    }

    /// Moves the cursor if it is still `expected` (a missing one counts as 0), with its row locked.
    private func compareAndSetCursor(
        _ connection: PostgresConnection, sink: String, expected: Int64, to sequence: Int64
    )
        async throws -> Bool
    {
        var stored: Int64 = 0
        for try await seq in try await connection.query(
            "SELECT seq FROM cursors WHERE sink = \(sink) FOR UPDATE", logger: logger
        ).decode(Int64.self) {
            stored = seq
        }
        guard stored == expected else { return false }
        try await storeCursor(connection, sink: sink, sequence: sequence)
        return true
    }

    private func storeCursor(_ connection: PostgresConnection, sink: String, sequence: Int64, rewound: Bool = false)
        async throws
    {
        let now = RFC3339.millisecondsUTC(Date())
        try await connection.query(
            """
            INSERT INTO cursors (sink, seq, updated_at, last_error, rewound) VALUES (\(sink), \(sequence), \(now), NULL,
                \(rewound))
            ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at,
                last_error = NULL, rewound = excluded.rewound
            """, logger: logger)
    }

    package func rewindCursor(sink: String, to sequence: Int64) async throws {
        _ = try await transaction { connection in
            try await storeCursor(connection, sink: sink, sequence: sequence, rewound: true)
            return true
        }
    }

    package func markConfiguredSinks(_ names: [String]) async throws {
        _ = try await transaction { connection in
            try await connection.query("UPDATE cursors SET configured = false", logger: logger)
            try await connection.query(
                """
                INSERT INTO cursors (sink, seq, configured) SELECT name, 0, true FROM unnest(\(names)::text[]) AS n(name)
                ON CONFLICT (sink) DO UPDATE SET configured = true
                """, logger: logger)
            return true
        }
    }

    // MARK: - Dead letters

    package func deadLetter(
        sink: String, events: [JournalEvent], reason: String, attempts: Int, cursorFrom expected: Int64,
        fence: StoreFence
    ) async throws -> Bool {
        guard let last = events.last else { return true }
        let now = RFC3339.millisecondsUTC(Date())
        let sequences = events.map(\.sequence)
        let ids = events.map(\.id)
        return try await transaction { connection in
            try await check(fence, on: connection)
            guard try await compareAndSetCursor(connection, sink: sink, expected: expected, to: last.sequence) else {
                return false
            }
            try await connection.query(
                """
                INSERT INTO dead_letters (sink, seq, event_id, reason, attempts, dead_at)
                SELECT \(sink), seq, event_id, \(reason), \(attempts), \(now)
                FROM unnest(\(sequences)::bigint[], \(ids)::text[]) AS d(seq, event_id)
                ON CONFLICT (sink, seq) DO UPDATE SET event_id = excluded.event_id, reason = excluded.reason,
                    attempts = excluded.attempts, dead_at = excluded.dead_at
                """, logger: logger)
            try await connection.query(
                "UPDATE cursors SET last_error = \("dead-lettered: \(reason)") WHERE sink = \(sink)", logger: logger)
            return true
        }
    }

    package func deadLetters(sink: String?) async throws -> [DeadLetter] {
        let query: PostgresQuery = """
            SELECT d.sink, d.seq, d.event_id, d.reason, d.attempts, d.dead_at, e.id, e.type, e.subject, e.time, e.body
            FROM dead_letters d LEFT JOIN events e ON e.seq = d.seq
            WHERE \(sink)::text IS NULL OR d.sink = \(sink)
            ORDER BY d.sink, d.seq
            """
        return try await mapped {
            var letters: [DeadLetter] = []
            for try await row in try await client.query(query, logger: logger) {
                let (sink, seq, eventID, reason, attempts, deadAt, id, type, subject, time, body) = try row.decode(
                    (String, Int64, String, String, Int, String, String?, String?, String?, String?, Data?).self)
                var event: JournalEvent?
                if let id, let type, let kind = JournalEvent.Kind(type: type), let subject, let time, let body {
                    event = JournalEvent(
                        sequence: seq, id: id, kind: kind, subject: subject, time: time, body: Array(body))
                }
                letters.append(
                    DeadLetter(
                        sink: sink, sequence: seq, eventID: eventID, reason: reason, attempts: attempts,
                        deadAt: deadAt, event: event))
            }
            return letters
        }
    }

    @discardableResult
    package func removeDeadLetter(sink: String, sequence: Int64) async throws -> Bool {
        try await transaction { connection in
            for try await _ in try await connection.query(
                "DELETE FROM dead_letters WHERE sink = \(sink) AND seq = \(sequence) RETURNING seq", logger: logger)
            {
                return true
            }
            return false
        }
    }

    // MARK: - Sink status

    package func sinkStatuses() async throws -> [SinkStatus] {
        try await transaction { connection in
            var last: Int64 = 0
            for try await value in try await connection.query("SELECT last_sequence FROM journal", logger: logger)
                .decode(Int64.self)
            {
                last = value
            }
            var statuses: [SinkStatus] = []
            for try await (sink, cursor, lastError, updatedAt, dead, configured) in try await connection.query(
                """
                SELECT s.sink, c.seq, c.last_error, c.updated_at,
                    (SELECT COUNT(*) FROM dead_letters d WHERE d.sink = s.sink), COALESCE(c.configured, false)
                FROM (SELECT sink FROM cursors UNION SELECT sink FROM dead_letters) s
                LEFT JOIN cursors c ON c.sink = s.sink
                ORDER BY s.sink
                """, logger: logger
            ).decode((String, Int64?, String?, String?, Int64, Bool).self) {
                let cursor = cursor ?? 0
                statuses.append(
                    SinkStatus(
                        sink: sink, cursor: cursor, lag: max(0, last - cursor), lastError: lastError,
                        deadLetters: Int(dead), updatedAt: updatedAt, stale: !configured))
            }
            return statuses
        }
    }

    // MARK: - Retention

    @discardableResult
    package func prune(target: String, olderThan cutoff: Date, sinks: [String], incarnationCutoff: Date? = nil)
        async throws -> Int
    {
        let cutoffText = RFC3339.millisecondsUTC(cutoff)
        let incarnationText = incarnationCutoff.map(RFC3339.millisecondsUTC)
        return try await transaction { connection in
            var delivered = Int64.max
            if !sinks.isEmpty {
                var cursors: [String: Int64] = [:]
                for try await (sink, seq) in try await connection.query(
                    "SELECT sink, seq FROM cursors WHERE sink = ANY(\(sinks)::text[])", logger: logger
                ).decode((String, Int64).self) {
                    cursors[sink] = seq
                }
                delivered = sinks.map { cursors[$0] ?? 0 }.min() ?? Int64.max
            }
            var removed = 0
            for try await _ in try await connection.query(
                """
                DELETE FROM events WHERE target = \(target) AND time < \(cutoffText) AND seq <= \(delivered)
                    AND seq NOT IN (SELECT seq FROM dead_letters)
                RETURNING seq
                """, logger: logger)
            {
                removed += 1
            }
            if let incarnationText {
                try await connection.query(
                    """
                    DELETE FROM incarnations WHERE target = \(target) AND expired_at IS NOT NULL
                        AND expired_at < \(incarnationText)
                    """, logger: logger)
            }
            return removed
        }
    }
}
