import Foundation
import Synchronization

/// One piece of blocking work on a thread of its own, and a way to wait for it to end.
///
/// Why a thread and not a dispatch queue: the callers wait for the work (the decode for its second half and for
/// the reader of the arriving body, a commit for its event encoder, the transport's shutdown for its loop), and a
/// worker of a pool that the cooperative threads share might not come while they wait.
///
/// Why the thread is a parked one (``ParkedThreads``) and not a new one: Linux places a new thread on the CPU of
/// the thread that creates it, where it waits for the creator's time slice to end while the other CPU may sit
/// idle. On this project's 2-core machine a thread created by a busy thread first ran after a median of ~2.8 ms
/// (a woken parked thread: ~15 µs), and every poll creates three of them (the reader of the arriving body, the
/// decode's second half, the commit's encoder), each on the poll's critical path.
package final class JoinableThread: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let joined = Mutex(false)

    /// Starts `work` now on a thread named `name` (at most 15 bytes of it show, as Linux keeps them).
    package init(name: String, _ work: @escaping @Sendable () -> Void) {
        ParkedThreads.shared.run(name: name) { [done] in
            work()
            done.signal()
        }
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

/// Threads that wait, parked, for the next ``JoinableThread``'s work; a new one is started only when none is
/// parked. At most ``keptParked`` stay parked: a poll uses three at once, and a thread beyond them ends after its
/// work.
final class ParkedThreads: Sendable {
    static let shared = ParkedThreads()
    static let keptParked = 4

    private let parked = Mutex<[ParkedThread]>([])

    func run(name: String, _ work: @escaping @Sendable () -> Void) {
        if let thread = parked.withLock({ $0.popLast() }) {
            thread.hand(name: name, work)
            return
        }
        let thread = ParkedThread()
        thread.hand(name: name, work)
        let started = Thread { [self] in thread.serve(parkingIn: self) }
        started.start()
    }

    /// How many threads are parked now.
    var parkedCount: Int { parked.withLock { $0.count } }

    /// Parks `thread` for the next work; false when enough are parked already (the thread then ends).
    fileprivate func park(_ thread: ParkedThread) -> Bool {
        parked.withLock { parked in
            guard parked.count < Self.keptParked else { return false }
            parked.append(thread)
            return true
        }
    }
}

/// One parked thread: the work it was handed, and the semaphore it waits on for the next.
private final class ParkedThread: Sendable {
    private let handed = DispatchSemaphore(value: 0)
    private let work = Mutex<(name: String, run: @Sendable () -> Void)?>(nil)

    func hand(name: String, _ run: @escaping @Sendable () -> Void) {
        work.withLock { $0 = (name, run) }
        handed.signal()
    }

    /// The thread's life: run what it is handed, park, until the pool has enough parked.
    func serve(parkingIn pool: ParkedThreads) {
        repeat {
            handed.wait()
            // Taken out, so what the work captured is released when it ends, not when the next arrives.
            if let next = work.withLock({ $0.take() }) {
                Self.nameCurrentThread(next.name)
                next.run()
                Self.nameCurrentThread("bulkwatch-park")
            }
        } while pool.park(self)
    }

    /// Names the calling thread as `top -H` and `ps -L` show it: Linux refuses names over 15 bytes, so the name is
    /// cut there (at a character boundary).
    private static func nameCurrentThread(_ name: String) {
        var bytes = 0
        var cut = name.startIndex
        for index in name.indices {
            let length = name[index].utf8.count
            guard bytes + length <= 15 else { break }
            bytes += length
            cut = name.index(after: index)
        }
        Thread.current.name = String(name[..<cut])
    }
}
