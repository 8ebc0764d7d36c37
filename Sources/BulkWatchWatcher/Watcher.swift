package import BulkWatchAuth
package import BulkWatchDetect
package import BulkWatchOperate
package import BulkWatchSource
package import BulkWatchStore
package import BulkWatchSupport
package import Foundation
package import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// One DruID application to watch.
package struct WatchTarget: Sendable, Equatable {
    /// Keys the target's snapshot in the journal ("default" for the single-target command line).
    package var name: String
    package var endpoint: BulkEndpoint
    /// Becomes the CloudEvents `source`; defaults to the endpoint URL.
    package var source: String
    /// The poll interval while nothing is in progress.
    package var interval: Duration
    /// The poll interval while any known operation has a non-terminal status; nil: always `interval`.
    package var activeInterval: Duration?
    /// Statuses after which an operation no longer changes (see ``Defaults.terminalStatuses``).
    package var terminalStatuses: Set<String>
    package var policy: DetectionPolicy
    /// Delivered events older than this are pruned from the journal.
    package var retain: Duration
    /// How long polls must keep failing before a `bulkwatch.target.failing` event (DESIGN.md §9).
    package var failingAfter: Duration = Defaults.failingAfter

    package init(
        name: String = "default", endpoint: BulkEndpoint, source: String? = nil, interval: Duration = Defaults.interval,
        activeInterval: Duration? = nil, terminalStatuses: Set<String> = Set(Defaults.terminalStatuses),
        policy: DetectionPolicy = DetectionPolicy(), retain: Duration = Defaults.retain
    ) {
        self.name = name
        self.endpoint = endpoint
        self.source = source ?? endpoint.url
        self.interval = interval
        self.activeInterval = activeInterval
        self.terminalStatuses = terminalStatuses
        self.policy = policy
        self.retain = retain
    }

    /// How many listed operations are still in progress. An item without a status counts as in
    /// progress: we cannot tell it is done.
    ///
    /// Runs over every item of every poll (100k on a large tenant), on the status bytes where they lie in
    /// the body; the handful of terminal statuses is scanned only when an item's status differs from the
    /// previous item's (``BulkListing/countItems(byStatus:)``).
    package func activeCount(in listing: BulkListing) -> Int {
        let terminal = terminalStatuses.map { Array($0.utf8) }
        return listing.countItems { status in
            guard let status else { return true }
            return !terminal.contains { $0.elementsEqual(status) }
        }
    }

    /// The cadence after a poll that saw `activeItems` in progress: `activeInterval` while any is.
    package func cadence(activeItems: Int) -> Duration {
        guard let activeInterval, activeItems > 0 else { return interval }
        return activeInterval
    }
}

/// What one poll did, for logs, metrics and tests.
package struct PollReport: Sendable {
    package var items: Int
    /// What the poll journaled (the events themselves are read from the store).
    package var events: CommitSummary
    package var stats: DiffStats
    /// Listed operations whose status is not terminal.
    package var activeItems: Int
}

/// Polls one target on a fixed-rate schedule, diffs each listing against the stored snapshot and
/// commits events and snapshot together (DESIGN.md §1, §3).
///
/// Failed polls (any ``FetchError``) change nothing and are retried with exponential backoff and
/// full jitter from 1 s, capped at the interval, honouring `Retry-After`. On graceful shutdown, or
/// when its task is cancelled (the target was removed or changed by a reload), the in-flight
/// request is abandoned (nothing of it is committed) and `run` returns.
///
/// Adaptive polling: after each successful poll the next one is scheduled at `activeInterval`
/// while any listed operation is still in progress, at `interval` otherwise.
///
/// Every wait (first-poll delay, fixed-rate tick, backoff) and the grid itself are on an injected
/// monotonic clock, `ContinuousClock` in production, so a test can drive the cadence with a manual
/// clock and read the delays the watcher chose instead of sleeping through them.
package final class Watcher: Service {
    private let target: WatchTarget
    private let client: BulkStatusClient
    private let store: any Store
    private let fence: StoreFence
    private let logger: Logger
    private let once: Bool
    private let firstPollDelay: Duration
    private let onCommit: @Sendable () -> Void
    private let tokens: TokenProvider?
    private let health: HealthBoard?
    private let metrics: WatcherMetrics
    private let state: WatcherState
    /// Events journaled since freed memory was last given back (``maintainState()``).
    private let eventsSinceRelease = Mutex(0)
    private let sinksForPruning: (@Sendable () -> [String])?
    /// Wall time for watcher-health events (injected by tests).
    private let now: @Sendable () -> Date
    /// The monotonic clock the schedule runs on (injected by tests).
    private let clock: any Clock<Duration>

    /// - Parameters:
    ///   - once: one poll, then return; a failed poll throws ``OncePollFailed``.
    ///   - firstPollDelay: spreads the first polls of several targets apart.
    ///   - onCommit: called after each commit that stored events (wakes the dispatcher).
    ///   - tokens: the client's token provider, for the token-refresh metric.
    ///   - health: told about every poll, for `/healthz`.
    ///   - sinksForPruning: the sinks the running configuration routes this target to; retention keeps
    ///     every event one of them has not delivered. Nil: this watcher never prunes.
    ///   - fence: what every commit carries: the target's lease in replicated mode.
    ///   - clock: what the schedule, the backoff and the first-poll delay wait on.
    package init(
        target: WatchTarget, client: BulkStatusClient, store: any Store, logger: Logger, once: Bool = false,
        firstPollDelay: Duration = .zero, tokens: TokenProvider? = nil, health: HealthBoard? = nil,
        sinksForPruning: (@Sendable () -> [String])? = nil, fence: StoreFence = .exclusive,
        onCommit: @escaping @Sendable () -> Void = {}, now: @escaping @Sendable () -> Date = { Date() },
        clock: any Clock<Duration> = ContinuousClock()
    ) async throws {
        self.clock = clock
        self.sinksForPruning = sinksForPruning
        self.fence = fence
        self.now = now
        self.target = target
        self.client = client
        self.store = store
        self.logger = logger.with("target", target.name)
        self.once = once
        self.firstPollDelay = firstPollDelay
        self.tokens = tokens
        self.health = health
        self.onCommit = onCommit
        self.metrics = WatcherMetrics(target: target.name)
        let stored = try await store.loadSnapshot(target: target.name)
        self.state = WatcherState(snapshot: stored.snapshot, hasBaseline: stored.hasBaseline)
        metrics.itemsTracked.record(stored.snapshot.count)
        metrics.pollInterval.record(target.interval.seconds)
    }

    private var stopping: Bool { Task.isShuttingDownGracefully || Task.isCancelled }

    package func run() async throws {
        // Bound to a local first: the compiler opens the existential for a local, not for the property.
        let clock = self.clock
        try await run(on: clock)
    }

    /// The loop of ``run()``, generic so the clock's instants can be compared and stored.
    private func run<C: Clock<Duration>>(on clock: C) async throws {
        var failures = 0
        var generator = SystemRandomNumberGenerator()
        var lastPrune = clock.now.advanced(by: .seconds(-3600))
        var cadence = target.interval
        // Compares the wall clock with the real monotonic one, whatever clock the schedule runs on:
        // against a test clock it would see a jump on every advance.
        var wallClock = WallClockWatch()
        var healthTracker = TargetHealthTracker(target: target.name, failingAfter: target.failingAfter)
        if let outage = try? await store.openOutage(target: target.name) {
            healthTracker.resume(outageSince: outage.since, failedAttempts: outage.failedAttempts)
        }
        if firstPollDelay > .zero {
            do {
                try await cancelWhenGracefulShutdown { try await clock.sleep(for: self.firstPollDelay) }
            } catch {
                return
            }
        }
        // The fixed-rate grid restarts whenever the cadence changes.
        var gridStart = clock.now
        while !stopping {
            if let jump = wallClock.jump() { logger.warning("\(WallClockWatch.describe(jump))") }
            let delay: Duration
            let started = clock.now
            do {
                let report = try await cancelWhenGracefulShutdown { try await self.poll(timedOn: clock) }
                if failures > 0 { logger.info("polling recovered after \(failures) failed attempt(s)") }
                failures = 0
                if once {
                    // A cron'd `--once` is the whole life of the process: fold the snapshot's deltas and
                    // apply retention here too, or its state would only ever grow.
                    do {
                        try await maintainState()
                    } catch {
                        logger.warning("state maintenance failed: \(error)")
                    }
                    await prune()
                    return
                }
                if let event = healthTracker.pollSucceeded(at: now()) { _ = await record(event) }
                do {
                    try await maintainState()
                } catch {
                    logger.warning("state maintenance failed: \(error)")
                }
                if lastPrune.duration(to: clock.now) > .seconds(600) {
                    lastPrune = clock.now
                    await prune()
                }
                releaseStartupPages()
                let next = target.cadence(activeItems: report.activeItems)
                if next != cadence {
                    logger.info(
                        "polling every \(next.shortDescription): \(report.activeItems) operation(s) in progress")
                    cadence = next
                    gridStart = started
                    metrics.pollInterval.record(cadence.seconds)
                }
                let finished = clock.now
                delay = finished.duration(to: Schedule.nextTick(after: finished, start: gridStart, interval: cadence))
            } catch let error as FetchError {
                if stopping { return }
                if once {
                    // One poll means one poll: a cron job wants a non-zero exit, not a silent retry loop.
                    throw OncePollFailed(underlying: error)
                }
                failures += 1
                if let event = healthTracker.pollFailed(error: "\(error)", at: now()), !(await record(event)) {
                    healthTracker.failingEventNotRecorded()
                }
                delay = Schedule.backoff(
                    failures: failures, base: .seconds(1), cap: max(.seconds(1), target.interval),
                    retryAfter: error.retryAfter, using: &generator)
                let level: Logger.Level = error.code == .unauthorized || error.code == .token ? .error : .warning
                logger.log(level: level, "poll failed: \(error); retrying in \(delay.shortDescription)")
            } catch is CancellationError {
                return
            } catch {
                if stopping { return }
                // Journal write failures (disk full, read-only) land here: nothing was committed,
                // so the same changes are detected again on the next successful attempt.
                failures += 1
                if let event = healthTracker.pollFailed(error: "cannot record the poll: \(error)", at: now()),
                    !(await record(event))
                {
                    healthTracker.failingEventNotRecorded()
                }
                delay = Schedule.backoff(
                    failures: failures, base: .seconds(1), cap: max(.seconds(1), target.interval), retryAfter: nil,
                    using: &generator)
                logger.error("poll could not be recorded: \(error); retrying in \(delay.shortDescription)")
            }
            do {
                try await cancelWhenGracefulShutdown { try await clock.sleep(for: delay) }
            } catch {
                return
            }
        }
    }

    /// The housekeeping ``run()`` does after each successful poll (fold the snapshot's deltas when due,
    /// checkpoint, give freed memory back: ``FreedMemory``), for benchmarks that drive polls with
    /// ``pollOnce()`` and must pay for it as the daemon does.
    package func maintainState() async throws {
        defer {
            // Only after polls big enough to leave tens of MB of freed blocks behind (a first poll, a 1M-item
            // listing's 30k events): after a small one the next poll reuses them, and giving them back would
            // only make it fault the pages in again.
            let due = eventsSinceRelease.withLock { count in
                guard count >= Self.eventsBeforeRelease else { return false }
                count = 0
                return true
            }
            if due { FreedMemory.release() }
        }
        try await state.maintain(store, target: target.name)
    }

    /// After the first successful poll of any target, start-up is over: what it alone ran (argument parsing,
    /// configuration, migrations, the first poll's encoder) need not stay resident for the life of the daemon
    /// (``StartupPages``). Once per process; every later call returns at once. ``run()`` calls it after each
    /// successful poll's housekeeping; a benchmark that drives polls with ``pollOnce()`` calls it at the same
    /// point, so it measures the daemon's footprint.
    package func releaseStartupPages() {
        guard let release = StartupPages.releaseOnce() else { return }
        FreedMemory.release()
        guard let before = release.residentBefore, let after = release.residentAfter else { return }
        func mebibytes(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1_048_576) }
        let mappings = release.mappings
        logger.debug(
            "start-up pages given back: file-backed resident \(mebibytes(before)) → \(mebibytes(after)) MiB (\(mappings) read-only mappings advised)"
        )
    }

    /// How many journaled events leave enough freed memory behind to be worth giving back.
    static let eventsBeforeRelease = 10_000

    /// Fetch, diff, commit: one poll, outside the schedule. Used by ``run()``, and by tests and
    /// benchmarks that need to drive polls one at a time. Throws ``FetchError`` for a failed poll
    /// (nothing changed), a journal error when the commit failed (nothing changed either).
    @discardableResult
    package func pollOnce() async throws -> PollReport {
        let clock = self.clock
        return try await poll(timedOn: clock)
    }

    /// ``pollOnce()`` with its duration measured on `clock`.
    private func poll<C: Clock<Duration>>(timedOn clock: C) async throws -> PollReport {
        let started = clock.now
        let (outcome, snapshot, listedItems, activeItems) = try await fetchAndDiff()
        let events: CommitSummary
        do {
            let poll = PollCommit(
                target: target.name, source: target.source, outcome: outcome, snapshot: snapshot, detectedAt: Date())
            events = try await store.commit(poll, fence: fence)
        } catch {
            // The diff was applied in place; the journal still holds the state before it, so
            // reload that: a failed commit must leave no trace, in memory or on disk. If even the
            // reload fails, the state is marked stale and the next poll reloads before diffing —
            // diffing against the empty placeholder would report every item as created.
            do {
                let stored = try await store.loadSnapshot(target: target.name)
                state.put(stored.snapshot, hasBaseline: stored.hasBaseline)
            } catch {
                state.markStale()
            }
            metrics.poll(outcome: "journal")
            health?.pollFailed(target: target.name, reason: "cannot record the poll: \(error)")
            throw error
        }
        let tracked = snapshot.count
        state.put(snapshot, hasBaseline: true)
        eventsSinceRelease.withLock { $0 += events.count }
        report(outcome.stats, items: listedItems, events: events.count)
        metrics.poll(outcome: "ok")
        metrics.pollDuration.record(duration: started.duration(to: clock.now))
        metrics.itemsTracked.record(tracked)
        metrics.itemsActive.record(activeItems)
        metrics.lastSuccess.record(Date().timeIntervalSince1970)
        metrics.events(created: events.created, changed: events.changed, expired: events.expired)
        health?.pollSucceeded(target: target.name)
        if !events.isEmpty { onCommit() }
        return PollReport(items: listedItems, events: events, stats: outcome.stats, activeItems: activeItems)
    }

    /// Fetches the listing and diffs it into the snapshot (taken out of the state for the poll). Returns only
    /// what the commit and the report need, so the listing itself (an item per listed operation, ~110 MB at
    /// 1M items) is let go before the commit, whose encoding of a first poll's events is the process's peak.
    private func fetchAndDiff() async throws -> (DiffOutcome, Snapshot, listed: Int, active: Int) {
        let refreshesBefore = await tokens?.refreshCount ?? 0
        let listing: BulkListing
        do {
            listing = try await client.fetch()
            await countTokenRefreshes(since: refreshesBefore)
        } catch let error as FetchError {
            await countTokenRefreshes(since: refreshesBefore)
            metrics.poll(outcome: WatcherMetrics.outcome(of: error))
            health?.pollFailed(target: target.name, reason: "\(error)")
            throw error
        }
        try Task.checkCancellation()
        var (snapshot, hasBaseline) = try await state.take(reloadingFrom: store, target: target.name)
        // A first poll's rows are the new snapshot itself: the stores read them from it (no `TrackedItem`
        // per item beside the events at the poll's peak).
        let outcome = SnapshotDiffer.apply(
            listing, to: &snapshot, policy: target.policy, isFirstRun: !hasBaseline, rowsOfNewSnapshot: false)
        return (outcome, snapshot, listing.count, target.activeCount(in: listing))
    }

    private func countTokenRefreshes(since before: Int) async {
        guard let tokens else { return }
        let after = await tokens.refreshCount
        if after > before { metrics.tokenRefreshes.increment(by: after - before) }
    }

    private func report(_ stats: DiffStats, items: Int, events: Int) {
        for warning in stats.warnings {
            logger.warning("\(warning)")
        }
        if stats.staleIgnored > 0 {
            logger.debug("ignored \(stats.staleIgnored) stale item(s) older than the stored state")
        }
        logger.debug("poll ok", metadata: ["items": "\(items)", "events": "\(events)"])
    }

    /// Journals a watcher-health event and wakes the sinks; false when it could not be written.
    private func record(_ event: OperationalEvent) async -> Bool {
        do {
            if let stored = try await store.append(
                operational: event, target: target.name, source: target.source, fence: fence)
            {
                let since = RFC3339.millisecondsUTC(event.since)
                logger.log(
                    level: event.kind == .targetFailing ? .error : .notice,
                    "\(stored.type): \(event.failedAttempts) failed poll(s) since \(since)")
                metrics.events([stored])
                onCommit()
            }
            return true
        } catch {
            logger.error("cannot record \(event.kind.type): \(error)")
            return false
        }
    }

    /// How long an operation's past lives are remembered after it expired: at least 30 days, so that
    /// one coming back within a month is still told apart from its first life.
    static func incarnationMemory(retain: Duration) -> Duration { max(retain, .seconds(30 * 86400)) }

    private func prune() async {
        guard let sinksForPruning else { return }
        do {
            let now = Date()
            let removed = try await store.prune(
                target: target.name, olderThan: now - target.retain.timeInterval, sinks: sinksForPruning(),
                incarnationCutoff: now - Self.incarnationMemory(retain: target.retain).timeInterval)
            if removed > 0 { logger.info("pruned \(removed) delivered event(s) older than the retention") }
        } catch {
            logger.warning("could not prune the journal: \(error)")
        }
    }
}

/// The single poll of a `--once` run failed; nothing was committed.
package struct OncePollFailed: Error, CustomStringConvertible {
    package var underlying: FetchError
    package var description: String { "poll failed: \(underlying)" }
}

/// The in-memory snapshot between polls.
///
/// Taken out (leaving an empty one behind) for the diff, so the differ mutates the only reference
/// in place instead of copying 100k entries; put back after the commit. Only the watcher's own
/// task does either, one poll at a time; the lock just makes that safe to state to the compiler.
private final class WatcherState: Sendable {
    private let storage: Mutex<(snapshot: Snapshot, hasBaseline: Bool, stale: Bool)>

    init(snapshot: Snapshot, hasBaseline: Bool) {
        storage = Mutex((snapshot, hasBaseline, false))
    }

    /// The snapshot to diff against; reloaded from the journal first when marked stale (and
    /// still stale if that throws, so no poll ever diffs against a placeholder).
    func take(reloadingFrom store: any Store, target: String) async throws -> (Snapshot, Bool) {
        if storage.withLock({ $0.stale }) {
            let stored = try await store.loadSnapshot(target: target)
            put(stored.snapshot, hasBaseline: stored.hasBaseline)
        }
        return storage.withLock { stored in
            let taken = (stored.snapshot, stored.hasBaseline)
            stored.snapshot = Snapshot()
            stored.stale = true
            return taken
        }
    }

    func put(_ snapshot: Snapshot, hasBaseline: Bool) {
        storage.withLock { $0 = (snapshot, hasBaseline, false) }
    }

    func markStale() {
        storage.withLock { $0.stale = true }
    }

    /// Hands the committed snapshot to the store's housekeeping. The snapshot is taken out for the call
    /// and put back after it, so no second reference is alive when the next poll mutates it (which
    /// would copy 100k entries).
    ///
    /// Closes the snapshot's holes and drops its arenas' waste first when expired or replaced entries left
    /// too much behind (``Snapshot/compactBetweenPolls()``): here, between polls, and not inside a poll's diff.
    func maintain(_ store: any Store, target: String) async throws {
        var (snapshot, hasBaseline, stale) = storage.withLock { stored in
            defer { stored.snapshot = Snapshot() }
            return (stored.snapshot, stored.hasBaseline, stored.stale)
        }
        defer { storage.withLock { [snapshot] in $0 = (snapshot, hasBaseline, stale) } }
        guard !stale else { return }
        if snapshot.needsCompaction {
            // The rewrite builds each array anew beside the old one: the blocks the poll freed go back first,
            // or they stay resident under it (+10-14 MB at 100k items in `bulkwatch-bench poll --runs 40`).
            FreedMemory.release()
            snapshot.compactBetweenPolls()
        }
        try await store.maintain(target: target, snapshot: snapshot)
    }
}
