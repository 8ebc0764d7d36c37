package import BulkWatchSupport

/// Turns a 200 body of the DruID bulk-status endpoint into a ``BulkListing``, or refuses it.
///
/// Why not `JSONDecoder`: a poll can carry 100k+ items and runs every few seconds. This decoder makes
/// one pass over the bytes, allocates only the four extracted strings per item (and not even `status`,
/// which is interned), keeps each item's bytes as a slice of the body instead of a copy, and validates
/// everything it skips. It is several times faster than Foundation on the same bytes (see
/// `bulkwatch-bench decode`) and agrees with Foundation on the conformance corpus, except where it is
/// deliberately stricter or picks `JSONSerialization`'s side (listed below and pinned by tests).
///
/// ## What is accepted
/// - The body must be one complete JSON text (RFC 8259) whose top level is an object. Whitespace is
///   space, tab, LF and CR only; a leading UTF-8 byte-order mark is ignored (as Foundation does).
///   Every string anywhere in the body is checked: valid UTF-8, no unescaped control characters, only
///   the RFC escapes, `\u` surrogates properly paired. Every number must follow the RFC grammar.
///   Nesting deeper than ``maximumDepth`` is refused (Foundation's limit). Comments, `NaN`, single
///   quotes and trailing non-whitespace are refused. Stricter than Foundation: trailing commas and
///   UTF-16/32 bodies (which Foundation accepts) are refused too. Numbers are checked against the
///   grammar only, so `1e999` is accepted (`JSONSerialization` refuses it, `JSONDecoder` does not).
///   Anything refused is a ``BulkDecodingError``, which the watcher treats as a failed poll.
/// - `content` must be present and an array. Missing or `null` is an error (``BulkDecodingError/Code/contentMissing``),
///   never an empty list: an empty list would make the change detector expire every known bulk.
///   For the same reason an element of `content` that is not an object is an error
///   (``BulkDecodingError/Code/itemNotObject``) rather than a skipped item.
/// - `result` is optional. When it is an object, `result.status` and `result.message` are read with
///   the field rules below; `resultStatus` is set only when the status is a JSON number with an integral
///   value that fits an `Int`. A numeric `result.status` of 400 or more is an error
///   (``BulkDecodingError/Code/errorStatus``). A `result` that is not an object is ignored.
/// - Other top-level keys are validated and ignored.
///
/// ## Item fields (`bulkId`, `status`, `createdOn`, `updatedOn`)
/// - A string is decoded (all escapes, including surrogate pairs). A number or a boolean becomes its
///   literal text as written (`123` → `"123"`, `1.50e3` → `"1.50e3"`, `true` → `"true"`), so ids that
///   an upstream serialises as numbers still identify the item. `null`, an object or an array → `nil`.
/// - Keys are compared after unescaping (`"bulk\u0049d"` is `bulkId`) and are case-sensitive.
/// - Duplicate keys: the **last** occurrence wins, in items, in `result` and at the top level. This is
///   what `JSONSerialization` does on Linux and Darwin, and what a consumer parsing ``BulkItem/rawJSON``
///   will see, so the extracted fields never contradict the raw bytes. (Foundation's `JSONDecoder`
///   on Linux keeps the first occurrence instead; the conformance tests pin the difference.)
/// - An item whose `bulkId` is missing, `null`, `""`, an object or an array is skipped and counted in
///   ``BulkListing/skippedWithoutId``.
/// - ``BulkItem/rawJSON`` is the item's `{...}` bytes exactly as received, a slice of `body`.
package enum BulkListDecoder {
    /// Deepest nesting of arrays and objects accepted, counting the top-level object as 1; the same
    /// limit as Foundation's JSON parser, so both refuse the same hostile inputs.
    package static let maximumDepth = 512

    /// Bodies from this size on are parsed on two threads. At 1M items (122 MB) that took the decode from ~80 to
    /// ~50 ms. At 100k (12 MB) it takes `bulkwatch-bench decode` from 7.2–9.4 to 4.7–7.4 ms, and the steady poll
    /// cycle of `bulkwatch-bench poll --runs 30` from 49.8–51.1 to 46.5–48.3 ms (alternated pairs, first peak
    /// unchanged); an earlier, single-run measurement had found no gain there, so the line was at 16 MiB.
    /// Below ~4 MiB (~30k items) the thread's start is a sizeable part of what it saves.
    package static let parallelBodyBytes = 4 << 20

    /// Decodes a complete 200 body.
    ///
    /// - Throws: ``BulkDecodingError`` for anything that is not a complete, well-formed body by the
    ///   rules above. Never traps, whatever the bytes.
    ///
    /// A body of `parallelFrom` bytes or more has its `content` array parsed in two halves at once, on two
    /// threads, with the same result (tests pass a small value to check that on small bodies).
    package static func decode(
        _ body: [UInt8], parallelFrom: Int = parallelBodyBytes
    ) throws(BulkDecodingError) -> BulkListing {
        try decode(body, parallelFrom: parallelFrom, arrived: nil)
    }

    /// ``decode(_:parallelFrom:)``, taking over what `arrived` parsed of `body` while it arrived (see
    /// ``ArrivingContent``); the outcome is the same as without it. Waits for its reader to stop either way.
    ///
    /// `compactItems: false` parses every item on the general path (``BulkBodyParser``'s fast path for the
    /// compact item shape off), for tests that compare the two.
    package static func decode(
        _ body: [UInt8], parallelFrom: Int = parallelBodyBytes, arrived: ArrivingContent?, compactItems: Bool = true
    ) throws(BulkDecodingError) -> BulkListing {
        defer { arrived?.finish() }
        return try body.withUnsafeBufferPointer { (buffer) throws(BulkDecodingError) -> BulkListing in
            guard let base = buffer.baseAddress, buffer.count > 0 else {
                throw BulkDecodingError(code: .truncated, offset: 0, detail: "empty body")
            }
            var parser = BulkBodyParser(
                base: base, count: buffer.count, body: body, parallelFrom: parallelFrom,
                arrived: arrived?.hasReader == true ? arrived : nil, compactItems: compactItems)
            return try parser.parseDocument()
        }
    }
}
