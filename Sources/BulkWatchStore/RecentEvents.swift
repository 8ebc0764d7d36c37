/// The events this process committed last, kept in memory so that a sink which keeps up reads its next
/// batch without going back to the database.
///
/// A steady 100k-item poll commits ~3,000 events, and reading them back from SQLite (row decoding, a
/// `Data` and three `String`s per row) cost about as much as delivering them. The commit has just encoded
/// the events it wrote, so the store keeps the newest of them here, in sequence order, and answers a read
/// from memory when that answer is provably the database's:
///
/// - the run held here is **contiguous** (each new batch must continue it, or it replaces it), and
/// - it reaches the journal's **last sequence**, read from the database at the time of the read, and
/// - it starts **at or before** the first sequence asked for.
///
/// Then the events after the reader's cursor are exactly those held here (events are immutable once
/// committed), and any filter is applied in memory the way the SQL applies it. Any other read, a lagging
/// sink, another process's writes, an event pruned meanwhile, goes to the database as before: the run is a
/// pure cache and never the only copy of anything.
///
/// Memory is bounded twice: events every sink this store has seen has moved past are dropped, and the run
/// never holds more than `byteBudget` bytes of bodies (the oldest go first), so a first poll's 100k events
/// do not stay resident once delivered.
struct RecentEvents {
    private var events: [JournalEvent] = []
    private var bytes = 0
    /// The last cursor position of each sink this store wrote or was told about; nil = not known yet.
    private var cursors: [String: Int64?] = [:]
    let byteBudget: Int

    init(byteBudget: Int) {
        self.byteBudget = byteBudget
    }

    /// How many events are held (for tests and the bench).
    var count: Int { events.count }

    /// Adds the events of one commit, or of one of its chunks (in sequence order, each carrying its target). A
    /// batch that does not continue the run replaces it, so the run stays contiguous.
    mutating func append(_ batch: [JournalEvent]) {
        guard let first = batch.first else { return }
        if let last = events.last, last.sequence + 1 != first.sequence {
            removeAll()
        }
        // Only the newest events that fit the budget are taken: a first poll of 1M items would otherwise
        // copy a million events in here to drop most of them at once.
        var start = batch.endIndex
        var taken = 0
        while start > batch.startIndex, taken + batch[start - 1].body.count <= byteBudget {
            start -= 1
            taken += batch[start].body.count
        }
        if start > batch.startIndex { removeAll() }
        if events.isEmpty && start == batch.startIndex {
            // The usual case once every sink has caught up: the batch's array itself, no event copied (a copy
            // retains each event's strings and body; ~0.3 ms for a steady 100k commit's 3,000 events).
            events = batch
        } else {
            events.append(contentsOf: batch[start...])
        }
        bytes += taken
        evict()
    }

    /// Whether a read after `cursor` can be answered here at all, before asking the database for its last
    /// sequence: the run must start at or before the first event asked for.
    func mayAnswer(after cursor: Int64) -> Bool {
        guard let first = events.first else { return false }
        return first.sequence <= cursor + 1
    }

    /// The answer to `events(after:limit:filter:)` when this run holds it, nil when the database must be read.
    /// `lastSequence` is the journal's last sequence, read after the caller's cursor was known.
    func read(after cursor: Int64, limit: Int, filter: EventFilter, lastSequence: Int64) -> [JournalEvent]? {
        guard let first = events.first, let last = events.last, last.sequence == lastSequence,
            first.sequence <= cursor + 1
        else { return nil }
        guard cursor < last.sequence, limit > 0 else { return [] }
        var index = Int(max(0, cursor + 1 - first.sequence))
        // A sink that keeps up asks for exactly the run, unfiltered: the run's array itself, no event copied (a
        // copy retains each event's strings and body; ~0.25 ms for a steady 100k poll's 3,000 events).
        if index == 0, events.count <= limit, filter == EventFilter() { return events }
        var answer: [JournalEvent] = []
        while index < events.count, answer.count < limit {
            let event = events[index]
            if Self.matches(event, filter) { answer.append(event) }
            index += 1
        }
        return answer
    }

    /// Records where `sink` stands (a cursor write succeeded) and drops what every known sink is past.
    mutating func sink(_ sink: String, isAt sequence: Int64) {
        cursors.updateValue(sequence, forKey: sink)
        evict()
    }

    /// The sinks the runtime delivers to: until one of them has written its cursor, its position is not
    /// known, and nothing is dropped on its behalf.
    mutating func configure(sinks names: [String]) {
        var known: [String: Int64?] = [:]
        for name in names { known.updateValue(cursors[name] ?? nil, forKey: name) }
        cursors = known
    }

    /// Forgets everything held (after a prune, or a write this run cannot follow).
    mutating func removeAll() {
        events.removeAll(keepingCapacity: false)
        bytes = 0
    }

    /// Mirrors `appendConditions` of the SQL read: kinds by their `bulk.*` type (so operational events never
    /// match a kind filter), subject and target by equality.
    static func matches(_ event: JournalEvent, _ filter: EventFilter) -> Bool {
        if let kinds = filter.kinds {
            guard let kind = event.kind.change, kinds.contains(kind) else { return false }
        }
        if let subject = filter.subject, event.subject != subject { return false }
        if let targets = filter.targets {
            guard let target = event.target, targets.contains(target) else { return false }
        }
        return true
    }

    private mutating func evict() {
        var drop = 0
        if !cursors.isEmpty, cursors.values.allSatisfy({ $0 != nil }) {
            let delivered = cursors.values.compactMap { $0 }.min() ?? 0
            while drop < events.count, events[drop].sequence <= delivered {
                bytes -= events[drop].body.count
                drop += 1
            }
        }
        while drop < events.count, bytes > byteBudget {
            bytes -= events[drop].body.count
            drop += 1
        }
        if drop == events.count {
            removeAll()
        } else if drop > 0 {
            events.removeFirst(drop)
        }
    }
}

extension RecentEvents {
    /// ``append(_:)``'s rule worked out before the events exist: of `count` events about to be committed,
    /// the index of the first of the newest whose `length`s (their bodies' exact sizes) add up to at most
    /// `budget`. A commit builds only these (a first poll of 1M items builds ~150k instead of 1M); the
    /// others ``append(_:)`` would drop at once. When the `bound`s (at least each length, and cheaper) add
    /// up to at most `budget`, every event is kept and no length is worked out: a steady poll's always fit.
    static func firstKept(of count: Int, budget: Int, bound: (Int) -> Int, length: (Int) -> Int) -> Int {
        var bounds = 0
        for index in 0..<count {
            bounds += bound(index)
            if bounds > budget { break }
        }
        if bounds <= budget { return 0 }
        var bytes = 0
        var index = count
        while index > 0 {
            bytes += length(index - 1)
            if bytes > budget { break }
            index -= 1
        }
        return index
    }
}
