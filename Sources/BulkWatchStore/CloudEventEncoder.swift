import BulkWatchDetect
import BulkWatchSupport
import Crypto
import Foundation

/// Renders a detected change as the CloudEvents 1.0 JSON object of DESIGN.md §4.
///
/// Built by appending bytes rather than through `JSONEncoder`: `data` must be the item's raw
/// bytes as received (unknown fields kept, key order kept), which an encoder round trip would
/// not preserve, and a first poll of 100k items should not pay for 100k encoder runs.
enum CloudEventEncoder {
    /// What every event of one commit shares, worked out once per commit: the source as it is hashed
    /// into ids, and its `"source"` member without userinfo, JSON-escaped. Per event, stripping the
    /// userinfo alone (a Foundation substring search) was a third of a 3,000-event commit.
    struct Source: Sendable {
        let raw: String
        /// ``raw``'s UTF-8 bytes, as the ids hash them.
        let rawBytes: [UInt8]
        let member: [UInt8]

        init(_ raw: String) {
            self.raw = raw
            rawBytes = Array(raw.utf8)
            var member: [UInt8] = []
            JSONText.appendString(CloudEventEncoder.withoutUserinfo(raw), to: &member)
            self.member = member
        }
    }

    /// What an event is written from: its kind, its item's bytes read in place (``BulkItem/withFieldBytes(_:)``)
    /// and, for `changed`, the state before.
    struct Parts {
        let kind: DetectedChange.Kind
        let item: BulkItem.FieldBytes
        let previous: PreviousState?
    }

    /// Calls `body` with `change`'s ``Parts``.
    @inline(__always)
    static func withParts<R>(of change: DetectedChange, _ body: (Parts) throws -> R) rethrows -> R {
        try change.item.withFieldBytes { try body(Parts(kind: change.kind, item: $0, previous: change.previous)) }
    }

    static func encode(
        _ change: DetectedChange, source: String, sequence: Int64, time: String, incarnation: Int64 = 0
    ) -> JournalEvent {
        encode(change, source: Source(source), sequence: sequence, time: time, incarnation: incarnation)
    }

    static func encode(
        _ change: DetectedChange, source: Source, sequence: Int64, time: String, incarnation: Int64 = 0
    ) -> JournalEvent {
        let id = stableID(source: source.raw, change: change, incarnation: incarnation)
        var out: [UInt8] = []
        var idText = id
        idText.withUTF8 { id in
            writeBody(change, source: source, sequence: sequence, time: time, id: UnsafeRawBufferPointer(id), to: &out)
        }
        return JournalEvent(
            sequence: sequence, id: id, kind: JournalEvent.Kind(change.kind), subject: change.item.bulkId, time: time,
            body: out)
    }

    /// The event's body, written over `out`'s contents (its capacity is kept): the commit reuses one
    /// buffer for every event it does not keep in memory, so a first poll's million events cost no
    /// allocation each. `id` is the event's ``stableID(source:change:incarnation:)`` as ASCII bytes.
    static func writeBody(
        _ change: DetectedChange, source: Source, sequence: Int64, time: String, id: UnsafeRawBufferPointer,
        to out: inout [UInt8]
    ) {
        var time = time
        time.withUTF8 { time in
            withParts(of: change) { parts in
                writeBody(
                    parts, source: source, sequence: sequence, time: UnsafeRawBufferPointer(time), id: id, to: &out)
            }
        }
    }

    /// ``writeBody(_:source:sequence:time:id:to:)`` from an event's ``Parts``, `time` as UTF-8 bytes.
    static func writeBody(
        _ parts: Parts, source: Source, sequence: Int64, time: UnsafeRawBufferPointer, id: UnsafeRawBufferPointer,
        to out: inout [UInt8]
    ) {
        out.removeAll(keepingCapacity: true)
        // The bound, not ``bodyLength``: working out the exact length per event was 5 % of a steady commit.
        out.reserveCapacity(bodyLengthBound(of: parts, source: source))
        // Literals and strings are appended as byte buffers (one copy each): appending a `String.UTF8View`
        // goes through the generic sequence path, 7 % of a first poll's commit.
        append(Literal.opening, to: &out)
        out.append(contentsOf: id)
        append(Literal.source, to: &out)
        out.append(contentsOf: source.member)
        append(Literal.type, to: &out)
        append(JournalEvent.Kind(parts.kind).staticType, to: &out)
        append(Literal.subject, to: &out)
        JSONText.appendString(parts.item.bulkId, to: &out)
        append(Literal.time, to: &out)
        out.append(contentsOf: time)
        append(Literal.sequence, to: &out)
        appendDecimal(sequence, to: &out)
        append(Literal.data, to: &out)
        appendData(parts.item.rawJSON, previous: parts.previous, to: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// The exact length of the body ``writeBody(_:source:sequence:time:id:to:)`` writes, worked out without
    /// writing it: the commit adds these up from its newest event backwards to know which events can stay
    /// in memory at all, before it builds any of them.
    static func bodyLength(of change: DetectedChange, source: Source, sequence: Int64, time: String) -> Int {
        withParts(of: change) { parts in
            Literal.fixedLength + stableIDLength + source.member.count
                + JournalEvent.Kind(parts.kind).staticType.utf8CodeUnitCount + JSONText.quotedLength(parts.item.bulkId)
                + time.utf8.count + decimalLength(sequence) + dataLength(parts.item.rawJSON, previous: parts.previous)
                + 1
        }
    }

    /// At least ``bodyLength(of:source:sequence:time:)`` for any sequence and an RFC 3339 time, without
    /// reading a byte of the item: every value counted as if each of its bytes needed a six-byte escape.
    static func bodyLengthBound(of change: DetectedChange, source: Source) -> Int {
        withParts(of: change) { bodyLengthBound(of: $0, source: source) }
    }

    /// ``bodyLengthBound(of:source:)`` from an event's ``Parts``.
    static func bodyLengthBound(of parts: Parts, source: Source) -> Int {
        let previous = ((parts.previous?.status?.utf8.count ?? 0) + (parts.previous?.updatedOn?.utf8.count ?? 0)) * 6
        return Literal.fixedLength + stableIDLength + source.member.count + 64 + parts.item.bulkId.count * 6
            + parts.item.rawJSON.count + 128 + previous
    }

    /// The body's fixed parts, shared by the writer and the length.
    private enum Literal {
        static let opening: StaticString = #"{"specversion":"1.0","id":""#
        static let source: StaticString = #"","source":"#
        static let type: StaticString = #","type":""#
        static let subject: StaticString = #"","subject":"#
        static let time: StaticString = #","time":""#
        static let sequence: StaticString = #"","datacontenttype":"application/json","sequence":""#
        static let data: StaticString = #"","data":"#
        static let notAnObject: StaticString = #"{"previous":null}"#
        static let previous: StaticString = #""previous":"#
        static let previousStatus: StaticString = #"{"status":"#
        static let previousUpdatedOn: StaticString = #","updatedOn":"#
        static let null: StaticString = "null"

        static let fixedLength = [opening, source, type, subject, time, sequence, data].reduce(0) {
            $0 + $1.utf8CodeUnitCount
        }
    }

    /// `value` in decimal, without building a `String`.
    private static func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
        guard value > 0 else {
            append(String(value), to: &out)
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var remaining = UInt64(value)
            var index = digits.count
            while remaining > 0 {
                index -= 1
                digits[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[index...]))
        }
    }

    private static func decimalLength(_ value: Int64) -> Int {
        guard value > 0 else { return String(value).utf8.count }
        var count = 0
        var remaining = value
        while remaining > 0 {
            count += 1
            remaining /= 10
        }
        return count
    }

    @inline(__always)
    private static func append(_ literal: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Through `String.withUTF8`, which the standard library inlines: `ByteKeys.withBytes` is generic and
    /// lives in another module, so each call instantiated its generic metadata at run time (a fifth of a
    /// first poll's encoding).
    @inline(__always)
    private static func append(_ text: String, to out: inout [UInt8]) {
        var text = text
        text.withUTF8 { out.append(contentsOf: $0) }
    }

    /// The item object without its closing brace, and whether it has no member: nil when `raw` is not an
    /// object (which cannot happen for decoded items).
    private static func objectOpening(_ raw: UnsafeRawBufferPointer) -> (bytes: UnsafeRawBufferPointer, isEmpty: Bool)?
    {
        var end = raw.endIndex
        while end > raw.startIndex, raw[end - 1] != UInt8(ascii: "}") { end -= 1 }
        var start = raw.startIndex
        while start < end, raw[start] != UInt8(ascii: "{") { start += 1 }
        guard end > start else { return nil }
        let bytes = UnsafeRawBufferPointer(rebasing: raw[start..<(end - 1)])
        return (bytes, bytes.dropFirst().allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 })
    }

    /// The item object with `"previous"` added as its last member.
    private static func appendData(_ raw: UnsafeRawBufferPointer, previous: PreviousState?, to out: inout [UInt8]) {
        guard let object = objectOpening(raw) else {
            // Keep the event valid regardless.
            append(Literal.notAnObject, to: &out)
            return
        }
        out.append(contentsOf: object.bytes)
        if !object.isEmpty { out.append(UInt8(ascii: ",")) }
        append(Literal.previous, to: &out)
        if let previous {
            append(Literal.previousStatus, to: &out)
            JSONText.appendOptionalString(previous.status, to: &out)
            append(Literal.previousUpdatedOn, to: &out)
            JSONText.appendOptionalString(previous.updatedOn, to: &out)
            out.append(UInt8(ascii: "}"))
        } else {
            append(Literal.null, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    private static func dataLength(_ raw: UnsafeRawBufferPointer, previous: PreviousState?) -> Int {
        guard let object = objectOpening(raw) else { return Literal.notAnObject.utf8CodeUnitCount }
        var length = object.bytes.count + (object.isEmpty ? 0 : 1) + Literal.previous.utf8CodeUnitCount + 1
        if let previous {
            length +=
                Literal.previousStatus.utf8CodeUnitCount + JSONText.quotedLength(previous.status)
                + Literal.previousUpdatedOn.utf8CodeUnitCount + JSONText.quotedLength(previous.updatedOn) + 1
        } else {
            length += Literal.null.utf8CodeUnitCount
        }
        return length
    }

    /// `source` without `user:pass@`: the event goes to every sink, and a credential must never
    /// travel with it (issue 11). Configuration already refuses such endpoints; this holds even for
    /// a source set some other way. The id keeps using `source` as given, so it stays stable.
    static func withoutUserinfo(_ source: String) -> String {
        guard let schemeEnd = source.range(of: "://") else { return source }
        let rest = source[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return source }
        return String(source[..<schemeEnd.upperBound]) + rest[rest.index(after: at)...]
    }

    /// A UUID-shaped id from SHA-256 of (source, bulkId, incarnation, type, status, updatedOn): the same
    /// change always gets the same id, across retries, replays and restarts, so receivers can dedupe.
    ///
    /// The first incarnation (0) hashes exactly what ids were made of before incarnations existed, so
    /// receivers that stored those ids see no change; a later one adds its number as a part of its own
    /// after the bulkId.
    static func stableID(source: String, change: DetectedChange, incarnation: Int64 = 0) -> String {
        String(unsafeUninitializedCapacity: stableIDLength) { out in
            writeStableID(source: source, change: change, incarnation: incarnation, to: out.baseAddress!)
            return stableIDLength
        }
    }

    /// The length of every ``stableID(source:change:incarnation:)``: 32 hex digits and 4 dashes.
    static let stableIDLength = 36

    /// Writes ``stableID(source:change:incarnation:)`` as ``stableIDLength`` ASCII bytes at `out`, so a commit
    /// can bind and embed it without building a `String` per event.
    static func writeStableID(
        source: String, change: DetectedChange, incarnation: Int64 = 0, to out: UnsafeMutablePointer<UInt8>
    ) {
        var source = source
        source.withUTF8 { source in
            withParts(of: change) { parts in
                writeStableID(source: UnsafeRawBufferPointer(source), parts: parts, incarnation: incarnation, to: out)
            }
        }
    }

    /// The kind's name as the ids hash it: its raw value, as a literal (no `String` per event).
    private static func hashedName(of kind: DetectedChange.Kind) -> StaticString {
        switch kind {
        case .created: "created"
        case .changed: "changed"
        case .expired: "expired"
        }
    }

    /// ``writeStableID(source:change:incarnation:to:)`` from an event's ``Parts``, `source` as UTF-8 bytes.
    static func writeStableID(
        source: UnsafeRawBufferPointer, parts: Parts, incarnation: Int64, to out: UnsafeMutablePointer<UInt8>
    ) {
        // The parts, each followed by a zero byte, are laid out in one buffer and hashed in one call: per
        // part, swift-crypto's update costs more than hashing the few bytes it is given (this runs once
        // per event, 100k times on a first poll). Each part is copied by a function that returns where the
        // next one goes, so no closure captures a variable (which cost an exclusivity check per access).
        let number = incarnation != 0 ? String(incarnation) : ""
        let kind = hashedName(of: parts.kind)
        let item = parts.item
        let numberLength = incarnation != 0 ? number.utf8.count + 1 : 0
        let statusLength = item.status?.count ?? 0
        let updatedOnLength = item.updatedOn?.count ?? 0
        let length =
            source.count + item.bulkId.count + numberLength + kind.utf8CodeUnitCount + statusLength + updatedOnLength
            + 5
        let digest = withUnsafeTemporaryAllocation(byteCount: length, alignment: 1) { buffer in
            var next = buffer.baseAddress!
            next = part(copying: source, to: next)
            next = part(copying: item.bulkId, to: next)
            if incarnation != 0 { next = part(copying: number, to: next) }
            next = part(copying: UnsafeRawBufferPointer(start: kind.utf8Start, count: kind.utf8CodeUnitCount), to: next)
            next = part(copying: item.status ?? UnsafeRawBufferPointer(start: nil, count: 0), to: next)
            next = part(copying: item.updatedOn ?? UnsafeRawBufferPointer(start: nil, count: 0), to: next)
            var hasher = SHA256()
            hasher.update(
                bufferPointer: UnsafeRawBufferPointer(start: buffer.baseAddress, count: next - buffer.baseAddress!))
            return hasher.finalize()
        }
        // 8-4-4-4-12 hex digits of the first 16 bytes.
        digest.withUnsafeBytes { digest in
            var position = 0
            for index in 0..<16 {
                var byte = digest[index]
                if index == 6 { byte = (byte & 0x0F) | 0x80 }  // UUID version 8: custom, name-based
                if index == 8 { byte = (byte & 0x3F) | 0x80 }  // RFC 4122 variant
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    out[position] = UInt8(ascii: "-")
                    position += 1
                }
                out[position] = hexDigits[Int(byte >> 4)]
                out[position + 1] = hexDigits[Int(byte & 0x0F)]
                position += 2
            }
        }
    }
}

/// Copies `text`'s UTF-8 bytes and a terminating zero byte to `target`; returns where the next part goes.
@inline(__always)
private func part(copying text: String, to target: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
    var text = text
    return text.withUTF8 { part(copying: UnsafeRawBufferPointer($0), to: target) }
}

/// Copies one id part and its terminating zero byte to `target`; returns where the next part goes.
@inline(__always)
private func part(copying bytes: UnsafeRawBufferPointer, to target: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer
{
    if let base = bytes.baseAddress, !bytes.isEmpty { target.copyMemory(from: base, byteCount: bytes.count) }
    target.storeBytes(of: 0, toByteOffset: bytes.count, as: UInt8.self)
    return target + bytes.count + 1
}

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

/// Minimal JSON string writing for the hand-built event bodies.
package enum JSONText {
    /// The length of what ``appendOptionalString(_:to:)`` appends.
    static func quotedLength(_ value: String?) -> Int {
        guard var value else { return 4 }
        return value.withUTF8 { quotedLength(UnsafeRawBufferPointer($0)) }
    }

    static func appendOptionalString(_ value: String?, to out: inout [UInt8]) {
        if let value { appendString(value, to: &out) } else { out.append(contentsOf: "null".utf8) }
    }

    package static func appendString(_ value: String, to out: inout [UInt8]) {
        var value = value
        value.withUTF8 { appendString(UnsafeRawBufferPointer($0), to: &out) }
    }

    /// The length of what ``appendString(_:to:)-(UnsafeRawBufferPointer,_)`` appends.
    static func quotedLength(_ value: UnsafeRawBufferPointer) -> Int {
        var length = 2
        for byte in value {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09: length += 2
            case 0..<0x20: length += 6
            default: length += 1
            }
        }
        return length
    }

    /// ``appendString(_:to:)-(String,_)`` for a value's UTF-8 bytes.
    static func appendString(_ value: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Nearly every value (a bulkId, a status) needs no escape: copied in one go.
        if !value.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.append(contentsOf: value)
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in value {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
