/// How the SQLite store keeps a poll's events: one row of `event_blocks` per chunk of up to
/// ``EventEncodingPipeline/chunkSize`` consecutive events, not one row of `events` per event.
///
/// Why: a steady 100k commit inserted ~3,000 rows of ~650 bytes, ~1 µs each in SQLite (a record built from
/// seven bound values, a B-tree append), about 3 ms of the writer's ~5. A block is one row whose blob holds
/// the chunk's events back to back: the same bytes, three inserts. A block's events share its target and
/// detection time (they are of one commit) and their sequences are `first_seq` upwards without a gap, so
/// neither is repeated per event. Operational events, which come one at a time, and the events of journals
/// written before blocks existed stay rows of `events`; the readers merge both by sequence.
///
/// Format: the magic `BWE1`, then per event its kind (one byte: its index in ``storedKinds``), and its id,
/// subject and body, each as a little-endian varint length and the bytes.
enum EventBlock {
    static let magic: [UInt8] = Array("BWE1".utf8)

    /// The kinds by their stored byte. Part of the file format, spelled out rather than taken from the enum's
    /// `allCases`, so that reordering or adding a case there never changes what stored bytes mean: a new kind
    /// goes at the end.
    static let storedKinds: [JournalEvent.Kind] = [.created, .changed, .expired, .targetFailing, .targetRecovered]

    /// Appends events to a block.
    struct Writer {
        private(set) var bytes: [UInt8]
        private(set) var count = 0

        /// A block with room for `capacity` bytes (its magic included) before it grows.
        init(reserving capacity: Int) {
            bytes = []
            bytes.reserveCapacity(capacity)
            bytes.append(contentsOf: magic)
        }

        /// What ``append(kind:id:subject:body:)`` adds for an event with fields of these lengths.
        static func length(id: Int, subject: Int, body: Int) -> Int {
            1 + varintLength(id) + id + varintLength(subject) + subject + varintLength(body) + body
        }

        private static func varintLength(_ value: Int) -> Int {
            var length = 1
            var rest = UInt(value) >> 7
            while rest > 0 {
                length += 1
                rest >>= 7
            }
            return length
        }

        mutating func append(
            kind: JournalEvent.Kind, id: UnsafeRawBufferPointer, subject: UnsafeRawBufferPointer,
            body: UnsafeRawBufferPointer
        ) {
            bytes.append(UInt8(EventBlock.storedKinds.firstIndex(of: kind)!))
            field(id)
            field(subject)
            field(body)
            count += 1
        }

        private mutating func field(_ value: UnsafeRawBufferPointer) {
            var length = UInt(value.count)
            while length >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: length) | 0x80)
                length >>= 7
            }
            bytes.append(UInt8(length))
            bytes.append(contentsOf: value)
        }
    }

    /// A block that does not read as one: the state file was damaged or written by something else.
    struct Corrupt: Error, CustomStringConvertible {
        var firstSequence: Int64
        var description: String { "the event block at sequence \(firstSequence) is corrupt" }
    }

    /// One event of a block as its bytes, valid only during the call that hands it over.
    struct EventBytes {
        var sequence: Int64
        /// Nil for a kind this version does not know (its reader leaves the event out, as for a row).
        var kind: JournalEvent.Kind?
        var id: UnsafeRawBufferPointer
        var subject: UnsafeRawBufferPointer
        var body: UnsafeRawBufferPointer

        func event(time: String, target: String) -> JournalEvent? {
            guard let kind else { return nil }
            var event = JournalEvent(
                sequence: sequence, id: String(decoding: id, as: UTF8.self), kind: kind,
                subject: String(decoding: subject, as: UTF8.self), time: time, body: Array(body))
            event.target = target
            return event
        }
    }

    /// Calls `body` with each event of the block whose first event has sequence `first` and whose last has
    /// `last`, in order, until it returns false. Throws ``Corrupt`` when the bytes do not hold exactly those
    /// events.
    static func forEach(
        in block: UnsafeRawBufferPointer, first: Int64, last: Int64, _ body: (EventBytes) throws -> Bool
    ) throws {
        var reader = Reader(bytes: block)
        guard reader.take(magic.count).elementsEqual(magic) else { throw Corrupt(firstSequence: first) }
        var sequence = first
        while !reader.isAtEnd {
            guard sequence <= last, let code = reader.byte(), let id = reader.field(), let subject = reader.field(),
                let eventBody = reader.field()
            else { throw Corrupt(firstSequence: first) }
            let kind = Int(code) < storedKinds.count ? storedKinds[Int(code)] : nil
            let more = try body(
                EventBytes(sequence: sequence, kind: kind, id: id, subject: subject, body: eventBody))
            if !more { return }
            sequence += 1
        }
        guard sequence == last + 1 else { throw Corrupt(firstSequence: first) }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var isAtEnd: Bool { offset >= bytes.count }

        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
            let end = min(bytes.count, offset + count)
            defer { offset = end }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<end])
        }

        mutating func field() -> UnsafeRawBufferPointer? {
            var length = 0
            var shift = 0
            while true {
                guard let byte = byte(), shift < 63 else { return nil }
                length |= Int(byte & 0x7F) << shift
                if byte < 0x80 { break }
                shift += 7
            }
            guard length <= bytes.count - offset else { return nil }
            return take(length)
        }
    }
}
