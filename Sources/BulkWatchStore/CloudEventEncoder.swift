import BulkWatchDetect
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
    struct Source {
        let raw: String
        let member: [UInt8]

        init(_ raw: String) {
            self.raw = raw
            var member: [UInt8] = []
            JSONText.appendString(CloudEventEncoder.withoutUserinfo(raw), to: &member)
            self.member = member
        }
    }

    static func encode(
        _ change: DetectedChange, source: String, sequence: Int64, time: String, incarnation: Int64 = 0
    ) -> JournalEvent {
        encode(change, source: Source(source), sequence: sequence, time: time, incarnation: incarnation)
    }

    static func encode(
        _ change: DetectedChange, source: Source, sequence: Int64, time: String, incarnation: Int64 = 0
    ) -> JournalEvent {
        let item = change.item
        let id = stableID(source: source.raw, change: change, incarnation: incarnation)
        let type = "bulk.\(change.kind.rawValue)"
        var out: [UInt8] = []
        out.reserveCapacity(item.rawJSON.count + source.member.count + 320)
        // Literals and strings are appended as byte buffers (one copy each): appending a `String.UTF8View`
        // goes through the generic sequence path, 7 % of a first poll's commit.
        append(#"{"specversion":"1.0","id":""#, to: &out)
        append(id, to: &out)
        append(#"","source":"#, to: &out)
        out.append(contentsOf: source.member)
        append(#","type":""#, to: &out)
        append(type, to: &out)
        append(#"","subject":"#, to: &out)
        JSONText.appendString(item.bulkId, to: &out)
        append(#","time":""#, to: &out)
        append(time, to: &out)
        append(#"","datacontenttype":"application/json","sequence":""#, to: &out)
        append(String(sequence), to: &out)
        append(#"","data":"#, to: &out)
        appendData(item.rawJSON, previous: change.previous, to: &out)
        out.append(UInt8(ascii: "}"))
        return JournalEvent(sequence: sequence, id: id, kind: change.kind, subject: item.bulkId, time: time, body: out)
    }

    @inline(__always)
    private static func append(_ literal: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    @inline(__always)
    private static func append(_ text: String, to out: inout [UInt8]) {
        ByteKeys.withBytes(text) { out.append(contentsOf: $0) }
    }

    /// The item object with `"previous"` added as its last member.
    private static func appendData(_ raw: ArraySlice<UInt8>, previous: PreviousState?, to out: inout [UInt8]) {
        var end = raw.endIndex
        while end > raw.startIndex, raw[end - 1] != UInt8(ascii: "}") { end -= 1 }
        var start = raw.startIndex
        while start < end, raw[start] != UInt8(ascii: "{") { start += 1 }
        guard end > start else {
            // Not an object (cannot happen for decoded items): keep the event valid regardless.
            append(#"{"previous":null}"#, to: &out)
            return
        }
        let body = raw[start..<(end - 1)]
        out.append(contentsOf: body)
        let isEmptyObject = body.dropFirst().allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        if !isEmptyObject { out.append(UInt8(ascii: ",")) }
        append(#""previous":"#, to: &out)
        if let previous {
            append(#"{"status":"#, to: &out)
            JSONText.appendOptionalString(previous.status, to: &out)
            append(#","updatedOn":"#, to: &out)
            JSONText.appendOptionalString(previous.updatedOn, to: &out)
            out.append(UInt8(ascii: "}"))
        } else {
            out.append(contentsOf: "null".utf8)
        }
        out.append(UInt8(ascii: "}"))
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
        // The parts, each followed by a zero byte, are laid out in one buffer and hashed in one call: per
        // part, swift-crypto's update costs more than hashing the few bytes it is given (this runs once
        // per event, 100k times on a first poll). Each part is copied by a function that returns where the
        // next one goes, so no closure captures a variable (which cost an exclusivity check per access).
        let item = change.item
        let number = incarnation != 0 ? String(incarnation) : ""
        let kind = change.kind.rawValue
        let status = item.status ?? ""
        let length =
            source.utf8.count + item.bulkId.utf8.count + (incarnation != 0 ? number.utf8.count + 1 : 0)
            + kind.utf8.count + status.utf8.count + (item.updatedOnUTF8Count ?? 0) + 5
        let digest = withUnsafeTemporaryAllocation(byteCount: length, alignment: 1) { buffer in
            var next = buffer.baseAddress!
            next = ByteKeys.withBytes(source) { part(copying: $0, to: next) }
            next = ByteKeys.withBytes(item.bulkId) { part(copying: $0, to: next) }
            if incarnation != 0 { next = ByteKeys.withBytes(number) { part(copying: $0, to: next) } }
            next = ByteKeys.withBytes(kind) { part(copying: $0, to: next) }
            next = ByteKeys.withBytes(status) { part(copying: $0, to: next) }
            next = item.withUpdatedOnUTF8 {
                part(copying: $0 ?? UnsafeRawBufferPointer(start: nil, count: 0), to: next)
            }
            var hasher = SHA256()
            hasher.update(
                bufferPointer: UnsafeRawBufferPointer(start: buffer.baseAddress, count: next - buffer.baseAddress!))
            return hasher.finalize()
        }
        // 8-4-4-4-12 hex digits of the first 16 bytes, written straight into the string's storage.
        return String(unsafeUninitializedCapacity: 36) { out in
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
                return position
            }
        }
    }
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
    static func appendOptionalString(_ value: String?, to out: inout [UInt8]) {
        if let value { appendString(value, to: &out) } else { out.append(contentsOf: "null".utf8) }
    }

    package static func appendString(_ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
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
