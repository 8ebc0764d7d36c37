import Testing

@testable import BulkWatchStore

/// The bytes a block of events is kept as (``EventBlock``): read back exactly as written, and anything else
/// refused as corrupt rather than read as other events.
@Suite("A commit's events kept as one block")
struct EventBlockTests {
    private struct Written {
        var kind: JournalEvent.Kind
        var id: String
        var subject: String
        var body: String
    }

    private let written = [
        Written(kind: .created, id: "id-1", subject: "op-1", body: #"{"a":1}"#),
        Written(kind: .changed, id: "id-2", subject: "op-é", body: String(repeating: "x", count: 300)),
        Written(kind: .expired, id: "", subject: "", body: ""),
    ]

    private func block(_ events: [Written]) -> [UInt8] {
        var writer = EventBlock.Writer(reserving: 0)
        for event in events {
            var id = event.id
            var subject = event.subject
            var body = event.body
            id.withUTF8 { id in
                subject.withUTF8 { subject in
                    body.withUTF8 { body in
                        writer.append(
                            kind: event.kind, id: UnsafeRawBufferPointer(id), subject: UnsafeRawBufferPointer(subject),
                            body: UnsafeRawBufferPointer(body))
                    }
                }
            }
        }
        #expect(writer.count == events.count)
        let lengths = events.map {
            EventBlock.Writer.length(id: $0.id.utf8.count, subject: $0.subject.utf8.count, body: $0.body.utf8.count)
        }
        #expect(writer.bytes.count == EventBlock.magic.count + lengths.reduce(0, +))
        return writer.bytes
    }

    private func read(_ bytes: [UInt8], first: Int64, last: Int64) throws -> [JournalEvent] {
        var events: [JournalEvent] = []
        try bytes.withUnsafeBytes { bytes in
            try EventBlock.forEach(in: bytes, first: first, last: last) { event in
                if let built = event.event(time: "2026-12-07T09:00:00.000Z", target: "t") { events.append(built) }
                return true
            }
        }
        return events
    }

    @Test func readsBackEveryEventWithItsSequence() throws {
        let events = try read(block(written), first: 40, last: 42)
        #expect(events.map(\.sequence) == [40, 41, 42])
        #expect(events.map(\.kind) == written.map(\.kind))
        #expect(events.map(\.id) == written.map(\.id))
        #expect(events.map(\.subject) == written.map(\.subject))
        #expect(events.map { String(decoding: $0.body, as: UTF8.self) } == written.map(\.body))
        #expect(events.allSatisfy { $0.target == "t" && $0.time == "2026-12-07T09:00:00.000Z" })
    }

    /// Every kind has a stored byte, each its own, and the bytes already in state files keep their meaning.
    @Test func everyKindHasItsOwnStoredByte() throws {
        #expect(Set(EventBlock.storedKinds) == Set(JournalEvent.Kind.allCases))
        #expect(EventBlock.storedKinds.count == JournalEvent.Kind.allCases.count)
        #expect(Array(EventBlock.storedKinds.prefix(3)) == [.created, .changed, .expired])
        let bytes = block(written)
        #expect(bytes[EventBlock.magic.count] == 0)
    }

    /// A reader can stop part-way; the events after are not read.
    @Test func stopsWhereTheReaderStops() throws {
        var seen: [Int64] = []
        try block(written).withUnsafeBytes { bytes in
            try EventBlock.forEach(in: bytes, first: 1, last: 3) { event in
                seen.append(event.sequence)
                return event.sequence < 2
            }
        }
        #expect(seen == [1, 2])
    }

    /// A kind this version does not know is handed over without one (its readers leave it out), and the
    /// events after it still read.
    @Test func anUnknownKindIsHandedOverWithoutOne() throws {
        var bytes = block(written)
        bytes[EventBlock.magic.count] = 200
        var kinds: [JournalEvent.Kind?] = []
        try bytes.withUnsafeBytes { bytes in
            try EventBlock.forEach(in: bytes, first: 1, last: 3) { event in
                kinds.append(event.kind)
                return true
            }
        }
        #expect(kinds == [nil, .changed, .expired])
    }

    @Test func refusesWhatIsNotExactlyTheBlocksEvents() throws {
        let bytes = block(written)
        // Fewer or more events than the row's sequences say.
        #expect(throws: EventBlock.Corrupt.self) { try read(bytes, first: 1, last: 4) }
        #expect(throws: EventBlock.Corrupt.self) { try read(bytes, first: 1, last: 2) }
        // Cut anywhere inside its last event, or without its magic.
        for cut in (EventBlock.magic.count + 1)..<bytes.count {
            let truncated = Array(bytes[..<cut])
            #expect(throws: EventBlock.Corrupt.self, "cut at \(cut)") { try read(truncated, first: 1, last: 3) }
        }
        #expect(throws: EventBlock.Corrupt.self) {
            try read(Array("BWE2".utf8) + bytes.dropFirst(4), first: 1, last: 3)
        }
        // A length past the end.
        #expect(throws: EventBlock.Corrupt.self) {
            try read(EventBlock.magic + [0, 0xFF, 0xFF, 0x03], first: 1, last: 1)
        }
    }
}
