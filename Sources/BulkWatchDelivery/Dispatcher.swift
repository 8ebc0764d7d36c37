package import BulkWatchOperate
package import BulkWatchStore
import BulkWatchSupport
import Foundation
package import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Fans journal events out to sinks: one task per sink, each reading the journal from its own
/// durable cursor (DESIGN.md §1).
///
/// Why per-sink cursors: a slow or failing sink never blocks another, a restart resumes exactly
/// where each sink stopped, and replay is moving a cursor back. A sink with no cursor yet starts
/// at the beginning of the retained journal: adding a sink never silently skips history.
///
/// On graceful shutdown (or when a reload replaces the sinks) each sink drains what is already
/// committed, but never faster than its delivery policy (DESIGN.md §5): a drain waits out a backoff
/// that ends before its deadline, stops at one that does not, and stops at the first failure rather
/// than retrying early or dead-lettering. What it could not deliver stays in the journal for the next
/// start. After a `--once` poll (``finish(drainTimeout:)`` without a limit) there is no shutdown: the
/// policy applies in full, dead letters included, and a sink stops once its next attempt would come
/// later than the drain time from now.
package final class Dispatcher: Service {
    /// A sink, the targets whose events it receives (nil: every target) and its filter (DESIGN.md §9).
    package struct Route: Sendable {
        package var sink: any EventSink
        package var targets: Set<String>?
        package var filter: SinkFilter
        /// Whether operational events pass when the filter names no types (stdout).
        package var operationalByDefault: Bool

        package init(
            sink: any EventSink, targets: Set<String>? = nil, filter: SinkFilter = SinkFilter(),
            operationalByDefault: Bool = false
        ) {
            self.sink = sink
            self.targets = targets
            self.filter = filter
            self.operationalByDefault = operationalByDefault
        }

        /// Of the events read ahead, the next ones to deliver (at most `limit`), how many before the
        /// last of them the filter passed over, and how many of `ahead` that uses up. When none
        /// matches, everything is passed over (and used up) and `deliver` is empty.
        func select(_ ahead: ArraySlice<JournalEvent>, limit: Int) -> (
            deliver: [JournalEvent], passedOver: Int, consumed: Int
        ) {
            var deliver: [JournalEvent] = []
            var passedOver = 0
            var skipped = 0
            var consumed = 0
            for event in ahead {
                if filter.matches(event, operationalByDefault: operationalByDefault) {
                    deliver.append(event)
                    // Filtered events after the last delivered one are counted with a later batch.
                    passedOver += skipped
                    skipped = 0
                    if deliver.count == limit { break }
                } else {
                    skipped += 1
                }
            }
            guard !deliver.isEmpty else { return ([], ahead.count, ahead.count) }
            consumed = deliver.count + passedOver
            return (deliver, passedOver, consumed)
        }
    }

    /// How one sink's task ended: nil `problem` means everything committed before the end was delivered
    /// and its cursor recorded. `--once` exits 1 when any sink has a problem.
    package struct SinkOutcome: Sendable, Equatable {
        package var sink: String
        package var problem: String?
    }

    /// Events read and handed to a sink at once (a sink may ask for fewer). Large, because a
    /// file sink pays one write + fsync and one cursor write (a durable commit) per batch: a steady
    /// 100k poll (~3,000 events) is one batch, and a first poll of 1M is 62 batches, not 245 (at 4,096
    /// its fsyncs and cursor commits were 2.5 of its 19 s). A batch is ~8 MB of event bodies at most.
    package static let defaultBatchSize = 16_384

    private let store: any Store
    /// The lease fence of each sink's cursor moves, by sink name; a sink not named writes as
    /// ``StoreFence/exclusive`` (the single writer of an SQLite state).
    private let sinkFences: [String: StoreFence]
    private let routes: [Route]
    private let wakeups: [Wakeup]
    private let logger: Logger
    private let batchSize: Int
    private let drainTimeout: Duration
    private let idlePoll: Duration
    private let health: HealthBoard?
    private let onEverySinkStopped: (@Sendable (String) -> Void)?
    /// Set by ``finish(drainTimeout:)``: the drain's time limit, `.some(nil)` for none (`--once`).
    private let finishing = Mutex<Duration??>(nil)
    private let outcomes = Mutex<[SinkOutcome]>([])
    private let stoppedByThemselves = Mutex<[String: String]>([:])

    package convenience init(
        store: any Store, sinks: [any EventSink], logger: Logger, batchSize: Int = Dispatcher.defaultBatchSize,
        drainTimeout: Duration = .milliseconds(1500), idlePoll: Duration = .seconds(1)
    ) {
        self.init(
            store: store, routes: sinks.map { Route(sink: $0) }, logger: logger, batchSize: batchSize,
            drainTimeout: drainTimeout, idlePoll: idlePoll)
    }

    /// - Parameters:
    ///   - drainTimeout: how long a graceful shutdown lets sinks deliver what is committed.
    ///   - onEverySinkStopped: called once when every sink has stopped by itself (a 410, a closed
    ///     stdout): nothing is left to deliver to, so the process should end, as a filter whose reader
    ///     is gone does.
    ///   - sinkFences: what each sink's cursor moves carry, by sink name: its lease in replicated mode
    ///     and under `--once` on PostgreSQL.
    package init(
        store: any Store, routes: [Route], logger: Logger, batchSize: Int = Dispatcher.defaultBatchSize,
        drainTimeout: Duration = .milliseconds(1500), idlePoll: Duration = .seconds(1), health: HealthBoard? = nil,
        sinkFences: [String: StoreFence] = [:], onEverySinkStopped: (@Sendable (String) -> Void)? = nil
    ) {
        self.store = store
        self.sinkFences = sinkFences
        self.routes = routes
        self.wakeups = routes.map { _ in Wakeup() }
        self.logger = logger
        self.batchSize = batchSize
        self.drainTimeout = drainTimeout
        self.idlePoll = idlePoll
        self.health = health
        self.onEverySinkStopped = onEverySinkStopped
    }

    private func fence(for sink: String) -> StoreFence { sinkFences[sink] ?? .exclusive }

    /// Tells every sink task that new events were committed.
    package func notify() {
        for wakeup in wakeups { wakeup.ring() }
    }

    /// Drains and stops like a graceful shutdown, without one: after a `--once` poll (`drainTimeout`
    /// nil: as long as deliveries succeed) and when a reload replaces the sinks (the default limit).
    package func finish(drainTimeout: Duration? = nil) {
        finishing.withLock { $0 = .some(drainTimeout) }
        notify()
    }

    /// How each sink's task ended, once ``run()`` has returned.
    package var sinkOutcomes: [SinkOutcome] { outcomes.withLock { $0 } }

    package func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for (route, wakeup) in zip(routes, wakeups) {
                group.addTask { await self.runSink(route, wakeup: wakeup) }
            }
        }
    }

    /// The drain in progress: until `target` is delivered, or `deadline` passes.
    private struct Drain {
        var deadline: ContinuousClock.Instant?
        var target: Int64
        /// A shutdown (or a sink swap) ends at the first failure; the end of a `--once` run lets the
        /// delivery policy run its course, as long as its retries come within the drain time.
        var stopsAtFirstFailure: Bool
    }

    /// A drain begins at graceful shutdown, cancellation or ``finish(drainTimeout:)``.
    private func drainRequested(cursor: Int64) async -> Drain? {
        let limit: Duration?
        if let requested = finishing.withLock({ $0 }) {
            limit = requested
        } else if Task.isShuttingDownGracefully || Task.isCancelled {
            limit = drainTimeout
        } else {
            return nil
        }
        let target = (try? await store.lastSequence()) ?? cursor
        return Drain(
            deadline: limit.map { .now + $0 }, target: target,
            stopsAtFirstFailure: limit != nil)
    }

    private func runSink(_ route: Route, wakeup: Wakeup) async {
        let sink = route.sink
        let filter = EventFilter(targets: route.targets)
        let metrics = SinkMetrics(sink: sink.name)
        metrics.stopped.record(0)
        var lastLagUpdate = ContinuousClock.now - .seconds(10)
        let logger = self.logger.with("sink", URLRedaction.sinkName(sink.name))
        let policy = sink.deliveryPolicy
        let limit = max(1, min(batchSize, sink.preferredBatchSize))
        /// Delivered so far (in memory) and what the journal records: they differ only while a cursor
        /// write keeps failing, which must not make the sink deliver the same events again.
        var cursor: Int64
        var recorded: Int64
        do {
            let state = try await store.cursorState(sink: sink.name)
            cursor = state?.sequence ?? 0
            if let mark = try await sink.lastDelivered(), state?.rewound != true, mark.sequence > cursor,
                try await store.event(sequence: mark.sequence)?.body == mark.body
            {
                // The sink holds this journal's event: the crash came after the write, before the cursor.
                logger.info("sink already holds events up to \(mark.sequence); resuming after it")
                if try await store.advanceCursor(
                    sink: sink.name, from: cursor, to: mark.sequence, filtered: 0, fence: fence(for: sink.name))
                {
                    cursor = mark.sequence
                }
            }
            recorded = cursor
        } catch {
            logger.error("cannot start sink: \(error)")
            end(sink.name, problem: "cannot start: \(error)")
            return
        }
        // Attempts at the batch starting after `cursor`; reset whenever the cursor moves.
        var attempts = 0
        var generator = SystemRandomNumberGenerator()
        var retryNotBefore: ContinuousClock.Instant?
        var drain: Drain?
        var problem: String?
        var lastFailure = ""
        /// Events after `cursor` read ahead of delivery: one read serves many one-event webhook posts.
        var readAhead: ArraySlice<JournalEvent> = []
        /// Delivered events whose cursor write is still to be started (coalesced: one write covers every
        /// batch delivered while the previous write was in flight).
        var unrecorded: (to: Int64, span: String, filtered: Int)?
        /// The one cursor write in flight. Deliveries go on while it runs and it is awaited only when it
        /// must be: when it has finished, before the next write (one at a time, in sequence order), and
        /// before a drain, a backoff, a dead letter or going idle. So a slow write (a PostgreSQL commit
        /// with fsync, an SQLite writer busy with a poll's commit) costs one write per round trip of the
        /// store, not one per event. A task of its own rather than a child so that it can outlive one
        /// turn of the loop; it is always awaited before the loop ends, and cancelled with it.
        var writing: (task: Task<CursorRecord, Never>, to: Int64, finished: CompletionFlag)?
        /// Applies the outcome of a cursor write; false when the loop must end.
        func applied(_ record: CursorRecord, to sequence: Int64) -> Bool {
            switch record {
            case .recorded:
                recorded = sequence
            case .movedByOperator(let stored):
                // Rewound while we delivered: deliver again from where the operator put it.
                logger.notice("cursor moved from \(recorded) to \(stored); delivering from there")
                cursor = stored
                recorded = stored
                readAhead = []
                unrecorded = nil
                attempts = 0
                retryNotBefore = nil
            case .notRecorded(let reason):
                problem = "delivered up to \(sequence) but could not record the cursor: \(reason)"
                return false
            }
            return true
        }
        /// Starts the cursor write of everything delivered so far, if none is in flight.
        func startWrite() {
            guard writing == nil, let pending = unrecorded else { return }
            unrecorded = nil
            let finished = CompletionFlag()
            let from = recorded
            let task = Task {
                defer { finished.set() }
                return await self.recordCursor(
                    sink.name, from: from, to: pending.to, filtered: pending.filtered, span: pending.span,
                    logger: logger)
            }
            writing = (task, pending.to, finished)
        }
        /// Waits for the write in flight and applies it; false when the loop must end.
        func awaitWrite() async -> Bool {
            guard let current = writing else { return true }
            writing = nil
            let record = await withTaskCancellationHandler {
                await current.task.value
            } onCancel: {
                current.task.cancel()
            }
            return applied(record, to: current.to)
        }
        /// Does every pending cursor write now; false when the loop must end.
        func flushPending() async -> Bool {
            guard await awaitWrite() else { return false }
            startWrite()
            return await awaitWrite()
        }
        loop: while true {
            if drain == nil { drain = await drainRequested(cursor: cursor) }
            // The pending cursor write normally runs during the next delivery; before a drain or a backoff
            // it is done at once (a new event must not wait behind it: commits hold the same writer).
            if unrecorded != nil || writing != nil, drain != nil || retryNotBefore != nil {
                guard await flushPending() else { break loop }
            }
            if let current = drain {
                if cursor >= current.target { break }
                if let deadline = current.deadline, ContinuousClock.now >= deadline {
                    problem = undelivered(cursor, current.target, lastFailure, logger)
                    break
                }
                if let notBefore = retryNotBefore, notBefore > .now {
                    // Never shorten a backoff: wait it out if the drain lasts that long (a drain without
                    // a deadline waits at most the shutdown drain time), else stop here.
                    if notBefore > current.deadline ?? (.now + drainTimeout) {
                        problem = undelivered(cursor, current.target, lastFailure, logger)
                        break
                    }
                    try? await Task.sleep(until: notBefore, clock: .continuous)
                    if Task.isCancelled {
                        problem = undelivered(cursor, current.target, lastFailure, logger)
                        break
                    }
                }
            } else if let notBefore = retryNotBefore, notBefore > .now {
                // Ends early on shutdown or finish (then the drain above decides), or on a commit.
                await cancelWhenGracefulShutdown { await wakeup.wait(timeout: notBefore - .now) }
                continue
            }
            if readAhead.isEmpty {
                do {
                    // An operator may have moved the cursor (`bulkwatch redeliver --since`): follow it. With a
                    // write in flight the stored cursor is ahead of `recorded` anyway; that write's
                    // compare-and-set notices a move instead.
                    if writing == nil, let stored = try await store.cursor(sink: sink.name), stored != recorded {
                        logger.notice("cursor moved from \(recorded) to \(stored); delivering from there")
                        cursor = stored
                        recorded = stored
                        unrecorded = nil  // the operator's position wins over a write still pending
                        attempts = 0
                        retryNotBefore = nil
                    }
                    let read = max(limit, batchSize)
                    readAhead = try await store.routableEvents(after: cursor, limit: read, targets: route.targets)[...]
                    // Lag for metrics: at most once a second, as it counts the backlog.
                    if ContinuousClock.now - lastLagUpdate >= .seconds(1) || readAhead.isEmpty {
                        lastLagUpdate = .now
                        let lag =
                            readAhead.count < read
                            ? readAhead.count : try await store.count(after: cursor, filter: filter)
                        metrics.lag.record(lag)
                    }
                } catch {
                    logger.error("cannot read the journal: \(error)")
                    if let current = drain {
                        problem = undelivered(cursor, current.target, "cannot read the journal: \(error)", logger)
                        break
                    }
                    retryNotBefore =
                        .now
                        + Schedule.backoff(
                            failures: 3, base: .seconds(1), cap: .seconds(5), retryAfter: nil, using: &generator)
                    continue
                }
            }
            if readAhead.isEmpty {
                if drain != nil { break }
                if unrecorded != nil || writing != nil {
                    // Caught up: record the cursor before going idle, then look again.
                    guard await flushPending() else { break loop }
                    continue
                }
                await wakeup.wait(timeout: idlePoll)
                continue
            }
            let (batch, passedOver, consumed) = route.select(readAhead, limit: limit)
            guard let first = batch.first, let last = batch.last else {
                // Nothing read is for this sink: move past it all (DESIGN.md §9), then read on.
                let skippedTo = readAhead.last?.sequence ?? cursor
                let count = readAhead.count
                readAhead = []
                cursor = skippedTo
                metrics.filtered.increment(by: count)
                if let pending = unrecorded {
                    unrecorded = (skippedTo, pending.span, pending.filtered + count)
                } else {
                    unrecorded = (skippedTo, "filtered events", count)
                }
                continue
            }
            let span =
                first.sequence == last.sequence
                ? "event \(first.sequence)" : "events \(first.sequence)...\(last.sequence)"
            // The cursor write of what was delivered before overlaps this batch's delivery; order is kept
            // because a cursor only moves after its write is done, and writes happen one at a time, in sequence.
            startWrite()
            var deliveryError: (any Error)?
            do { try await sink.deliver(batch) } catch { deliveryError = error }
            if let current = writing, current.finished.isSet {
                guard await awaitWrite() else { break loop }
                if readAhead.isEmpty {
                    // The operator moved the cursor while this batch went out: deliver again from there,
                    // whatever became of this batch.
                    continue
                }
            }
            if let error = deliveryError {
                // Cancelled (not a graceful drain): nothing more can be sent; the events stay journaled.
                if Task.isCancelled {
                    problem = undelivered(cursor, drain?.target ?? last.sequence, "cancelled", logger)
                    break
                }
                attempts += 1
                metrics.failures.increment()
                let failure = Self.failure(from: error)
                lastFailure = failure.reason
                if case .stopSink = failure.disposition {
                    _ = await flushPending()
                    logger.error("stopping this sink: \(failure.reason); \(span) and later stay journaled")
                    try? await store.recordSinkError(sink: sink.name, message: "stopped: \(failure.reason)")
                    metrics.stopped.record(1)
                    health?.sinkStopped(sink.name, reason: failure.reason)
                    await sink.close()
                    end(sink.name, problem: "stopped: \(failure.reason)")
                    stoppedByItself(sink.name, reason: failure.reason)
                    return
                }
                try? await store.recordSinkError(sink: sink.name, message: failure.reason)
                if let current = drain, current.stopsAtFirstFailure {
                    // A drain never retries early and never dead-letters: the rest waits for the next start.
                    logger.error("delivery of \(span) failed while stopping: \(failure.reason)")
                    problem = undelivered(cursor, current.target, failure.reason, logger)
                    break
                }
                var retryAfter: Duration?
                var deadLetterReason: String?
                switch failure.disposition {
                case .stopSink:
                    break
                case .reject:
                    if attempts >= policy.rejectAttempts { deadLetterReason = failure.reason }
                case .retry(let after):
                    retryAfter = after
                    if let maxAge = policy.maxAge, let age = Self.age(of: first), age > maxAge {
                        deadLetterReason = "\(failure.reason) (older than the max age \(maxAge))"
                    }
                }
                if let reason = deadLetterReason {
                    // The dead letter moves the cursor from what is recorded: everything before it first.
                    guard await flushPending() else { break loop }
                    logger.error("dead-lettering \(span) after \(attempts) attempts: \(reason)")
                    do {
                        if try await store.deadLetter(
                            sink: sink.name, events: batch, reason: reason, attempts: attempts, cursorFrom: recorded,
                            fence: fence(for: sink.name))
                        {
                            cursor = last.sequence
                            recorded = last.sequence
                            readAhead = readAhead.dropFirst(consumed)
                            metrics.deadLetters.increment(by: batch.count)
                        } else {
                            cursor = try await store.cursor(sink: sink.name) ?? 0
                            recorded = cursor
                            readAhead = []
                        }
                        attempts = 0
                        retryNotBefore = nil
                    } catch {
                        logger.error("cannot record the dead letter: \(error)")
                        retryNotBefore = .now + policy.backoffCap
                    }
                    continue
                }
                let delay = Schedule.backoff(
                    failures: attempts, base: policy.backoffBase, cap: policy.backoffCap, retryAfter: retryAfter,
                    using: &generator)
                logger.error(
                    "delivery of \(span) failed (attempt \(attempts)): \(failure.reason); retrying in \(delay.shortDescription)"
                )
                retryNotBefore = .now + delay
                continue
            }
            if attempts > 0 { logger.info("sink recovered") }
            attempts = 0
            retryNotBefore = nil
            lastFailure = ""
            metrics.delivered.increment(by: batch.count)
            if passedOver > 0 { metrics.filtered.increment(by: passedOver) }
            cursor = last.sequence
            readAhead = readAhead.dropFirst(consumed)
            unrecorded = (
                last.sequence, unrecorded == nil ? span : "events up to \(last.sequence)",
                (unrecorded?.filtered ?? 0) + passedOver
            )
        }
        _ = await flushPending()
        end(sink.name, problem: problem)
        await sink.close()
    }

    /// Set once by a cursor-write task when it ends, so the loop can tell without waiting.
    private final class CompletionFlag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .releasing) }
        var isSet: Bool { value.load(ordering: .acquiring) }
    }

    private enum CursorRecord {
        case recorded
        case movedByOperator(Int64)
        case notRecorded(String)
    }

    /// Writes the cursor after a delivery. A failing write is a store problem, not a delivery failure:
    /// it is retried on its own (the events are not sent again, nothing counts towards dead-lettering)
    /// until it succeeds, or until shutdown, when the next start re-delivers those events with their
    /// same ids.
    private func recordCursor(
        _ sink: String, from expected: Int64, to sequence: Int64, filtered: Int, span: String, logger: Logger
    ) async -> CursorRecord {
        var failures = 0
        var generator = SystemRandomNumberGenerator()
        while true {
            do {
                if try await store.advanceCursor(
                    sink: sink, from: expected, to: sequence, filtered: filtered, fence: fence(for: sink))
                {
                    return .recorded
                }
                return .movedByOperator(try await store.cursor(sink: sink) ?? 0)
            } catch {
                failures += 1
                if failures == 1 || failures.isMultiple(of: 20) {
                    logger.error("delivered \(span) but cannot record the cursor (attempt \(failures)): \(error)")
                }
                if Task.isShuttingDownGracefully || Task.isCancelled || finishing.withLock({ $0 }) != nil {
                    return .notRecorded("\(error)")
                }
                let delay = Schedule.backoff(
                    failures: failures, base: .milliseconds(200), cap: .seconds(10), retryAfter: nil,
                    using: &generator)
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            }
        }
    }

    /// Logs and describes what a drain leaves in the journal.
    private func undelivered(_ cursor: Int64, _ target: Int64, _ reason: String, _ logger: Logger) -> String? {
        guard cursor < target else { return nil }
        let because = reason.isEmpty ? "" : ": \(reason)"
        logger.warning("stopping with events \(cursor + 1)...\(target) undelivered; they stay journaled")
        return "events \(cursor + 1)...\(target) undelivered\(because)"
    }

    private func end(_ sink: String, problem: String?) {
        outcomes.withLock { $0.append(SinkOutcome(sink: sink, problem: problem)) }
    }

    private func stoppedByItself(_ sink: String, reason: String) {
        let everyOne = stoppedByThemselves.withLock { stopped -> String? in
            stopped[sink] = reason
            guard stopped.count == routes.count else { return nil }
            return stopped.sorted { $0.key < $1.key }.map { sink, reason in
                reason.hasPrefix(sink) ? reason : "\(sink): \(reason)"
            }.joined(separator: "; ")
        }
        if let everyOne { onEverySinkStopped?(everyOne) }
    }

    /// The dispatcher's reading of a sink error: a closed stdout stops the sink (retrying cannot help),
    /// any other error that is not a ``DeliveryFailure`` is retried.
    static func failure(from error: any Error) -> DeliveryFailure {
        if let failure = error as? DeliveryFailure { return failure }
        if let io = error as? SinkIOError, io.code == .brokenPipe {
            return DeliveryFailure(.stopSink, reason: io.message)
        }
        return DeliveryFailure(.retry(retryAfter: nil), reason: "\(error)")
    }

    /// How long ago `event` was detected (its CloudEvents `time`), nil when unparsable.
    static func age(of event: JournalEvent, now: Date = Date()) -> Duration? {
        guard let millis = Timestamp.instantMillis(event.time) else { return nil }
        return .milliseconds(Int64(now.timeIntervalSince1970 * 1000) - millis)
    }
}
