import BulkWatchSupport
package import BulkWatchTransport
import Foundation
import Synchronization

/// The items of a large bulk answer's `content` array, parsed on a thread of their own while the answer is still
/// arriving (``ArrivingBody``), then taken over by the decode of the complete body.
///
/// Why: at 100k items the transfer and the decode each took ~5–7 ms, one after the other. Parsed as it arrives,
/// most of the body is decoded by the time the transfer ends; the decode then splits what is left between this
/// thread and its own (``BulkBodyParser/takeOver(_:into:skipped:)``).
///
/// Why the outcome is the decode's own: the reader starts at a guessed first element
/// (``BulkBodyParser/guessContentStart(limit:)``), and the decode uses its work only if its own parse of the
/// complete body reaches a `content` array whose first element starts at exactly that byte. From there the parse
/// is determined by the bytes, which are final once published, and the reader keeps an element only once it has
/// read all of it (``BulkBodyParser/parseArriving(from:separatorDue:into:stopAt:reached:)``). At an item it cannot
/// keep as offsets (escapes, 64 KiB or more: the listing would need the complete body), and at anything it cannot
/// parse, it stops and leaves the rest to the decode.
package final class ArrivingContent: @unchecked Sendable {
    /// Bodies of at least this many bytes get a reader: below, a thread costs about what it saves.
    let threshold: Int
    /// The decode splits what is left when it takes over only when that is at least this many bytes.
    let smallestSplit: Int

    /// Where the decode asks the reader to stop (an element's first byte); `Int.max` until then.
    private let stopOffset = Atomic<Int>(.max)
    /// How far the reader has parsed, for the decode to choose where to split what is left.
    private let reached = Atomic<Int>(0)
    /// The reader, once started.
    private let reader = Mutex<JoinableThread?>(nil)

    // Set before the reader thread starts (on the curl thread), then read-only:
    /// The first element's offset, as guessed; -1 without a reader.
    private(set) var start = -1

    // Written by the reader thread; read only after ``finish()`` has joined it:
    /// What the reader found; taken by the decode (``takeItems()``).
    private var items = ArrivingItems(listing: BulkListing(items: []))
    /// Where the reader stopped: an element's first byte, or just after an element when ``separatorDue``.
    private(set) var position = 0
    private(set) var separatorDue = false
    /// The reader read the array's closing `]`: ``position`` is just after it.
    private(set) var closedArray = false

    /// Tests pass small sizes to start a reader and split on small bodies.
    package init(threshold: Int = 1 << 20, smallestSplit: Int = 1 << 20) {
        self.threshold = threshold
        self.smallestSplit = smallestSplit
    }

    /// The body to publish to, which starts a reader once it is large enough.
    package func body() -> ArrivingBody {
        ArrivingBody(threshold: threshold) { [self] body in startReading(body) }
    }

    /// Whether a reader was started (the decode then hands it to its parser).
    package var hasReader: Bool { reader.withLock { $0 != nil } }

    /// How far the reader has got.
    var progress: Int { reached.load(ordering: .relaxed) }

    /// Asks the reader to stop at the element that starts at `offset` (or at the first one after it).
    func stop(at offset: Int) {
        stopOffset.store(offset, ordering: .relaxed)
    }

    /// The items the reader parsed (after ``finish()``), handed over: the listing is then the caller's only.
    func takeItems() -> ArrivingItems {
        defer { items = ArrivingItems(listing: BulkListing(items: [])) }
        return items
    }

    /// Waits for the reader to stop; afterwards its results can be read. Idempotent, and a no-op without a reader.
    package func finish() {
        reader.withLock { $0 }?.join()
    }

    /// Called on the curl thread once the body is large enough, and again as it grows while the bytes do not yet
    /// say where the array starts: finds its first element and starts the reader there. Returns false to be asked
    /// again.
    private func startReading(_ body: ArrivingBody) -> Bool {
        let guess = body.read(after: 0) { base, count in
            (BulkBodyParser(base: base, count: count, body: []).guessContentStart(limit: 1 << 16), count)
        }
        guard let (start, arrived) = guess else { return true }
        switch start {
        case .undecided: return false
        case .none:
            body.readerFinished()
            return true
        case .found(let found):
            self.start = found
            position = found
            // As generous as the decode's own estimate (see `BulkBodyParser.parseContent`): growing copies.
            let expected = (body.expectedLength ?? 2 * arrived) / 60 + 4
            items = ArrivingItems(
                listing: BulkListing(arriving: UnsafeRawBufferPointer(start: nil, count: 0), expectedItems: expected))
            let thread = JoinableThread(name: "bulkwatch-read") { [self] in
                read(body)
                body.readerFinished()
            }
            reader.withLock { $0 = thread }
            return true
        }
    }

    /// The reader's loop: parses what has arrived, waits for more, until the array ends, the decode asks it to
    /// stop, or something is left to the decode.
    private func read(_ body: ArrivingBody) {
        var seen = 0
        while true {
            let step = body.read(after: seen) { base, count -> ArrivingStep in
                seen = count
                items.listing.rebase(UnsafeRawBufferPointer(start: base, count: count))
                var parser = BulkBodyParser(base: base, count: count, body: [])
                let outcome = parser.parseArriving(
                    from: position, separatorDue: separatorDue, into: &items, stopAt: stopOffset, reached: reached)
                position = outcome.position
                separatorDue = outcome.separatorDue
                return outcome.step
            }
            switch step {
            case .needsBytes: continue
            case .closedArray: closedArray = true
            case .stopped, .leftToFinalParse, nil: break
            }
            return
        }
    }
}

/// What the reader of an arriving body found: a listing of the items it parsed, with offsets into a body that is
/// still arriving (``BulkListing/init(arriving:expectedItems:)``).
struct ArrivingItems: ParsedItems {
    var listing: BulkListing
    /// Items without a usable `bulkId`, skipped as the decode skips them.
    var skipped = 0
    /// The last item could not be kept as offsets (escapes, or 64 KiB or more): the decode takes it from there.
    private(set) var refused = false

    mutating func appendFound(
        raw: Range<Int>, bulkId: Range<Int>, status: Range<Int>?, createdOn: Range<Int>?, updatedOn: Range<Int>?
    ) {
        guard BulkListing.holdsAsOffsets(raw) else {
            refused = true
            return
        }
        listing.appendFound(raw: raw, bulkId: bulkId, status: status, createdOn: createdOn, updatedOn: updatedOn)
    }

    mutating func appendWhole(from start: Int, _ item: () -> BulkItem) {
        refused = true
    }
}
