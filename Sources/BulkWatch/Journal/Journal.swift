public import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#endif

/// Why the journal could not be opened or written. One line, with the path.
public struct JournalError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// The durable spine of bulkwatch (DESIGN.md §1): the last snapshot per target, the event
/// journal, per-sink cursors and dead letters, in one SQLite file.
///
/// A poll's events and the snapshot delta are committed in **one transaction** (WAL,
/// `synchronous=FULL`), so after a crash either both are there or neither is: an event can be
/// neither lost nor emitted twice. Sinks read the journal concurrently through WAL readers.
/// The file (and SQLite's `-wal`/`-shm`, which inherit its mode) is created 0600.
public final class Journal: Sendable {
    public let path: String
    private let pool: DatabasePool

    /// Opens or creates the journal, migrating it to the current schema.
    public init(path: String) throws {
        try StateFileCheck.verify(path)
        self.path = path
        try Self.createPrivately(path)
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // 16 MiB of page cache: event ids are random, so their index pages are touched all
            // over; the 2 MiB default made a steady 100k-item commit mostly cache misses.
            try db.execute(sql: "PRAGMA cache_size = -16384")
            // No checkpoint inside a poll's commit: the watcher calls checkpoint() after the
            // commit, once the events are on their way to the sinks.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
        }
        configuration.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw JournalError(description: "cannot open state database \(path): \(error.message ?? "\(error)")")
        }
    }

    /// Creates the file with mode 0600 before SQLite does, so it never exists with looser rights.
    private static func createPrivately(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw JournalError(description: "cannot open state database \(path): \(String(cString: strerror(errno)))")
        }
        close(fd)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE snapshot (
                        target TEXT NOT NULL,
                        bulk_id TEXT NOT NULL,
                        status TEXT,
                        created_on TEXT,
                        updated_on TEXT,
                        raw BLOB NOT NULL,
                        absent_polls INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (target, bulk_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE targets (
                        target TEXT PRIMARY KEY,
                        successful_polls INTEGER NOT NULL DEFAULT 0,
                        last_success TEXT,
                        removal_guarded TEXT NOT NULL DEFAULT ''
                    );
                    CREATE TABLE events (
                        seq INTEGER PRIMARY KEY,
                        id TEXT NOT NULL UNIQUE,
                        target TEXT NOT NULL,
                        type TEXT NOT NULL,
                        subject TEXT NOT NULL,
                        time TEXT NOT NULL,
                        body BLOB NOT NULL
                    );
                    CREATE INDEX events_subject ON events(subject);
                    CREATE TABLE cursors (
                        sink TEXT PRIMARY KEY,
                        seq INTEGER NOT NULL,
                        updated_at TEXT,
                        last_error TEXT
                    );
                    CREATE TABLE dead_letters (
                        sink TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        event_id TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        attempts INTEGER NOT NULL,
                        dead_at TEXT NOT NULL,
                        PRIMARY KEY (sink, seq)
                    );
                    """)
        }
        return migrator
    }

    // MARK: - Snapshot

    /// The stored snapshot of `target` and whether a successful poll was ever recorded for it.
    public func loadSnapshot(target: String) throws -> (snapshot: Snapshot, hasBaseline: Bool) {
        try pool.read { db in
            var tracked: [TrackedItem] = []
            let rows = try Row.fetchCursor(
                db, sql: "SELECT bulk_id, status, created_on, updated_on, raw, absent_polls FROM snapshot WHERE target = ?",
                arguments: [target])
            while let row = try rows.next() {
                let raw: Data = row[4]
                let item = BulkItem(
                    bulkId: row[0], status: row[1], createdOn: row[2], updatedOn: row[3], rawJSON: Array(raw)[...])
                tracked.append(TrackedItem(item: item, absentPolls: row[5]))
            }
            let row = try Row.fetchOne(
                db, sql: "SELECT successful_polls, removal_guarded FROM targets WHERE target = ?", arguments: [target])
            let polls: Int = row?[0] ?? 0
            let guardedText: String = row?[1] ?? ""
            // The guard set is small and rarely written: a JSON array in one column is enough.
            let guarded = (try? JSONDecoder().decode([String].self, from: Data(guardedText.utf8))) ?? []
            return (Snapshot(tracked: tracked, removalGuarded: guarded), polls > 0)
        }
    }

    /// Commits one successful poll: the snapshot delta and the new events, atomically.
    /// Returns the events as stored (with their sequence numbers). An event whose stable id is
    /// already journaled (the same change seen again) is not stored twice.
    public func commit(
        target: String, source: String, outcome: DiffOutcome, snapshot: Snapshot, detectedAt: Date
    ) throws -> [JournalEvent] {
        let guarded: String? =
            outcome.removalGuardChanged
            ? String(decoding: (try? JSONEncoder().encode(snapshot.removalGuardedIDs)) ?? Data("[]".utf8), as: UTF8.self)
            : nil
        let time = RFC3339.millisecondsUTC(detectedAt)
        return try pool.write { db in
            let upsert = try db.cachedStatement(
                sql: """
                    INSERT INTO snapshot (target, bulk_id, status, created_on, updated_on, raw, absent_polls)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (target, bulk_id) DO UPDATE SET status = excluded.status,
                        created_on = excluded.created_on, updated_on = excluded.updated_on, raw = excluded.raw,
                        absent_polls = excluded.absent_polls
                    """)
            for tracked in outcome.upserted {
                let item = tracked.item
                try upsert.execute(arguments: [
                    target, item.bulkId, item.status, item.createdOn, item.updatedOn,
                    item.rawJSON.withUnsafeBytes { Data($0) }, tracked.absentPolls,
                ])
            }
            let delete = try db.cachedStatement(sql: "DELETE FROM snapshot WHERE target = ? AND bulk_id = ?")
            for bulkId in outcome.removed {
                try delete.execute(arguments: [target, bulkId])
            }
            try db.execute(
                sql: """
                    INSERT INTO targets (target, successful_polls, last_success) VALUES (?, 1, ?)
                    ON CONFLICT (target) DO UPDATE SET successful_polls = successful_polls + 1,
                        last_success = excluded.last_success
                    """, arguments: [target, time])
            if let guarded {
                try db.execute(
                    sql: "UPDATE targets SET removal_guarded = ? WHERE target = ?", arguments: [guarded, target])
            }

            var next = (try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0) + 1
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO events (seq, id, target, type, subject, time, body) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO NOTHING
                    """)
            var stored: [JournalEvent] = []
            stored.reserveCapacity(outcome.changes.count)
            for change in outcome.changes {
                let event = CloudEventEncoder.encode(change, source: source, sequence: next, time: time)
                try insert.execute(arguments: [
                    event.sequence, event.id, target, event.type, event.subject, event.time, Data(event.body),
                ])
                if db.changesCount > 0 {
                    stored.append(event)
                    next += 1
                }
            }
            return stored
        }
    }

    // MARK: - Reading events

    /// A filter for ``events(after:limit:filter:)``; nil fields match everything.
    public struct EventFilter: Sendable {
        public var kinds: Set<DetectedChange.Kind>?
        public var subject: String?
        /// Only events of these targets (a sink configured for some targets only).
        public var targets: Set<String>?

        public init(kinds: Set<DetectedChange.Kind>? = nil, subject: String? = nil, targets: Set<String>? = nil) {
            self.kinds = kinds
            self.subject = subject
            self.targets = targets
        }

        fileprivate func appendConditions(to sql: inout String, _ arguments: inout StatementArguments) {
            if let kinds {
                sql += " AND type IN (\(kinds.map { _ in "?" }.joined(separator: ",")))"
                for kind in kinds { _ = arguments.append(contentsOf: ["bulk.\(kind.rawValue)"]) }
            }
            if let subject {
                sql += " AND subject = ?"
                _ = arguments.append(contentsOf: [subject])
            }
            if let targets {
                sql += " AND target IN (\(targets.map { _ in "?" }.joined(separator: ",")))"
                for target in targets.sorted() { _ = arguments.append(contentsOf: [target]) }
            }
        }
    }

    /// Events with sequence greater than `after`, ascending, at most `limit`.
    public func events(after: Int64, limit: Int = 1000, filter: EventFilter = EventFilter()) throws -> [JournalEvent] {
        try pool.read { db in
            var sql = "SELECT seq, id, type, subject, time, body FROM events WHERE seq > ?"
            var arguments: StatementArguments = [after]
            filter.appendConditions(to: &sql, &arguments)
            sql += " ORDER BY seq LIMIT ?"
            _ = arguments.append(contentsOf: [limit])
            return try Row.fetchAll(db, sql: sql, arguments: arguments).compactMap(Self.event(from:))
        }
    }

    private static func event(from row: Row) -> JournalEvent? {
        let type: String = row[2]
        guard let kind = DetectedChange.Kind(rawValue: String(type.dropFirst("bulk.".count))) else { return nil }
        let body: Data = row[5]
        return JournalEvent(sequence: row[0], id: row[1], kind: kind, subject: row[3], time: row[4], body: Array(body))
    }

    /// How many events after `after` match `filter`: a sink's lag, for metrics.
    public func count(after: Int64, filter: EventFilter = EventFilter()) throws -> Int {
        try pool.read { db in
            var sql = "SELECT COUNT(*) FROM events WHERE seq > ?"
            var arguments: StatementArguments = [after]
            filter.appendConditions(to: &sql, &arguments)
            return try Int.fetchOne(db, sql: sql, arguments: arguments) ?? 0
        }
    }

    /// The highest sequence journaled so far (0 when empty).
    public func lastSequence() throws -> Int64 {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0 }
    }

    /// Every event in order (tests and `events` command).
    public func allEvents() throws -> [JournalEvent] {
        try events(after: 0, limit: Int.max)
    }

    // MARK: - Cursors

    /// The last sequence `sink` has delivered, or nil when the sink never ran.
    public func cursor(sink: String) throws -> Int64? {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT seq FROM cursors WHERE sink = ?", arguments: [sink]) }
    }

    /// Records that `sink` delivered everything up to `sequence`.
    public func advanceCursor(sink: String, to sequence: Int64) throws {
        try writeCursor { db in try Self.storeCursor(db, sink: sink, sequence: sequence) }
    }

    /// Remembers the last delivery problem of `sink` (shown by operator commands).
    public func recordSinkError(sink: String, message: String) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO cursors (sink, seq, last_error) VALUES (?, 0, ?)
                    ON CONFLICT (sink) DO UPDATE SET last_error = excluded.last_error
                    """, arguments: [sink, message])
        }
    }

    /// Moves `sink`'s cursor from `expected` to `sequence` only if nobody else moved it meanwhile
    /// (`bulkwatch redeliver --since` rewinds it under a running dispatcher). A missing row counts
    /// as 0. Returns false when the stored cursor was not `expected`: the caller re-reads it.
    public func advanceCursor(sink: String, from expected: Int64, to sequence: Int64) throws -> Bool {
        try writeCursor { db in
            try Self.compareAndSetCursor(db, sink: sink, expected: expected, to: sequence)
        }
    }

    private static func compareAndSetCursor(_ db: Database, sink: String, expected: Int64, to sequence: Int64) throws
        -> Bool
    {
        let stored = try Int64.fetchOne(db, sql: "SELECT seq FROM cursors WHERE sink = ?", arguments: [sink]) ?? 0
        guard stored == expected else { return false }
        try storeCursor(db, sink: sink, sequence: sequence)
        return true
    }

    private static func storeCursor(_ db: Database, sink: String, sequence: Int64) throws {
        try db.execute(
            sql: """
                INSERT INTO cursors (sink, seq, updated_at, last_error) VALUES (?, ?, ?, NULL)
                ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at,
                    last_error = NULL
                """, arguments: [sink, sequence, RFC3339.millisecondsUTC(Date())])
    }

    /// Runs a cursor-only write with `synchronous=NORMAL`: still atomic and crash-safe (WAL), but
    /// without an fsync per delivered event. A power cut can only lose the newest cursor moves,
    /// which means re-delivering those events with their same stable ids (at-least-once, as
    /// DESIGN.md §1 promises); events and snapshots keep `synchronous=FULL`.
    private func writeCursor<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            defer { try? db.execute(sql: "PRAGMA synchronous = FULL") }
            var result: T?
            try db.inTransaction {
                result = try body(db)
                return .commit
            }
            return result!
        }
    }

    /// Sets `sink`'s cursor unconditionally and clears its last error (operator replay:
    /// `bulkwatch redeliver --since`). The sink re-delivers every event after `sequence`.
    public func setCursor(sink: String, to sequence: Int64) throws {
        try advanceCursor(sink: sink, to: sequence)
    }

    // MARK: - Dead letters

    /// An event a sink gave up on (DESIGN.md §5): kept, listed, re-sendable.
    public struct DeadLetter: Sendable, Equatable {
        public var sink: String
        public var sequence: Int64
        public var eventID: String
        public var reason: String
        public var attempts: Int
        /// RFC 3339 UTC, when it was dead-lettered.
        public var deadAt: String
        /// The journaled event, nil only if it was removed from the journal by hand.
        public var event: JournalEvent?
    }

    /// Records `events` as dead letters of `sink` and moves its cursor past them, in one
    /// transaction, if the cursor is still `expected` (see ``advanceCursor(sink:from:to:)``).
    public func deadLetter(
        sink: String, events: [JournalEvent], reason: String, attempts: Int, cursorFrom expected: Int64
    ) throws -> Bool {
        guard let last = events.last else { return true }
        let now = RFC3339.millisecondsUTC(Date())
        return try pool.write { db in
            guard try Self.compareAndSetCursor(db, sink: sink, expected: expected, to: last.sequence) else {
                return false
            }
            for event in events {
                try db.execute(
                    sql: """
                        INSERT OR REPLACE INTO dead_letters (sink, seq, event_id, reason, attempts, dead_at)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """, arguments: [sink, event.sequence, event.id, reason, attempts, now])
            }
            try db.execute(
                sql: "UPDATE cursors SET last_error = ? WHERE sink = ?",
                arguments: ["dead-lettered: \(reason)", sink])
            return true
        }
    }

    /// Dead letters, oldest first; only `sink`'s when given.
    public func deadLetters(sink: String? = nil) throws -> [DeadLetter] {
        try pool.read { db in
            var sql = """
                SELECT d.sink, d.seq, d.event_id, d.reason, d.attempts, d.dead_at, e.id, e.type, e.subject, e.time,
                    e.body
                FROM dead_letters d LEFT JOIN events e ON e.seq = d.seq
                """
            var arguments: StatementArguments = []
            if let sink {
                sql += " WHERE d.sink = ?"
                arguments = [sink]
            }
            sql += " ORDER BY d.sink, d.seq"
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                var event: JournalEvent?
                if let id: String = row[6], let type: String = row[7],
                    let kind = DetectedChange.Kind(rawValue: String(type.dropFirst("bulk.".count))),
                    let body: Data = row[10]
                {
                    event = JournalEvent(
                        sequence: row[1], id: id, kind: kind, subject: row[8], time: row[9], body: Array(body))
                }
                return DeadLetter(
                    sink: row[0], sequence: row[1], eventID: row[2], reason: row[3], attempts: row[4],
                    deadAt: row[5], event: event)
            }
        }
    }

    /// Forgets one dead letter (after it was re-sent successfully). Returns whether it existed.
    @discardableResult
    public func removeDeadLetter(sink: String, sequence: Int64) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM dead_letters WHERE sink = ? AND seq = ?", arguments: [sink, sequence])
            return db.changesCount > 0
        }
    }

    /// The journaled event with CloudEvents id `id`, if still retained.
    public func event(id: String) throws -> JournalEvent? {
        try pool.read { db in
            try Row.fetchOne(
                db, sql: "SELECT seq, id, type, subject, time, body FROM events WHERE id = ?", arguments: [id]
            ).flatMap(Self.event(from:))
        }
    }

    // MARK: - Sink status

    /// What `bulkwatch deliveries` shows for one sink.
    public struct SinkStatus: Sendable, Equatable {
        public var sink: String
        /// Last delivered (or dead-lettered) sequence.
        public var cursor: Int64
        /// Events journaled after the cursor: lastSequence − cursor.
        public var lag: Int64
        public var lastError: String?
        public var deadLetters: Int
        /// RFC 3339 UTC of the last cursor move, if any.
        public var updatedAt: String?
    }

    /// Every sink the journal knows (it has a cursor row or dead letters), by name.
    public func sinkStatuses() throws -> [SinkStatus] {
        try pool.read { db in
            let last = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT s.sink, c.seq, c.last_error, c.updated_at,
                        (SELECT COUNT(*) FROM dead_letters d WHERE d.sink = s.sink)
                    FROM (SELECT sink FROM cursors UNION SELECT sink FROM dead_letters) s
                    LEFT JOIN cursors c ON c.sink = s.sink
                    ORDER BY s.sink
                    """)
            return rows.map { row in
                let cursor: Int64 = row[1] ?? 0
                return SinkStatus(
                    sink: row[0], cursor: cursor, lag: max(0, last - cursor), lastError: row[2], deadLetters: row[4],
                    updatedAt: row[3])
            }
        }
    }

    // MARK: - Retention

    /// Deletes events older than `cutoff` that every known sink has delivered. Returns how many.
    /// An event a sink has not delivered yet is kept whatever its age: retention never loses data.
    @discardableResult
    public func prune(olderThan cutoff: Date) throws -> Int {
        let cutoffText = RFC3339.millisecondsUTC(cutoff)
        return try pool.write { db in
            let delivered = try Int64.fetchOne(db, sql: "SELECT MIN(seq) FROM cursors") ?? 0
            try db.execute(
                sql: "DELETE FROM events WHERE time < ? AND seq <= ? AND seq NOT IN (SELECT seq FROM dead_letters)",
                arguments: [cutoffText, delivered])
            return db.changesCount
        }
    }

    /// Copies committed WAL pages into the database file (passive: never waits for readers), so
    /// the WAL stays small. Called by the watcher between polls, off the commit path.
    public func checkpoint() throws {
        try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.passive) }
    }

    /// `PRAGMA integrity_check` result ("ok" when healthy).
    public func integrityCheck() throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer" }
    }
}
