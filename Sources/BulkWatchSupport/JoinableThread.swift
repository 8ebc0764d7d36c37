import Foundation
import Synchronization

/// One piece of blocking work on a thread of its own, and a way to wait for it to end.
///
/// Why a thread and not a dispatch queue: the callers wait for the work (the decode for its second half and for
/// the reader of the arriving body, a commit for its event encoder, the transport's shutdown for its loop), and a
/// worker of a pool that the cooperative threads share might not come while they wait.
package final class JoinableThread: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let joined = Mutex(false)

    /// Starts `work` now on a new thread named `name`.
    package init(name: String, _ work: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in
            work()
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Returns once the work has ended: everything it wrote is then visible to the caller. Only the first call
    /// waits; the callers here join from one thread, after which later calls return at once.
    package func join() {
        let first = joined.withLock { joined in
            defer { joined = true }
            return !joined
        }
        if first { done.wait() }
    }
}
