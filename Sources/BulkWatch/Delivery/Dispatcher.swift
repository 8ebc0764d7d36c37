import Foundation
import Metrics
import Synchronization
public import Logging
public import ServiceLifecycle

/// Fans journal events out to sinks: one task per sink, each reading the journal from its own
/// durable cursor (DESIGN.md §1).
///
/// Why per-sink cursors: a slow or failing sink never blocks another, a restart resumes exactly
/// where each sink stopped, and replay is moving a cursor back. A sink with no cursor yet starts
/// at the beginning of the retained journal: adding a sink never silently skips history.
///
/// On graceful shutdown (or ``finish()``) each sink gets `drainTimeout` to deliver what is already
/// committed, then stops; what it could not deliver stays in the journal for the next start.
public final class Dispatcher: Service {
    /// A sink and the targets whose events it receives (nil: every target).
    public struct Route: Sendable {
        public var sink: any EventSink
        public var targets: Set<String>?

        public init(sink: any EventSink, targets: Set<String>? = nil) {
            self.sink = sink
            self.targets = targets
        }
    }

    /// Events read and handed to a sink at once (a sink may ask for fewer). Large, because a
    /// file sink pays one write + fsync and one cursor write per batch: a 3,000-event poll is one
    /// batch, not six.
    public static let defaultBatchSize = 4096

    private let journal: Journal
    private let routes: [Route]
    private let wakeups: [Wakeup]
    private let logger: Logger
    private let batchSize: Int
    private let drainTimeout: Duration
    private let idlePoll: Duration
    private let health: HealthBoard?
    private let finishing = Mutex(false)

    public convenience init(
        journal: Journal, sinks: [any EventSink], logger: Logger, batchSize: Int = Dispatcher.defaultBatchSize,
        drainTimeout: Duration = .milliseconds(1500), idlePoll: Duration = .seconds(1)
    ) {
        self.init(
            journal: journal, routes: sinks.map { Route(sink: $0) }, logger: logger, batchSize: batchSize,
            drainTimeout: drainTimeout, idlePoll: idlePoll)
    }

    public init(
        journal: Journal, routes: [Route], logger: Logger, batchSize: Int = Dispatcher.defaultBatchSize,
        drainTimeout: Duration = .milliseconds(1500), idlePoll: Duration = .seconds(1), health: HealthBoard? = nil
    ) {
        self.journal = journal
        self.routes = routes
        self.wakeups = routes.map { _ in Wakeup() }
        self.logger = logger
        self.batchSize = batchSize
        self.drainTimeout = drainTimeout
        self.idlePoll = idlePoll
        self.health = health
    }

    /// Tells every sink task that new events were committed.
    public func notify() {
        for wakeup in wakeups { wakeup.ring() }
    }

    /// Drains and stops like a graceful shutdown, without one: used after a `--once` poll and when
    /// a reload replaces the sinks.
    public func finish() {
        finishing.withLock { $0 = true }
        notify()
    }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for (route, wakeup) in zip(routes, wakeups) {
                group.addTask { await self.runSink(route, wakeup: wakeup) }
            }
        }
    }

    private func runSink(_ route: Route, wakeup: Wakeup) async {
        let sink = route.sink
        let filter = Journal.EventFilter(targets: route.targets)
        let metrics = SinkMetrics(sink: sink.name)
        metrics.stopped.record(0)
        var lastLagUpdate = ContinuousClock.now - .seconds(10)
        let logger = self.logger.with("sink", URLRedaction.sinkName(sink.name))
        let policy = sink.deliveryPolicy
        let limit = max(1, min(batchSize, sink.preferredBatchSize))
        var cursor: Int64
        do {
            cursor = try journal.cursor(sink: sink.name) ?? 0
            if let held = try await sink.alreadyDelivered(), held > cursor {
                logger.info("sink already holds events up to \(held); resuming after it")
                cursor = held
                try journal.advanceCursor(sink: sink.name, to: held)
            }
        } catch {
            logger.error("cannot start sink: \(error)")
            return
        }
        // Attempts at the batch starting after `cursor`; reset whenever the cursor moves.
        var attempts = 0
        var generator = SystemRandomNumberGenerator()
        var drainDeadline: ContinuousClock.Instant?
        var drainTarget: Int64 = .max
        while true {
            if drainDeadline == nil, Task.isShuttingDownGracefully || Task.isCancelled || finishing.withLock({ $0 }) {
                drainDeadline = .now + drainTimeout
                drainTarget = (try? journal.lastSequence()) ?? cursor
            }
            if let deadline = drainDeadline, cursor >= drainTarget || ContinuousClock.now >= deadline {
                if cursor < drainTarget {
                    logger.warning("stopping with events \(cursor + 1)...\(drainTarget) undelivered; they stay journaled")
                }
                break
            }
            let batch: [JournalEvent]
            do {
                // An operator may have rewound the cursor (`bulkwatch redeliver --since`): follow it.
                if let stored = try journal.cursor(sink: sink.name), stored < cursor {
                    logger.notice("cursor moved back from \(cursor) to \(stored); re-delivering")
                    cursor = stored
                    attempts = 0
                }
                batch = try journal.events(after: cursor, limit: limit, filter: filter)
                // Lag for metrics: at most once a second, as it counts the backlog.
                if ContinuousClock.now - lastLagUpdate >= .seconds(1) || batch.isEmpty {
                    lastLagUpdate = .now
                    metrics.lag.record(batch.count < limit ? batch.count : try journal.count(after: cursor, filter: filter))
                }
            } catch {
                logger.error("cannot read the journal: \(error)")
                await pause(Schedule.backoff(
                    failures: 3, base: .seconds(1), cap: .seconds(5), retryAfter: nil, using: &generator), drainDeadline)
                continue
            }
            guard let first = batch.first, let last = batch.last else {
                if drainDeadline != nil { break }
                await wakeup.wait(timeout: idlePoll)
                continue
            }
            do {
                try await sink.deliver(batch)
                if try !journal.advanceCursor(sink: sink.name, from: cursor, to: last.sequence) {
                    // Rewound while we delivered: the next round re-reads the stored cursor.
                    cursor = try journal.cursor(sink: sink.name) ?? 0
                    attempts = 0
                    continue
                }
                cursor = last.sequence
                metrics.delivered.increment(by: batch.count)
                if attempts > 0 { logger.info("sink recovered") }
                attempts = 0
            } catch {
                // Cancelled (not a graceful drain): nothing more can be sent; the events stay journaled.
                if Task.isCancelled { break }
                attempts += 1
                metrics.failures.increment()
                let failure = error as? DeliveryFailure ?? DeliveryFailure(.retry(retryAfter: nil), reason: "\(error)")
                let span = first.sequence == last.sequence ? "event \(first.sequence)" : "events \(first.sequence)...\(last.sequence)"
                var retryAfter: Duration?
                var deadLetterReason: String?
                switch failure.disposition {
                case .stopSink:
                    logger.error("stopping this sink: \(failure.reason); \(span) and later stay journaled")
                    try? journal.recordSinkError(sink: sink.name, message: "stopped: \(failure.reason)")
                    metrics.stopped.record(1)
                    health?.sinkStopped(sink.name, reason: failure.reason)
                    await sink.close()
                    return
                case .reject:
                    if attempts >= policy.rejectAttempts { deadLetterReason = failure.reason }
                case .retry(let after):
                    retryAfter = after
                    if let maxAge = policy.maxAge, let age = Self.age(of: first), age > maxAge {
                        deadLetterReason = "\(failure.reason) (older than the max age \(maxAge))"
                    }
                }
                if let reason = deadLetterReason {
                    logger.error("dead-lettering \(span) after \(attempts) attempts: \(reason)")
                    do {
                        if try journal.deadLetter(
                            sink: sink.name, events: batch, reason: reason, attempts: attempts, cursorFrom: cursor)
                        {
                            cursor = last.sequence
                            metrics.deadLetters.increment(by: batch.count)
                        } else {
                            cursor = try journal.cursor(sink: sink.name) ?? 0
                        }
                        attempts = 0
                    } catch {
                        logger.error("cannot record the dead letter: \(error)")
                        await pause(policy.backoffCap, drainDeadline)
                    }
                    continue
                }
                logger.error("delivery of \(span) failed (attempt \(attempts)): \(failure.reason)")
                try? journal.recordSinkError(sink: sink.name, message: failure.reason)
                await pause(
                    Schedule.backoff(
                        failures: attempts, base: policy.backoffBase, cap: policy.backoffCap, retryAfter: retryAfter,
                        using: &generator),
                    drainDeadline)
            }
        }
        await sink.close()
    }

    /// How long ago `event` was detected (its CloudEvents `time`), nil when unparsable.
    static func age(of event: JournalEvent, now: Date = Date()) -> Duration? {
        guard let millis = Timestamp.instantMillis(event.time) else { return nil }
        return .milliseconds(Int64(now.timeIntervalSince1970 * 1000) - millis)
    }

    /// Sleeps, but never past a drain deadline, and returns early on graceful shutdown.
    private func pause(_ delay: Duration, _ deadline: ContinuousClock.Instant?) async {
        let bounded = deadline.map { min(delay, max(.zero, $0 - .now)) } ?? delay
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: bounded) }
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}
