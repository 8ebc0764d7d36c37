package import BulkWatchSupport

/// What one poll found out about one bulk operation.
package struct DetectedChange: Sendable, Equatable {
    package enum Kind: String, Sendable, Equatable, CaseIterable {
        case created
        case changed
        case expired
    }

    package var kind: Kind
    /// For created/changed: the item as just received. For expired: its last known state.
    package var item: BulkItem
    /// For changed: the status and updatedOn it had before. Nil otherwise.
    package var previous: PreviousState?

    package init(kind: Kind, item: BulkItem, previous: PreviousState? = nil) {
        self.kind = kind
        self.item = item
        self.previous = previous
    }
}

/// The fields of an item's prior state that a `changed` event reports.
package struct PreviousState: Sendable, Equatable {
    package var status: String?
    package var updatedOn: String?

    package init(status: String?, updatedOn: String?) {
        self.status = status
        self.updatedOn = updatedOn
    }
}

/// One known operation in the snapshot: its last received state and how many consecutive
/// successful polls it has been missing from.
package struct TrackedItem: Sendable, Equatable {
    package var item: BulkItem
    package var absentPolls: Int

    package init(item: BulkItem, absentPolls: Int = 0) {
        self.item = item
        self.absentPolls = absentPolls
    }
}

/// An absent item that stays (not expired) and the absence counter it now has: all a poll changes of it, so
/// all a store writes of it (``DiffOutcome/absenceCounts``), not the whole row.
package struct AbsenceCount: Sendable, Equatable {
    package var bulkId: String
    package var absentPolls: Int

    package init(bulkId: String, absentPolls: Int) {
        self.bulkId = bulkId
        self.absentPolls = absentPolls
    }
}

/// Knobs of DESIGN.md §3.
package struct DetectionPolicy: Sendable, Equatable {
    package enum InitialMode: String, Sendable, Equatable {
        /// First run emits `created` for every item.
        case emit
        /// First run records the baseline silently.
        case skip
    }

    /// Consecutive successful polls an item must be absent from before `expired` (default 2).
    package var expireAfter: Int
    package var initial: InitialMode

    package init(expireAfter: Int = 2, initial: InitialMode = .emit) {
        self.expireAfter = expireAfter
        self.initial = initial
    }
}
