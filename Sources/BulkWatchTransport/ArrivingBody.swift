import Foundation

/// The body of a 200 answer, readable by one other thread while it is still arriving.
///
/// Why: a 100k-item listing is 12 MB. Its transfer (~5 ms on loopback) and its decode (~7 ms on two threads) ran
/// one after the other, with the decoder idle during the transfer. With this, the decoder parses what has arrived
/// while curl receives the rest, and only the tail is left when the transfer ends.
///
/// The writer is the transport's curl thread (``CurlTransport``), which publishes the bytes it has appended so far.
/// It publishes only bytes in the transfer's large buffer, which is sized for the whole body once, and only of a
/// 200 answer. Were that buffer to move anyway (a compressed body that outgrows its `Content-Length`), the writer
/// first withdraws it and waits until the reader is out of it; offsets the reader kept stay valid, only the
/// pointer changes. When the transfer ends the reader gets the whole body to finish on, or, when it failed,
/// nothing more.
///
/// The reader works in *pins* (``read(after:_:)``): inside one, the published bytes cannot move or be freed. The
/// writer never waits for a pin except to move or drop the buffer.
package final class ArrivingBody: @unchecked Sendable {
    /// Guards everything below; the reader waits on it for bytes, the writer for the end of a pin.
    private let condition = NSCondition()
    private var base: UnsafePointer<UInt8>?
    private var available = 0
    private var ended = false
    private var pinned = false
    /// The complete body once the transfer succeeded: keeps the bytes alive for the reader, whoever else lets go.
    private var whole: [UInt8]?
    /// `whenLarge` accepted the body: it is not asked again.
    private var settled = false
    /// The reader has stopped for good (``readerFinished()``): nothing is published or kept for it any more.
    private var readerGone = false
    /// The body's length as announced (`Content-Length`), when it was.
    private var announcedLength: Int?
    private let threshold: Int
    private let whenLarge: @Sendable (ArrivingBody) -> Bool

    /// `whenLarge` is called on the curl thread once at least `threshold` bytes have been published, the moment to
    /// start a reader (so that small answers cost no thread), and after each publication until it returns true (the
    /// bytes so far may not be enough to start on).
    package init(threshold: Int, whenLarge: @escaping @Sendable (ArrivingBody) -> Bool) {
        self.threshold = threshold
        self.whenLarge = whenLarge
    }

    // MARK: Reader

    /// Waits until more than `offset` bytes are published, then runs `body` on all that are (a pointer to the
    /// first byte and their count) while they are pinned. Returns nil once no byte past `offset` will come: the
    /// body ended there, or the transfer failed.
    package func read<Result>(
        after offset: Int, _ body: (UnsafePointer<UInt8>, Int) throws -> Result
    ) rethrows -> Result? {
        condition.lock()
        while base == nil || available <= offset {
            if ended && (base == nil || available <= offset) {
                condition.unlock()
                return nil
            }
            condition.wait()
        }
        let (pointer, count) = (base!, available)
        pinned = true
        condition.unlock()
        defer {
            condition.lock()
            pinned = false
            condition.broadcast()
            condition.unlock()
        }
        return try body(pointer, count)
    }

    /// The body's length when the server announced it: what a reader may size its results by.
    package var expectedLength: Int? {
        condition.lock()
        defer { condition.unlock() }
        return announcedLength
    }

    /// The reader is done: the complete body is not kept for it any longer.
    package func readerFinished() {
        condition.lock()
        readerGone = true
        whole = nil
        base = nil
        condition.unlock()
    }

    // MARK: Writer (the curl thread, or a test standing in for it)

    /// The server announced the body's length (before any byte of it).
    package func expect(length: Int) {
        condition.lock()
        announcedLength = length
        condition.unlock()
    }

    /// The first `count` bytes at `pointer` are final and stay there until ``withdraw()`` or ``end(with:)``.
    package func publish(_ pointer: UnsafePointer<UInt8>, count: Int) {
        condition.lock()
        guard !ended, !readerGone else { return condition.unlock() }
        base = pointer
        available = count
        let announce = !settled && count >= threshold
        condition.broadcast()
        condition.unlock()
        if announce, whenLarge(self) {
            condition.lock()
            settled = true
            condition.unlock()
        }
    }

    /// The published buffer is about to move: returns once the reader is out of it.
    package func withdraw() {
        condition.lock()
        base = nil
        while pinned { condition.wait() }
        condition.unlock()
    }

    /// The transfer is over: `body` is the complete answer (the bytes published so far followed by the rest), or
    /// nil when it failed or the answer is not the one published (another response started). Returns once the
    /// reader cannot touch the transfer's buffer any more, unless it may go on reading `body`. Only the first call
    /// counts.
    package func end(with body: [UInt8]?) {
        condition.lock()
        defer { condition.unlock() }
        guard !ended else { return }
        ended = true
        if let body, settled, !readerGone {
            whole = body
            available = body.count
            // The storage `whole` keeps alive and never mutates: the pointer stays valid as long as this object.
            base = body.withUnsafeBufferPointer { $0.baseAddress }
        } else {
            base = nil
            while pinned { condition.wait() }
        }
        condition.broadcast()
    }
}
