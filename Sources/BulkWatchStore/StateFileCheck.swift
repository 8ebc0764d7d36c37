import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#endif

/// Checks made on a `--state` file before the journal opens it (issue 11).
///
/// Opening a database migrates it and switches it to WAL, so pointing `--state` at some other
/// program's SQLite file by mistake would quietly add bulkwatch's tables to it and change its
/// journal mode. The file is therefore first looked at read-only: a missing or empty file, an
/// empty database, or one bulkwatch created (its `v1` migration recorded in `grdb_migrations`) is
/// fine; anything else is refused with one line, untouched.
///
/// The state holds every event and the sinks' errors, so it is private like the secrets: an
/// existing file with group or other permission bits (made by a copy, a restore or an old umask)
/// is set back to 0600, with its `-wal` and `-shm`.
package enum StateFileCheck {
    /// Throws ``JournalError`` when `path` holds something that is not a bulkwatch state;
    /// otherwise makes an existing file private. A missing file is left for the journal to create.
    package static func verify(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw JournalError(description: "state \(path) is not a regular file")
        }
        if info.st_size > 0, let tables = try schemaNames(path) {
            if !tables.isEmpty, try !isBulkWatchState(path, tables: tables) {
                let shown = tables.prefix(5).joined(separator: ", ") + (tables.count > 5 ? ", …" : "")
                throw JournalError(
                    description: "state \(path) is not a bulkwatch state (it holds \(shown)); refusing to change it: "
                        + "give --state a new path")
            }
        }
        makePrivate(path)
    }

    /// The permission bits beyond the owner's of an existing `path`, or nil when there are none
    /// (or no such file): lets the caller warn before ``verify(_:)`` fixes them.
    package static func loosePermissions(_ path: String) -> UInt32? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_mode & 0o077 != 0 else { return nil }
        return UInt32(info.st_mode & 0o777)
    }

    private static func makePrivate(_ path: String) {
        for file in [path, path + "-wal", path + "-shm"] where loosePermissions(file) != nil {
            chmod(file, 0o600)
        }
    }

    /// Names in `sqlite_master` except SQLite's own, read without writing anything; nil when the
    /// file cannot be read right now (e.g. locked by a bulkwatch still running): a lock says
    /// nothing about whose file it is, and the journal's own open reports real problems.
    private static func schemaNames(_ path: String) throws -> [String]? {
        do {
            return try readOnly(path) { db in
                try String.fetchAll(
                    db, sql: "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
            throw JournalError(
                description: "state \(path) is not a bulkwatch state (\(error.message ?? "not a SQLite database")); "
                    + "refusing to change it: give --state a new path")
        } catch {
            return nil
        }
    }

    /// bulkwatch's states record GRDB's migration `v1` (SQLiteStore.swift), which created these tables
    /// (its `snapshot` table was replaced by images and deltas in `v3-append-only`, so it is not required).
    private static func isBulkWatchState(_ path: String, tables: [String]) throws -> Bool {
        guard Set(tables).isSuperset(of: ["grdb_migrations", "events", "cursors"]) else { return false }
        return try readOnly(path) { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM grdb_migrations WHERE identifier = 'v1')") ?? false
        }
    }

    private static func readOnly<T>(_ path: String, _ body: (Database) throws -> T) throws -> T {
        var configuration = Configuration()
        configuration.readonly = true
        // Like the journal: wait out another process's write rather than fail on its lock.
        configuration.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        return try queue.read(body)
    }
}
