import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Another `bulkwatch run` (or `demo`) already holds the state: one line naming the state and the holder.
package struct StateInUse: Error, Sendable, CustomStringConvertible {
    package var description: String
}

/// An exclusive lock on a state database for the lifetime of the process that watches it.
///
/// Two watchers on one state would both poll and both deliver, repeating every event. The lock is a
/// `flock` on `STATE.lock` beside the database (created 0600, holding the holder's pid for the error
/// message): the kernel drops it when the process dies, however it dies, so a crash never leaves a
/// stale lock behind. It is a separate file because SQLite's own POSIX locks on the database are
/// released whenever any descriptor of that file is closed. Read-only commands and `redeliver` do
/// not take it: they work beside a running watcher.
package final class StateLock: Sendable {
    package let path: String
    private let descriptor: Int32

    /// Takes the lock or throws ``StateInUse`` at once (never waits).
    package init(statePath: String) throws {
        path = statePath + ".lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw JournalError(description: "cannot create the lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let number = errno
            let holder = Self.readPID(fd)
            close(fd)
            guard number == EWOULDBLOCK else {
                throw JournalError(description: "cannot lock \(path): \(String(cString: strerror(number)))")
            }
            let who = holder.map { "another bulkwatch (pid \($0))" } ?? "another bulkwatch"
            throw StateInUse(
                description: "state \(statePath) is in use by \(who); stop it first or pass another --state")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        descriptor = fd
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    deinit {
        close(descriptor)
    }
}
