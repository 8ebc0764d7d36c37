import BulkWatchSimulator
import Foundation
import Testing

@Suite struct HistoryTests {
    @Test func recordsEveryVisibleChangeOfTheWorldInOrder() throws {
        var options = SimulatorOptions.manual()
        options.recordsHistory = true
        let simulator = DruIDSimulator(options: options)
        simulator.upsert(bulkId: "a", status: "PENDING", updatedOn: "2026-01-01T00:00:00.000Z")
        simulator.upsert(
            bulkId: "a", status: "PENDING", updatedOn: "2026-01-01T00:00:00.000Z", extraJSONFields: #""x":1"#)
        simulator.upsert(bulkId: "a", status: "FINISHED", updatedOn: "2026-01-01T00:00:01.000Z")
        simulator.remove(bulkId: "a")
        let summary = simulator.history.map {
            "\($0.kind.rawValue) \($0.bulkId) \($0.status ?? "-") \($0.updatedOn ?? "-")"
        }
        // The second upsert changed neither status nor updatedOn: no change a watcher could report.
        #expect(
            summary == [
                "created a PENDING 2026-01-01T00:00:00.000Z", "changed a FINISHED 2026-01-01T00:00:01.000Z",
                "removed a FINISHED 2026-01-01T00:00:01.000Z",
            ])
    }

    @Test func automaticChurnIsRecordedAsTheListShowsIt() throws {
        var options = SimulatorOptions.manual(seed: 5)
        options.recordsHistory = true
        options.initialOperations = 4
        options.creationsPerSecond = 2
        options.stepSeconds = 1
        options.retentionSeconds = 1
        let simulator = DruIDSimulator(options: options)
        simulator.advance(by: 10)
        let history = simulator.history
        // Replaying the history gives exactly the list the simulator serves now.
        var replayed: [String: (String?, String?)] = [:]
        for change in history {
            switch change.kind {
            case .created:
                #expect(replayed[change.bulkId] == nil)
                replayed[change.bulkId] = (change.status, change.updatedOn)
            case .changed:
                #expect(replayed[change.bulkId] != nil)
                replayed[change.bulkId] = (change.status, change.updatedOn)
            case .removed:
                #expect(replayed.removeValue(forKey: change.bulkId) != nil)
            }
        }
        #expect(zip(history, history.dropFirst()).allSatisfy { $0.atMillis <= $1.atMillis })
        let body = try JSONSerialization.jsonObject(with: Data(simulator.currentListBody())) as? [String: Any]
        let items = try #require(body?["content"] as? [[String: Any]])
        #expect(items.count == replayed.count)
        for item in items {
            let bulkId = try #require(item["bulkId"] as? String)
            let state = try #require(replayed[bulkId])
            #expect(state.0 == item["status"] as? String)
            #expect(state.1 == item["updatedOn"] as? String)
        }
        #expect(history.contains { $0.kind == .removed })
    }

    @Test func servesTheHistoryOverHTTPOnlyWhenRecording() async throws {
        var options = SimulatorOptions.manual()
        options.recordsHistory = true
        try await withSimulator(options) { recording in
            recording.upsert(bulkId: "a\"b", status: "PENDING")
            let response = try await curl(recording.baseURL + DruIDSimulator.historyPath)
            #expect(response.status == 200)
            let changes = try #require(response.json?["changes"] as? [[String: Any]])
            #expect(changes.count == 1)
            #expect(changes.first?["bulkId"] as? String == "a\"b")
            #expect(changes.first?["kind"] as? String == "created")
            #expect(response.json?["nowMillis"] is Int)
        }
        try await withSimulator(.manual()) { silent in
            let response = try await curl(silent.baseURL + DruIDSimulator.historyPath)
            #expect(response.status == 404)
        }
    }
}
