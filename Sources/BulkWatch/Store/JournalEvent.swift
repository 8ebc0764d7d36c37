/// One committed event as the journal stores it: the unit every sink delivers.
public struct JournalEvent: Sendable, Equatable {
    /// The journal's monotonically increasing number (CloudEvents `sequence`).
    public var sequence: Int64
    /// Stable CloudEvents `id`, derived from (source, bulkId, type, status, updatedOn).
    public var id: String
    public var kind: DetectedChange.Kind
    /// The bulkId (CloudEvents `subject`).
    public var subject: String
    /// Detection time, RFC 3339 UTC with milliseconds.
    public var time: String
    /// The whole CloudEvent, one JSON object without a trailing newline (DESIGN.md §4).
    public var body: [UInt8]

    public init(sequence: Int64, id: String, kind: DetectedChange.Kind, subject: String, time: String, body: [UInt8]) {
        self.sequence = sequence
        self.id = id
        self.kind = kind
        self.subject = subject
        self.time = time
        self.body = body
    }

    /// CloudEvents `type`: `bulk.created`, `bulk.changed` or `bulk.expired`.
    public var type: String { "bulk.\(kind.rawValue)" }
}
