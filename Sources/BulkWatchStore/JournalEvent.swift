package import BulkWatchDetect

/// One committed event as the journal stores it: the unit every sink delivers.
public struct JournalEvent: Sendable, Equatable {
    /// What an event reports: a change of a bulk operation (`bulk.*`, detected by the differ) or
    /// the watcher's own health (`bulkwatch.target.*`, DESIGN.md §9).
    ///
    /// Separate from ``DetectedChange/Kind`` because the differ never produces operational events;
    /// the raw value is the short name people type (`--type`, `types=`) and `stdout` prints.
    public enum Kind: String, Sendable, Equatable, Hashable, CaseIterable {
        case created
        case changed
        case expired
        /// A target's polls have failed for its `failing-after` (one event per outage).
        case targetFailing = "target.failing"
        /// A failing target polled successfully again.
        case targetRecovered = "target.recovered"

        package init(_ kind: DetectedChange.Kind) {
            switch kind {
            case .created: self = .created
            case .changed: self = .changed
            case .expired: self = .expired
            }
        }

        /// The kind of a CloudEvents `type`; nil for a type this version does not know.
        public init?(type: String) {
            if type.hasPrefix("bulk."), let kind = Kind(rawValue: String(type.dropFirst(5))), kind.isBulk {
                self = kind
            } else if type.hasPrefix("bulkwatch."), let kind = Kind(rawValue: String(type.dropFirst(10))), !kind.isBulk
            {
                self = kind
            } else {
                return nil
            }
        }

        /// CloudEvents `type`: `bulk.created` … or `bulkwatch.target.failing` / `.recovered`.
        public var type: String { staticType.description }

        /// ``type`` as a literal: the commit writes it into each body and binds it without building a
        /// string per event.
        package var staticType: StaticString {
            switch self {
            case .created: "bulk.created"
            case .changed: "bulk.changed"
            case .expired: "bulk.expired"
            case .targetFailing: "bulkwatch.target.failing"
            case .targetRecovered: "bulkwatch.target.recovered"
            }
        }

        /// Whether this is a change of a bulk operation (as opposed to an operational event).
        public var isBulk: Bool {
            switch self {
            case .created, .changed, .expired: true
            case .targetFailing, .targetRecovered: false
            }
        }

        /// The differ's kind, nil for operational events.
        package var change: DetectedChange.Kind? {
            switch self {
            case .created: .created
            case .changed: .changed
            case .expired: .expired
            case .targetFailing, .targetRecovered: nil
            }
        }
    }

    /// The journal's monotonically increasing number (CloudEvents `sequence`).
    public var sequence: Int64
    /// Stable CloudEvents `id`, derived from (source, bulkId, type, status, updatedOn).
    public var id: String
    public var kind: Kind
    /// The bulkId (CloudEvents `subject`); the target name for operational events.
    public var subject: String
    /// Detection time, RFC 3339 UTC with milliseconds.
    public var time: String
    /// The whole CloudEvent, one JSON object without a trailing newline (DESIGN.md §4).
    public var body: [UInt8]
    /// The target whose poll produced the event, when the reader asked for it (the dispatcher's
    /// read does, for per-sink target filters); nil otherwise. Not part of equality.
    public var target: String?

    public init(sequence: Int64, id: String, kind: Kind, subject: String, time: String, body: [UInt8]) {
        self.sequence = sequence
        self.id = id
        self.kind = kind
        self.subject = subject
        self.time = time
        self.body = body
    }

    package init(sequence: Int64, id: String, kind: DetectedChange.Kind, subject: String, time: String, body: [UInt8]) {
        self.init(sequence: sequence, id: id, kind: Kind(kind), subject: subject, time: time, body: body)
    }

    /// CloudEvents `type`: `bulk.created`, `bulk.changed`, `bulk.expired`, `bulkwatch.target.failing`
    /// or `bulkwatch.target.recovered`.
    public var type: String { kind.type }

    public static func == (lhs: JournalEvent, rhs: JournalEvent) -> Bool {
        lhs.sequence == rhs.sequence && lhs.id == rhs.id && lhs.kind == rhs.kind && lhs.subject == rhs.subject
            && lhs.time == rhs.time && lhs.body == rhs.body
    }
}
