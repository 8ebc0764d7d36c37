package import BulkWatchDetect
package import Foundation

/// The durable spine of bulkwatch (DESIGN.md §1): each target's snapshot, the event journal, each
/// sink's cursor and dead letters. Everything above it (watchers, the dispatcher, the commands) uses
/// only this protocol, so the SQLite file of a single machine and a PostgreSQL database shared by
/// replicas are interchangeable.
///
/// What every implementation must guarantee (the store test suite checks each, per backend):
/// - **One transaction per poll.** ``commit(_:fence:)`` stores the events and the snapshot change
///   together or not at all; only then do sinks see the events.
/// - **Sequences only grow.** A committed event's sequence is above every sequence ever assigned
///   before it, whatever was pruned, and sequences are assigned in commit order, so a reader past
///   its cursor never misses an event committed later.
/// - **Fencing.** A write that carries a ``StoreFence`` happens only while that fence is still
///   valid (the lease is held with that epoch), checked inside the same transaction; a backend with a
///   single writer (SQLite under ``StateLock``) accepts ``StoreFence/exclusive``.
/// - **Retention loses nothing.** ``prune(target:olderThan:sinks:incarnationCutoff:)`` deletes only
///   events every given sink has passed; dead letters keep their events.
/// - **Appends, not rewrites.** A steady poll writes O(changes), mostly sequentially.
///
/// Methods are `async`: an implementation does its I/O on its own threads (SQLite) or event loops
/// (PostgreSQL), never blocking the cooperative pool that fetches, delivers and serves `/metrics`.
package protocol Store: Sendable {
    /// Where this store lives, for log lines (a path, or a URL without its password).
    var location: String { get }

    /// A random id given to the journal when it was created: a state that was replaced is a new journal.
    func journalID() async throws -> String

    // MARK: Snapshots and polls

    /// The stored snapshot of `target` and whether a successful poll was ever recorded for it.
    func loadSnapshot(target: String) async throws -> StoredSnapshot

    /// Commits one successful poll: the snapshot change and the new events, atomically. Returns what it
    /// journaled: the sequences and counts, not the events, which a first poll of 1M items could not hold
    /// (~600 MB); sinks read them with ``events(after:limit:filter:)``, from memory while they are recent.
    func commit(_ poll: PollCommit, fence: StoreFence) async throws -> CommitSummary

    /// Housekeeping after a commit, off its path: folding the snapshot's changes into a new image when
    /// they outgrow it, checkpointing. `snapshot` is the target's state as committed; the store must
    /// not keep it past the call (the watcher mutates it in place on the next poll).
    func maintain(target: String, snapshot: Snapshot) async throws

    /// Deletes `target`'s events older than `cutoff` that every sink in `sinks` has delivered (dead
    /// letters keep theirs), and incarnation records of operations that expired before
    /// `incarnationCutoff`. Returns how many events were deleted.
    func prune(target: String, olderThan cutoff: Date, sinks: [String], incarnationCutoff: Date?) async throws -> Int

    // MARK: Reading the journal

    /// Events with sequence greater than `after`, ascending, at most `limit`.
    func events(after: Int64, limit: Int, filter: EventFilter) async throws -> [JournalEvent]

    /// How many events after `after` match `filter` (a sink's lag).
    func count(after: Int64, filter: EventFilter) async throws -> Int

    /// The highest sequence ever assigned (0 for a new journal), even when its event was pruned.
    func lastSequence() async throws -> Int64

    func event(sequence: Int64) async throws -> JournalEvent?

    func event(id: String) async throws -> JournalEvent?

    /// Events after `after` (ascending, at most `limit`) of `targets` (nil: all), each with its
    /// ``JournalEvent/target`` set: the dispatcher's read, whose per-sink filters need the target.
    func routableEvents(after: Int64, limit: Int, targets: Set<String>?) async throws -> [JournalEvent]

    /// Appends one operational event (`bulkwatch.target.*`, DESIGN.md §9) of `target`, numbered like
    /// a poll's events; nil when an event with its stable id is already journaled (re-emission).
    func append(operational event: OperationalEvent, target: String, source: String, fence: StoreFence)
        async throws -> JournalEvent?

    /// The outage of `target` that a `bulkwatch.target.failing` event opened and no `.recovered`
    /// closed yet (a restart in the middle of an outage): its first failure and the attempts so far.
    func openOutage(target: String) async throws -> (since: Date, failedAttempts: Int)?

    // MARK: Cursors

    /// The cursor of `sink`, nil when the sink never ran.
    func cursorState(sink: String) async throws -> CursorState?

    /// Moves `sink`'s cursor from `expected` to `sequence` if nobody moved it meanwhile (an operator's
    /// rewind), adding `filtered` to the count of events its filter passed over, in one transaction;
    /// false when the stored cursor was not `expected`. A missing cursor counts as 0.
    func advanceCursor(sink: String, from expected: Int64, to sequence: Int64, filtered: Int, fence: StoreFence)
        async throws -> Bool

    /// How many events each sink's filter passed over, by sink name.
    func filteredCounts() async throws -> [String: Int64]

    /// Sets `sink`'s cursor as an operator's rewind (`redeliver --since`): the sink re-delivers
    /// everything after `sequence`, and its own notion of what it holds does not skip that.
    func rewindCursor(sink: String, to sequence: Int64) async throws

    /// Remembers the last delivery problem of `sink` (shown by `deliveries`).
    func recordSinkError(sink: String, message: String) async throws

    /// Records which sinks the running configuration names; the others are listed as stale.
    func markConfiguredSinks(_ names: [String]) async throws

    // MARK: Dead letters

    /// Records `events` as dead letters of `sink` and moves its cursor past them, in one transaction,
    /// if the cursor is still `expected`.
    func deadLetter(
        sink: String, events: [JournalEvent], reason: String, attempts: Int, cursorFrom expected: Int64,
        fence: StoreFence
    ) async throws -> Bool

    /// Dead letters, oldest first; only `sink`'s when given.
    func deadLetters(sink: String?) async throws -> [DeadLetter]

    /// Forgets one dead letter (after it was re-sent). Returns whether it existed.
    func removeDeadLetter(sink: String, sequence: Int64) async throws -> Bool

    /// What `bulkwatch deliveries` shows, one entry per sink the store knows.
    func sinkStatuses() async throws -> [SinkStatus]
}

extension Store {
    package func events(after: Int64, limit: Int = 1000) async throws -> [JournalEvent] {
        try await events(after: after, limit: limit, filter: EventFilter())
    }

    @discardableResult
    package func prune(target: String, olderThan cutoff: Date, sinks: [String]) async throws -> Int {
        try await prune(target: target, olderThan: cutoff, sinks: sinks, incarnationCutoff: nil)
    }

    package func count(after: Int64) async throws -> Int {
        try await count(after: after, filter: EventFilter())
    }

    /// Commits `poll` and reads back the events it journaled (tests and benchmarks; the daemon never needs
    /// them all at once). The sequences of one commit are contiguous, so this reads exactly its own.
    package func commitReadingBack(_ poll: PollCommit, fence: StoreFence) async throws -> [JournalEvent] {
        let summary = try await commit(poll, fence: fence)
        guard let sequences = summary.sequences else { return [] }
        return try await events(after: sequences.lowerBound - 1, limit: summary.count, filter: EventFilter())
    }

    /// Every retained event in order (tests and the `events` command).
    package func allEvents() async throws -> [JournalEvent] {
        try await events(after: 0, limit: Int.max, filter: EventFilter())
    }

    package func advanceCursor(sink: String, from expected: Int64, to sequence: Int64, fence: StoreFence)
        async throws -> Bool
    {
        try await advanceCursor(sink: sink, from: expected, to: sequence, filtered: 0, fence: fence)
    }

    package func cursor(sink: String) async throws -> Int64? {
        try await cursorState(sink: sink)?.sequence
    }

    package func deadLetters() async throws -> [DeadLetter] {
        try await deadLetters(sink: nil)
    }
}

/// Proof that the writer may still write: in replicated mode the lease it holds (owner and epoch),
/// checked inside each commit's transaction (DESIGN.md §8), so a paused or cut-off ex-owner can never
/// commit. A single-writer store guarded by ``StateLock`` accepts ``exclusive``.
package struct StoreFence: Sendable, Equatable, CustomStringConvertible {
    /// The lease's name (`target:NAME`, `sink:NAME`), nil for ``exclusive``.
    package var lease: String?
    package var owner: String
    package var epoch: Int64

    package init(lease: String, owner: String, epoch: Int64) {
        self.lease = lease
        self.owner = owner
        self.epoch = epoch
    }

    private init() {
        lease = nil
        owner = "this process"
        epoch = 0
    }

    /// The writer is the only one (the state lock is held for the process's lifetime).
    package static let exclusive = StoreFence()

    package var description: String { lease.map { "\($0) (owner \(owner), epoch \(epoch))" } ?? "exclusive" }
}

/// The store refused a fenced write: the lease moved on. Nothing was written.
package struct FencedOut: Error, Sendable, CustomStringConvertible {
    package var fence: StoreFence
    package var description: String { "lease lost: \(fence); nothing was written" }

    package init(fence: StoreFence) { self.fence = fence }
}

/// A target's snapshot as stored, and whether a successful poll was ever recorded for it.
package struct StoredSnapshot: Sendable {
    package var snapshot: Snapshot
    package var hasBaseline: Bool

    package init(snapshot: Snapshot, hasBaseline: Bool) {
        self.snapshot = snapshot
        self.hasBaseline = hasBaseline
    }
}

/// What one ``Store/commit(_:fence:)`` journaled: its events took the contiguous sequences
/// ``sequences``, one per change of the poll, in the order of ``DiffOutcome/changes``.
package struct CommitSummary: Sendable, Equatable {
    /// Sequence of the first event (meaningless when there were none).
    package var firstSequence: Int64
    package var created = 0
    package var changed = 0
    package var expired = 0

    /// Counts the changes `outcome` turns into events, the first at `firstSequence`.
    package init(_ outcome: DiffOutcome, firstSequence: Int64) {
        self.firstSequence = firstSequence
        for change in outcome.changes {
            switch change.kind {
            case .created: created += 1
            case .changed: changed += 1
            case .expired: expired += 1
            }
        }
    }

    package var count: Int { created + changed + expired }
    package var isEmpty: Bool { count == 0 }

    /// The sequences the events took; nil when the poll journaled none.
    package var sequences: ClosedRange<Int64>? {
        count > 0 ? firstSequence...(firstSequence + Int64(count) - 1) : nil
    }
}

/// One successful poll, as the watcher hands it to ``Store/commit(_:fence:)``.
package struct PollCommit: Sendable {
    package var target: String
    /// Becomes the CloudEvents `source` (and part of the stable ids).
    package var source: String
    package var outcome: DiffOutcome
    /// The snapshot after the diff (the guard set is read from it when ``DiffOutcome/removalGuardChanged``).
    package var snapshot: Snapshot
    package var detectedAt: Date

    package init(target: String, source: String, outcome: DiffOutcome, snapshot: Snapshot, detectedAt: Date) {
        self.target = target
        self.source = source
        self.outcome = outcome
        self.snapshot = snapshot
        self.detectedAt = detectedAt
    }
}

/// A filter for ``Store/events(after:limit:filter:)``; nil fields match everything.
package struct EventFilter: Sendable, Equatable {
    package var kinds: Set<DetectedChange.Kind>?
    package var subject: String?
    /// Only events of these targets (a sink configured for some targets only).
    package var targets: Set<String>?

    package init(kinds: Set<DetectedChange.Kind>? = nil, subject: String? = nil, targets: Set<String>? = nil) {
        self.kinds = kinds
        self.subject = subject
        self.targets = targets
    }
}

/// Where a sink's cursor stands.
package struct CursorState: Sendable, Equatable {
    package var sequence: Int64
    /// An operator moved it back since the sink last advanced it: follow it exactly.
    package var rewound: Bool

    package init(sequence: Int64, rewound: Bool) {
        self.sequence = sequence
        self.rewound = rewound
    }
}

/// An event a sink gave up on (DESIGN.md §5): kept, listed, re-sendable.
package struct DeadLetter: Sendable, Equatable {
    package var sink: String
    package var sequence: Int64
    package var eventID: String
    package var reason: String
    package var attempts: Int
    /// RFC 3339 UTC, when it was dead-lettered.
    package var deadAt: String
    /// The journaled event, nil only if it was removed from the journal by hand.
    package var event: JournalEvent?
}

/// What `bulkwatch deliveries` shows for one sink.
package struct SinkStatus: Sendable, Equatable {
    package var sink: String
    /// Last delivered (or dead-lettered) sequence.
    package var cursor: Int64
    /// Events journaled after the cursor: lastSequence − cursor.
    package var lag: Int64
    package var lastError: String?
    package var deadLetters: Int
    /// RFC 3339 UTC of the last cursor move, if any.
    package var updatedAt: String?
    /// No configuration names this sink any more: its cursor is kept but holds back no pruning.
    package var stale: Bool = false
}
