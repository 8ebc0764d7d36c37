/// Why a bulk-status body was refused, and where.
///
/// A refused body is a failed poll (DESIGN.md §2): the watcher logs this error and keeps its
/// previous state. The description is one line with the byte offset and a short reason, never the
/// body itself, because bodies can be megabytes long and may carry data that does not belong in logs.
package struct BulkDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The class of problem. A struct rather than an enum so that new codes do not break callers
    /// that switch over it.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Raw: UInt8 {
            case truncated, syntax, invalidString, invalidUTF8, nestingTooDeep, trailingData
            case notAnObject, contentMissing, contentNotArray, itemNotObject, errorStatus
        }

        private let raw: Raw

        private init(_ raw: Raw) {
            self.raw = raw
        }

        /// The body ended in the middle of a value (typically a cut connection).
        package static let truncated = Code(.truncated)
        /// A byte that JSON does not allow at that place (HTML, trailing comma, bad number, ...).
        package static let syntax = Code(.syntax)
        /// A string with a bad escape, a lone surrogate escape or an unescaped control character.
        package static let invalidString = Code(.invalidString)
        /// A string that is not well-formed UTF-8.
        package static let invalidUTF8 = Code(.invalidUTF8)
        /// More than ``BulkListDecoder/maximumDepth`` nested arrays and objects.
        package static let nestingTooDeep = Code(.nestingTooDeep)
        /// Something other than whitespace after the closing brace of the document.
        package static let trailingData = Code(.trailingData)
        /// The document is JSON but not an object.
        package static let notAnObject = Code(.notAnObject)
        /// `content` is missing or null: a failed poll, not an empty list.
        package static let contentMissing = Code(.contentMissing)
        /// `content` is neither an array nor null.
        package static let contentNotArray = Code(.contentNotArray)
        /// An element of `content` is not an object.
        package static let itemNotObject = Code(.itemNotObject)
        /// `result.status` is a number of 400 or more: the API reported an error inside a 200.
        package static let errorStatus = Code(.errorStatus)

        package var description: String {
            switch raw {
            case .truncated: "truncated"
            case .syntax: "syntax"
            case .invalidString: "invalidString"
            case .invalidUTF8: "invalidUTF8"
            case .nestingTooDeep: "nestingTooDeep"
            case .trailingData: "trailingData"
            case .notAnObject: "notAnObject"
            case .contentMissing: "contentMissing"
            case .contentNotArray: "contentNotArray"
            case .itemNotObject: "itemNotObject"
            case .errorStatus: "errorStatus"
            }
        }
    }

    package var code: Code
    /// Byte offset in the body where decoding stopped (the body length for truncation).
    package var offset: Int
    /// A short human explanation, at most a few dozen characters.
    package var detail: String

    package init(code: Code, offset: Int, detail: String) {
        self.code = code
        self.offset = offset
        self.detail = detail
    }

    package var description: String {
        "bulk-status body rejected at byte \(offset): \(code) (\(detail))"
    }
}
