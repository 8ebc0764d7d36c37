import BulkWatchSimulator
import Foundation
import Testing

@Suite struct WorldTests {
    private static let order = ["PENDING": 0, "PROCESSING": 1, "FINISHED": 2, "FINISHED_WITH_ERRORS": 2]

    private static func items(_ simulator: DruIDSimulator) throws -> [[String: Any]] {
        let json = try JSONSerialization.jsonObject(with: Data(simulator.currentListBody())) as? [String: Any]
        return try #require(json?["content"] as? [[String: Any]])
    }

    private static func millis(_ timestamp: String) throws -> Int64 {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try #require(formatter.date(from: timestamp))
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    @Test func operationsProgressInOrderAndExpireAfterRetention() throws {
        var options = SimulatorOptions.manual(seed: 3)
        options.initialOperations = 10
        options.creationsPerSecond = 2
        options.stepSeconds = 1
        options.retentionSeconds = 2
        options.clockStart = Date(timeIntervalSince1970: 1_795_860_000)
        let simulator = DruIDSimulator(options: options)
        let retentionMillis: Int64 = 2000

        struct Seen {
            var rank: Int
            var createdOn: String
            var updatedOn: String
            var statuses: [String]
        }
        var seen: [String: Seen] = [:]
        var gone: Set<String> = []
        for _ in 0..<200 {
            let now = simulator.currentTimeMillis
            let items = try Self.items(simulator)
            let present = Set(items.compactMap { $0["bulkId"] as? String })
            for item in items {
                let bulkId = try #require(item["bulkId"] as? String)
                let status = try #require(item["status"] as? String)
                let rank = try #require(Self.order[status])
                let createdOn = try #require(item["createdOn"] as? String)
                let updatedOn = try #require(item["updatedOn"] as? String)
                #expect(!gone.contains(bulkId), "\(bulkId) came back")
                #expect(createdOn <= updatedOn)
                #expect(try Self.millis(updatedOn) <= now)
                if rank == 2 {
                    #expect(try Self.millis(updatedOn) + retentionMillis > now, "\(bulkId) kept past retention")
                }
                if var previous = seen[bulkId] {
                    #expect(rank >= previous.rank, "\(bulkId) went back from \(previous.statuses) to \(status)")
                    #expect(createdOn == previous.createdOn)
                    if rank == previous.rank {
                        #expect(updatedOn == previous.updatedOn, "\(bulkId) changed without a new status")
                    } else {
                        #expect(updatedOn > previous.updatedOn)
                        previous.statuses.append(status)
                    }
                    previous.rank = rank
                    previous.updatedOn = updatedOn
                    seen[bulkId] = previous
                } else {
                    seen[bulkId] = Seen(rank: rank, createdOn: createdOn, updatedOn: updatedOn, statuses: [status])
                }
            }
            for (bulkId, entry) in seen where !present.contains(bulkId) && !gone.contains(bulkId) {
                gone.insert(bulkId)
                #expect(entry.rank == 2, "\(bulkId) vanished before finishing")
                #expect(try Self.millis(entry.updatedOn) + retentionMillis <= now, "\(bulkId) deleted early")
            }
            simulator.advance(by: 0.1)
        }
        // Over 20 simulated seconds with about 2 s of step time and 2 s of retention, many new operations have gone
        // the whole way through, ending both ways.
        let fullLives = seen.values.filter { $0.statuses.first == "PENDING" && $0.statuses.count == 3 }
        #expect(fullLives.count > 10)
        #expect(gone.count > 10)
        #expect(seen.values.contains { $0.statuses.last == "FINISHED" })
        #expect(seen.values.contains { $0.statuses.last == "FINISHED_WITH_ERRORS" })
    }

    @Test func sameSeedSameWorld() {
        func body(seed: UInt64) -> [UInt8] {
            var options = SimulatorOptions.manual(seed: seed)
            options.initialOperations = 50
            options.creationsPerSecond = 3
            options.clockStart = Date(timeIntervalSince1970: 1_795_860_000)
            let simulator = DruIDSimulator(options: options)
            simulator.advance(by: 3.3)
            simulator.advance(by: 7)
            return simulator.currentListBody()
        }
        #expect(body(seed: 11) == body(seed: 11))
        #expect(body(seed: 11) != body(seed: 12))
    }

    @Test func advancingInOneStepOrManyGivesTheSameWorld() {
        func simulator() -> DruIDSimulator {
            var options = SimulatorOptions.manual(seed: 5)
            options.initialOperations = 20
            options.creationsPerSecond = 1
            options.clockStart = Date(timeIntervalSince1970: 1_795_860_000)
            return DruIDSimulator(options: options)
        }
        let coarse = simulator()
        coarse.advance(by: 30)
        let fine = simulator()
        for _ in 0..<300 { fine.advance(by: 0.1) }
        #expect(coarse.currentListBody() == fine.currentListBody())
    }

    @Test func manualWorldStandsStill() throws {
        var options = SimulatorOptions.manual()
        options.initialOperations = 30
        let simulator = DruIDSimulator(options: options)
        let before = simulator.currentListBody()
        let time = simulator.currentTimeMillis
        #expect(simulator.currentListBody() == before)
        #expect(simulator.currentTimeMillis == time)
        #expect(simulator.stats.operations == 30)
    }

    @Test func initialPopulationCoversEveryState() throws {
        var options = SimulatorOptions.manual()
        options.initialOperations = 1000
        let simulator = DruIDSimulator(options: options)
        let items = try Self.items(simulator)
        #expect(items.count == 1000)
        #expect(items.first?["bulkId"] as? String == "b-000001")
        #expect(items.last?["bulkId"] as? String == "b-001000")
        let statuses = Set(items.compactMap { $0["status"] as? String })
        #expect(statuses == ["PENDING", "PROCESSING", "FINISHED", "FINISHED_WITH_ERRORS"])
        let created = items.compactMap { $0["createdOn"] as? String }
        #expect(created == created.sorted())
        let now = DruIDSimulator.timestamp(Date(timeIntervalSince1970: Double(simulator.currentTimeMillis) / 1000))
        #expect(items.allSatisfy { ($0["updatedOn"] as? String ?? "~") <= now })
    }

    @Test func upsertedItemsLeaveAutomaticControl() throws {
        var options = SimulatorOptions.manual()
        options.initialOperations = 3
        options.stepSeconds = 1
        let simulator = DruIDSimulator(options: options)
        simulator.upsert(bulkId: "b-000002", status: "PENDING", updatedOn: "2026-01-01T00:00:00.000Z")
        simulator.upsert(bulkId: "b-000004", status: "PROCESSING")
        simulator.advance(by: 600)
        let items = try Self.items(simulator)
        #expect(items.map { $0["bulkId"] as? String } == ["b-000002", "b-000004"])
        #expect(items.map { $0["status"] as? String } == ["PENDING", "PROCESSING"])
    }

    @Test func automaticIdsSkipUpsertedOnes() throws {
        var options = SimulatorOptions.manual()
        options.creationsPerSecond = 10
        options.retentionSeconds = 1000
        let simulator = DruIDSimulator(options: options)
        simulator.upsert(bulkId: "b-000001", status: "FINISHED")
        simulator.advance(by: 1)
        let ids = try Self.items(simulator).compactMap { $0["bulkId"] as? String }
        #expect(ids.count > 2)
        #expect(Set(ids).count == ids.count)
        #expect(ids.filter { $0 == "b-000001" }.count == 1)
    }

    @Test func timestampsAreISO8601UTCWithMilliseconds() {
        #expect(DruIDSimulator.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(DruIDSimulator.timestamp(Date(timeIntervalSince1970: 1_795_860_963.512)) == "2026-11-28T10:16:03.512Z")
        #expect(DruIDSimulator.timestamp(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00.000Z")
        #expect(DruIDSimulator.timestamp(Date(timeIntervalSince1970: -1)) == "1969-12-31T23:59:59.000Z")
    }
}
