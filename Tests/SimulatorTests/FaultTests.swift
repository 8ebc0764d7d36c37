import BulkWatchSimulator
import Foundation
import Testing

/// What a bulk fault must look like on the wire, checked the same way whether it was scripted or drawn.
enum FaultKind: String, CaseIterable, Sendable {
    case badRequest, unauthorized, serverError, gatewayTimeout
    case malformedJSON, truncatedBody, htmlErrorPage, emptyList, halfList

    var scripted: SimulatedResponse {
        switch self {
        case .badRequest: .status(400)
        case .unauthorized: .status(401)
        case .serverError: .status(500)
        case .gatewayTimeout: .status(504)
        case .malformedJSON: .malformedJSON
        case .truncatedBody: .truncatedBody
        case .htmlErrorPage: .htmlErrorPage
        case .emptyList: .emptyList
        case .halfList: .halfList
        }
    }

    var alwaysFaults: SimulatorFaults {
        var faults = SimulatorFaults()
        switch self {
        case .badRequest: faults.badRequestRate = 1
        case .unauthorized: faults.unauthorizedRate = 1
        case .serverError: faults.serverErrorRate = 1
        case .gatewayTimeout: faults.gatewayTimeoutRate = 1
        case .malformedJSON: faults.malformedJSONRate = 1
        case .truncatedBody: faults.truncatedBodyRate = 1
        case .htmlErrorPage: faults.htmlErrorPageRate = 1
        case .emptyList: faults.emptyListRate = 1
        case .halfList: faults.halfListRate = 1
        }
        return faults
    }

    func check(_ response: CurlResponse, full: CurlResponse) throws {
        let fullItems = try #require(full.items)
        #expect(response.headers["content-length"] == String(response.body.count))
        switch self {
        case .badRequest, .unauthorized, .serverError, .gatewayTimeout:
            let expected = [Self.badRequest: 400, .unauthorized: 401, .serverError: 500, .gatewayTimeout: 504][self]
            #expect(response.status == expected)
            #expect(response.json?["error"] is String)
            #expect(response.json?["type"] is String)
        case .malformedJSON:
            #expect(response.status == 200)
            #expect(response.headers["content-type"]?.hasPrefix("application/json") == true)
            #expect((try? JSONSerialization.jsonObject(with: response.body)) == nil)
        case .truncatedBody:
            #expect(response.status == 200)
            #expect(response.body.count < full.body.count)
            #expect(full.body.starts(with: response.body))
            #expect((try? JSONSerialization.jsonObject(with: response.body)) == nil)
        case .htmlErrorPage:
            #expect(response.status == 200)
            #expect(response.headers["content-type"]?.hasPrefix("text/html") == true)
            #expect(response.text.contains("<html>"))
        case .emptyList:
            #expect(response.status == 200)
            #expect(response.items?.isEmpty == true)
            #expect((response.json?["result"] as? [String: Any])?["status"] as? Int == 200)
        case .halfList:
            #expect(response.status == 200)
            let items = try #require(response.items)
            #expect(items.count == fullItems.count / 2)
            let expectedIDs = fullItems.prefix(items.count).map { $0["bulkId"] as? String }
            #expect(items.map { $0["bulkId"] as? String } == expectedIDs)
        }
    }
}

@Suite struct FaultTests {
    static func options() -> SimulatorOptions {
        var options = SimulatorOptions.manual()
        options.initialOperations = 9
        return options
    }

    @Test(arguments: FaultKind.allCases)
    func scriptedFaultIsServedOnceThenNormal(kind: FaultKind) async throws {
        try await withSimulator(Self.options()) { simulator in
            let token = try await fetchToken(simulator)
            let full = try await fetchBulk(simulator, token: token)
            simulator.enqueue(kind.scripted)
            try kind.check(try await fetchBulk(simulator, token: token), full: full)
            let after = try await fetchBulk(simulator, token: token)
            #expect(after.status == 200)
            #expect(after.body == full.body)
        }
    }

    @Test(arguments: FaultKind.allCases)
    func certainRateAlwaysProducesFault(kind: FaultKind) async throws {
        try await withSimulator(Self.options()) { simulator in
            let token = try await fetchToken(simulator)
            let full = try await fetchBulk(simulator, token: token)
            simulator.faults = kind.alwaysFaults
            for _ in 0..<3 {
                try kind.check(try await fetchBulk(simulator, token: token), full: full)
            }
            simulator.faults = SimulatorFaults()
            #expect(try await fetchBulk(simulator, token: token).body == full.body)
        }
    }

    @Test func faultsSetAtStartApply() async throws {
        var options = Self.options()
        options.faults.gatewayTimeoutRate = 1
        try await withSimulator(options) { simulator in
            let token = try await fetchToken(simulator)
            #expect(try await fetchBulk(simulator, token: token).status == 504)
        }
    }

    @Test func scriptedAnswersComeInOrderAndBeforeAuthentication() async throws {
        try await withSimulator(Self.options()) { simulator in
            simulator.enqueue(.status(500), times: 2)
            simulator.enqueue(.raw(status: 418, contentType: "text/plain", body: "teapot"))
            simulator.enqueue(.normal)
            #expect(try await fetchBulk(simulator, token: nil).status == 500)
            #expect(try await fetchBulk(simulator, token: nil).status == 500)
            let raw = try await fetchBulk(simulator, token: nil)
            #expect(raw.status == 418)
            #expect(raw.headers["content-type"] == "text/plain")
            #expect(raw.text == "teapot")
            #expect(try await fetchBulk(simulator, token: nil).status == 401)  // .normal still authenticates
            #expect(simulator.stats.bulkRequests == 4)
            #expect(simulator.stats.bulkListsServed == 0)
        }
    }

    @Test func fractionalRatesAreReproducibleForASeed() async throws {
        func statuses(seed: UInt64) async throws -> [Int] {
            var options = SimulatorOptions.manual(seed: seed)
            options.faults.serverErrorRate = 0.5
            var seen: [Int] = []
            try await withSimulator(options) { simulator in
                let token = try await fetchToken(simulator)
                for _ in 0..<16 { seen.append(try await fetchBulk(simulator, token: token).status) }
            }
            return seen
        }
        let first = try await statuses(seed: 7)
        #expect(first == (try await statuses(seed: 7)))
        #expect(first.contains(200) && first.contains(500))
    }

    @Test func addsLatency() async throws {
        try await withSimulator(Self.options()) { simulator in
            let token = try await fetchToken(simulator)
            simulator.faults.latency = 0.4
            let clock = ContinuousClock()
            let start = clock.now
            #expect(try await fetchBulk(simulator, token: token).status == 200)
            #expect(clock.now - start >= .milliseconds(400))
        }
    }

    @Test func malformedTokenAnswersCanBeScripted() async throws {
        try await withSimulator(Self.options()) { simulator in
            simulator.enqueue(.htmlErrorPage, on: .token)
            simulator.enqueue(.truncatedBody, on: .token)
            let html = try await curl(simulator.tokenURL, method: "POST", form: "grant_type=client_credentials")
            #expect(html.status == 200)
            #expect(html.headers["content-type"]?.hasPrefix("text/html") == true)
            let truncated = try await curl(simulator.tokenURL, method: "POST", form: "grant_type=client_credentials")
            #expect(truncated.status == 200)
            #expect(truncated.json == nil)
            #expect(simulator.stats.tokensIssued == 0)
        }
    }
}
