/// One bulk operation exactly as DruID reported it.
///
/// The four documented fields are extracted for change detection; everything else stays in
/// ``rawJSON``, the item's object bytes as received, so unknown fields pass through to events
/// untouched. `rawJSON` is usually a slice of the whole response body: keeping slices instead of
/// copying each object is what lets a 100k-item poll decode without 100k extra allocations.
package struct BulkItem: Sendable, Equatable {
    /// Identity of the operation. Never empty: items without one are skipped by the decoder.
    package var bulkId: String
    package var status: String?
    package var createdOn: String?
    package var updatedOn: String?
    /// The item's JSON object, byte for byte as received (unknown fields included).
    package var rawJSON: ArraySlice<UInt8>

    package init(
        bulkId: String,
        status: String? = nil,
        createdOn: String? = nil,
        updatedOn: String? = nil,
        rawJSON: ArraySlice<UInt8>
    ) {
        self.bulkId = bulkId
        self.status = status
        self.createdOn = createdOn
        self.updatedOn = updatedOn
        self.rawJSON = rawJSON
    }
}

/// A complete, well-formed 200 answer of the bulk-status endpoint.
package struct BulkListing: Sendable {
    /// Items in the order DruID sent them (duplicates are resolved later, by the differ).
    package var items: [BulkItem]
    /// Items that had no usable `bulkId` (missing, null, empty or not a scalar): skipped, never a crash.
    package var skippedWithoutId: Int
    /// `result.status` when present.
    package var resultStatus: Int?
    /// `result.message` when present.
    package var resultMessage: String?

    package init(items: [BulkItem], skippedWithoutId: Int = 0, resultStatus: Int? = nil, resultMessage: String? = nil) {
        self.items = items
        self.skippedWithoutId = skippedWithoutId
        self.resultStatus = resultStatus
        self.resultMessage = resultMessage
    }
}
