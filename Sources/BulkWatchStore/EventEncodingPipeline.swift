import BulkWatchDetect
import BulkWatchSupport
import Dispatch
import Foundation
import Synchronization

/// Encodes a commit's events (stable id, CloudEvents body, and the copies kept in memory for the sinks) on
/// other threads while the store's thread writes them.
///
/// Why: in a steady commit the encoding (SHA-256 ids, JSON bodies, the kept copies) was about two fifths of
/// the time (~60 of ~150 ms at 1M items, 30,000 events), and the inserts and the delta beside it run on the
/// one connection that may write, so they cannot be split. Encoded on the other core, it overlaps them.
///
/// Events flow in chunks of ``chunkSize``, at most ``depth`` of them encoded ahead of the writer, so a first
/// poll's million events are never all held encoded at once. A commit of fewer than ``threadedFrom`` events
/// is encoded inline: a thread hand-off would cost more than it saves; one of ``secondEncoderFrom`` chunks or
/// more has two encoders. Either way the writer sees the chunks in order, and the result is byte for byte the
/// same.
enum EventEncodingPipeline {
    /// What the encoder needs, fixed before it starts: every change's incarnation is read from the store
    /// first, so the encoder never touches the database.
    struct Plan: Sendable {
        let changes: [DetectedChange]
        /// Incarnation by change index, for the changes not in their first life (absent: 0).
        let incarnations: [Int: Int64]
        let source: CloudEventEncoder.Source
        let firstSequence: Int64
        let time: String
        let target: String
        /// Changes from this index on are also kept in memory as ``JournalEvent``s.
        let keepFrom: Int

        /// What every event of the commit shares, copied into storage of its own for one encoder.
        ///
        /// Why: each event retains and releases these values (its kept copy holds the time and the target, its
        /// body appends the source). On the plan's own storage, the two encoders' counts on the same objects
        /// bounced one cache line between the cores for every event.
        func privateCopies() -> (source: CloudEventEncoder.Source, time: String, target: String) {
            (CloudEventEncoder.Source(Self.ownStorage(source.raw)), Self.ownStorage(time), Self.ownStorage(target))
        }

        /// `text` in a string of its own (a plain copy of a `String` shares its storage).
        private static func ownStorage(_ text: String) -> String {
            String(decoding: Array(text.utf8), as: UTF8.self)
        }
    }

    /// Consecutive events, encoded.
    struct Chunk: Sendable {
        /// Index of the first change in the chunk.
        let start: Int
        /// The chunk's events as the store keeps them (``EventBlock``).
        var block: EventBlock.Writer

        var count: Int { block.count }
    }

    /// The events a commit keeps in memory for the sinks (``Plan/keepFrom`` on), each written in its place by the
    /// encoder of its chunk, and handed over as one array once every chunk is encoded.
    ///
    /// Why one array: kept chunk by chunk, the chunks' arrays were joined into ``RecentEvents``' one after the
    /// commit, a copy of every event past the first chunk (a retain and a release of its id, time and body):
    /// 2,000 copies after a steady 100k commit, on the poll's path.
    final class KeptEvents: @unchecked Sendable {
        // Each slot is written once, by the one thread that encodes its chunk; the writer reads them only after
        // it took every chunk from the ``Channel`` (whose semaphores order the writes before), or after the
        // encoders were joined.
        private let slots: UnsafeMutablePointer<JournalEvent>
        /// The change of slot 0.
        private let first: Int
        let count: Int
        /// The changes whose kept events are written, chunk by chunk: what to let go if they are never taken.
        private let written = Mutex<[Range<Int>]>([])
        private let taken = Atomic(false)

        init(_ plan: Plan) {
            first = plan.keepFrom
            count = max(0, plan.changes.count - plan.keepFrom)
            slots = .allocate(capacity: max(1, count))
        }

        /// Writes the kept event of change `index` (at or after ``Plan/keepFrom``).
        func put(_ event: JournalEvent, change index: Int) {
            (slots + (index - first)).initialize(to: event)
        }

        /// Records that the kept events of `changes` are all written.
        func wrote(_ changes: Range<Int>) {
            let kept = changes.clamped(to: first..<(first + count))
            if !kept.isEmpty { written.withLock { $0.append(kept) } }
        }

        /// Every kept event, in order, moved into an array: once, after every chunk was encoded.
        func take() -> [JournalEvent] {
            let complete = written.withLock { $0.reduce(0) { $0 + $1.count } } == count
            precondition(complete && !taken.exchange(true, ordering: .relaxed), "kept events taken before all written")
            return [JournalEvent](unsafeUninitializedCapacity: count) { buffer, initialized in
                if count > 0 { buffer.baseAddress!.moveInitialize(from: slots, count: count) }
                initialized = count
            }
        }

        deinit {
            if !taken.load(ordering: .relaxed) {
                for range in written.withLock({ $0 }) {
                    (slots + (range.lowerBound - first)).deinitialize(count: range.count)
                }
            }
            slots.deallocate()
        }
    }

    static let chunkSize = 1024
    static let depth = 4
    static let threadedFrom = 2048
    /// From this many chunks on, two encoders take chunks in turn.
    static let secondEncoderFrom = 3

    /// Encodes `plan`'s events and hands them to `consume` chunk by chunk, in order. `meanwhile` runs on the
    /// calling thread first, while the first chunks are being encoded: the writer's work that does not
    /// need the events. Returns the events kept in memory (``Plan/keepFrom`` on, in order), once nothing runs on
    /// the other threads any more; also throws only then.
    ///
    /// A commit of ``secondEncoderFrom`` chunks or more is encoded by two threads, each taking the next chunk
    /// not yet taken. Why: in a steady 100k commit (3,000 events, three chunks) one encoder took ~4 ms against
    /// the writer's ~2 of `meanwhile` and ~1 of inserts, so the writer waited for it (traced). With two, the
    /// three threads share the two cores: the pipeline 5.3 → 4.3 ms (traced medians), and `compare --sizes
    /// 100000`, two alternated pairs: steady cycle 30.2 / 29.9 → 25.6 / 24.9 ms, steady peak unchanged.
    static func run(
        _ plan: Plan, meanwhile: () throws -> Void, consume: (Chunk) throws -> Void
    ) throws -> [JournalEvent] {
        let count = plan.changes.count
        let chunkCount = (count + chunkSize - 1) / chunkSize
        let kept = KeptEvents(plan)
        guard count >= threadedFrom else {
            try meanwhile()
            for index in 0..<chunkCount { try consume(encode(chunk: index, of: plan, keeping: kept)) }
            return kept.take()
        }
        let channel = Channel(chunks: chunkCount)
        // Threads of their own, not a global dispatch queue: the writer blocks until the first chunk arrives, so
        // an encoder must not wait for a worker of a pool that others (the cooperative pool included) share.
        let encoders = (0..<(chunkCount >= secondEncoderFrom ? 2 : 1)).map { _ in
            JoinableThread(name: "bulkwatch-enc") {
                while let index = channel.claim() {
                    let chunk = encode(chunk: index, of: plan, keeping: kept)
                    channel.put(chunk, at: index)
                }
            }
        }
        defer {
            channel.cancel()
            for encoder in encoders { encoder.join() }
        }
        try meanwhile()
        for index in 0..<chunkCount {
            let chunk = channel.take(at: index)
            try consume(chunk)
        }
        return kept.take()
    }

    /// Encodes chunk `index` of `plan`; its events from ``Plan/keepFrom`` on go to `kept` as well.
    static func encode(chunk index: Int, of plan: Plan, keeping kept: KeptEvents) -> Chunk {
        let idLength = CloudEventEncoder.stableIDLength
        let range = index * chunkSize..<min(plan.changes.count, (index + 1) * chunkSize)
        let shared = plan.privateCopies()
        // Each change is read once, into a local, and written from its bytes in place (``CloudEventEncoder/Parts``):
        // read again at each use, each use copied the change or one of its strings, a retain and a release each
        // (`perf` and the disassembly of a steady 100k commit).
        return plan.changes.withUnsafeBufferPointer { changes in
            // Room for every event at the first one's bound (each byte of its values escaped): a chunk's events
            // are alike, and one that is not grows the block. Each event's own bound, added up in a pass before,
            // cost a read of every change for a block that would rarely have grown.
            let eventBound = CloudEventEncoder.withParts(of: changes[range.lowerBound]) { parts in
                EventBlock.Writer.length(
                    id: idLength, subject: parts.item.bulkId.count,
                    body: CloudEventEncoder.bodyLengthBound(of: parts, source: shared.source))
            }
            var chunk = Chunk(
                start: range.lowerBound,
                block: EventBlock.Writer(reserving: EventBlock.magic.count + range.count * eventBound))
            var body: [UInt8] = []
            shared.source.rawBytes.withUnsafeBytes { source in
                var time = shared.time
                time.withUTF8 { time in
                    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: idLength) { idBuffer in
                        let id = UnsafeRawBufferPointer(idBuffer)
                        for i in range {
                            let change = changes[i]
                            let sequence = plan.firstSequence + Int64(i)
                            CloudEventEncoder.withParts(of: change) { parts in
                                CloudEventEncoder.writeStableID(
                                    source: source, parts: parts, incarnation: plan.incarnations[i] ?? 0,
                                    to: idBuffer.baseAddress!)
                                CloudEventEncoder.writeBody(
                                    parts, source: shared.source, sequence: sequence,
                                    time: UnsafeRawBufferPointer(time), id: id, to: &body)
                                body.withUnsafeBytes { body in
                                    chunk.block.append(
                                        kind: JournalEvent.Kind(parts.kind), id: id, subject: parts.item.bulkId,
                                        body: body)
                                }
                            }
                            guard i >= plan.keepFrom else { continue }
                            var event = JournalEvent(
                                sequence: sequence, id: String(decoding: id, as: UTF8.self), kind: change.kind,
                                subject: change.item.bulkId, time: shared.time,
                                // A copy of exactly its size: handing over `body` itself would leave the event
                                // holding the reused buffer's whole capacity, and the next body a new one.
                                body: body.withUnsafeBufferPointer { Array($0) })
                            event.target = shared.target
                            kept.put(event, change: i)
                        }
                    }
                }
            }
            kept.wrote(range)
            return chunk
        }
    }

    /// The hand-off between the encoders and the writer: ``depth`` slots, each with a semaphore that says its
    /// chunk is there, and one counting free slots. An encoder takes a free slot before it claims the next
    /// chunk, so the claimed chunks not yet taken are consecutive and at most ``depth``: each has a slot of its
    /// own, and the writer takes them in order whichever encoder finishes first.
    private final class Channel: Sendable {
        private let free = DispatchSemaphore(value: EventEncodingPipeline.depth)
        private let filled = (0..<EventEncodingPipeline.depth).map { _ in DispatchSemaphore(value: 0) }
        private let slots = Mutex([Chunk?](repeating: nil, count: EventEncodingPipeline.depth))
        private let nextChunk = Atomic(0)
        private let chunks: Int
        private let cancelled = Atomic(false)

        init(chunks: Int) { self.chunks = chunks }

        /// The next chunk to encode, once a slot is free for it; nil when every chunk is taken or the run was
        /// cancelled.
        func claim() -> Int? {
            free.wait()
            let index = cancelled.load(ordering: .acquiring) ? chunks : nextChunk.add(1, ordering: .relaxed).oldValue
            guard index < chunks else {
                free.signal()  // for the other encoder, which may be waiting for a slot to learn the same
                return nil
            }
            return index
        }

        func put(_ chunk: Chunk, at index: Int) {
            slots.withLock { $0[index % EventEncodingPipeline.depth] = chunk }
            filled[index % EventEncodingPipeline.depth].signal()
        }

        /// Waits for chunk `index` and frees its slot.
        func take(at index: Int) -> Chunk {
            filled[index % EventEncodingPipeline.depth].wait()
            let chunk = slots.withLock { slots in
                defer { slots[index % EventEncodingPipeline.depth] = nil }
                return slots[index % EventEncodingPipeline.depth]!
            }
            free.signal()
            return chunk
        }

        /// Stops the encoders at their next chunk (they may be waiting for a free slot).
        func cancel() {
            cancelled.store(true, ordering: .releasing)
            for _ in 0..<EventEncodingPipeline.depth { free.signal() }
        }
    }
}
