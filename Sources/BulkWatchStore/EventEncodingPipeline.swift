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
    }

    /// Consecutive events, encoded.
    struct Chunk: Sendable {
        /// Index of the first change in the chunk.
        let start: Int
        /// The chunk's events as the store keeps them (``EventBlock``).
        var block: EventBlock.Writer
        /// The chunk's events at or after ``Plan/keepFrom``, for the sinks.
        var kept: [JournalEvent]

        var count: Int { block.count }
    }

    static let chunkSize = 1024
    static let depth = 4
    static let threadedFrom = 2048
    /// From this many chunks on, two encoders take chunks in turn.
    static let secondEncoderFrom = 3

    /// Encodes `plan`'s events and hands them to `consume` chunk by chunk, in order. `meanwhile` runs on the
    /// calling thread first, while the first chunks are being encoded: the writer's work that does not
    /// need the events. Returns once nothing runs on the other threads any more, also when a closure throws.
    ///
    /// A commit of ``secondEncoderFrom`` chunks or more is encoded by two threads, each taking the next chunk
    /// not yet taken. Why: in a steady 100k commit (3,000 events, three chunks) one encoder took ~4 ms against
    /// the writer's ~2 of `meanwhile` and ~1 of inserts, so the writer waited for it (traced). With two, the
    /// three threads share the two cores: the pipeline 5.3 → 4.3 ms (traced medians), and `compare --sizes
    /// 100000`, two alternated pairs: steady cycle 30.2 / 29.9 → 25.6 / 24.9 ms, steady peak unchanged.
    static func run(
        _ plan: Plan, meanwhile: () throws -> Void, consume: (Chunk) throws -> Void
    ) throws {
        let count = plan.changes.count
        let chunkCount = (count + chunkSize - 1) / chunkSize
        guard count >= threadedFrom else {
            try meanwhile()
            for index in 0..<chunkCount { try consume(encode(chunk: index, of: plan)) }
            return
        }
        let channel = Channel(chunks: chunkCount)
        // Threads of their own, not a global dispatch queue: the writer blocks until the first chunk arrives, so
        // an encoder must not wait for a worker of a pool that others (the cooperative pool included) share.
        let encoders = (0..<(chunkCount >= secondEncoderFrom ? 2 : 1)).map { _ in
            JoinableThread(name: "bulkwatch-enc") {
                while let index = channel.claim() {
                    let chunk = encode(chunk: index, of: plan)
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
    }

    /// Encodes chunk `index` of `plan`.
    static func encode(chunk index: Int, of plan: Plan) -> Chunk {
        let idLength = CloudEventEncoder.stableIDLength
        let range = index * chunkSize..<min(plan.changes.count, (index + 1) * chunkSize)
        // Room for every body at its bound (every byte of its values escaped), so the block never grows while
        // it is filled; the exact lengths cost a pass of their own, for no lower peak (`bulkwatch-bench poll`).
        // The changes are read in place through a buffer: `let change = plan.changes[i]` copied each one, a retain
        // and a release of its item's strings and raw JSON, twice per event (`perf` of a steady 100k commit).
        return plan.changes.withUnsafeBufferPointer { changes in
            var blockBytes = EventBlock.magic.count
            for i in range {
                blockBytes += EventBlock.Writer.length(
                    id: idLength, subject: changes[i].item.bulkId.utf8.count,
                    body: CloudEventEncoder.bodyLengthBound(of: changes[i], source: plan.source))
            }
            var chunk = Chunk(start: range.lowerBound, block: EventBlock.Writer(reserving: blockBytes), kept: [])
            var id = [UInt8](repeating: 0, count: idLength)
            var body: [UInt8] = []
            for i in range {
                id.withUnsafeMutableBufferPointer {
                    CloudEventEncoder.writeStableID(
                        source: plan.source.raw, change: changes[i], incarnation: plan.incarnations[i] ?? 0,
                        to: $0.baseAddress!)
                }
                let sequence = plan.firstSequence + Int64(i)
                id.withUnsafeBytes { id in
                    CloudEventEncoder.writeBody(
                        changes[i], source: plan.source, sequence: sequence, time: plan.time, id: id, to: &body)
                    if i >= plan.keepFrom {
                        var event = JournalEvent(
                            sequence: sequence, id: String(decoding: id, as: UTF8.self), kind: changes[i].kind,
                            subject: changes[i].item.bulkId, time: plan.time,
                            // A copy of exactly its size: handing over `body` itself would leave the event holding
                            // the reused buffer's whole capacity, and the next body a new one.
                            body: body.withUnsafeBufferPointer { Array($0) })
                        event.target = plan.target
                        chunk.kept.append(event)
                    }
                    body.withUnsafeBytes { body in
                        chunk.block.append(
                            kind: JournalEvent.Kind(changes[i].kind), id: id, subject: changes[i].item.bulkId,
                            body: body)
                    }
                }
            }
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
