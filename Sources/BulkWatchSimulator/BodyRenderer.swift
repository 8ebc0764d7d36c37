/// Renders DruID bodies straight into bytes.
///
/// A million-item list is about 150 MB; JSONEncoder would take seconds and allocate per item, so the body is built by
/// appending UTF-8 into one preallocated `[UInt8]`, and timestamps are formatted with integer arithmetic.
enum BodyRenderer {
    static let prefix = Array(#"{"content":["#.utf8)
    static let suffix = Array(#"],"result":{"status":200,"message":"OK"}}"#.utf8)

    /// The full list body, plus the byte offset just after the first half of the items (`count / 2` of them), so a
    /// half list is the prefix up to there followed by ``suffix``.
    ///
    /// A first pass bounds the size, so the second writes through a raw pointer with no capacity checks: about
    /// 120 bytes an item, a million items in well under a second.
    static func renderList(_ world: SimulatedWorld) -> (bytes: [UInt8], halfCut: Int) {
        var bound = prefix.count + suffix.count
        for case let operation? in world.slots { bound += sizeBound(operation) }
        var halfCut = prefix.count
        let bytes = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
            var cursor = ByteCursor(base: buffer.baseAddress!)
            cursor.write(prefix)
            let half = world.count / 2
            var written = 0
            for case let operation? in world.slots {
                if written > 0 { cursor.write(UInt8(ascii: ",")) }
                writeItem(operation, to: &cursor)
                written += 1
                if written == half { halfCut = cursor.offset }
            }
            cursor.write(suffix)
            initialized = cursor.offset
        }
        return (bytes, halfCut)
    }

    /// Appends `text` as a quoted JSON string, escaping quotes, backslashes and control characters.
    static func appendJSONString(_ text: String, to out: inout [UInt8]) {
        let bound = stringBound(text)
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: bound))
        let used = out.withUnsafeMutableBufferPointer { buffer in
            var cursor = ByteCursor(base: buffer.baseAddress! + start)
            cursor.writeJSONString(text)
            return cursor.offset
        }
        out.removeLast(bound - used)
    }

    private static let bulkIdKey = Array(#"{"bulkId":"#.utf8)
    private static let statusKey = Array(#","status":"#.utf8)
    private static let createdOnKey = Array(#","createdOn":"#.utf8)
    private static let updatedOnKey = Array(#","updatedOn":"#.utf8)

    private static func writeItem(_ operation: SimulatedOperation, to cursor: inout ByteCursor) {
        cursor.write(bulkIdKey)
        cursor.writeJSONString(operation.bulkId)
        writeField(statusKey, operation.status, to: &cursor)
        writeField(createdOnKey, operation.createdOn, to: &cursor)
        writeField(updatedOnKey, operation.updatedOn, to: &cursor)
        if !operation.extraJSONFields.isEmpty {
            cursor.write(UInt8(ascii: ","))
            cursor.write(operation.extraJSONFields)
        }
        cursor.write(UInt8(ascii: "}"))
    }

    private static func writeField(_ key: [UInt8], _ value: FieldValue, to cursor: inout ByteCursor) {
        switch value {
        case .absent:
            return
        case .millis(let millis):
            cursor.write(key)
            cursor.write(UInt8(ascii: "\""))
            cursor.writeISO8601(millis: millis)
            cursor.write(UInt8(ascii: "\""))
        case .string(let text):
            cursor.write(key)
            cursor.writeJSONString(text)
        case .raw(let json):
            cursor.write(key)
            cursor.write(json)
        }
    }

    /// At least the rendered size of `operation`: keys and punctuation, plus each value's worst case.
    private static func sizeBound(_ operation: SimulatedOperation) -> Int {
        64 + stringBound(operation.bulkId) + valueBound(operation.status) + valueBound(operation.createdOn)
            + valueBound(operation.updatedOn) + operation.extraJSONFields.utf8.count
    }

    private static func valueBound(_ value: FieldValue) -> Int {
        switch value {
        case .absent: 0
        case .millis: 48  // 24 for years 0...9999; room for any Int64 year
        case .string(let text): stringBound(text)
        case .raw(let json): json.utf8.count
        }
    }

    /// Quotes plus six bytes (`\u00XX`) for every byte in the worst case.
    private static func stringBound(_ text: String) -> Int {
        2 + 6 * text.utf8.count
    }

    static func iso8601(millis: Int64) -> String {
        String(unsafeUninitializedCapacity: 48) { buffer in
            var cursor = ByteCursor(base: buffer.baseAddress!)
            cursor.writeISO8601(millis: millis)
            return cursor.offset
        }
    }
}

/// A write position in memory already known to be large enough; the renderer's inner loop.
struct ByteCursor {
    let base: UnsafeMutablePointer<UInt8>
    private(set) var offset = 0

    init(base: UnsafeMutablePointer<UInt8>) {
        self.base = base
    }

    @inline(__always)
    mutating func write(_ byte: UInt8) {
        base[offset] = byte
        offset += 1
    }

    mutating func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { source in
            (base + offset).update(from: source.baseAddress!, count: source.count)
            offset += source.count
        }
    }

    mutating func write(_ text: String) {
        var text = text
        text.withUTF8 { source in
            guard let address = source.baseAddress else { return }
            (base + offset).update(from: address, count: source.count)
            offset += source.count
        }
    }

    /// `text` as a quoted JSON string, escaping quotes, backslashes and control characters.
    mutating func writeJSONString(_ text: String) {
        write(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { source in
            for byte in source {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                    write(UInt8(ascii: "\\"))
                    write(byte)
                case 0..<0x20:
                    write(UInt8(ascii: "\\"))
                    write(UInt8(ascii: "u"))
                    write(UInt8(ascii: "0"))
                    write(UInt8(ascii: "0"))
                    write(Self.hexDigit(byte >> 4))
                    write(Self.hexDigit(byte & 0xF))
                default:
                    write(byte)
                }
            }
        }
        write(UInt8(ascii: "\""))
    }

    /// `yyyy-MM-ddTHH:mm:ss.SSSZ` for `millis` since 1970 (proleptic Gregorian, UTC), using Howard Hinnant's
    /// days-to-civil algorithm.
    mutating func writeISO8601(millis: Int64) {
        let msPerDay: Int64 = 86_400_000
        var days = millis / msPerDay
        var ofDay = millis % msPerDay
        if ofDay < 0 {
            ofDay += msPerDay
            days -= 1
        }
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

        if year >= 0, year < 10_000 {
            writeDigits(year, width: 4)
        } else {
            for byte in String(year).utf8 { write(byte) }
        }
        write(UInt8(ascii: "-"))
        writeDigits(month, width: 2)
        write(UInt8(ascii: "-"))
        writeDigits(day, width: 2)
        write(UInt8(ascii: "T"))
        writeDigits(ofDay / 3_600_000, width: 2)
        write(UInt8(ascii: ":"))
        writeDigits(ofDay / 60_000 % 60, width: 2)
        write(UInt8(ascii: ":"))
        writeDigits(ofDay / 1000 % 60, width: 2)
        write(UInt8(ascii: "."))
        writeDigits(ofDay % 1000, width: 3)
        write(UInt8(ascii: "Z"))
    }

    /// `value` (0 ≤ value < 10^width) zero-padded to `width` digits.
    @inline(__always)
    private mutating func writeDigits(_ value: Int64, width: Int) {
        var rest = value
        var position = offset + width - 1
        while position >= offset {
            base[position] = UInt8(truncatingIfNeeded: rest % 10) &+ 48
            rest /= 10
            position -= 1
        }
        offset += width
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? nibble + 48 : nibble + 87
    }
}
