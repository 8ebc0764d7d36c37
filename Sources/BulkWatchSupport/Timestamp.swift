/// Reads the `createdOn` / `updatedOn` values DruID sends into UTC milliseconds since 1970.
///
/// Why not `ISO8601DateFormatter`: the change detector compares timestamps of every item on every
/// poll, and formatters are slow and reject variants that upstreams actually emit (a space
/// instead of `T`, nine fractional digits). This parser is pure and allocates nothing (except for the
/// rare exponent form of an epoch number).
///
/// Accepted (anything else is `nil`, never a guess):
/// - ISO-8601 / RFC 3339 date-times: `YYYY-MM-DD` then `T`, `t` or a space, then `hh:mm:ss`, then an
///   optional fraction (`.` and one or more digits, truncated to milliseconds), then an optional zone:
///   `Z`, `z`, `±hh:mm`, `±hhmm` or `±hh`. Without a zone the time is read as UTC (DruID's timestamps
///   are UTC; the detector needs ordering, not the sender's wall clock). Fields are range-checked
///   (month 1–12, day within the month including leap years, hour 0–23, minute 0–59, second 0–59).
/// - Epoch numbers, as a JSON number's text (`"createdOn": 1764324963` reaches here as that literal):
///   seconds, or milliseconds when the absolute value is at least 1e11 (year 5138 in seconds, 1973
///   in milliseconds, so the two ranges cannot be confused for real dates). A fraction is kept to the
///   millisecond, truncated toward negative infinity; exponents are accepted.
package enum Timestamp {
    /// UTC milliseconds since the Unix epoch, or `nil` when `text` is not one of the accepted forms.
    package static func instantMillis(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { bytes in
            guard let first = bytes.first else { return nil }
            if bytes.count >= 10, bytes[4] == 0x2D {  // "YYYY-"
                return parseISO(bytes)
            }
            if first == 0x2D || (first >= 0x30 && first <= 0x39) {
                return parseEpoch(bytes)
            }
            return nil
        }
    }

    // MARK: ISO-8601

    private static func parseISO(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        var reader = DigitReader(bytes: bytes)
        guard let year = reader.number(digits: 4), reader.skip(0x2D),
            let month = reader.number(digits: 2), reader.skip(0x2D),
            let day = reader.number(digits: 2)
        else { return nil }
        guard let separator = reader.next(), separator == 0x54 || separator == 0x74 || separator == 0x20 else {
            return nil
        }
        guard let hour = reader.number(digits: 2), reader.skip(0x3A),
            let minute = reader.number(digits: 2), reader.skip(0x3A),
            let second = reader.number(digits: 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month),
            hour <= 23, minute <= 59, second <= 59
        else { return nil }

        var millis: Int64 = 0
        if reader.peek() == 0x2E {  // fraction
            reader.index += 1
            var digits = 0
            while let byte = reader.peek(), byte >= 0x30, byte <= 0x39 {
                if digits < 3 { millis = millis * 10 + Int64(byte - 0x30) }
                digits += 1
                reader.index += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 3) { millis *= 10 }
        }

        var offsetMinutes: Int64 = 0
        if let zone = reader.next() {
            switch zone {
            case 0x5A, 0x7A:  // Z z
                break
            case 0x2B, 0x2D:  // + -
                guard let hours = reader.number(digits: 2), hours <= 23 else { return nil }
                var minutes: Int64 = 0
                if reader.peek() != nil {
                    _ = reader.skip(0x3A)
                    guard let value = reader.number(digits: 2), value <= 59 else { return nil }
                    minutes = value
                }
                offsetMinutes = (hours * 60 + minutes) * (zone == 0x2D ? -1 : 1)
            default:
                return nil
            }
        }
        guard reader.atEnd else { return nil }

        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offsetMinutes * 60
        return seconds * 1_000 + millis
    }

    private static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    // MARK: Epoch numbers

    private static func parseEpoch(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        var index = 0
        let negative = bytes[0] == 0x2D
        if negative { index = 1 }
        var integer: Int64 = 0
        var integerDigits = 0
        while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
            guard integerDigits < 18 else { return nil }
            integer = integer * 10 + Int64(bytes[index] - 0x30)
            integerDigits += 1
            index += 1
        }
        guard integerDigits > 0, integerDigits == 1 || bytes[negative ? 1 : 0] != 0x30 else { return nil }

        // Fraction kept as up to 3 (seconds) or 0 (milliseconds) digits plus a "rest is non-zero" flag.
        var fraction: Int64 = 0
        var fractionDigits = 0
        var fractionRest = false
        if index < bytes.count, bytes[index] == 0x2E {
            index += 1
            let start = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                if fractionDigits < 3 {
                    fraction = fraction * 10 + Int64(bytes[index] - 0x30)
                    fractionDigits += 1
                } else if bytes[index] != 0x30 {
                    fractionRest = true
                }
                index += 1
            }
            guard index > start else { return nil }
        }
        if index < bytes.count {
            // Exponent notation: rare enough to go through Double, still range-checked.
            guard bytes[index] | 0x20 == 0x65, let value = Double(String(decoding: bytes, as: UTF8.self)),
                value.isFinite, abs(value) < 1e17
            else { return nil }
            let millis = abs(value) >= 1e11 ? value : value * 1_000
            return Int64(millis.rounded(.down))
        }

        let sign: Int64 = negative ? -1 : 1
        if integer >= 100_000_000_000 {
            let up = negative && (fraction != 0 || fractionRest) ? 1 : 0
            return sign * integer - Int64(up)
        }
        for _ in fractionDigits..<3 { fraction *= 10 }
        let up = negative && fractionRest ? 1 : 0
        return sign * (integer * 1_000 + fraction) - Int64(up)
    }
}

/// Fixed-width decimal fields over a byte buffer.
private struct DigitReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    var atEnd: Bool { index == bytes.count }

    func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    mutating func next() -> UInt8? {
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func skip(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        index += 1
        return true
    }

    mutating func number(digits: Int) -> Int64? {
        guard index + digits <= bytes.count else { return nil }
        var value: Int64 = 0
        for offset in 0..<digits {
            let byte = bytes[index + offset]
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            value = value * 10 + Int64(byte - 0x30)
        }
        index += digits
        return value
    }
}
