/// What one poll found out about one bulk operation.
public struct DetectedChange: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        case created
        case changed
        case expired
    }

    public var kind: Kind
    /// For created/changed: the item as just received. For expired: its last known state.
    public var item: BulkItem
    /// For changed: the status and updatedOn it had before. Nil otherwise.
    public var previous: PreviousState?

    public init(kind: Kind, item: BulkItem, previous: PreviousState? = nil) {
        self.kind = kind
        self.item = item
        self.previous = previous
    }
}

/// The fields of an item's prior state that a `changed` event reports.
public struct PreviousState: Sendable, Equatable {
    public var status: String?
    public var updatedOn: String?

    public init(status: String?, updatedOn: String?) {
        self.status = status
        self.updatedOn = updatedOn
    }
}

/// One known operation in the snapshot: its last received state and how many consecutive
/// successful polls it has been missing from.
public struct TrackedItem: Sendable, Equatable {
    public var item: BulkItem
    public var absentPolls: Int

    public init(item: BulkItem, absentPolls: Int = 0) {
        self.item = item
        self.absentPolls = absentPolls
    }
}

/// Knobs of DESIGN.md §3.
public struct DetectionPolicy: Sendable, Equatable {
    public enum InitialMode: String, Sendable, Equatable {
        /// First run emits `created` for every item.
        case emit
        /// First run records the baseline silently.
        case skip
    }

    /// Consecutive successful polls an item must be absent from before `expired` (default 2).
    public var expireAfter: Int
    public var initial: InitialMode

    public init(expireAfter: Int = 2, initial: InitialMode = .emit) {
        self.expireAfter = expireAfter
        self.initial = initial
    }
}
