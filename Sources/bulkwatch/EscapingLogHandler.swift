import Logging

/// Text logs (`--log-format text`) with control characters made visible (issue 11).
///
/// Log lines quote data from upstream: bulkIds, DruID's `error`/`type`/`message` fields, a
/// receiver's `Location`. A CR or LF in them would start a forged log line, an escape sequence
/// would rewrite the operator's terminal. So every message and metadata value passes through
/// ``escape(_:)`` before the stream handler writes it; the JSON format escapes them by itself.
struct EscapingLogHandler: LogHandler {
    private var inner: StreamLogHandler

    init(_ inner: StreamLogHandler) {
        self.inner = inner
    }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue.mapValues(Self.escape) }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue.map(Self.escape) }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: Self.escape("\(event.message)"))
        event.metadata = event.metadata?.mapValues(Self.escape)
        inner.log(event: event)
    }

    private static func escape(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(escape(text))
        case .stringConvertible(let convertible): .string(escape(convertible.description))
        case .array(let items): .array(items.map(escape))
        case .dictionary(let dictionary): .dictionary(dictionary.mapValues(escape))
        }
    }

    /// `\n`, `\r`, `\t` for the common ones, `\u{1B}` for other C0/C1 controls, DEL, the Unicode
    /// line separators and the bidirectional overrides that reorder what a terminal shows.
    static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00..<0x20, 0x7F..<0xA0, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
