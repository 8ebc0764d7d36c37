import Foundation
import Testing

@testable import BulkWatch
@testable import BulkWatchStore

@Suite("Events encoded on a second thread while the store writes")
struct EventEncodingPipelineTests {
    private struct Refused: Error {}

    private func plan(events count: Int, keepFrom: Int) -> EventEncodingPipeline.Plan {
        let changes = (0..<count).map { index in
            let json = #"{"bulkId":"op-\#(index)","status":"DONE"}"#
            return DetectedChange(
                kind: .created,
                item: BulkItem(bulkId: "op-\(index)", status: "DONE", rawJSON: Array(json.utf8)[...]))
        }
        return EventEncodingPipeline.Plan(
            changes: changes, incarnations: [7: 2], source: CloudEventEncoder.Source("https://example.com/bulk"),
            firstSequence: 41, time: "2026-12-06T10:00:00.000Z", target: "default", keepFrom: keepFrom)
    }

    /// Every event arrives once, in order, in its chunk's block (``EventBlock``) as
    /// ``CloudEventEncoder/encode(_:source:sequence:time:incarnation:)`` gives it on its own; only those from
    /// `keepFrom` on are kept, on every path: inline, one encoder (two chunks), two encoders (three chunks, a
    /// steady 100k commit's shape, and five).
    @Test(arguments: [10, 2048, 3 * EventEncodingPipeline.chunkSize, 5000])
    func handsOverEveryEventInOrder(count: Int) throws {
        let plan = plan(events: count, keepFrom: count - 3)
        var seen: [JournalEvent] = []
        var ranMeanwhile = false
        let kept = try EventEncodingPipeline.run(plan) {
            ranMeanwhile = true
        } consume: { chunk in
            #expect(chunk.start == seen.count)
            let first = 41 + Int64(chunk.start)
            try chunk.block.bytes.withUnsafeBytes { block in
                try EventBlock.forEach(in: block, first: first, last: first + Int64(chunk.count) - 1) { event in
                    seen.append(try #require(event.event(time: plan.time, target: "default")))
                    return true
                }
            }
        }
        #expect(ranMeanwhile)
        let expected = plan.changes.enumerated().map { index, change in
            CloudEventEncoder.encode(
                change, source: plan.source, sequence: 41 + Int64(index), time: plan.time,
                incarnation: index == 7 ? 2 : 0)
        }
        #expect(seen.count == expected.count)
        #expect(Array(zip(seen, expected)).firstIndex { $0 != $1 || $0.body != $1.body } == nil)
        #expect(kept == Array(expected.suffix(3)))
        #expect(kept.allSatisfy { $0.target == "default" })
    }

    /// Two encoders ahead of a writer slower than they are: they wait for free slots, take chunks in turn and
    /// finish them in either order, and the writer still gets every chunk once, in order, each whole.
    @Test func twoEncodersHandOverInOrderBehindASlowWriter() throws {
        let chunks = 3 * EventEncodingPipeline.depth
        let plan = plan(events: chunks * EventEncodingPipeline.chunkSize - 5, keepFrom: 0)
        #expect(chunks >= EventEncodingPipeline.secondEncoderFrom)
        var starts: [Int] = []
        let kept = try EventEncodingPipeline.run(plan) {
        } consume: { chunk in
            starts.append(chunk.start)
            #expect(chunk.count == min(EventEncodingPipeline.chunkSize, plan.changes.count - chunk.start))
            usleep(10_000)
        }
        #expect(starts == Array(stride(from: 0, to: plan.changes.count, by: EventEncodingPipeline.chunkSize)))
        #expect(kept.map(\.subject) == plan.changes.map(\.item.bulkId))
    }

    /// A writer that fails part-way (an insert refused) stops the encoder and gets its error back: no hang,
    /// no chunk handed over after the failure, nothing left running on the other thread.
    @Test(arguments: [0, 1, 4])
    func aFailingWriterStopsTheEncoder(failingChunk: Int) throws {
        let plan = plan(events: 20 * EventEncodingPipeline.chunkSize, keepFrom: 0)
        var consumed = 0
        #expect(throws: Refused.self) {
            _ = try EventEncodingPipeline.run(plan) {
            } consume: { _ in
                if consumed == failingChunk { throw Refused() }
                consumed += 1
            }
        }
        #expect(consumed == failingChunk)
    }

    /// So does work that fails before the first event is written (the delta, say).
    @Test func aFailureBeforeTheFirstEventStopsTheEncoder() throws {
        let plan = plan(events: 20 * EventEncodingPipeline.chunkSize, keepFrom: 0)
        var consumed = 0
        #expect(throws: Refused.self) {
            _ = try EventEncodingPipeline.run(plan) {
                throw Refused()
            } consume: { _ in
                consumed += 1
            }
        }
        #expect(consumed == 0)
    }
}
