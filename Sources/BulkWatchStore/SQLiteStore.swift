package import BulkWatchDetect
import BulkWatchSupport
package import Foundation
import GRDB
import GRDBSQLite
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Why the state could not be opened or written. One line, with the path.
package struct JournalError: Error, Sendable, CustomStringConvertible {
    package var description: String
}

/// The embedded ``Store``: everything in one SQLite file (DESIGN.md §1), the default.
///
/// A poll's events and its snapshot delta are committed in **one transaction** (WAL,
/// `synchronous=FULL`), so after a crash either both are there or neither is. The commit only
/// appends: its events in blocks of up to 1,024 under their first sequence (``EventBlock``; no secondary
/// index), one delta blob for the snapshot (``SnapshotCodec``), a row per expired or returning operation to
/// the incarnation log, and it updates one row of counters per target. Operational events are rows of
/// `events`, as every event was before blocks; the readers merge both by sequence.
/// ``maintain(target:snapshot:)`` folds the deltas into a new image once they outgrow it, and checkpoints the
/// WAL, between polls.
///
/// All work runs on GRDB's own serial writer queue and reader pool, never on the cooperative
/// thread pool: a 100k-item commit does not stall the tasks that fetch, deliver or serve
/// `/metrics`. Sinks read concurrently through WAL readers. The file (and SQLite's `-wal`/`-shm`,
/// which inherit its mode) is created 0600.
package final class SQLiteStore: Store {
    package let path: String
    package var location: String { path }
    private let pool: DatabasePool
    /// Bytes of each target's image and of the deltas written after it, to decide when to compact.
    private let sizes = Mutex<[String: (image: Int, deltas: Int)]>([:])
    /// The events committed last, so sinks that keep up read them from memory (``RecentEvents``).
    private let recent: Mutex<RecentEvents>
    /// Polls committed since the WAL's last checkpoint, and the bytes of deltas and events they wrote
    /// (``maintain(target:snapshot:)`` checkpoints once either is large enough: ``checkpointEvery``).
    private let sinceCheckpoint = Mutex((commits: 0, bytes: 0))
    private let checkpointBound: (commits: Int, bytes: Int)
    /// Per target, for the hash (``ByteKeys/hash(_:)``) of every bulkId with a row in `incarnation_log`, the
    /// `seq` of the newest such row (loaded once, then kept up by each commit, and dropped for a reload after
    /// a prune). A change whose bulkId's hash is not in it needs no lookup: at 100k items that was 3,000
    /// random index reads per steady commit; one that is in it reads that one row by its key. Hashes, not the
    /// ids: no `String` (a heap block for an id past 15 bytes) per expired operation, for a map that grows
    /// with every expiry the incarnation memory keeps (30 days); a collision is caught by the row's bulkId.
    private let incarnationRows = Mutex<[String: [UInt64: Int64]]>([:])

    /// At most this many bytes of event bodies stay cached after their commit. A steady 100k poll's fit (~1.5 MB);
    /// a steady 1M poll's (~14.5 MB) and a first poll's (~45 MB at 100k) keep their newest events, and the sinks
    /// read the others back (through SQLite's C API, `events(after:)`). Each cached event also holds its id and
    /// subject strings beside the body, so what stays resident is somewhat more than the budget (~1.3x, estimated
    /// from the strings' sizes).
    /// - 64 MiB held a whole first poll of 100k: its peak in `bulkwatch-bench poll` was 152 MB.
    /// - 16 MiB: 113 MB, the delivery 134–169 to 195–212 ms; at 1M, first peak 571 to 497 MB.
    /// - 8 MiB: 113–114 to 99 MB (three alternated pairs), the first poll's wall unchanged; at 1M, the steady
    ///   poll's read-back 11–12 to 19–26 ms of a ~370 ms cycle, its wall and both 1M peaks unchanged.
    /// - 6 MiB, once events were kept in blocks (``EventBlock``), which had raised a first 100k poll's peak by
    ///   ~3 MB (in both of its modes, ~97 and ~107 MB; five alternated runs each): back to 94–106 MB.
    /// Events leave as soon as every configured sink is past them, so this much stays resident only while a
    /// sink is behind.
    package static let recentEventsBudget = 6 << 20

    /// The page size of a state file this store creates (see the `PRAGMA page_size` in ``init(path:recentEventBytes:)``).
    package static let pageSize = 16 << 10

    /// Opens or creates the state, migrating it to the current schema. `recentEventBytes` bounds the
    /// event bodies kept in memory after their commit for the sinks' next reads (``RecentEvents``);
    /// `checkpointEvery` how much is committed between two checkpoints (tests pass small bounds).
    package init(
        path: String, recentEventBytes: Int = SQLiteStore.recentEventsBudget,
        checkpointEvery: (commits: Int, bytes: Int) = SQLiteStore.checkpointEvery
    ) throws {
        try StateFileCheck.verify(path)
        self.path = path
        recent = Mutex(RecentEvents(byteBudget: recentEventBytes))
        self.checkpointBound = checkpointEvery
        try Self.createPrivately(path)
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // 16 KiB pages for a new file (SQLite's default is 4 KiB; an existing file keeps its size, which a WAL
            // file cannot change in place). SQLite writes each WAL frame, and copies each at a checkpoint, with a
            // system call or two per page: a steady 100k commit appends ~2.3 MB, ~1,100 `pwrite`s at 4 KiB, ~300
            // at 16. `bulkwatch-bench poll --runs 30`, three alternated pairs: steady 100k cycle 49.0–53.8 to
            // 43.4–49.9 ms; at 1M, one pair: steady cycle 576 to 524 ms, first-poll commit 3.8 to 2.8 s.
            // The page cache stays 2 MiB (fewer, larger pages).
            try db.execute(sql: "PRAGMA page_size = \(Self.pageSize)")
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // 2 MiB per connection (SQLite's default is about that). The writer's cache mostly keeps pages of
            // events appended by earlier commits, never read again: at 8 MiB it held ~8 MB more at a steady
            // 100k poll's peak, for no measurable gain in commit time at 100k or 1M (bulkwatch-bench poll).
            try db.execute(sql: "PRAGMA cache_size = -2048")
            // No checkpoint inside a poll's commit: maintain() checkpoints after it, once the events
            // are on their way to the sinks.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
        }
        configuration.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrate(pool)
        } catch let error as DatabaseError {
            throw JournalError(description: "cannot open state database \(path): \(error.message ?? "\(error)")")
        }
    }

    /// Brings the schema up to date. Another process may be doing the same at the same moment (a watcher
    /// starting while `bulkwatch events` opens the state): each migration is one transaction, so the one
    /// that loses the race fails and rolls back, and finds the schema complete when it looks again.
    private static func migrate(_ pool: DatabasePool) throws {
        if try pool.read({ try migrator.hasCompletedMigrations($0) }) { return }
        do {
            try migrator.migrate(pool)
        } catch {
            guard try pool.read({ try migrator.hasCompletedMigrations($0) }) else { throw error }
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
        migrator.registerMigration("v2-spine") { db in
            // Sequences only grow (DESIGN.md §1): the last number assigned lives in a row of its own, so
            // pruning every event cannot bring `MAX(seq)` back under the sinks' cursors. An existing journal
            // continues after the highest number any table has seen, which also repairs one that restarted.
            let highest =
                try Int64.fetchOne(
                    db,
                    sql: """
                        SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM events UNION ALL SELECT MAX(seq) FROM cursors
                            UNION ALL SELECT MAX(seq) FROM dead_letters)
                        """) ?? 0
            try db.execute(
                sql: """
                    CREATE TABLE journal (
                        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                        journal_id TEXT NOT NULL,
                        last_sequence INTEGER NOT NULL
                    );
                    INSERT INTO journal (singleton, journal_id, last_sequence) VALUES (1, ?, ?);
                    CREATE TABLE events_v2 (
                        seq INTEGER PRIMARY KEY,
                        id TEXT NOT NULL,
                        target TEXT NOT NULL,
                        type TEXT NOT NULL,
                        subject TEXT NOT NULL,
                        time TEXT NOT NULL,
                        body BLOB NOT NULL
                    );
                    INSERT INTO events_v2 SELECT seq, id, target, type, subject, time, body FROM events;
                    DROP TABLE events;
                    ALTER TABLE events_v2 RENAME TO events;
                    CREATE INDEX events_subject ON events(subject);
                    CREATE TABLE incarnations (
                        target TEXT NOT NULL,
                        bulk_id TEXT NOT NULL,
                        incarnation INTEGER NOT NULL,
                        expired_at TEXT,
                        PRIMARY KEY (target, bulk_id)
                    ) WITHOUT ROWID;
                    ALTER TABLE cursors ADD COLUMN rewound INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE cursors ADD COLUMN configured INTEGER NOT NULL DEFAULT 1;
                    """, arguments: [UUID().uuidString.lowercased(), highest])
        }
        migrator.registerMigration("v3-append-only") { db in
            // The snapshot moves from one row per item (rewritten at random keys on every poll) to an
            // image plus appended deltas; existing rows become each target's first image.
            try db.execute(
                sql: """
                    CREATE TABLE snapshot_images (
                        target TEXT PRIMARY KEY,
                        through_delta INTEGER NOT NULL,
                        image BLOB NOT NULL
                    );
                    CREATE TABLE snapshot_deltas (
                        id INTEGER PRIMARY KEY,
                        target TEXT NOT NULL,
                        delta BLOB NOT NULL
                    );
                    CREATE INDEX snapshot_deltas_by_target ON snapshot_deltas(target, id);
                    DROP INDEX IF EXISTS events_subject;
                    """)
            let targets = try String.fetchAll(db, sql: "SELECT DISTINCT target FROM snapshot")
            for target in targets {
                var tracked: [TrackedItem] = []
                let rows = try Row.fetchCursor(
                    db,
                    sql: """
                        SELECT bulk_id, status, created_on, updated_on, raw, absent_polls FROM snapshot
                        WHERE target = ? ORDER BY rowid
                        """, arguments: [target])
                while let row = try rows.next() {
                    let raw: Data = row[4]
                    tracked.append(
                        TrackedItem(
                            item: BulkItem(
                                bulkId: row[0], status: row[1], createdOn: row[2], updatedOn: row[3],
                                rawJSON: Array(raw)[...]),
                            absentPolls: row[5]))
                }
                let guardedText =
                    try String.fetchOne(
                        db, sql: "SELECT removal_guarded FROM targets WHERE target = ?", arguments: [target])
                    ?? ""
                let guarded = (try? JSONDecoder().decode([String].self, from: Data(guardedText.utf8))) ?? []
                let image = SnapshotCodec.image(of: Snapshot(tracked: tracked, removalGuarded: guarded))
                try db.execute(
                    sql: "INSERT INTO snapshot_images (target, through_delta, image) VALUES (?, 0, ?)",
                    arguments: [target, Data(image)])
            }
            try db.execute(sql: "DROP TABLE snapshot")
        }
        // Issue 15: how many events each sink's filter passed over (`bulkwatch deliveries`).
        migrator.registerMigration("sink-filtered-count") { db in
            try db.execute(sql: "ALTER TABLE cursors ADD COLUMN filtered INTEGER NOT NULL DEFAULT 0")
        }
        // Incarnations move from one row per operation, upserted at random keys (1,000 B-tree leaves rewritten
        // per steady 100k poll, more as the table grows), to rows appended under their sequence: an
        // operation's newest row is its state. Existing rows are copied over as they are.
        migrator.registerMigration("v4-incarnation-log") { db in
            try db.execute(
                sql: """
                    CREATE TABLE incarnation_log (
                        seq INTEGER PRIMARY KEY,
                        target TEXT NOT NULL,
                        bulk_id TEXT NOT NULL,
                        incarnation INTEGER NOT NULL,
                        expired_at TEXT
                    );
                    INSERT INTO incarnation_log (target, bulk_id, incarnation, expired_at)
                        SELECT target, bulk_id, incarnation, expired_at FROM incarnations;
                    DROP TABLE incarnations;
                    """)
        }
        // A commit's events move from a row each to a row per chunk of them (``EventBlock``); existing rows stay
        // where they are and are read beside the blocks.
        migrator.registerMigration("v5-event-blocks") { db in
            try db.execute(
                sql: """
                    CREATE TABLE event_blocks (
                        first_seq INTEGER PRIMARY KEY,
                        last_seq INTEGER NOT NULL,
                        target TEXT NOT NULL,
                        time TEXT NOT NULL,
                        events BLOB NOT NULL
                    );
                    """)
        }
        return migrator
    }

    /// A random id given to this journal when it was created. A state file that was moved aside and
    /// replaced is a new journal with a new id, even though its sequences start again from 1.
    package func journalID() async throws -> String {
        try await pool.read { db in try String.fetchOne(db, sql: "SELECT journal_id FROM journal") ?? "" }
    }

    // MARK: - Snapshot

    package func loadSnapshot(target: String) async throws -> StoredSnapshot {
        let (stored, imageBytes, deltaBytes) = try await pool.read { db -> (StoredSnapshot, Int, Int) in
            // The image and then each delta are decoded from the bytes SQLite holds for the row, not from a
            // `Data` and an array copied out of them (two more copies of ~20 MB per 100k items at every start,
            // and of every delta since the last fold).
            var loader = SnapshotCodec.Loader()
            var imageBytes = 0
            let image = try RawStatement(db, sql: "SELECT image FROM snapshot_images WHERE target = ?")
            image.bind(target, at: 1)
            try image.forEachBlob { bytes in
                try loader.image(bytes)
                imageBytes = bytes.count
            }
            // Every delta still stored for the target comes after its image: a fold deletes the deltas it
            // folded in the same transaction. `through_delta` is not a watermark to filter on: `id` is SQLite's
            // rowid, which starts again from 1 once a fold has emptied the table, so the polls after a fold got
            // ids at or below it and a restart silently dropped them (the snapshot went back to the image, and
            // every change since was reported again).
            var deltaBytes = 0
            let deltas = try RawStatement(db, sql: "SELECT delta FROM snapshot_deltas WHERE target = ? ORDER BY id")
            deltas.bind(target, at: 1)
            try deltas.forEachBlob { bytes in
                try loader.delta(bytes)
                deltaBytes += bytes.count
            }
            let polls =
                try Int.fetchOne(
                    db, sql: "SELECT successful_polls FROM targets WHERE target = ?", arguments: [target]) ?? 0
            return (StoredSnapshot(snapshot: loader.finish(), hasBaseline: polls > 0), imageBytes, deltaBytes)
        }
        sizes.withLock { $0[target] = (imageBytes, deltaBytes) }
        return stored
    }

    /// Bytes of `target`'s image and of the deltas after it, as of the last load, commit or fold (nil before
    /// any): what decides when ``maintain(target:snapshot:)`` folds.
    package func snapshotFootprint(target: String) -> (image: Int, deltas: Int)? {
        sizes.withLock { $0[target] }
    }

    /// Commits one successful poll: one delta, the new events, the target's counters, atomically.
    ///
    /// Nothing of the poll is held whole: the delta is written as consecutive deltas of a few thousand rows,
    /// and each event is encoded, inserted and let go, but for the newest that fit the recent-events budget,
    /// which stay in memory for the sinks. A first poll of 1M items held all its events (~600 MB) and its
    /// delta (~200 MB) at its peak.
    package func commit(_ poll: PollCommit, fence: StoreFence) async throws -> CommitSummary {
        try Self.requireExclusive(fence)
        let outcome = poll.outcome
        let guarded = outcome.removalGuardChanged ? poll.snapshot.removalGuardedIDs : nil
        let time = RFC3339.millisecondsUTC(poll.detectedAt)
        let target = poll.target
        let source = poll.source
        let budget = recent.withLock { $0.byteBudget }
        let (summary, kept, rows, written) = try await committing {
            db -> (CommitSummary, [JournalEvent], [UInt64: Int64], (delta: Int, total: Int)) in
            let first = (try Int64.fetchOne(db, sql: "SELECT last_sequence FROM journal") ?? 0) + 1
            let insert = try BlockInsert(db, target: target, time: time)
            // Taken out of the store here, on the writer, and handed over: the book then holds the only reference
            // and grows the map in place. Taken out before the closure (a captured `let`), it was shared with the
            // closure's context, and the book's first append copied the whole map: every commit, O(every
            // operation that ever expired) and twice its memory. A commit that fails leaves none behind, and the
            // next one reloads it from the table.
            var incarnations = try IncarnationBook(
                db, target: target, rows: self.incarnationRows.withLock { $0.removeValue(forKey: target) })
            // Read before anything is written: a change's own incarnation row is written later, and no bulkId
            // appears twice among one poll's changes.
            let lives = try incarnations.resolve(outcome.changes, at: time)
            let eventSource = CloudEventEncoder.Source(source)
            // Only the newest events can stay in memory; the others are encoded in chunks, bound in place and
            // let go: no `String` or array per event for most of a first poll's million.
            let keepFrom = RecentEvents.firstKept(
                of: outcome.changes.count, budget: budget,
                bound: { CloudEventEncoder.bodyLengthBound(of: outcome.changes[$0], source: eventSource) },
                length: {
                    CloudEventEncoder.bodyLength(
                        of: outcome.changes[$0], source: eventSource, sequence: first + Int64($0), time: time)
                })
            let plan = EventEncodingPipeline.Plan(
                changes: outcome.changes, incarnations: lives.incarnations, source: eventSource,
                firstSequence: first, time: time, target: target, keepFrom: keepFrom)
            var deltaBytes = 0
            var blockBytes = 0
            let kept = try EventEncodingPipeline.run(plan) {
                // While the first events are being encoded: the delta (in pieces, each bound in place: no copy
                // of a first poll's whole delta is ever held), the counters and the incarnation rows.
                let insertDelta = try RawStatement(
                    db, sql: "INSERT INTO snapshot_deltas (target, delta) VALUES (?, ?)")
                for rows in SnapshotCodec.deltaPieces(of: outcome, snapshot: poll.snapshot) {
                    let piece = SnapshotCodec.delta(of: outcome, snapshot: poll.snapshot, rows: rows, guarded: guarded)
                    insertDelta.bind(target, at: 1)
                    try insertDelta.run(bindingInPlace: piece, at: 2)
                    deltaBytes += piece.count
                }
                try db.execute(
                    sql: """
                        INSERT INTO targets (target, successful_polls, last_success) VALUES (?, 1, ?)
                        ON CONFLICT (target) DO UPDATE SET successful_polls = successful_polls + 1,
                            last_success = excluded.last_success
                        """, arguments: [target, time])
                try incarnations.write(lives.writes, of: outcome.changes)
            } consume: { chunk in
                try insert.run(first: first + Int64(chunk.start), chunk.block)
                blockBytes += chunk.block.bytes.count
            }
            let next = first + Int64(outcome.changes.count)
            if next > first {
                try db.execute(sql: "UPDATE journal SET last_sequence = ?", arguments: [next - 1])
            }
            return (
                CommitSummary(outcome, firstSequence: first), kept, incarnations.rows,
                (delta: deltaBytes, total: deltaBytes + blockBytes)
            )
        }
        sinceCheckpoint.withLock { since in
            since.commits += 1
            since.bytes += written.total
        }
        incarnationRows.withLock { $0[target] = rows }
        sizes.withLock { sizes in
            var entry = sizes[target] ?? (0, 0)
            entry.deltas += written.delta
            sizes[target] = entry
        }
        recent.withLock { $0.append(kept) }
        return summary
    }

    /// Runs a poll's commit on the writer; a database error comes back as one ``JournalError`` line that names
    /// the state file and SQLite's reason (GRDB's own error quotes the statement instead), as the PostgreSQL
    /// store's do. The watcher's log line already names the target.
    private func committing<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.write(body)
        } catch let error as DatabaseError {
            let reason = error.message ?? "SQLite error \(error.resultCode.rawValue)"
            throw JournalError(description: "cannot commit to \(path): \(reason)")
        }
    }

    /// Folds `target`'s deltas into a new image once they are larger than half the image (at least
    /// 1 MiB), so the load stays about one image long; then checkpoints the WAL (passive: it never
    /// waits for readers), after a fold or once enough was committed since the last (``checkpointEvery``),
    /// so the WAL stays small.
    package func maintain(target: String, snapshot: Snapshot) async throws {
        let due = sizes.withLock { sizes -> Bool in
            guard let entry = sizes[target] else { return false }
            return entry.deltas > max(1 << 20, entry.image / 2)
        }
        if due {
            let size = try await pool.write { db in
                let through =
                    try Int64.fetchOne(
                        db, sql: "SELECT MAX(id) FROM snapshot_deltas WHERE target = ?", arguments: [target]) ?? 0
                let size = try Self.writeImage(of: snapshot, target: target, throughDelta: through, db)
                try db.execute(
                    sql: "DELETE FROM snapshot_deltas WHERE target = ? AND id <= ?", arguments: [target, through])
                return size
            }
            sizes.withLock { $0[target] = (size, 0) }
        }
        let checkpointDue = sinceCheckpoint.withLock { since in
            since.commits >= checkpointBound.commits || since.bytes >= checkpointBound.bytes
        }
        if due || checkpointDue { try await checkpoint() }
    }

    /// How much is committed between two checkpoints at most: polls, and bytes of deltas and events.
    ///
    /// Why not after every poll: a commit that finds the WAL checkpointed starts it over, and rewriting its
    /// header costs an `fdatasync` of its own before the frames' (`strace` of a steady 100k poll: ~0.3 ms of
    /// the commit's ~1.8 ms of syncs). Every fourth poll, or every 8 MiB (a 1M poll writes ~20 MB), keeps the
    /// WAL within a few polls' writes while three polls in four append to it without that sync.
    package static let checkpointEvery = (commits: 4, bytes: 8 << 20)

    /// Replaces `target`'s image, streamed into place: the row is written with a zero blob of the image's
    /// exact size (SQLite writes zeros, it allocates no buffer for them), then filled through SQLite's
    /// incremental blob I/O one encoded piece at a time. Encoding the whole image first and binding it made
    /// a fold hold the image, a `Data` copy and SQLite's record copy together: ~80 MB more at 100k items,
    /// ~800 MB at 1M, at a moment a daemon reaches every few polls. Returns the image's size.
    private static func writeImage(of snapshot: Snapshot, target: String, throughDelta: Int64, _ db: Database)
        throws -> Int
    {
        let size = SnapshotCodec.imageSize(of: snapshot)
        try db.execute(
            sql: """
                INSERT INTO snapshot_images (target, through_delta, image) VALUES (?, ?, zeroblob(?))
                ON CONFLICT (target) DO UPDATE SET through_delta = excluded.through_delta, image = excluded.image
                """, arguments: [target, throughDelta, size])
        guard
            let rowID = try Int64.fetchOne(
                db, sql: "SELECT rowid FROM snapshot_images WHERE target = ?", arguments: [target])
        else {
            throw DatabaseError(resultCode: .SQLITE_INTERNAL, message: "snapshot image row for \(target) vanished")
        }
        try fillBlob(table: "snapshot_images", column: "image", row: rowID, size: size, db) { write in
            try SnapshotCodec.writeImage(of: snapshot, write)
        }
        return size
    }

    /// Fills the zero blob of `size` bytes at `table.column`, row `row`, with what `encode` hands its writer,
    /// in order, through SQLite's incremental blob I/O; throws unless that is exactly `size` bytes.
    private static func fillBlob(
        table: String, column: String, row: Int64, size: Int, _ db: Database,
        _ encode: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        guard size < Int(Int32.max) else {
            throw DatabaseError(resultCode: .SQLITE_TOOBIG, message: "\(table).\(column) of \(size) bytes")
        }
        var blob: OpaquePointer?
        let opened = sqlite3_blob_open(db.sqliteConnection, "main", table, column, row, 1, &blob)
        defer { sqlite3_blob_close(blob) }
        guard opened == SQLITE_OK, let blob else {
            throw sqliteError(db, opened, sql: "sqlite3_blob_open(\(table).\(column))")
        }
        var offset = 0
        try encode { piece in
            guard offset + piece.count <= size else {
                throw DatabaseError(
                    resultCode: .SQLITE_INTERNAL, message: "\(table).\(column) outgrew its \(size) bytes")
            }
            guard let base = piece.baseAddress, !piece.isEmpty else { return }
            let code = sqlite3_blob_write(blob, base, Int32(piece.count), Int32(offset))
            guard code == SQLITE_OK else { throw sqliteError(db, code, sql: "sqlite3_blob_write(\(table).\(column))") }
            offset += piece.count
        }
        guard offset == size else {
            throw DatabaseError(
                resultCode: .SQLITE_INTERNAL, message: "\(table).\(column) ended at \(offset) of \(size) bytes")
        }
    }

    /// SQLite has one writer, guarded by ``StateLock`` for the process's lifetime: that is its fence.
    private static func requireExclusive(_ fence: StoreFence) throws {
        guard fence == .exclusive else { throw FencedOut(fence: fence) }
    }

    // MARK: - Reading events

    private static func appendConditions(
        _ filter: EventFilter, to sql: inout String, _ arguments: inout StatementArguments
    ) {
        if let kinds = filter.kinds {
            sql += " AND type IN (\(kinds.map { _ in "?" }.joined(separator: ",")))"
            for kind in kinds { _ = arguments.append(contentsOf: ["bulk.\(kind.rawValue)"]) }
        }
        if let subject = filter.subject {
            sql += " AND subject = ?"
            _ = arguments.append(contentsOf: [subject])
        }
        appendTargets(filter.targets, to: &sql, &arguments)
    }

    /// The condition that keeps only the events (rows or blocks) of `targets`, when given.
    private static func appendTargets(
        _ targets: Set<String>?, to sql: inout String, _ arguments: inout StatementArguments
    ) {
        guard let targets else { return }
        sql += " AND target IN (\(targets.map { _ in "?" }.joined(separator: ",")))"
        for target in targets.sorted() { _ = arguments.append(contentsOf: [target]) }
    }

    package func events(after: Int64, limit: Int, filter: EventFilter) async throws -> [JournalEvent] {
        if recent.withLock({ $0.mayAnswer(after: after) }) {
            let last = try await lastSequence()
            if let answer = recent.withLock({ $0.read(after: after, limit: limit, filter: filter, lastSequence: last) })
            {
                return answer
            }
        }
        return try await pool.read { db in try Self.events(db, after: after, limit: limit, filter: filter) }
    }

    /// How many events are cached for readers (``RecentEvents``); for tests and the bench.
    package var cachedEventCount: Int { recent.withLock { $0.count } }

    /// The one read behind ``events(after:limit:filter:)`` and ``routableEvents(after:limit:targets:)``: the
    /// first `limit` events after `after` that pass `filter`, from the rows of `events` and from the blocks
    /// (``EventBlock``), merged by sequence. Every event carries its target.
    private static func events(_ db: Database, after: Int64, limit: Int, filter: EventFilter) throws
        -> [JournalEvent]
    {
        var sql = "SELECT seq, id, type, subject, time, body, target FROM events WHERE seq > ?"
        var arguments: StatementArguments = [after]
        appendConditions(filter, to: &sql, &arguments)
        sql += " ORDER BY seq LIMIT ?"
        _ = arguments.append(contentsOf: [limit])
        let rows = try readEvents(db, sql: sql, arguments: arguments)
        var blocked: [JournalEvent] = []
        if limit > 0 {
            try forEachBlockEvent(db, .after(after), targets: filter.targets) { event, time, target in
                if matches(event, filter), let built = event.event(time: time, target: target) {
                    blocked.append(built)
                }
                return blocked.count < limit
            }
        }
        guard !rows.isEmpty else { return blocked }
        guard !blocked.isEmpty else { return rows }
        var merged: [JournalEvent] = []
        merged.reserveCapacity(min(limit, rows.count + blocked.count))
        var (r, b) = (0, 0)
        while merged.count < limit, r < rows.count || b < blocked.count {
            if b == blocked.count || (r < rows.count && rows[r].sequence < blocked[b].sequence) {
                merged.append(rows[r])
                r += 1
            } else {
                merged.append(blocked[b])
                b += 1
            }
        }
        return merged
    }

    /// Which blocks ``forEachBlockEvent(_:_:targets:_:)`` reads, and in which order.
    private enum BlockSelection {
        /// Those with an event after this sequence, oldest first.
        case after(Int64)
        /// The one holding this sequence.
        case holding(Int64)
        /// All, newest first.
        case newestFirst
    }

    /// Calls `body` with each event of the blocks `selection` names (and of `targets`' blocks, when given), with
    /// its block's time and target, until it returns false. With ``BlockSelection/after(_:)``, only the events
    /// after that sequence. A block that does not decode throws ``EventBlock/Corrupt``.
    private static func forEachBlockEvent(
        _ db: Database, _ selection: BlockSelection, targets: Set<String>?,
        _ body: (EventBlock.EventBytes, _ time: String, _ target: String) throws -> Bool
    ) throws {
        var sql = "SELECT first_seq, last_seq, target, time, events FROM event_blocks"
        var arguments: StatementArguments
        var after = Int64.min
        // By `first_seq` (the table's key): the block that may hold `sequence` is the last one starting at or
        // before it. A condition on `last_seq` alone would read every block.
        switch selection {
        case .after(let sequence):
            sql += " WHERE first_seq >= \(Self.blockHolding) AND last_seq > ?"
            arguments = [sequence &+ 1, sequence]
            after = sequence
        case .holding(let sequence):
            sql += " WHERE first_seq = \(Self.blockHolding) AND last_seq >= ?"
            arguments = [sequence, sequence]
        case .newestFirst:
            sql += " WHERE 1"
            arguments = []
        }
        appendTargets(targets, to: &sql, &arguments)
        if case .newestFirst = selection { sql += " ORDER BY first_seq DESC" } else { sql += " ORDER BY first_seq" }
        let statement = try db.cachedStatement(sql: sql)
        try statement.setArguments(arguments)
        let handle = statement.sqliteStatement
        defer { sqlite3_reset(handle) }
        var time = RepeatedText()
        var target = RepeatedText()
        var more = true
        while more {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { break }
            guard code == SQLITE_ROW else { throw sqliteError(db, code, sql: sql) }
            let blockTime = time.column(handle, 3)
            let blockTarget = target.column(handle, 2)
            let blob = sqlite3_column_blob(handle, 4)
            let events = UnsafeRawBufferPointer(
                start: blob, count: blob == nil ? 0 : Int(sqlite3_column_bytes(handle, 4)))
            try EventBlock.forEach(
                in: events, first: sqlite3_column_int64(handle, 0), last: sqlite3_column_int64(handle, 1)
            ) { event in
                guard event.sequence > after else { return true }
                more = try body(event, blockTime, blockTarget)
                return more
            }
        }
    }

    /// The `first_seq` of the block that holds the sequence bound to it, if any does: the last block starting
    /// at or before it (0 when none does).
    private static let blockHolding = "COALESCE((SELECT MAX(first_seq) FROM event_blocks WHERE first_seq <= ?), 0)"

    /// ``RecentEvents``' filter (and the SQL's) on an event of a block, before any of it is copied out; the
    /// targets are chosen by the query.
    private static func matches(_ event: EventBlock.EventBytes, _ filter: EventFilter) -> Bool {
        if let kinds = filter.kinds {
            guard let kind = event.kind?.change, kinds.contains(kind) else { return false }
        }
        if var subject = filter.subject {
            return subject.withUTF8 { $0.elementsEqual(event.subject) }
        }
        return true
    }

    /// The event with sequence `sequence` if a block holds it.
    private static func blockEvent(_ db: Database, sequence: Int64) throws -> JournalEvent? {
        var found: JournalEvent?
        try forEachBlockEvent(db, .holding(sequence), targets: nil) { event, time, target in
            guard event.sequence == sequence else { return true }
            found = event.event(time: time, target: target)
            return false
        }
        return found
    }

    /// Every event row `sql` selects (`seq, id, type, subject, time, body, target`, in that order), read
    /// through SQLite's C API: GRDB's `Row` copied every column into a `DatabaseValue` first, and a sink
    /// catching up (or a first poll of 1M items) reads hundreds of thousands of them. Rows of a type this
    /// version does not know are left out.
    private static func readEvents(_ db: Database, sql: String, arguments: StatementArguments) throws
        -> [JournalEvent]
    {
        let statement = try db.cachedStatement(sql: sql)
        try statement.setArguments(arguments)
        let handle = statement.sqliteStatement
        defer { sqlite3_reset(handle) }
        var events: [JournalEvent] = []
        // A poll's events share their time and target, and a type is one of a few: each is built once
        // and shared while it repeats, instead of three strings per event (a first poll of 1M is read
        // back ~850k events at a time).
        var time = RepeatedText()
        var target = RepeatedText()
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { break }
            guard code == SQLITE_ROW else { throw sqliteError(db, code, sql: sql) }
            guard let kind = columnKind(handle, 2) else { continue }
            var event = JournalEvent(
                sequence: sqlite3_column_int64(handle, 0), id: columnText(handle, 1), kind: kind,
                subject: columnText(handle, 3), time: time.column(handle, 4), body: columnBlob(handle, 5))
            event.target = target.column(handle, 6)
            events.append(event)
        }
        return events
    }

    package func count(after: Int64, filter: EventFilter) async throws -> Int {
        try await pool.read { db in
            var sql = "SELECT COUNT(*) FROM events WHERE seq > ?"
            var arguments: StatementArguments = [after]
            Self.appendConditions(filter, to: &sql, &arguments)
            let rows = try Int.fetchOne(db, sql: sql, arguments: arguments) ?? 0
            guard filter.kinds == nil, filter.subject == nil else {
                var blocked = 0
                try Self.forEachBlockEvent(db, .after(after), targets: filter.targets) { event, _, _ in
                    if Self.matches(event, filter) { blocked += 1 }
                    return true
                }
                return rows + blocked
            }
            // A block's sequences have no gaps: its count after `after` is arithmetic.
            var blockSQL = """
                SELECT COALESCE(SUM(last_seq - MAX(first_seq, ?) + 1), 0) FROM event_blocks
                WHERE first_seq >= \(Self.blockHolding) AND last_seq > ?
                """
            var blockArguments: StatementArguments = [after &+ 1, after &+ 1, after]
            Self.appendTargets(filter.targets, to: &blockSQL, &blockArguments)
            return rows + (try Int.fetchOne(db, sql: blockSQL, arguments: blockArguments) ?? 0)
        }
    }

    package func lastSequence() async throws -> Int64 {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT last_sequence FROM journal") ?? 0 }
    }

    package func event(sequence: Int64) async throws -> JournalEvent? {
        try await pool.read { db in
            try Self.readEvents(
                db, sql: "SELECT seq, id, type, subject, time, body, target FROM events WHERE seq = ?",
                arguments: [sequence]
            ).first ?? Self.blockEvent(db, sequence: sequence)
        }
    }

    /// The journaled event with CloudEvents id `id`, if still retained. A scan: only operator commands
    /// look events up by id, and the commit path keeps no index for them.
    package func event(id: String) async throws -> JournalEvent? {
        try await pool.read { db in
            let row = try Self.readEvents(
                db,
                sql: """
                    SELECT seq, id, type, subject, time, body, target FROM events WHERE id = ?
                    ORDER BY seq DESC LIMIT 1
                    """, arguments: [id]
            ).first
            // The newest block first, and within the first block that holds the id, its last event with it:
            // once the scan reaches a lower sequence than that, it is in an older block and can stop.
            var blocked: JournalEvent?
            var wanted = id
            try wanted.withUTF8 { wanted in
                try Self.forEachBlockEvent(db, .newestFirst, targets: nil) { event, time, target in
                    if let found = blocked, event.sequence < found.sequence { return false }
                    if event.id.elementsEqual(wanted), row.map({ event.sequence > $0.sequence }) ?? true {
                        blocked = event.event(time: time, target: target) ?? blocked
                    }
                    return true
                }
            }
            return blocked ?? row
        }
    }

    package func routableEvents(after: Int64, limit: Int, targets: Set<String>?) async throws -> [JournalEvent] {
        try await events(after: after, limit: limit, filter: EventFilter(targets: targets))
    }

    package func append(operational event: OperationalEvent, target: String, source: String, fence: StoreFence)
        async throws -> JournalEvent?
    {
        try Self.requireExclusive(fence)
        let appended = try await pool.write { db -> JournalEvent? in
            let next = (try Int64.fetchOne(db, sql: "SELECT last_sequence FROM journal") ?? 0) + 1
            var stored = event.encoded(source: source, sequence: next)
            stored.target = target
            // Rare (once per outage), so a scan for the stable id is cheaper than an index on every event.
            let seen =
                try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM events WHERE target = ? AND type = ? AND id = ?)",
                    arguments: [target, stored.type, stored.id]) ?? false
            guard !seen else { return nil }
            try Self.insertRow(stored, db)
            try db.execute(sql: "UPDATE journal SET last_sequence = ?", arguments: [next])
            return stored
        }
        if let appended { recent.withLock { $0.append([appended]) } }
        return appended
    }

    package func openOutage(target: String) async throws -> (since: Date, failedAttempts: Int)? {
        try await pool.read { db in
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT type, body FROM events WHERE target = ?
                        AND type IN ('bulkwatch.target.failing', 'bulkwatch.target.recovered')
                    ORDER BY seq DESC LIMIT 1
                    """, arguments: [target])
            guard let row, row[0] == JournalEvent.Kind.targetFailing.type else { return nil }
            let body: Data = row[1]
            let data = EventFields.object(Array(body))?["data"] as? [String: Any]
            guard let since = (data?["since"] as? String).flatMap(Timestamp.instantMillis) else { return nil }
            let attempts = (data?["failedAttempts"] as? Int) ?? 0
            return (Date(timeIntervalSince1970: Double(since) / 1000), attempts)
        }
    }

    // MARK: - Cursors

    package func cursorState(sink: String) async throws -> CursorState? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT seq, rewound FROM cursors WHERE sink = ?", arguments: [sink]).map {
                row in CursorState(sequence: row[0], rewound: (row[1] as Int64? ?? 0) != 0)
            }
        }
    }

    package func recordSinkError(sink: String, message: String) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO cursors (sink, seq, last_error) VALUES (?, 0, ?)
                    ON CONFLICT (sink) DO UPDATE SET last_error = excluded.last_error
                    """, arguments: [sink, message])
        }
    }

    package func advanceCursor(
        sink: String, from expected: Int64, to sequence: Int64, filtered: Int, fence: StoreFence
    ) async throws -> Bool {
        try Self.requireExclusive(fence)
        let advanced = try await writeCursor { db in
            guard try Self.compareAndSetCursor(db, sink: sink, expected: expected, to: sequence) else { return false }
            if filtered > 0 {
                try db.execute(
                    sql: "UPDATE cursors SET filtered = filtered + ? WHERE sink = ?", arguments: [filtered, sink])
            }
            return true
        }
        if advanced { recent.withLock { $0.sink(sink, isAt: sequence) } }
        return advanced
    }

    package func filteredCounts() async throws -> [String: Int64] {
        try await pool.read { db in
            var counts: [String: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sink, filtered FROM cursors") {
                counts[row[0]] = row[1]
            }
            return counts
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

    private static func storeCursor(_ db: Database, sink: String, sequence: Int64, rewound: Bool = false) throws {
        try db.execute(
            sql: """
                INSERT INTO cursors (sink, seq, updated_at, last_error, rewound) VALUES (?, ?, ?, NULL, ?)
                ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at,
                    last_error = NULL, rewound = excluded.rewound
                """, arguments: [sink, sequence, RFC3339.millisecondsUTC(Date()), rewound ? 1 : 0])
    }

    /// Runs a cursor-only write with `synchronous=NORMAL`: still atomic and crash-safe (WAL), but
    /// without an fsync per delivered event. A power cut can only lose the newest cursor moves,
    /// which means re-delivering those events with their same stable ids (at-least-once, as
    /// DESIGN.md §1 promises); events and snapshots keep `synchronous=FULL`.
    private func writeCursor<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await pool.writeWithoutTransaction { db in
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

    package func rewindCursor(sink: String, to sequence: Int64) async throws {
        try await writeCursor { db in try Self.storeCursor(db, sink: sink, sequence: sequence, rewound: true) }
        recent.withLock { $0.sink(sink, isAt: sequence) }
    }

    package func markConfiguredSinks(_ names: [String]) async throws {
        recent.withLock { $0.configure(sinks: names) }
        try await pool.write { db in
            try db.execute(sql: "UPDATE cursors SET configured = 0")
            for name in names {
                try db.execute(
                    sql: """
                        INSERT INTO cursors (sink, seq, configured) VALUES (?, 0, 1)
                        ON CONFLICT (sink) DO UPDATE SET configured = 1
                        """, arguments: [name])
            }
        }
    }

    // MARK: - Dead letters

    package func deadLetter(
        sink: String, events: [JournalEvent], reason: String, attempts: Int, cursorFrom expected: Int64,
        fence: StoreFence
    ) async throws -> Bool {
        try Self.requireExclusive(fence)
        guard let last = events.last else { return true }
        let now = RFC3339.millisecondsUTC(Date())
        return try await pool.write { db in
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

    package func deadLetters(sink: String?) async throws -> [DeadLetter] {
        try await pool.read { db in
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
                    let kind = JournalEvent.Kind(type: type),
                    let body: Data = row[10]
                {
                    event = JournalEvent(
                        sequence: row[1], id: id, kind: kind, subject: row[8], time: row[9], body: Array(body))
                } else if var blocked = try Self.blockEvent(db, sequence: row[1]) {
                    blocked.target = nil
                    event = blocked
                }
                return DeadLetter(
                    sink: row[0], sequence: row[1], eventID: row[2], reason: row[3], attempts: row[4],
                    deadAt: row[5], event: event)
            }
        }
    }

    @discardableResult
    package func removeDeadLetter(sink: String, sequence: Int64) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM dead_letters WHERE sink = ? AND seq = ?", arguments: [sink, sequence])
            return db.changesCount > 0
        }
    }

    // MARK: - Sink status

    package func sinkStatuses() async throws -> [SinkStatus] {
        try await pool.read { db in
            let last = try Int64.fetchOne(db, sql: "SELECT last_sequence FROM journal") ?? 0
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT s.sink, c.seq, c.last_error, c.updated_at,
                        (SELECT COUNT(*) FROM dead_letters d WHERE d.sink = s.sink), COALESCE(c.configured, 0)
                    FROM (SELECT sink FROM cursors UNION SELECT sink FROM dead_letters) s
                    LEFT JOIN cursors c ON c.sink = s.sink
                    ORDER BY s.sink
                    """)
            return rows.map { row in
                let cursor: Int64 = row[1] ?? 0
                return SinkStatus(
                    sink: row[0], cursor: cursor, lag: max(0, last - cursor), lastError: row[2], deadLetters: row[4],
                    updatedAt: row[3], stale: (row[5] as Int64) == 0)
            }
        }
    }

    // MARK: - Retention

    @discardableResult
    package func prune(target: String, olderThan cutoff: Date, sinks: [String], incarnationCutoff: Date? = nil)
        async throws -> Int
    {
        let cutoffText = RFC3339.millisecondsUTC(cutoff)
        let incarnationText = incarnationCutoff.map(RFC3339.millisecondsUTC)
        let removed = try await pool.write { db -> Int in
            var delivered = Int64.max
            for sink in sinks {
                let cursor = try Int64.fetchOne(db, sql: "SELECT seq FROM cursors WHERE sink = ?", arguments: [sink])
                delivered = min(delivered, cursor ?? 0)
            }
            try db.execute(
                sql: """
                    DELETE FROM events WHERE target = ? AND time < ? AND seq <= ?
                        AND seq NOT IN (SELECT seq FROM dead_letters)
                    """,
                arguments: [target, cutoffText, delivered])
            var removed = db.changesCount
            removed += try Self.pruneBlocks(db, target: target, before: cutoffText, delivered: delivered)
            if let incarnationText {
                // Rows a newer one of the same operation superseded first, so that forgetting an old expiry
                // never leaves an earlier row of that operation as its newest.
                try db.execute(
                    sql: """
                        DELETE FROM incarnation_log WHERE target = ? AND seq NOT IN
                            (SELECT MAX(seq) FROM incarnation_log WHERE target = ? GROUP BY bulk_id)
                        """, arguments: [target, target])
                try db.execute(
                    sql: "DELETE FROM incarnation_log WHERE target = ? AND expired_at IS NOT NULL AND expired_at < ?",
                    arguments: [target, incarnationText])
            }
            return removed
        }
        // A cached event must never outlive its row: a rewound cursor would be answered with it.
        if removed > 0 { recent.withLock { $0.removeAll() } }
        if incarnationCutoff != nil { incarnationRows.withLock { $0[target] = nil } }
        return removed
    }

    /// Stores `event` as a row of `events` (an operational event, or one that stays of a pruned block); its
    /// target must be set.
    private static func insertRow(_ event: JournalEvent, _ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO events (seq, id, target, type, subject, time, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            arguments: [
                event.sequence, event.id, event.target, event.type, event.subject, event.time, Data(event.body),
            ])
    }

    /// Prunes `target`'s events of blocks (``EventBlock``) as the rows of `events` are pruned: detected before
    /// `cutoff`, delivered (at or before `delivered`) and not dead-lettered. Returns how many went.
    ///
    /// A block of which every event may go is deleted. One of which only some may go (a sink's cursor inside
    /// it, a dead letter among its events) becomes rows of `events` for the events that stay: retention stays
    /// exact per event, and pruning (rare) pays for it, not the commit. Such a block that holds an event of a
    /// kind this version does not know (a newer version wrote it) is left whole: it could not be rewritten
    /// as rows without losing that event.
    private static func pruneBlocks(_ db: Database, target: String, before cutoff: String, delivered: Int64) throws
        -> Int
    {
        let deadLettered = "SELECT 1 FROM dead_letters d WHERE d.seq BETWEEN first_seq AND last_seq"
        let whole = """
            FROM event_blocks WHERE target = ? AND time < ? AND last_seq <= ? AND NOT EXISTS (\(deadLettered))
            """
        var removed =
            try Int.fetchOne(
                db, sql: "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) " + whole,
                arguments: [target, cutoff, delivered]) ?? 0
        try db.execute(sql: "DELETE " + whole, arguments: [target, cutoff, delivered])
        let partial = try Int64.fetchAll(
            db,
            sql: """
                SELECT first_seq FROM event_blocks WHERE target = ? AND time < ? AND first_seq <= ?
                    AND (last_seq > ? OR EXISTS (\(deadLettered)))
                """, arguments: [target, cutoff, delivered, delivered])
        guard !partial.isEmpty else { return removed }
        let kept = Set(try Int64.fetchAll(db, sql: "SELECT seq FROM dead_letters"))
        for first in partial {
            var staying: [JournalEvent] = []
            var going = 0
            var unknown = false
            try forEachBlockEvent(db, .holding(first), targets: nil) { event, time, target in
                if event.sequence <= delivered, !kept.contains(event.sequence) {
                    going += 1
                } else if let stays = event.event(time: time, target: target) {
                    staying.append(stays)
                } else {
                    unknown = true
                }
                return !unknown
            }
            guard !unknown else { continue }
            removed += going
            for event in staying { try insertRow(event, db) }
            try db.execute(sql: "DELETE FROM event_blocks WHERE first_seq = ?", arguments: [first])
        }
        return removed
    }

    /// Copies committed WAL pages into the database file (passive: never waits for readers).
    package func checkpoint() async throws {
        try await pool.writeWithoutTransaction { db in _ = try db.checkpoint(.passive) }
        // After it, so a checkpoint that failed is tried again after the next poll.
        sinceCheckpoint.withLock { $0 = (0, 0) }
    }

    /// Every retained event, read on the calling thread: for tools and test probes that cannot await
    /// (a condition polled from a synchronous closure while another process writes the file).
    package func allEventsBlocking() throws -> [JournalEvent] {
        try pool.read { db in try Self.events(db, after: 0, limit: Int.max, filter: EventFilter()) }
    }

    /// `sink`'s cursor, read on the calling thread (see ``allEventsBlocking()``).
    package func cursorBlocking(sink: String) throws -> Int64? {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT seq FROM cursors WHERE sink = ?", arguments: [sink]) }
    }

    /// `PRAGMA integrity_check` result ("ok" when healthy).
    package func integrityCheck() async throws -> String {
        try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer" }
    }
}

/// Which life of an operation a change belongs to (DESIGN.md §3, §4): an operation that expired and
/// comes back is a new incarnation, and its events get new stable ids.
///
/// Only operations that expired at least once have rows, so the log stays small, and a target none of
/// whose operations ever expired costs no lookup. Rows are only appended (an expiry, a return), never
/// updated in place: an operation's newest row is its state, and ``SQLiteStore/prune`` removes the
/// superseded ones. The first life is incarnation 0, whose ids are exactly those bulkwatch gave before
/// incarnations existed.
private struct IncarnationBook {
    private let db: Database
    private let target: String
    /// For each bulkId hash of `target` with a row, the `seq` of its newest row (see
    /// `SQLiteStore.incarnationRows`); kept up here as rows are appended, and handed back to the store once
    /// the commit succeeded.
    private(set) var rows: [UInt64: Int64]
    /// One append per expired or returning operation: 1,000 of them in a steady 100k poll with 1 % expiring.
    private let append: RawStatement
    /// The commit's time, the `expired_at` of the rows ``write(_:of:)`` stores.
    private var time = ""

    init(_ db: Database, target: String, rows: consuming [UInt64: Int64]?) throws {
        self.db = db
        self.target = target
        append = try RawStatement(
            db, sql: "INSERT INTO incarnation_log (target, bulk_id, incarnation, expired_at) VALUES (?, ?, ?, ?)")
        if let rows {
            self.rows = rows
        } else {
            var loaded: [UInt64: Int64] = [:]
            let cursor = try Row.fetchCursor(
                db, sql: "SELECT seq, bulk_id FROM incarnation_log WHERE target = ? ORDER BY seq",
                arguments: [target])
            while let row = try cursor.next() { loaded[ByteKeys.hash(row[1] as String)] = row[0] }
            self.rows = loaded
        }
    }

    /// A row ``write(_:of:)`` will store: change `index` starts a new life (`expired` false) or ended one.
    struct Write {
        let index: Int
        let hash: UInt64
        let incarnation: Int64
        let expired: Bool
    }

    /// The life each of `changes` belongs to (only those past their first life are listed: the others are in
    /// life 0) and the rows that record them: a new life on a `created` that had expired before, an ended
    /// one on `expired`. Reads only, so the rows can be written later in the same transaction.
    mutating func resolve(
        _ changes: [DetectedChange], at time: String
    ) throws -> (incarnations: [Int: Int64], writes: [Write]) {
        var incarnations: [Int: Int64] = [:]
        var writes: [Write] = []
        // By index, reading only the id and the kind: `enumerated()` copied every change (its strings and raw JSON
        // retained and released).
        for index in changes.indices {
            let bulkId = changes[index].item.bulkId
            let hash = ByteKeys.hash(bulkId)
            let recorded = try rows[hash].flatMap { try recordedIncarnation(of: bulkId, newestRow: $0) }
            let incarnation: Int64
            switch changes[index].kind {
            case .created:
                incarnation = recorded.map { $0 + 1 } ?? 0
                if recorded != nil {
                    writes.append(Write(index: index, hash: hash, incarnation: incarnation, expired: false))
                }
            case .changed:
                incarnation = recorded ?? 0
            case .expired:
                incarnation = recorded ?? 0
                writes.append(Write(index: index, hash: hash, incarnation: incarnation, expired: true))
            }
            if incarnation != 0 { incarnations[index] = incarnation }
        }
        self.time = time
        return (incarnations, writes)
    }

    /// The incarnation `bulkId`'s newest row records: the row at `newestRow` when it is `bulkId`'s (one read
    /// by key), else, when another id shares the hash, the newest of `bulkId`'s own rows (a scan of the log).
    private func recordedIncarnation(of bulkId: String, newestRow: Int64) throws -> Int64? {
        if let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT bulk_id, incarnation FROM incarnation_log WHERE seq = ?"),
            arguments: [newestRow]), row[0] as String == bulkId
        {
            return row[1]
        }
        return try Int64.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT incarnation FROM incarnation_log WHERE target = ? AND bulk_id = ? ORDER BY seq DESC LIMIT 1
                    """), arguments: [target, bulkId])
    }

    /// Appends the rows ``resolve(_:at:)`` returned for the same `changes`.
    mutating func write(_ writes: [Write], of changes: [DetectedChange]) throws {
        for write in writes {
            append.bind(target, at: 1)
            append.bind(changes[write.index].item.bulkId, at: 2)
            append.bind(write.incarnation, at: 3)
            append.bind(write.expired ? time : nil, at: 4)
            try append.run()
            rows[write.hash] = db.lastInsertedRowID
        }
    }
}

/// A cached statement bound and stepped through SQLite's C API, for the statements a commit runs once per
/// event: GRDB's `StatementArguments` boxed each value into a `DatabaseValue` (and each body into a `Data`
/// copy), a third of a steady commit's time. Values are bound `SQLITE_TRANSIENT` (SQLite copies them), and
/// the statement is reset after each run, so GRDB finds it as it left it in its statement cache.
private struct RawStatement {
    private let db: Database
    private let statement: Statement

    init(_ db: Database, sql: String) throws {
        self.db = db
        statement = try db.cachedStatement(sql: sql)
    }

    func bind(_ value: Int64, at index: Int32) {
        sqlite3_bind_int64(statement.sqliteStatement, index, value)
    }

    /// Binds `text`, or NULL for nil.
    func bind(_ text: String?, at index: Int32) {
        guard var text else {
            sqlite3_bind_null(statement.sqliteStatement, index)
            return
        }
        text.withUTF8 { bytes in
            let start = UnsafeRawPointer(bytes.baseAddress.map(UnsafeRawPointer.init) ?? emptyValue)
            _ = sqlite3_bind_text(
                statement.sqliteStatement, index, start.assumingMemoryBound(to: CChar.self), Int32(bytes.count),
                transient)
        }
    }

    /// Runs the statement with `blob` bound in place (`SQLITE_STATIC`): SQLite reads the bytes during the run
    /// instead of copying them first, which for a first poll's delta (~15 MB at 100k items) and its event
    /// bodies (~45 MB) was that much more at the poll's peak. The binding is cleared before `blob` goes away.
    func run(bindingInPlace blob: [UInt8], at index: Int32) throws {
        try blob.withUnsafeBytes { try run(bindingInPlace: $0, at: index) }
    }

    func run(bindingInPlace bytes: UnsafeRawBufferPointer, at index: Int32) throws {
        let handle = statement.sqliteStatement
        defer { sqlite3_clear_bindings(handle) }
        _ = sqlite3_bind_blob(handle, index, bytes.baseAddress ?? emptyValue, Int32(bytes.count), nil)
        try run()
    }

    /// Steps the bound statement through every row, calling `body` with column 0 of each as the bytes SQLite
    /// holds for it (empty for NULL), valid only during the call; then resets it and clears its bindings.
    func forEachBlob(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let handle = statement.sqliteStatement
        defer {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
        }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else { throw sqliteError(db, code, sql: statement.sql) }
            // The pointer first, then its size, as SQLite's documentation orders the two calls.
            let blob = sqlite3_column_blob(handle, 0)
            try body(UnsafeRawBufferPointer(start: blob, count: blob == nil ? 0 : Int(sqlite3_column_bytes(handle, 0))))
        }
    }

    /// Binds `bytes` as text without a copy (`SQLITE_STATIC`): they must stay valid until the next run ends.
    func bindInPlace(text bytes: UnsafeRawBufferPointer, at index: Int32) {
        let start = bytes.baseAddress ?? emptyValue
        _ = sqlite3_bind_text(
            statement.sqliteStatement, index, start.assumingMemoryBound(to: CChar.self), Int32(bytes.count), nil)
    }

    /// Binds `bytes` as a blob without a copy (`SQLITE_STATIC`): they must stay valid until the next run ends.
    func bindInPlace(blob bytes: UnsafeRawBufferPointer, at index: Int32) {
        _ = sqlite3_bind_blob(
            statement.sqliteStatement, index, bytes.baseAddress ?? emptyValue, Int32(bytes.count), nil)
    }

    func clearBindings() {
        sqlite3_clear_bindings(statement.sqliteStatement)
    }

    /// Runs the bound statement to completion (it returns no rows) and resets it.
    func run() throws {
        let handle = statement.sqliteStatement
        defer { sqlite3_reset(handle) }
        let code = sqlite3_step(handle)
        guard code == SQLITE_DONE else { throw sqliteError(db, code, sql: statement.sql) }
    }
}

/// The commit's one insert per chunk of events (``EventBlock``), the block bound in place for the one step
/// that reads it.
private struct BlockInsert {
    private let statement: RawStatement
    private let target: String
    private let time: String

    init(_ db: Database, target: String, time: String) throws {
        statement = try RawStatement(
            db, sql: "INSERT INTO event_blocks (first_seq, last_seq, target, time, events) VALUES (?, ?, ?, ?, ?)")
        self.target = target
        self.time = time
    }

    func run(first: Int64, _ block: EventBlock.Writer) throws {
        guard block.count > 0 else { return }
        statement.bind(first, at: 1)
        statement.bind(first + Int64(block.count) - 1, at: 2)
        statement.bind(target, at: 3)
        statement.bind(time, at: 4)
        try statement.run(bindingInPlace: block.bytes, at: 5)
    }
}

/// The error of a statement stepped through the C API, as GRDB would have reported it.
private func sqliteError(_ db: Database, _ code: Int32, sql: String) -> DatabaseError {
    let message = db.sqliteConnection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
    return DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sql)
}

/// Column `index` of the current row as text ("" for NULL).
private func columnText(_ handle: SQLiteStatement, _ index: Int32) -> String {
    guard let text = sqlite3_column_text(handle, index) else { return "" }
    let count = Int(sqlite3_column_bytes(handle, index))
    return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
}

/// A text column whose value tends to repeat from row to row: the `String` is built only when it changes.
private struct RepeatedText {
    private var last = ""

    mutating func column(_ handle: SQLiteStatement, _ index: Int32) -> String {
        let text = sqlite3_column_text(handle, index)
        let count = Int(sqlite3_column_bytes(handle, index))
        let bytes = UnsafeRawBufferPointer(start: text, count: text == nil ? 0 : count)
        let same = last.utf8.count == bytes.count && last.withUTF8 { $0.elementsEqual(bytes) }
        if !same { last = String(decoding: bytes, as: UTF8.self) }
        return last
    }
}

/// Column `index` of the current row as an event kind, matched on its bytes; nil for a type this
/// version does not know.
private func columnKind(_ handle: SQLiteStatement, _ index: Int32) -> JournalEvent.Kind? {
    guard let text = sqlite3_column_text(handle, index) else { return nil }
    let bytes = UnsafeRawBufferPointer(start: text, count: Int(sqlite3_column_bytes(handle, index)))
    return JournalEvent.Kind.allCases.first { kind in
        let type = kind.staticType
        return type.utf8CodeUnitCount == bytes.count
            && UnsafeRawBufferPointer(start: type.utf8Start, count: type.utf8CodeUnitCount).elementsEqual(bytes)
    }
}

/// Column `index` of the current row as bytes (empty for NULL).
private func columnBlob(_ handle: SQLiteStatement, _ index: Int32) -> [UInt8] {
    // The pointer first, then its size, as SQLite's documentation orders the two calls.
    guard let blob = sqlite3_column_blob(handle, index) else { return [] }
    return [UInt8](UnsafeRawBufferPointer(start: blob, count: Int(sqlite3_column_bytes(handle, index))))
}

/// SQLite's "copy the value now" destructor, which the C header spells as a cast of -1.
private var transient: sqlite3_destructor_type {
    unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
}
/// A valid pointer for an empty value: SQLite binds NULL for a nil one, and an empty text or blob is not NULL.
private var emptyValue: UnsafeRawPointer { UnsafeRawPointer(("" as StaticString).utf8Start) }
