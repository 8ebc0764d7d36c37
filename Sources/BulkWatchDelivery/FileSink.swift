package import BulkWatchStore
import BulkWatchSupport
import Dispatch
import Synchronization

/// The `file:PATH` sink: events as JSON lines (the CloudEvents body plus `\n`, DESIGN.md §4) appended to a
/// file that rotates by size.
///
/// Guarantees:
/// - **No lost or repeated event across crashes.** Each batch is one `write` then one `fsync`, before the
///   dispatcher commits its cursor. On start the sink cuts a torn last line (the write that a crash
///   interrupted; the journal hands that event again whole) and reports the last complete line through
///   ``lastDelivered()``, so the dispatcher resumes after it when the crash came between the `fsync` and the
///   cursor commit, and only then: a new journal's events are appended, a rewound cursor re-writes. A failed
///   write (ENOSPC, EIO) is cut back off the file and thrown, never left as a torn line.
/// - **Never another program's file.** The path is opened with `O_NOFOLLOW` (a symbolic link is refused,
///   dangling or not) and must be a regular file; a non-empty file whose last line is not a bulkwatch event,
///   or whose unterminated tail is not the start of one, is refused at start and never modified.
/// - **`tail -F` friendly rotation.** When a batch would take the file past `maxBytes`, the sink renames
///   `PATH` → `PATH.1` (shifting older files up to `PATH.keep`, dropping the oldest) and creates a fresh
///   `PATH`. A batch is never split across files; a batch larger than `maxBytes` alone is written whole.
///   ``reopen()`` (for SIGHUP after an external logrotate) closes and reopens by path.
/// - **Private.** The file is created with mode 0600 (events carry upstream data); an existing file keeps
///   the mode its owner gave it.
///
/// Thread safety: the dispatcher delivers from one task at a time, and ``reopen()`` may come from a signal
/// task; both run on the sink's private serial queue under a mutex, which also keeps a slow disk from
/// blocking the cooperative thread pool.
package final class FileSink: EventSink {

    /// `file:PATH`, with PATH exactly as given: it keys the cursor, so keep it stable across restarts.
    package let name: String
    package let path: String
    package let maxBytes: Int64
    package let keep: Int
    private let log: Mutex<FileLog>
    private let queue: DispatchQueue

    /// Opens (creating with mode 0600) the file, repairs a torn last line and reads the last sequence, so a
    /// missing directory or a permission problem fails here, at startup, as one clear ``SinkIOError``.
    ///
    /// - Parameters:
    ///   - maxBytes: rotate before a batch would take the file past this size; must be positive.
    ///   - keep: rotated files kept; 0 deletes the full file instead of keeping it.
    package init(path: String, maxBytes: Int64 = Int64(Defaults.fileMaxSize), keep: Int = Defaults.fileKeep) throws {
        guard !path.isEmpty, !path.hasSuffix("/") else {
            throw SinkIOError(.invalidOption, path: path, message: "file sink: \"\(path)\" is not a file path")
        }
        guard maxBytes > 0 else {
            throw SinkIOError(
                .invalidOption, path: path,
                message: "file sink \(path): maximum size must be positive, got \(maxBytes)")
        }
        guard keep >= 0 else {
            throw SinkIOError(
                .invalidOption, path: path, message: "file sink \(path): files to keep must be 0 or more, got \(keep)")
        }
        self.name = "file:\(path)"
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
        var log = FileLog(path: path, maxBytes: maxBytes, keep: keep)
        try log.recover()
        self.log = Mutex(log)
        self.queue = DispatchQueue(label: "bulkwatch.sink.file")
    }

    package func deliver(_ events: [JournalEvent]) async throws {
        guard !events.isEmpty else { return }
        try await runBlocking(on: queue) {
            try self.log.withLock { try $0.append(events) }
        }
    }

    /// The last complete line in `PATH` (or in `PATH.1` if `PATH` has none), or nil for a new file.
    package func lastDelivered() async throws -> DeliveredMark? {
        try await runBlocking(on: queue) {
            try self.log.withLock { log in
                if log.needsRecovery, !log.closed { try log.recover() }
                return log.lastLine
            }
        }
    }

    /// Closes and reopens `PATH` by name, creating it if it is gone. Call on SIGHUP after an external tool
    /// moved the file, so writing continues in the new file instead of the moved one.
    package func reopen() async throws {
        try await runBlocking(on: queue) {
            try self.log.withLock { try $0.reopen() }
        }
    }

    /// Syncs and closes the file; later deliveries throw.
    package func close() async {
        _ = try? await runBlocking(on: queue) {
            self.log.withLock { $0.close() }
        }
    }
}
