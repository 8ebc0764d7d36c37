import Foundation
import Synchronization
public import Logging
public import ServiceLifecycle

/// One DruID application to watch.
public struct WatchTarget: Sendable {
    /// Keys the target's snapshot in the journal ("default" for the single-target command line).
    public var name: String
    public var endpoint: BulkEndpoint
    /// Becomes the CloudEvents `source`; defaults to the endpoint URL.
    public var source: String
    public var interval: Duration
    public var policy: DetectionPolicy
    /// Delivered events older than this are pruned from the journal.
    public var retain: Duration

    public init(
        name: String = "default", endpoint: BulkEndpoint, source: String? = nil, interval: Duration = .seconds(30),
        policy: DetectionPolicy = DetectionPolicy(), retain: Duration = .seconds(7 * 86400)
    ) {
        self.name = name
        self.endpoint = endpoint
        self.source = source ?? endpoint.url
        self.interval = interval
        self.policy = policy
        self.retain = retain
    }
}

/// What one poll did, for logs, metrics and tests.
public struct PollReport: Sendable {
    public var items: Int
    public var events: [JournalEvent]
    public var stats: DiffStats
}

/// Polls one target on a fixed-rate schedule, diffs each listing against the stored snapshot and
/// commits events and snapshot together (DESIGN.md §1, §3).
///
/// Failed polls (any ``FetchError``) change nothing and are retried with exponential backoff and
/// full jitter from 1 s, capped at the interval, honouring `Retry-After`. On graceful shutdown the
/// in-flight request is abandoned (nothing of it is committed) and `run` returns.
public final class Watcher: Service {
    private let target: WatchTarget
    private let client: BulkStatusClient
    private let journal: Journal
    private let logger: Logger
    private let once: Bool
    private let onCommit: @Sendable () -> Void
    private let state: WatcherState

    /// - Parameters:
    ///   - once: one poll, then return; a failed poll throws ``OncePollFailed``.
    ///   - onCommit: called after each commit that stored events (wakes the dispatcher).
    public init(
        target: WatchTarget, client: BulkStatusClient, journal: Journal, logger: Logger, once: Bool = false,
        onCommit: @escaping @Sendable () -> Void = {}
    ) throws {
        self.target = target
        self.client = client
        self.journal = journal
        self.logger = logger.with("target", target.name)
        self.once = once
        self.onCommit = onCommit
        let (snapshot, hasBaseline) = try journal.loadSnapshot(target: target.name)
        self.state = WatcherState(snapshot: snapshot, hasBaseline: hasBaseline)
    }

    public func run() async throws {
        let start = ContinuousClock.now
        var failures = 0
        var generator = SystemRandomNumberGenerator()
        var lastPrune = ContinuousClock.now - .seconds(3600)
        var clock = WallClockWatch()
        while !Task.isShuttingDownGracefully {
            if let jump = clock.jump() { logger.warning("\(WallClockWatch.describe(jump))") }
            let delay: Duration
            do {
                _ = try await cancelWhenGracefulShutdown { try await self.pollOnce() }
                if failures > 0 { logger.info("polling recovered after \(failures) failed attempt(s)") }
                failures = 0
                if once { return }
                do {
                    try journal.checkpoint()
                } catch {
                    logger.warning("WAL checkpoint failed: \(error)")
                }
                if ContinuousClock.now - lastPrune > .seconds(600) {
                    lastPrune = .now
                    prune()
                }
                delay = Schedule.nextTick(after: .now, start: start, interval: target.interval) - .now
            } catch let error as FetchError {
                if once {
                    // One poll means one poll: a cron job wants a non-zero exit, not a silent retry loop.
                    throw OncePollFailed(underlying: error)
                }
                failures += 1
                delay = Schedule.backoff(
                    failures: failures, base: .seconds(1), cap: max(.seconds(1), target.interval),
                    retryAfter: error.retryAfter, using: &generator)
                let level: Logger.Level = error.code == .unauthorized || error.code == .token ? .error : .warning
                logger.log(level: level, "poll failed: \(error); retrying in \(delay.shortDescription)")
            } catch is CancellationError {
                return
            } catch {
                // Journal write failures (disk full, read-only) land here: nothing was committed,
                // so the same changes are detected again on the next successful attempt.
                failures += 1
                delay = Schedule.backoff(
                    failures: failures, base: .seconds(1), cap: max(.seconds(1), target.interval), retryAfter: nil,
                    using: &generator)
                logger.error("poll could not be recorded: \(error); retrying in \(delay.shortDescription)")
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            } catch {
                return
            }
        }
    }

    /// Fetch, diff, commit: one poll, outside the schedule. Used by ``run()``, and by tests and
    /// benchmarks that need to drive polls one at a time. Throws ``FetchError`` for a failed poll
    /// (nothing changed), a journal error when the commit failed (nothing changed either).
    @discardableResult
    public func pollOnce() async throws -> PollReport {
        let listing = try await client.fetch()
        try Task.checkCancellation()
        var (snapshot, hasBaseline) = state.take()
        let outcome = SnapshotDiffer.apply(listing, to: &snapshot, policy: target.policy, isFirstRun: !hasBaseline)
        let events: [JournalEvent]
        do {
            events = try journal.commit(
                target: target.name, source: target.source, outcome: outcome, snapshot: snapshot, detectedAt: Date())
        } catch {
            // The diff was applied in place; the journal still holds the state before it, so
            // reload that: a failed commit must leave no trace, in memory or on disk.
            let (stored, storedBaseline) = try journal.loadSnapshot(target: target.name)
            state.put(stored, hasBaseline: storedBaseline)
            throw error
        }
        state.put(snapshot, hasBaseline: true)
        report(outcome.stats, items: listing.items.count, events: events.count)
        if !events.isEmpty { onCommit() }
        return PollReport(items: listing.items.count, events: events, stats: outcome.stats)
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

    private func prune() {
        do {
            let removed = try journal.prune(olderThan: Date() - target.retain.timeInterval)
            if removed > 0 { logger.info("pruned \(removed) delivered event(s) older than the retention") }
        } catch {
            logger.warning("could not prune the journal: \(error)")
        }
    }
}

/// The single poll of a `--once` run failed; nothing was committed.
public struct OncePollFailed: Error, CustomStringConvertible {
    public var underlying: FetchError
    public var description: String { "poll failed: \(underlying)" }
}

/// The in-memory snapshot between polls.
///
/// Taken out (leaving an empty one behind) for the diff, so the differ mutates the only reference
/// in place instead of copying 100k entries; put back after the commit. Only the watcher's own
/// task does either, one poll at a time; the lock just makes that safe to state to the compiler.
private final class WatcherState: Sendable {
    private let storage: Mutex<(snapshot: Snapshot, hasBaseline: Bool)>

    init(snapshot: Snapshot, hasBaseline: Bool) {
        storage = Mutex((snapshot, hasBaseline))
    }

    func take() -> (Snapshot, Bool) {
        storage.withLock { stored in
            let taken = (stored.snapshot, stored.hasBaseline)
            stored.snapshot = Snapshot()
            return taken
        }
    }

    func put(_ snapshot: Snapshot, hasBaseline: Bool) {
        storage.withLock { $0 = (snapshot, hasBaseline) }
    }
}

extension Duration {
    var timeInterval: TimeInterval { Double(nanoseconds) / 1e9 }

    /// `1.5s`, `250ms`: for log lines.
    var shortDescription: String {
        let millis = nanoseconds / 1_000_000
        return millis < 1000 ? "\(millis)ms" : String(format: "%.1fs", Double(millis) / 1000)
    }
}
