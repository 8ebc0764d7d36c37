import BulkWatchStore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The open JSON-lines file behind a ``FileSink`` and what the sink knows about it. A plain value mutated only
/// under the sink's mutex, so every invariant below holds between two calls:
/// - the file at `fd` ends with `\n` (or is empty) unless `needsRecovery` is set;
/// - `size` is the file's length;
/// - `lastLine` is the last event known to be in the file or the one rotated out of it.
struct FileLog {
    let path: String
    let maxBytes: Int64
    let keep: Int
    var fd: Int32 = -1
    var size: Int64 = 0
    var lastLine: DeliveredMark?
    var needsRecovery = true
    var closed = false

    /// Lines longer than this at the end of the file are not scanned for; bodies are bounded far below it.
    static let maxTailScan: Int64 = 16 << 20

    /// What one write carries at most (but for a single longer line).
    static let pieceBytes = 256 << 10
    /// The buffer the lines are written from, kept between batches. Why not a batch's lines in one fresh buffer:
    /// a steady 100k poll's batch is ~1.5 MB, mapped anew each time, and its ~370 page faults (~2 µs each on
    /// this project's machine) cost more than writing it.
    private var piece: [UInt8] = []

    init(path: String, maxBytes: Int64, keep: Int) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
    }

    // MARK: Writing

    /// Appends the events this file does not hold yet, rotating first if they would overflow it, then `fsync`s.
    /// The lines go out in writes of whole lines (``pieceBytes`` at most, but for a longer line), so a reader
    /// never sees a torn line between two writes. On any failure the file is cut back to where it was, so
    /// nothing of the batch survives; if even that fails, the next call repairs the tail before writing.
    mutating func append(_ events: [JournalEvent]) throws {
        if closed { throw SinkIOError(.closed, path: path, message: "file sink \(path) is closed") }
        if needsRecovery { try recover() }
        // Every event handed is written, also one at or below the last line's sequence: the dispatcher hands
        // those only after an operator rewound the cursor, or for a new journal.
        guard let newest = events.last else { return }
        let total = events.reduce(0) { $0 + $1.body.count + 1 }
        // Rotate before, never during, a batch: a line is never split across files. A batch larger than
        // maxBytes on its own still goes into one (fresh) file.
        if size > 0, size + Int64(total) > maxBytes {
            try rotate()
        }

        let before = size
        var written = 0
        defer {
            // A line longer than a piece grew the buffer: that much is not kept for the next batch.
            if piece.capacity > 2 * Self.pieceBytes { piece = [] }
        }
        do throws(PartialWrite) {
            piece.removeAll(keepingCapacity: true)
            piece.reserveCapacity(Self.pieceBytes)
            // By index, reading only the body in place: `for event in events` copied each event, a retain and
            // a release of its five strings and arrays (~0.2 ms of a steady 100k poll's 3,000 events, `perf`).
            for index in events.indices {
                let length = events[index].body.count
                if !piece.isEmpty, piece.count + length + 1 > Self.pieceBytes {
                    try writeFully(fd, piece)
                    written += piece.count
                    piece.removeAll(keepingCapacity: true)
                }
                events[index].body.withUnsafeBufferPointer { piece.append(contentsOf: $0) }
                piece.append(UInt8(ascii: "\n"))
            }
            try writeFully(fd, piece)
        } catch {
            let note = rollBack(to: before, written: written + error.written, events: events.count)
            throw SinkIOError.system("write", path: path, errno: error.errno, note: note)
        }
        size += Int64(total)
        if fsync(fd) != 0 {
            let number = errno
            let note = rollBack(to: before, written: total, events: events.count)
            throw SinkIOError.system("fsync", path: path, errno: number, note: note)
        }
        lastLine = DeliveredMark(sequence: newest.sequence, body: newest.body)
    }

    /// Cuts the file back to `offset` after a failed batch. Truncating frees blocks, so it works even when
    /// the disk is full. Returns the note for the error message.
    private mutating func rollBack(to offset: Int64, written: Int, events: Int) -> String {
        guard written > 0 else { return "nothing written" }
        if ftruncate(fd, off_t(offset)) == 0 {
            size = offset
            return "batch of \(events) event(s) rolled back"
        }
        needsRecovery = true
        return "partial batch left; its torn line is cut before the next write"
    }

    // MARK: Rotation and reopening

    /// `PATH.(keep-1)` → `PATH.keep` … `PATH` → `PATH.1`, then a fresh `PATH`. Renaming (not copying and
    /// truncating) is what lets `tail -F` finish the old file and follow the new one without loss.
    mutating func rotate() throws {
        if keep == 0 {
            if unlink(path) != 0, errno != ENOENT {
                throw SinkIOError.system("rotate", path: path, errno: errno)
            }
        } else {
            for index in stride(from: keep - 1, through: 1, by: -1) {
                let from = "\(path).\(index)"
                if rename(from, "\(path).\(index + 1)") != 0, errno != ENOENT {
                    throw SinkIOError.system("rotate", path: from, errno: errno)
                }
            }
            if rename(path, "\(path).1") != 0, errno != ENOENT {
                throw SinkIOError.system("rotate", path: path, errno: errno)
            }
        }
        // From here on the descriptor names the rotated file; if opening the new one fails, the next call
        // opens it by path.
        closeDescriptor(fd)
        fd = -1
        needsRecovery = true
        try openByPath()
        needsRecovery = false
    }

    /// Closes the descriptor and opens `PATH` again: after an external tool (logrotate) moved the file.
    mutating func reopen() throws {
        if closed { throw SinkIOError(.closed, path: path, message: "file sink \(path) is closed") }
        if fd >= 0 {
            closeDescriptor(fd)
            fd = -1
        }
        needsRecovery = true
        try recover()
    }

    mutating func close() {
        if fd >= 0 {
            _ = fsync(fd)
            closeDescriptor(fd)
            fd = -1
        }
        closed = true
    }

    /// Opens (creating, mode 0600) the file at `path` and reads its size. Read-write, not write-only, because
    /// the tail repair reads back the file it writes.
    private mutating func openByPath() throws {
        let descriptor = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            let number = errno
            if number == ELOOP {
                throw SinkIOError(
                    .invalidOption, path: path, errno: number,
                    message: "file sink \(path): is a symbolic link; give the path of the file itself")
            }
            if number == EISDIR {
                throw SinkIOError(
                    .invalidOption, path: path, errno: number, message: "file sink \(path): is a directory")
            }
            throw SinkIOError.system("open", path: path, errno: number)
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let number = errno
            closeDescriptor(descriptor)
            throw SinkIOError.system("stat", path: path, errno: number)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            closeDescriptor(descriptor)
            throw SinkIOError(
                .invalidOption, path: path,
                message: "file sink \(path): not a regular file (rotation and repair need one; use stdout:json)")
        }
        fd = descriptor
        size = Int64(info.st_size)
        syncDirectory()
    }

    /// Makes a created or renamed entry durable, so after a power cut the file the journal cursor trusts is
    /// still found by name. Best effort: some file systems refuse to fsync a directory.
    private func syncDirectory() {
        let directory = open(parentDirectory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { return }
        _ = fsync(directory)
        closeDescriptor(directory)
    }

    // MARK: Recovery

    /// Opens the file if needed, cuts a torn last line, and learns the last sequence it holds (from `PATH.1`
    /// when `PATH` holds no line, e.g. a crash right after a rotation).
    ///
    /// A torn line is an event whose write did not complete; its batch's cursor was never committed, so the
    /// journal will hand it again whole. Cutting it is what makes "no repeated event, no broken line" hold.
    mutating func recover() throws {
        if fd < 0 { try openByPath() }
        let tail = try Self.scanTail(fd: fd, size: size, path: path)
        // Decide that this is a bulkwatch log before changing a byte of it.
        var found: DeliveredMark?
        if let line = tail.lastLine {
            found = DeliveredMark(sequence: try Self.sequence(of: line, path: path), body: line)
        }
        if tail.validEnd < size {
            let torn = try Self.readRange(fd: fd, from: tail.validEnd, to: min(size, tail.validEnd + 64), path: path)
            guard Self.couldStartAnEvent(torn) else {
                throw SinkIOError(
                    .unrecognisedContent, path: path,
                    message: "file sink \(path): is not a bulkwatch event log (its last line is not an event); "
                        + "move the file aside or choose another path")
            }
        }
        if tail.validEnd < size {
            guard ftruncate(fd, off_t(tail.validEnd)) == 0 else {
                throw SinkIOError.system("repair the torn last line of", path: path, errno: errno)
            }
            _ = fsync(fd)
            size = tail.validEnd
        }
        if found == nil {
            found = try Self.lastLine(inRotated: "\(path).1")
        }
        if let found { lastLine = found }
        needsRecovery = false
    }

    /// Every event this sink writes begins with these bytes (``CloudEventEncoder``).
    private static let eventStart = Array(#"{"specversion":"1.0","#.utf8)

    /// Whether an unterminated tail is what a write of ours that a crash cut short leaves behind: the
    /// beginning of an event, nothing else.
    static func couldStartAnEvent(_ torn: [UInt8]) -> Bool {
        let length = min(torn.count, eventStart.count)
        return length > 0 && torn[..<length].elementsEqual(eventStart[..<length])
    }

    /// The last complete line of a rotated file, which is only read, never repaired.
    private static func lastLine(inRotated rotated: String) throws -> DeliveredMark? {
        let descriptor = open(rotated, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw SinkIOError.system("open", path: rotated, errno: errno)
        }
        defer { closeDescriptor(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw SinkIOError.system("stat", path: rotated, errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        let tail = try scanTail(fd: descriptor, size: Int64(info.st_size), path: rotated)
        return try tail.lastLine.map { DeliveredMark(sequence: try sequence(of: $0, path: rotated), body: $0) }
    }

    /// The top-level CloudEvents `sequence` (a string per the extension; a number is accepted too).
    static func sequence(of line: [UInt8], path: String) throws -> Int64 {
        let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
        // A bulkwatch event: a CloudEvent with an id and a type of ours, and a sequence.
        let type = object?["type"] as? String ?? ""
        guard object?["specversion"] as? String == "1.0", object?["id"] is String,
            type.hasPrefix("bulk.") || type.hasPrefix("bulkwatch.")
        else {
            throw SinkIOError(
                .unrecognisedContent, path: path,
                message: "file sink \(path): is not a bulkwatch event log (its last line is not an event); "
                    + "move the file aside or choose another path")
        }
        switch object?["sequence"] {
        case let text as String:
            if let value = Int64(text) { return value }
        case let number as NSNumber:
            return number.int64Value
        default:
            break
        }
        throw SinkIOError(
            .unrecognisedContent, path: path,
            message: "file sink \(path): last line is not a bulkwatch event with a sequence; "
                + "move the file aside or choose another path")
    }

    /// Where the complete lines end and the last non-blank complete line, found by reading backwards from the
    /// end in growing windows: normally one 64 KiB read, never the whole file.
    static func scanTail(fd: Int32, size: Int64, path: String) throws -> (validEnd: Int64, lastLine: [UInt8]?) {
        var window: Int64 = 64 << 10
        while true {
            let start = max(0, size - window)
            let bytes = try readRange(fd: fd, from: start, to: size, path: path)
            if let found = lastLine(in: bytes, startingAt: start) { return found }
            guard window < maxTailScan else {
                throw SinkIOError(
                    .unrecognisedContent, path: path,
                    message: "file sink \(path): no complete line in the last \(maxTailScan >> 20) MiB; "
                        + "move the file aside or choose another path")
            }
            window *= 4
        }
    }

    /// `bytes` is the file from offset `start` to its end; nil means a larger window is needed.
    static func lastLine(in bytes: [UInt8], startingAt start: Int64) -> (validEnd: Int64, lastLine: [UInt8]?)? {
        let newline = UInt8(ascii: "\n")
        let atFileStart = start == 0
        guard let lastNewline = bytes.lastIndex(of: newline) else {
            return atFileStart ? (0, nil) : nil
        }
        let validEnd = start + Int64(lastNewline + 1)
        var lineEnd = lastNewline
        while true {
            let lineStart: Int
            if let previous = bytes[..<lineEnd].lastIndex(of: newline) {
                lineStart = previous + 1
            } else if atFileStart {
                lineStart = 0
            } else {
                return nil
            }
            let line = bytes[lineStart..<lineEnd]
            if line.contains(where: { !isWhitespace($0) }) { return (validEnd, Array(line)) }
            if lineStart == 0 { return (validEnd, nil) }
            lineEnd = lineStart - 1
        }
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    private static func readRange(fd: Int32, from start: Int64, to end: Int64, path: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Int(end - start))
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(start) + off_t(done))
            }
            if result > 0 {
                done += result
            } else if result == 0 {
                bytes.removeLast(bytes.count - done)  // shrank under us; scan what is there
                break
            } else if errno != EINTR {
                throw SinkIOError.system("read", path: path, errno: errno)
            }
        }
        return bytes
    }
}
