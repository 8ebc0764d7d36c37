import Foundation

/// SplitMix64: tiny, fast and fully specified, so a seed means the same world on every platform and toolchain
/// (the standard library's `random(in:using:)` algorithms are not promised to stay the same). Public so tests
/// and benchmarks generate their reproducible data with the same generator instead of copies of it.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<1` with 53 bits of precision.
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }
}

/// A field of a simulated item as it will be rendered.
enum FieldValue: Sendable, Equatable {
    /// Milliseconds since 1970, rendered as ISO-8601 UTC with milliseconds.
    case millis(Int64)
    case string(String)
    case raw(String)
    case absent
}

/// One bulk operation of the simulated world.
struct SimulatedOperation: Sendable {
    enum Phase: Sendable {
        case pending, processing, terminal
        /// Set by a test through upsert: the automatic world never touches it.
        case manual
    }

    var bulkId: String
    var status: FieldValue
    var createdOn: FieldValue
    var updatedOn: FieldValue
    /// Raw JSON members appended to the object, without braces or leading comma.
    var extraJSONFields: String
    var phase: Phase
    /// When the next automatic step (or the deletion, once terminal) is due.
    var dueMillis: Int64
}

/// The simulated DruID back end: operations that are created, progress PENDING → PROCESSING → FINISHED or
/// FINISHED_WITH_ERRORS, and disappear after the retention window.
///
/// Time is explicit (`advance(to:)`), which keeps the world a deterministic function of its seed and of the
/// sequence of control calls: random numbers are drawn in event order, and events are processed in time order
/// however coarsely the clock is advanced. Listing order is insertion order, kept in `slots` with tombstones so
/// that a million-item world can remove and append in O(1).
struct SimulatedWorld: Sendable {
    static let statusPending = "PENDING"
    static let statusProcessing = "PROCESSING"
    static let statusFinished = "FINISHED"
    static let statusFinishedWithErrors = "FINISHED_WITH_ERRORS"

    private struct Event: Sendable {
        var due: Int64
        var sequence: UInt64
        var bulkId: String

        func precedes(_ other: Event) -> Bool {
            (due, sequence) < (other.due, other.sequence)
        }
    }

    private(set) var slots: [SimulatedOperation?] = []
    private var index: [String: Int] = [:]
    private(set) var count = 0
    /// Bumped on every change a client could see; the body cache is keyed on it.
    private(set) var version: UInt64 = 0
    private(set) var nowMillis: Int64
    /// Every visible change, in order; nil when ``SimulatorOptions/recordsHistory`` is off.
    private(set) var history: [SimulatorChange]?

    private var rng: SplitMix64
    private var heap: [Event] = []
    private var eventSequence: UInt64 = 0
    private var nextNumber = 1
    private var nextCreationMillis: Int64?

    private let stepMillis: Double
    private let retentionMillis: Int64
    private let creationIntervalMillis: Double?
    private let errorOutcomeRate: Double

    init(options: SimulatorOptions, startMillis: Int64) {
        nowMillis = startMillis
        rng = SplitMix64(seed: options.seed)
        stepMillis = max(1, options.stepSeconds * 1000)
        retentionMillis = Int64(max(0, options.retentionSeconds * 1000))
        creationIntervalMillis = options.creationsPerSecond > 0 ? 1000 / options.creationsPerSecond : nil
        errorOutcomeRate = min(1, max(0, options.errorOutcomeRate))
        history = options.recordsHistory ? [] : nil
        populate(options.initialOperations)
        if let interval = creationIntervalMillis {
            nextCreationMillis = startMillis + exponential(mean: interval)
        }
    }

    // MARK: Reading

    func operation(_ bulkId: String) -> SimulatedOperation? {
        index[bulkId].flatMap { slots[$0] }
    }

    // MARK: Control

    /// Inserts or replaces an item; a replaced item keeps its place in the list and leaves automatic control.
    mutating func upsert(_ operation: SimulatedOperation) {
        var operation = operation
        operation.phase = .manual
        operation.dueMillis = .max
        if let slot = index[operation.bulkId] {
            if let previous = slots[slot],
                previous.status != operation.status || previous.updatedOn != operation.updatedOn
            {
                record(.changed, operation)
            }
            slots[slot] = operation
        } else {
            append(operation)
            record(.created, operation)
        }
        version &+= 1
    }

    @discardableResult
    mutating func remove(_ bulkId: String) -> Bool {
        guard let slot = index.removeValue(forKey: bulkId) else { return false }
        if let operation = slots[slot] { record(.removed, operation) }
        slots[slot] = nil
        count -= 1
        version &+= 1
        compactIfSparse()
        return true
    }

    mutating func removeAll() {
        guard count > 0 || !slots.isEmpty else { return }
        for case let operation? in slots { record(.removed, operation) }
        slots.removeAll()
        index.removeAll()
        heap.removeAll()
        count = 0
        version &+= 1
    }

    /// Runs every creation, transition and deletion due up to `target`, in time order.
    mutating func advance(to target: Int64) {
        while true {
            let nextEvent = heap.first?.due
            if let creation = nextCreationMillis, creation <= target, nextEvent.map({ creation < $0 }) ?? true {
                nowMillis = max(nowMillis, creation)
                create(at: creation)
                nextCreationMillis = creation + exponential(mean: creationIntervalMillis ?? 1)
            } else if let due = nextEvent, due <= target {
                let event = popEvent()
                nowMillis = max(nowMillis, due)
                step(event)
            } else {
                break
            }
        }
        nowMillis = max(nowMillis, target)
    }

    // MARK: Lifecycle

    private mutating func populate(_ total: Int) {
        guard total > 0 else { return }
        // Each item gets its own life (two step durations), and an age inside that life plus retention, so all of
        // them are still listed at the start and every state is represented.
        var lives: [(created: Int64, pending: Int64, processing: Int64, outcomeDraw: Double)] = []
        lives.reserveCapacity(total)
        for _ in 0..<total {
            let pending = stepDuration()
            let processing = stepDuration()
            let span = Double(pending + processing + retentionMillis)
            let age = Int64(rng.unit() * span)
            lives.append((nowMillis - age, pending, processing, rng.unit()))
        }
        lives.sort { $0.created < $1.created }
        slots.reserveCapacity(total)
        index.reserveCapacity(total)
        for life in lives {
            let bulkId = takeNextBulkId()
            let processingStart = life.created + life.pending
            let finish = processingStart + life.processing
            var operation = SimulatedOperation(
                bulkId: bulkId, status: .string(Self.statusPending), createdOn: .millis(life.created),
                updatedOn: .millis(life.created), extraJSONFields: "", phase: .pending, dueMillis: processingStart)
            if nowMillis >= finish {
                operation.phase = .terminal
                operation.status = .string(outcome(life.outcomeDraw))
                operation.updatedOn = .millis(finish)
                operation.dueMillis = finish + retentionMillis
            } else if nowMillis >= processingStart {
                operation.phase = .processing
                operation.status = .string(Self.statusProcessing)
                operation.updatedOn = .millis(processingStart)
                operation.dueMillis = finish
            }
            append(operation)
            record(.created, operation)
            schedule(operation)
        }
        version &+= 1
    }

    private mutating func create(at time: Int64) {
        let operation = SimulatedOperation(
            bulkId: takeNextBulkId(), status: .string(Self.statusPending), createdOn: .millis(time),
            updatedOn: .millis(time), extraJSONFields: "", phase: .pending, dueMillis: time + stepDuration())
        append(operation)
        record(.created, operation)
        schedule(operation)
        version &+= 1
    }

    private mutating func step(_ event: Event) {
        guard let slot = index[event.bulkId], var operation = slots[slot], operation.phase != .manual,
            operation.dueMillis == event.due
        else { return }  // removed, replaced by a test, or rescheduled since
        // Strictly after the previous updatedOn, so every change is visible as a newer timestamp; the next step
        // is timed from it, so that deletion happens exactly `retention` after the terminal updatedOn.
        var updated = event.due
        if case .millis(let previous) = operation.updatedOn { updated = max(updated, previous + 1) }
        switch operation.phase {
        case .pending:
            operation.phase = .processing
            operation.status = .string(Self.statusProcessing)
            operation.dueMillis = updated + stepDuration()
        case .processing:
            operation.phase = .terminal
            operation.status = .string(outcome(rng.unit()))
            operation.dueMillis = updated + retentionMillis
        case .terminal:
            remove(operation.bulkId)
            return
        case .manual:
            return
        }
        operation.updatedOn = .millis(updated)
        slots[slot] = operation
        record(.changed, operation)
        schedule(operation)
        version &+= 1
    }

    private func outcome(_ draw: Double) -> String {
        draw < errorOutcomeRate ? Self.statusFinishedWithErrors : Self.statusFinished
    }

    private mutating func takeNextBulkId() -> String {
        while true {
            let number = String(nextNumber)
            nextNumber += 1
            let bulkId = "b-" + String(repeating: "0", count: max(0, 6 - number.count)) + number
            if index[bulkId] == nil { return bulkId }  // skip ids a test already upserted
        }
    }

    /// Uniform in 0.5...1.5 times the mean step, never below 1 ms.
    private mutating func stepDuration() -> Int64 {
        max(1, Int64(stepMillis * (0.5 + rng.unit())))
    }

    private mutating func exponential(mean: Double) -> Int64 {
        max(1, Int64(-log(1 - rng.unit()) * mean))
    }

    // MARK: Storage

    private mutating func record(_ kind: SimulatorChange.Kind, _ operation: SimulatedOperation) {
        guard history != nil else { return }
        history?.append(
            SimulatorChange(
                kind: kind, bulkId: operation.bulkId, status: operation.status.historyText,
                updatedOn: operation.updatedOn.historyText, atMillis: nowMillis))
    }

    private mutating func append(_ operation: SimulatedOperation) {
        index[operation.bulkId] = slots.count
        slots.append(operation)
        count += 1
    }

    /// Drops tombstones once they outnumber live items, keeping order; amortised O(1) per removal.
    private mutating func compactIfSparse() {
        guard slots.count - count > max(64, count) else { return }
        slots.removeAll { $0 == nil }
        index.removeAll(keepingCapacity: true)
        for (slot, operation) in slots.enumerated() {
            if let operation { index[operation.bulkId] = slot }
        }
    }

    // MARK: Event heap (binary min-heap on due time, then insertion sequence, for a total, deterministic order)

    private mutating func schedule(_ operation: SimulatedOperation) {
        eventSequence &+= 1
        heap.append(Event(due: operation.dueMillis, sequence: eventSequence, bulkId: operation.bulkId))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popEvent() -> Event {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count, heap[left].precedes(heap[smallest]) { smallest = left }
                if right < heap.count, heap[right].precedes(heap[smallest]) { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}
