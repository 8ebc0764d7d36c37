// JoinableThread runs its work on a parked thread (ParkedThreads) instead of a new one: a thread created by a busy
// thread waited a median ~2.8 ms for its first run here. These tests hold the pool to what the callers rely on:
// the work runs and join waits for it, a parked thread serves the next work, no cap on how many run at once (a
// cap would deadlock callers that wait for each other), at most `keptParked` stay parked, and each thread shows
// its work's name to the kernel.
import Dispatch
import Foundation
import Synchronization
import Testing

@testable import BulkWatchSupport

@Suite("JoinableThread on parked threads")
struct JoinableThreadTests {
    @Test("join returns after the work, and sees what it wrote")
    func joinWaitsForTheWork() {
        let written = Mutex(0)
        let thread = JoinableThread(name: "test-join") {
            usleep(20_000)
            written.withLock { $0 = 42 }
        }
        thread.join()
        #expect(written.withLock { $0 } == 42)
        thread.join()  // a second join returns at once
    }

    @Test("a parked thread serves the next work")
    func parkedThreadIsReused() {
        let pool = ParkedThreads()
        let first = Self.runAndWait(on: pool) { pthread_self() }
        #expect(pool.parkedCount == 1)
        let second = Self.runAndWait(on: pool) { pthread_self() }
        #expect(pthread_equal(first, second) != 0)
        #expect(pool.parkedCount == 1)
    }

    @Test("more works than parked threads all run at once; only keptParked stay parked")
    func noCapOnConcurrentWork() {
        let pool = ParkedThreads()
        let count = ParkedThreads.keptParked + 2
        let arrived = Mutex(0)
        let allArrived = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let sawEveryone = Mutex(0)
        for _ in 0..<count {
            pool.run(name: "test-barrier") {
                let last = arrived.withLock { arrived in
                    arrived += 1
                    return arrived == count
                }
                if last {
                    for _ in 0..<count { allArrived.signal() }
                }
                // Each work waits for all the others to have started: only works running at once get past.
                if allArrived.wait(timeout: .now() + 10) == .success {
                    sawEveryone.withLock { $0 += 1 }
                }
                finished.signal()
            }
        }
        for _ in 0..<count {
            #expect(finished.wait(timeout: .now() + 20) == .success)
        }
        #expect(sawEveryone.withLock { $0 } == count)
        // The threads park after signalling `finished`: wait for them to settle.
        let deadline = ContinuousClock.now + .seconds(10)
        while pool.parkedCount < ParkedThreads.keptParked, ContinuousClock.now < deadline {
            usleep(1_000)
        }
        usleep(50_000)
        #expect(pool.parkedCount == ParkedThreads.keptParked)
    }

    @Test("the thread carries its work's name while it runs, cut to Linux's 15 bytes")
    func threadIsNamedForItsWork() {
        let pool = ParkedThreads()
        let first = Self.runAndWait(on: pool) { Self.kernelThreadName() }
        #expect(first == "test-work")
        let named = Self.runAndWait(on: pool, name: "bulkwatch-enc") { Self.kernelThreadName() }
        #expect(named == "bulkwatch-enc")
        let cut = Self.runAndWait(on: pool, name: "bulkwatch-a-very-long-name") { Self.kernelThreadName() }
        #expect(cut == "bulkwatch-a-ver")
    }

    /// Runs `body` on `pool` and waits for its result.
    private static func runAndWait<T: Sendable>(
        on pool: ParkedThreads, name: String? = nil, _ body: @escaping @Sendable () -> T
    ) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        pool.run(name: name ?? "test-work") {
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        // The thread parks after `done`: wait until it has, so the next run finds it parked.
        let deadline = ContinuousClock.now + .seconds(10)
        while pool.parkedCount == 0, ContinuousClock.now < deadline { usleep(1_000) }
        return result.withLock { $0! }
    }

    /// The calling thread's name as the kernel has it.
    private static func kernelThreadName() -> String? {
        guard let comm = try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8) else { return nil }
        return comm.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
