import Synchronization

/// A monotonic clock that moves only when the test says so.
///
/// Code under test sleeps on it as on `ContinuousClock`. ``advance(by:)`` moves time forward and
/// resumes every sleeper whose deadline has passed; ``waitForSleepers(_:timeout:)`` suspends the test
/// until the code under test has reached its next wait. Together they let a test check a schedule by
/// the delays the code chose, without sleeping on the real clock and without racing the code it drives.
///
/// Written here rather than taken from swift-clocks: the tests need that one wait-for-sleepers hook,
/// which swift-clocks' `TestClock` lacks (it yields a fixed number of times and hopes), and a test-only
/// clock is not worth two more packages for CI's fresh clone to build.
package final class TestClock: Clock, Sendable {
    package struct Instant: InstantProtocol, CustomStringConvertible {
        /// Time since the clock was created.
        package var offset: Duration

        package init(offset: Duration = .zero) {
            self.offset = offset
        }

        package func advanced(by duration: Duration) -> Instant {
            Instant(offset: offset + duration)
        }

        package func duration(to other: Instant) -> Duration {
            other.offset - offset
        }

        package static func < (lhs: Instant, rhs: Instant) -> Bool {
            lhs.offset < rhs.offset
        }

        package var description: String { "t+\(offset)" }
    }

    /// The clock read past the real-time budget of ``waitForSleepers(_:timeout:)``.
    package struct Timeout: Error, CustomStringConvertible {
        package var expected: Int
        package var sleeping: Int
        package var description: String { "waited for \(expected) sleeper(s) on the test clock; \(sleeping) came" }
    }

    private struct Sleeper {
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct Watch {
        var count: Int
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant()
        var nextID: UInt64 = 0
        var sleepers: [UInt64: Sleeper] = [:]
        var watches: [UInt64: Watch] = [:]

        mutating func takeID() -> UInt64 {
            defer { nextID += 1 }
            return nextID
        }

        /// Removes and returns the watches that the current number of sleepers satisfies.
        mutating func satisfiedWatches() -> [CheckedContinuation<Void, any Error>] {
            let satisfied = watches.filter { $0.value.count <= sleepers.count }
            for id in satisfied.keys { watches.removeValue(forKey: id) }
            return satisfied.values.map(\.continuation)
        }
    }

    private let state = Mutex(State())

    package init() {}

    package var now: Instant { state.withLock { $0.now } }

    package var minimumResolution: Duration { .zero }

    /// Returns at once for a deadline already reached, like `ContinuousClock`; throws
    /// `CancellationError` when the sleeping task is cancelled.
    package func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try Task.checkCancellation()
        let id = state.withLock { $0.takeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let woken: [CheckedContinuation<Void, any Error>]? = state.withLock { state in
                    guard deadline > state.now else { return nil }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return state.satisfiedWatches()
                }
                guard let woken else { return continuation.resume() }
                for watch in woken { watch.resume() }
                // Cancelled before the handler could find the sleeper: whoever removes it resumes it.
                if Task.isCancelled, let mine = state.withLock({ $0.sleepers.removeValue(forKey: id) }) {
                    mine.continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            state.withLock { $0.sleepers.removeValue(forKey: id) }?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Tasks sleeping on the clock now.
    package var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// The earliest deadline anyone sleeps until, nil when nobody sleeps.
    package var nextDeadline: Instant? { state.withLock { $0.sleepers.values.map(\.deadline).min() } }

    /// How long the earliest sleeper asked to wait from now, nil when nobody sleeps.
    package var nextDelay: Duration? {
        state.withLock { state in state.sleepers.values.map(\.deadline).min().map { state.now.duration(to: $0) } }
    }

    /// Moves time forward by `duration` and resumes every sleeper whose deadline is now reached,
    /// earliest first. Sleepers that the woken tasks start afterwards wait for the next advance.
    package func advance(by duration: Duration) {
        precondition(duration >= .zero, "a monotonic clock does not go back")
        let due = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.value.deadline <= now }
                .sorted { ($0.value.deadline, $0.key) < ($1.value.deadline, $1.key) }
            for (id, _) in due { state.sleepers.removeValue(forKey: id) }
            return due.map(\.value.continuation)
        }
        for continuation in due { continuation.resume() }
    }

    /// Moves time to the earliest deadline anyone sleeps until (nothing when nobody sleeps).
    package func advanceToNextDeadline() {
        guard let delay = nextDelay else { return }
        advance(by: delay)
    }

    /// Suspends until at least `count` tasks sleep on the clock: the code under test has done what it
    /// does before its next wait. Throws ``Timeout`` after `timeout` of real time, so a broken schedule
    /// fails its test instead of hanging it.
    package func waitForSleepers(_ count: Int = 1, timeout: Duration = .seconds(30)) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.sleepers(atLeast: count) }
            group.addTask {
                try await ContinuousClock().sleep(for: timeout)
                throw Timeout(expected: count, sleeping: self.sleeperCount)
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Lets the waits of the code under test pass one at a time, each as soon as it starts, until
    /// `condition` holds; false when it still does not after `steps` waits.
    package func advanceUntil(steps: Int = 1000, _ condition: () async throws -> Bool) async throws -> Bool {
        for _ in 0..<steps {
            try await waitForSleepers()
            if try await condition() { return true }
            advanceToNextDeadline()
        }
        return try await condition()
    }

    private func sleepers(atLeast count: Int) async throws {
        let id = state.withLock { $0.takeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let ready = state.withLock { state in
                    guard state.sleepers.count < count else { return true }
                    state.watches[id] = Watch(count: count, continuation: continuation)
                    return false
                }
                if ready { return continuation.resume() }
                if Task.isCancelled, let mine = state.withLock({ $0.watches.removeValue(forKey: id) }) {
                    mine.continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            state.withLock { $0.watches.removeValue(forKey: id) }?.continuation.resume(throwing: CancellationError())
        }
    }
}
