import Foundation
import TestSupport

@testable import BulkWatch

/// A journal that commits items of several targets with chosen statuses, the way the watcher
/// does (through the differ), so filters and formats see real `created`/`changed`/`expired` events.
final class RoutingJournal: @unchecked Sendable {
    let directory: String
    let journal: SQLiteStore
    private var snapshots: [String: Snapshot] = [:]
    private var listings: [String: [String: BulkItem]] = [:]
    private var clock = 0

    init() throws {
        directory = try makeTemporaryDirectory("routing")
        journal = try SQLiteStore(path: directory + "/state.db")
    }

    /// Sets `bulkId`'s status on `target` and commits one poll of that target.
    @discardableResult
    func set(_ bulkId: String, _ status: String, target: String = "default") async throws -> [JournalEvent] {
        clock += 1
        let updated = String(format: "2026-11-28T10:%02d:%02dZ", clock / 60, clock % 60)
        let fields = ["bulkId": bulkId, "status": status, "updatedOn": updated]
        let json = String(
            decoding: try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]), as: UTF8.self)
        listings[target, default: [:]][bulkId] = BulkItem(
            bulkId: bulkId, status: status, updatedOn: updated, rawJSON: Array(json.utf8)[...])
        return try await poll(target)
    }

    /// Removes `bulkId` from `target`'s listing and polls twice (expiry needs two absences).
    @discardableResult
    func remove(_ bulkId: String, target: String = "default") async throws -> [JournalEvent] {
        listings[target]?[bulkId] = nil
        let first = try await poll(target)
        return try await first + poll(target)
    }

    private func poll(_ target: String) async throws -> [JournalEvent] {
        var snapshot = snapshots[target] ?? Snapshot(tracked: [], removalGuarded: [])
        let items = (listings[target] ?? [:]).values.sorted { $0.bulkId < $1.bulkId }
        let outcome = SnapshotDiffer.apply(
            BulkListing(items: items), to: &snapshot, policy: DetectionPolicy(), isFirstRun: false)
        snapshots[target] = snapshot
        return try await journal.commitReadingBack(
            PollCommit(
                target: target, source: "https://api.example.com/\(target)/bulk", outcome: outcome, snapshot: snapshot,
                detectedAt: Date()),
            fence: .exclusive)
    }
}
