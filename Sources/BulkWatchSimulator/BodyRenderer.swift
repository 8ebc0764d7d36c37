/// Renders DruID bodies straight into bytes.
///
/// A million-item list is about 150 MB; JSONEncoder would take seconds and allocate per item, so the body is built by
/// appending UTF-8 into one preallocated `[UInt8]`, and timestamps are formatted with integer arithmetic.
enum BodyRenderer {
    static let prefix = Array(#"{"content":["#.utf8)
    static let suffix = Array(#"],"result":{"status":200,"message":"OK"}}"#.utf8)

    /// The full list body, plus the byte offset just after the first half of the items (`count / 2` of them), so a
    /// half list is the prefix up to there followed by ``suffix``.
    static func renderList(_ world: SimulatedWorld) -> (bytes: [UInt8], halfCut: Int) {
        var out: [UInt8] = []
        out.reserveCapacity(prefix.count + suffix.count + world.count * 150)
        out.append(contentsOf: prefix)
        let half = world.count / 2
        var halfCut = out.count
        var written = 0
        for case let operation? in world.slots {
            if written > 0 { out.append(UInt8(ascii: ",")) }
            appendItem(operation, to: &out)
            written += 1
            if written == half { halfCut = out.count }
        }
        out.append(contentsOf: suffix)
        return (out, halfCut)
    }

    static func appendItem(_ operation: SimulatedOperation, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"bulkId":"#.utf8)
        appendJSONString(operation.bulkId, to: &out)
        appendField(#","status":"#, operation.status, to: &out)
        appendField(#","createdOn":"#, operation.createdOn, to: &out)
        appendField(#","updatedOn":"#, operation.updatedOn, to: &out)
        if !operation.extraJSONFields.isEmpty {
            out.append(UInt8(ascii: ","))
            out.append(contentsOf: operation.extraJSONFields.utf8)
        }
        out.append(UInt8(ascii: "}"))
    }

    private static func appendField(_ key: StaticString, _ value: FieldValue, to out: inout [UInt8]) {
        if case .absent = value { return }
        key.withUTF8Buffer { out.append(contentsOf: $0) }
        switch value {
        case .millis(let millis):
            out.append(UInt8(ascii: "\""))
            appendISO8601(millis: millis, to: &out)
            out.append(UInt8(ascii: "\""))
        case .string(let text):
            appendJSONString(text, to: &out)
        case .raw(let json):
            out.append(contentsOf: json.utf8)
        case .absent:
            break
        }
    }

    /// Appends `text` as a quoted JSON string, escaping quotes, backslashes and control characters.
    static func appendJSONString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(byte)
            case 0..<0x20:
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hexDigit(byte >> 4))
                out.append(hexDigit(byte & 0xF))
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends `yyyy-MM-ddTHH:mm:ss.SSSZ` for `millis` since 1970 (proleptic Gregorian, UTC), using Howard
    /// Hinnant's days-to-civil algorithm.
    static func appendISO8601(millis: Int64, to out: inout [UInt8]) {
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

        appendDigits(year, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(month, width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(day, width: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendDigits(ofDay / 3_600_000, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(ofDay / 60_000 % 60, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(ofDay / 1000 % 60, width: 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendDigits(ofDay % 1000, width: 3, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    static func iso8601(millis: Int64) -> String {
        var out: [UInt8] = []
        appendISO8601(millis: millis, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Zero-padded decimal; values wider than `width` (years past 9999) are written in full.
    private static func appendDigits(_ value: Int64, width: Int, to out: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        if value >= 0, value < 10_000 {
            var rest = value
            digits.3 = UInt8(rest % 10) + 48
            rest /= 10
            digits.2 = UInt8(rest % 10) + 48
            rest /= 10
            digits.1 = UInt8(rest % 10) + 48
            rest /= 10
            digits.0 = UInt8(rest % 10) + 48
            if width >= 4 { out.append(digits.0) }
            if width >= 3 { out.append(digits.1) }
            if width >= 2 { out.append(digits.2) }
            out.append(digits.3)
        } else {
            out.append(contentsOf: String(value).utf8)
        }
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? nibble + 48 : nibble + 87
    }
}
