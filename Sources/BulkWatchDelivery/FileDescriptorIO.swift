import Dispatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Why a local sink (stdout, file) could not deliver: one clear line naming the destination, so the log
/// says at once which file or stream failed and what the operator can do about it.
package struct SinkIOError: Error, Sendable, CustomStringConvertible {
    /// Coarse classes callers may branch on; new ones may be added, so match with `==`, not `switch`.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// The reader of stdout went away (EPIPE). Retrying will not help.
        package static let brokenPipe = Code(name: "broken pipe")
        /// The disk is full (ENOSPC) or over quota (EDQUOT); the batch was rolled back.
        package static let noSpace = Code(name: "no space left")
        package static let permissionDenied = Code(name: "permission denied")
        /// The directory that should hold the file does not exist.
        package static let missingDirectory = Code(name: "missing directory")
        /// The file's last line is not an event this sink wrote, so it cannot tell where to resume.
        package static let unrecognisedContent = Code(name: "unrecognised content")
        /// `deliver` after `close()`.
        package static let closed = Code(name: "closed")
        /// A configuration value is out of range.
        package static let invalidOption = Code(name: "invalid option")
        package static let other = Code(name: "I/O error")
        package var description: String { name }
    }

    package var code: Code
    /// The file path, or `stdout`.
    package var path: String
    /// The failing call's errno, 0 when none.
    package var errno: Int32
    package var message: String

    package var description: String { message }

    init(_ code: Code, path: String, errno: Int32 = 0, message: String) {
        self.code = code
        self.path = path
        self.errno = errno
        self.message = message
    }

    /// Classifies `errno` from `operation` ("open", "write", …) on `path` into one readable line.
    static func system(_ operation: String, path: String, errno number: Int32, note: String = "") -> SinkIOError {
        let suffix = note.isEmpty ? "" : " (\(note))"
        switch number {
        case EPIPE:
            return SinkIOError(
                .brokenPipe, path: path, errno: number,
                message: "\(path): the reader closed its end of the pipe (EPIPE)\(suffix)")
        case ENOSPC, EDQUOT:
            return SinkIOError(
                .noSpace, path: path, errno: number,
                message: "cannot \(operation) \(path): \(describe(number))\(suffix)")
        case EACCES, EPERM, EROFS:
            return SinkIOError(
                .permissionDenied, path: path, errno: number,
                message: "cannot \(operation) \(path): \(describe(number))\(suffix)")
        case ENOENT:
            let directory = parentDirectory(of: path)
            return SinkIOError(
                .missingDirectory, path: path, errno: number,
                message: "cannot \(operation) \(path): directory \(directory) does not exist\(suffix)")
        case ENOTDIR:
            let directory = parentDirectory(of: path)
            return SinkIOError(
                .missingDirectory, path: path, errno: number,
                message: "cannot \(operation) \(path): \(directory) is not a directory\(suffix)")
        default:
            return SinkIOError(
                .other, path: path, errno: number, message: "cannot \(operation) \(path): \(describe(number))\(suffix)")
        }
    }

    private static func describe(_ number: Int32) -> String {
        guard let text = strerror(number) else { return "errno \(number)" }
        return String(cString: text).lowercased()
    }
}

/// The directory part of `path` as written (`.` when there is none), for error messages.
func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// `close(2)` under a name that does not collide with the sinks' own `close()` methods.
func closeDescriptor(_ fd: Int32) {
    _ = close(fd)
}

/// Writes all of `bytes` to `fd`, resuming after partial writes and EINTR, and waiting for the descriptor to
/// drain when it is non-blocking (an inherited stdout may be). Returns normally only if every byte was
/// accepted; otherwise throws the errno together with how many bytes did get written, so the caller can roll
/// back a torn line.
func writeFully(_ fd: Int32, _ bytes: [UInt8]) throws(PartialWrite) {
    var written = 0
    while written < bytes.count {
        let result = bytes.withUnsafeBytes { buffer in
            write(fd, buffer.baseAddress! + written, buffer.count - written)
        }
        if result > 0 {
            written += result
            continue
        }
        let number = result < 0 ? errno : EIO
        if number == EINTR { continue }
        if number == EAGAIN || number == EWOULDBLOCK {
            var pending = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&pending, 1, -1)
            continue
        }
        throw PartialWrite(errno: number, written: written)
    }
}

/// A write that stopped early: the errno and the count of bytes that did reach the descriptor.
struct PartialWrite: Error {
    var errno: Int32
    var written: Int
}

/// Runs blocking descriptor work (a `write` to a stalled pipe, an `fsync`) on `queue` instead of a cooperative
/// thread: on a two-core host a sink blocked in the kernel must not starve the watcher or the other sinks.
func runBlocking<T: Sendable>(on queue: DispatchQueue, _ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        queue.async {
            continuation.resume(with: Result { try work() })
        }
    }
}
