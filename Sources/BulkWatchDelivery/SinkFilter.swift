package import BulkWatchStore
package import BulkWatchSupport
import Foundation

/// Which events one sink receives (DESIGN.md §9): by type, by status, by previous status (for
/// `changed`), by target. Nil fields match everything.
///
/// The dispatcher applies it after reading a batch from the sink's cursor and moves the cursor past
/// what it filtered out, so a filtered event is never "pending" and replay (`redeliver --since`)
/// filters the same way.
package struct SinkFilter: Sendable, Equatable, Hashable {
    /// Event kinds; nil: every `bulk.*` kind, and operational events too for stdout
    /// (see ``matches(_:operationalByDefault:)``).
    package var types: Set<JournalEvent.Kind>?
    /// The status the event reports (`data.status`: the new one for changed, the last known one
    /// for expired). Operational events have none and are matched by type and target only.
    package var statuses: Set<String>?
    /// For `changed`: the status before the change (`data.previous.status`). An event without a
    /// previous status (created, expired) never matches it.
    package var previousStatuses: Set<String>?
    /// Targets whose events pass.
    package var targets: Set<String>?

    package init(
        types: Set<JournalEvent.Kind>? = nil, statuses: Set<String>? = nil, previousStatuses: Set<String>? = nil,
        targets: Set<String>? = nil
    ) {
        self.types = types
        self.statuses = statuses
        self.previousStatuses = previousStatuses
        self.targets = targets
    }

    /// Whether the filter lets everything through that a sink receives by default.
    package var isEmpty: Bool { types == nil && statuses == nil && previousStatuses == nil && targets == nil }

    /// Whether `event` goes to the sink. Without `types`, operational events go only where
    /// `operationalByDefault` (stdout: a person watching should see the watcher break).
    package func matches(_ event: JournalEvent, operationalByDefault: Bool) -> Bool {
        if let types {
            guard types.contains(event.kind) else { return false }
        } else if !event.kind.isBulk, !operationalByDefault {
            return false
        }
        if let targets {
            guard let target = event.target, targets.contains(target) else { return false }
        }
        guard event.kind.isBulk, statuses != nil || previousStatuses != nil else { return true }
        let fields = EventFields.statuses(of: event.body)
        if let statuses {
            guard let status = fields.status, statuses.contains(status) else { return false }
        }
        if let previousStatuses {
            guard let previous = fields.previousStatus, previousStatuses.contains(previous) else { return false }
        }
        return true
    }

    /// The parameter names a sink spec takes for filtering (`?types=…&statuses=…`, YAML keys).
    package static let parameterNames = ["types", "statuses", "previous-statuses", "targets"]

    /// Applies one `name=value` filter parameter (comma-separated values).
    package mutating func apply(_ name: String, values: [String]) throws(SettingError) {
        let values = values.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !values.isEmpty else { throw SettingError("\(name) needs at least one value") }
        switch name {
        case "types":
            var kinds: Set<JournalEvent.Kind> = []
            for value in values {
                guard let kind = Self.kind(named: value) else {
                    throw SettingError(
                        "unknown event type '\(value)': expected created, changed, expired, target.failing, "
                            + "target.recovered (or their CloudEvents types, e.g. bulk.changed)")
                }
                kinds.insert(kind)
            }
            types = kinds
        case "statuses": statuses = Set(values)
        case "previous-statuses": previousStatuses = Set(values)
        case "targets": targets = Set(values)
        default: throw SettingError("unknown filter '\(name)'")
        }
    }

    /// `changed`, `bulk.changed`, `target.failing`, `failing`, `bulkwatch.target.failing`, …
    package static func kind(named name: String) -> JournalEvent.Kind? {
        if let kind = JournalEvent.Kind(rawValue: name) ?? JournalEvent.Kind(type: name) { return kind }
        switch name {
        case "failing": return .targetFailing
        case "recovered": return .targetRecovered
        default: return nil
        }
    }
}
