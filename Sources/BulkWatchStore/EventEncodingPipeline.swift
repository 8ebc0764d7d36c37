import BulkWatchDetect
import BulkWatchSupport
import Dispatch
import Foundation
import Synchronization

/// Encodes a commit's events (stable id, CloudEvents body, and the copies kept in memory for the sinks) on a
/// second thread while the store's thread writes them.
///
/// Why: in a steady commit the encoding (SHA-256 ids, JSON bodies, the kept copies) was about two fifths of
/// the time (~60 of ~150 ms at 1M items, 30,000 events), and the inserts and the delta beside it run on the
/// one connection that may write, so they cannot be split. Encoded on the other core, it overlaps them.
///
/// Events flow in chunks of ``chunkSize``, at most ``depth`` of them encoded ahead of the writer, so a first
/// poll's million events are never all held encoded at once. A commit of fewer than ``threadedFrom`` events
/// is encoded inline: a thread hand-off would cost more than it saves. Either way the writer sees the chunks
/// in order, and the result is byte for byte the same.
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

    /// Encodes `plan`'s events and hands them to `consume` chunk by chunk, in order. `meanwhile` runs on the
    /// calling thread first, while the first chunks are being encoded: the writer's work that does not
    /// need the events. Returns once nothing runs on the other thread any more, also when a closure throws.
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
        let channel = Channel()
        // A thread of its own, not a global dispatch queue: the writer blocks until the first chunk arrives, so
        // the encoder must not wait for a worker of a pool that others (the cooperative pool included) share.
        let encoder = JoinableThread(name: "bulkwatch-enc") {
            for index in 0..<chunkCount {
                channel.free.wait()
                if channel.isCancelled { break }
                channel.put(encode(chunk: index, of: plan), at: index)
            }
        }
        defer {
            channel.cancel()
            encoder.join()
        }
        try meanwhile()
        for index in 0..<chunkCount {
            channel.ready.wait()
            let chunk = channel.take(at: index)
            channel.free.signal()
            try consume(chunk)
        }
    }

    /// Encodes chunk `index` of `plan`.
    static func encode(chunk index: Int, of plan: Plan) -> Chunk {
        let idLength = CloudEventEncoder.stableIDLength
        let range = index * chunkSize..<min(plan.changes.count, (index + 1) * chunkSize)
        // Room for every body at its bound (every byte of its values escaped), so the block never grows while
        // it is filled; the exact lengths cost a pass of their own, for no lower peak (`bulkwatch-bench poll`).
        var blockBytes = EventBlock.magic.count
        for i in range {
            let change = plan.changes[i]
            blockBytes += EventBlock.Writer.length(
                id: idLength, subject: change.item.bulkId.utf8.count,
                body: CloudEventEncoder.bodyLengthBound(of: change, source: plan.source))
        }
        var chunk = Chunk(start: range.lowerBound, block: EventBlock.Writer(reserving: blockBytes), kept: [])
        var id = [UInt8](repeating: 0, count: idLength)
        var body: [UInt8] = []
        for i in range {
            let change = plan.changes[i]
            id.withUnsafeMutableBufferPointer {
                CloudEventEncoder.writeStableID(
                    source: plan.source.raw, change: change, incarnation: plan.incarnations[i] ?? 0,
                    to: $0.baseAddress!)
            }
            let sequence = plan.firstSequence + Int64(i)
            id.withUnsafeBytes { id in
                CloudEventEncoder.writeBody(
                    change, source: plan.source, sequence: sequence, time: plan.time, id: id, to: &body)
                if i >= plan.keepFrom {
                    var event = JournalEvent(
                        sequence: sequence, id: String(decoding: id, as: UTF8.self), kind: change.kind,
                        subject: change.item.bulkId, time: plan.time,
                        // A copy of exactly its size: handing over `body` itself would leave the event holding
                        // the reused buffer's whole capacity, and the next body a new one.
                        body: body.withUnsafeBufferPointer { Array($0) })
                    event.target = plan.target
                    chunk.kept.append(event)
                }
                body.withUnsafeBytes { body in
                    chunk.block.append(
                        kind: JournalEvent.Kind(change.kind), id: id, subject: change.item.bulkId, body: body)
                }
            }
        }
        return chunk
    }

    /// The hand-off between the two threads: ``depth`` slots, a semaphore counting encoded chunks and one
    /// counting free slots.
    private final class Channel: Sendable {
        let ready = DispatchSemaphore(value: 0)
        let free = DispatchSemaphore(value: EventEncodingPipeline.depth)
        private let slots = Mutex([Chunk?](repeating: nil, count: EventEncodingPipeline.depth))
        private let cancelled = Atomic(false)

        var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

        func put(_ chunk: Chunk, at index: Int) {
            slots.withLock { $0[index % EventEncodingPipeline.depth] = chunk }
            ready.signal()
        }

        func take(at index: Int) -> Chunk {
            slots.withLock { slots in
                defer { slots[index % EventEncodingPipeline.depth] = nil }
                return slots[index % EventEncodingPipeline.depth]!
            }
        }

        /// Stops the encoder at its next chunk (it may be waiting for a free slot).
        func cancel() {
            cancelled.store(true, ordering: .releasing)
            for _ in 0..<EventEncodingPipeline.depth { free.signal() }
        }
    }
}
