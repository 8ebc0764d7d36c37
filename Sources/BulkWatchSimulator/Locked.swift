import Foundation

/// A value guarded by a lock, so the simulator's state can be read and changed from request handlers and from
/// test code on any thread.
///
/// `Synchronization.Mutex` would be the first choice, but it needs macOS 15 and the package supports macOS 14.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    /// Runs `body` with exclusive access; keep it short and never `await` inside.
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
