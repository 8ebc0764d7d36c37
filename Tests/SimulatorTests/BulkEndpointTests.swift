import BulkWatchSimulator
import Foundation
import Testing

@Suite struct BulkEndpointTests {
    @Test func refusesMissingOrUnknownToken() async throws {
        try await withSimulator { simulator in
            let missing = try await fetchBulk(simulator, token: nil)
            #expect(missing.status == 401)
            #expect(missing.json?["error"] as? String == "invalid_token")
            #expect(missing.json?["type"] as? String == "InvalidTokenException")

            let unknown = try await fetchBulk(simulator, token: "not-a-token")
            #expect(unknown.status == 401)
            #expect(unknown.json?["type"] as? String == "InvalidTokenException")
        }
    }

    @Test func refusesExpiredToken() async throws {
        var options = SimulatorOptions.manual()
        options.tokenLifetime = 0.3
        try await withSimulator(options) { simulator in
            let token = try await fetchToken(simulator)
            try await Task.sleep(for: .milliseconds(600))
            let response = try await fetchBulk(simulator, token: token)
            #expect(response.status == 401)
        }
    }

    @Test func refusesRevokedToken() async throws {
        try await withSimulator { simulator in
            let token = try await fetchToken(simulator)
            #expect(try await fetchBulk(simulator, token: token).status == 200)
            simulator.revokeAllTokens()
            #expect(try await fetchBulk(simulator, token: token).status == 401)
            #expect(try await fetchBulk(simulator, token: try await fetchToken(simulator)).status == 200)
        }
    }

    @Test func servesDocumentedListShape() async throws {
        var options = SimulatorOptions.manual()
        options.initialOperations = 25
        try await withSimulator(options) { simulator in
            let response = try await fetchBulk(simulator, token: try await fetchToken(simulator))
            #expect(response.status == 200)
            #expect(response.headers["content-type"]?.hasPrefix("application/json") == true)
            #expect(response.headers["content-length"] == String(response.body.count))
            let json = try #require(response.json)
            let result = try #require(json["result"] as? [String: Any])
            #expect(result["status"] as? Int == 200)
            #expect(result["message"] as? String == "OK")
            let items = try #require(response.items)
            #expect(items.count == 25)
            let statuses: Set<String> = ["PENDING", "PROCESSING", "FINISHED", "FINISHED_WITH_ERRORS"]
            for item in items {
                #expect(Set(item.keys) == ["bulkId", "status", "createdOn", "updatedOn"])
                #expect(statuses.contains(item["status"] as? String ?? ""))
                let created = try #require(item["createdOn"] as? String)
                let updated = try #require(item["updatedOn"] as? String)
                #expect(isISO8601Millis(created) && isISO8601Millis(updated))
                #expect(created <= updated)
            }
            #expect(items.first?["bulkId"] as? String == "b-000001")
            #expect(Set(items.compactMap { $0["bulkId"] as? String }).count == 25)
            #expect(simulator.stats.bulkListsServed == 1)
        }
    }

    @Test func servesLargeListsIntactAndFromCache() async throws {
        var options = SimulatorOptions.manual()
        options.initialOperations = 20_000
        try await withSimulator(options) { simulator in
            let token = try await fetchToken(simulator)
            let first = try await fetchBulk(simulator, token: token)
            let second = try await fetchBulk(simulator, token: token)
            #expect(first.status == 200)
            #expect(first.headers["content-length"] == String(first.body.count))
            #expect(first.body == Data(simulator.currentListBody()))
            #expect(second.body == first.body)
            #expect(first.items?.count == 20_000)
        }
    }

    @Test func automaticWorldFollowsTheWallClock() async throws {
        let options = SimulatorOptions(initialOperations: 0, creationsPerSecond: 50, stepSeconds: 0.05)
        try await withSimulator(options) { simulator in
            let token = try await fetchToken(simulator)
            try await Task.sleep(for: .milliseconds(300))
            // About 15 creations are expected by now; none at all has a probability of e^-15.
            let items = try #require(try await fetchBulk(simulator, token: token).items)
            #expect(!items.isEmpty)
            #expect(items.first?["bulkId"] as? String == "b-000001")
        }
    }

    @Test func upsertAndRemoveShowInNextResponse() async throws {
        try await withSimulator { simulator in
            let token = try await fetchToken(simulator)
            #expect(try await fetchBulk(simulator, token: token).items?.count == 0)

            simulator.upsert(
                bulkId: "b-1", status: "PROCESSING", createdOn: "2026-11-28T10:16:03.512Z",
                updatedOn: "2026-11-28T10:17:00.000Z", extraJSONFields: #""owner":"ops","retries":2"#)
            simulator.upsert(bulkId: "b-2", status: .null, updatedOn: .absent)
            let first = try #require(try await fetchBulk(simulator, token: token).items)
            #expect(first.count == 2)
            #expect(first[0]["bulkId"] as? String == "b-1")
            #expect(first[0]["status"] as? String == "PROCESSING")
            #expect(first[0]["createdOn"] as? String == "2026-11-28T10:16:03.512Z")
            #expect(first[0]["owner"] as? String == "ops")
            #expect(first[0]["retries"] as? Int == 2)
            #expect(first[1]["status"] is NSNull)
            #expect(first[1]["updatedOn"] == nil)

            simulator.upsert(bulkId: "b-1", status: "FINISHED", updatedOn: "2026-11-28T10:18:00.000Z")
            #expect(simulator.remove(bulkId: "b-2"))
            #expect(!simulator.remove(bulkId: "b-404"))
            let second = try #require(try await fetchBulk(simulator, token: token).items)
            #expect(second.count == 1)
            #expect(second[0]["status"] as? String == "FINISHED")
            #expect(second[0]["updatedOn"] as? String == "2026-11-28T10:18:00.000Z")
        }
    }

    @Test func escapesStringsIntoValidJSON() async throws {
        try await withSimulator { simulator in
            simulator.upsert(bulkId: "b-\"quoted\"\\\n", status: "PENDING\u{1}é")
            let items = try #require(try await fetchBulk(simulator, token: try await fetchToken(simulator)).items)
            #expect(items.first?["bulkId"] as? String == "b-\"quoted\"\\\n")
            #expect(items.first?["status"] as? String == "PENDING\u{1}é")
        }
    }

    @Test func recordsRequestHeadersAsSent() async throws {
        try await withSimulator { simulator in
            let token = try await fetchToken(simulator)
            simulator.clearRequestLog()
            _ = try await curl(
                simulator.bulkURL,
                headers: [
                    "Authorization: Bearer \(token)", "Content-Type: application/json", "Accept: application/json",
                    "Accept-Language: fr-FR",
                ])
            let log = simulator.requestLog
            #expect(log.count == 1)
            let record = try #require(log.first)
            #expect(record.method == "GET")
            #expect(record.path == "/activityid/v1/user/bulk")
            #expect(record.status == 200)
            #expect(record.header("Authorization") == "Bearer \(token)")
            #expect(record.header("content-type") == "application/json")
            #expect(record.header("Accept") == "application/json")
            #expect(record.header("Accept-Language") == "fr-FR")
            #expect(record.headerValues("Accept").count == 1)
            #expect(record.headers.contains(SimulatorHeader(name: "Accept-Language", value: "fr-FR")))
            #expect(abs(record.time.timeIntervalSinceNow) < 60)
        }
    }

    @Test func recordsTokenRequestBody() async throws {
        try await withSimulator { simulator in
            _ = try await fetchToken(simulator)
            let record = try #require(simulator.requestLog.first)
            #expect(record.method == "POST")
            #expect(record.path == "/oauth2/token")
            #expect(record.header("Content-Type") == "application/x-www-form-urlencoded")
            #expect(record.body == "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=demo-secret")
        }
    }

    @Test func unknownPathAnswers404InDruIDShape() async throws {
        try await withSimulator { simulator in
            let response = try await curl(simulator.baseURL + "/activityid/v1/user/other")
            #expect(response.status == 404)
            #expect(response.json?["type"] is String)
            let wrongMethod = try await curl(simulator.bulkURL, method: "DELETE")
            #expect(wrongMethod.status == 405)
        }
    }
}

/// `yyyy-MM-ddTHH:mm:ss.SSSZ`, the format DruID uses.
func isISO8601Millis(_ text: String) -> Bool {
    text.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#, options: .regularExpression) != nil
}
