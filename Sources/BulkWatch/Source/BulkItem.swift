/// One bulk operation exactly as DruID reported it.
///
/// The four documented fields are extracted for change detection; everything else stays in
/// ``rawJSON``, the item's object bytes as received, so unknown fields pass through to events
/// untouched. `rawJSON` is usually a slice of the whole response body: keeping slices instead of
/// copying each object is what lets a 100k-item poll decode without 100k extra allocations.
public struct BulkItem: Sendable, Equatable {
    /// Identity of the operation. Never empty: items without one are skipped by the decoder.
    public var bulkId: String
    public var status: String?
    public var createdOn: String?
    public var updatedOn: String?
    /// The item's JSON object, byte for byte as received (unknown fields included).
    public var rawJSON: ArraySlice<UInt8>

    public init(
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
public struct BulkListing: Sendable {
    /// Items in the order DruID sent them (duplicates are resolved later, by the differ).
    public var items: [BulkItem]
    /// Items that had no usable `bulkId` (missing, null, empty or not a scalar): skipped, never a crash.
    public var skippedWithoutId: Int
    /// `result.status` when present.
    public var resultStatus: Int?
    /// `result.message` when present.
    public var resultMessage: String?

    public init(items: [BulkItem], skippedWithoutId: Int = 0, resultStatus: Int? = nil, resultMessage: String? = nil) {
        self.items = items
        self.skippedWithoutId = skippedWithoutId
        self.resultStatus = resultStatus
        self.resultMessage = resultMessage
    }
}
