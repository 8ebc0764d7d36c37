import BulkWatchSimulator
import Foundation
import Logging
import TestSupport
import Testing

@testable import BulkWatch

/// A simulator, a transport and a client wired together, owned by one test.
struct ClientFixture {
    let simulator: DruIDSimulator
    let transport = CurlTransport()
    let logs = LogCapture()
    let tokens: TokenProvider
    let client: BulkStatusClient
    /// What the token provider measures lifetimes on: token lifetimes pass only when a test advances it.
    let clock = TestClock()

    init(
        options: SimulatorOptions = .manual(), acceptLanguage: String? = nil,
        style: ClientCredentials.Style = .formBody,
        secret: String? = nil
    ) async throws {
        simulator = DruIDSimulator(options: options)
        try await simulator.start()
        let credentials = ClientCredentials(
            tokenURL: simulator.tokenURL, clientID: options.clientID,
            clientSecret: Secret(secret ?? options.clientSecret), style: style)
        tokens = TokenProvider(
            source: .clientCredentials(credentials), transport: transport, logger: logs.logger(), clock: clock)
        client = BulkStatusClient(
            endpoint: BulkEndpoint(url: simulator.bulkURL, acceptLanguage: acceptLanguage), transport: transport,
            tokens: tokens, logger: logs.logger())
    }

    func stop() async {
        await simulator.stop()
        transport.shutdown()
    }

    func fetchError() async -> FetchError? {
        do {
            _ = try await client.fetch()
            return nil
        } catch {
            return error as? FetchError
        }
    }
}

@Suite("Bulk client against the DruID simulator")
struct BulkStatusClientTests {
    /// A listing past 1 MiB is parsed while it arrives (a reader thread) and taken over by the decode: the fetch
    /// returns what decoding the same body alone returns, escaped ids and extra fields included.
    @Test func aLargeListingParsedWhileItArrivesIsTheListingItself() async throws {
        let fixture = try await ClientFixture(options: .manual())
        for index in 0..<15_000 {
            let bulkId = index == 9_000 ? "quote\"d-\(index)" : "b-\(index)"
            fixture.simulator.upsert(
                bulkId: bulkId, status: index.isMultiple(of: 3) ? "RUNNING" : "DONE",
                extraJSONFields: index.isMultiple(of: 7) ? #""note":"x\u0041y""# : "")
        }
        let body = fixture.simulator.currentListBody()
        #expect(body.count > 1 << 20)
        let listing = try await fixture.client.fetch()
        let alone = try BulkListDecoder.decode(body, parallelFrom: .max)
        #expect(listing.count == 15_000)
        #expect(listing.items == alone.items)
        #expect(listing.items.contains { $0.bulkId == "quote\"d-9000" })
        #expect(
            listing.countItems { $0.map { String(decoding: $0, as: UTF8.self) == "RUNNING" } ?? false } == 5_000)
        await fixture.stop()
    }

    @Test func sendsExactlyTheDocumentedHeaders() async throws {
        let fixture = try await ClientFixture(acceptLanguage: "fr-FR")
        fixture.simulator.upsert(bulkId: "b-1", status: "PENDING")
        let listing = try await fixture.client.fetch()
        #expect(listing.items.map(\.bulkId) == ["b-1"])
        let request = try #require(fixture.simulator.requestLog.last { $0.path.hasPrefix(DruIDSimulator.bulkPath) })
        #expect(request.method == "GET")
        #expect(request.header("Authorization")?.hasPrefix("Bearer ") == true)
        #expect(request.header("Content-Type") == "application/json")
        #expect(request.header("Accept") == "application/json")
        #expect(request.header("Accept-Language") == "fr-FR")
        await fixture.stop()
    }

    @Test func omitsAcceptLanguageWhenNotConfigured() async throws {
        let fixture = try await ClientFixture()
        _ = try await fixture.client.fetch()
        let request = try #require(fixture.simulator.requestLog.last)
        #expect(request.header("Accept-Language") == nil)
        await fixture.stop()
    }

    @Test func reusesTheCachedTokenAcrossPolls() async throws {
        let fixture = try await ClientFixture()
        for _ in 0..<5 { _ = try await fixture.client.fetch() }
        #expect(fixture.simulator.stats.tokensIssued == 1)
        #expect(await fixture.tokens.refreshCount == 1)
        await fixture.stop()
    }

    /// What the second poll sent, in order: "token" or "bulk <status>". Only the order is
    /// asserted, so a slow machine can change how long things take but not the verdict.
    private func requests(after count: Int, in simulator: DruIDSimulator) -> [String] {
        simulator.requestLog.dropFirst(count).map {
            $0.path == DruIDSimulator.tokenPath ? "token" : "bulk \($0.status)"
        }
    }

    @Test func defaultsToA900SecondLifetimeWhenExpiresInIsMissing() async throws {
        var options = SimulatorOptions.manual()
        options.faults.omitExpiresIn = true
        let fixture = try await ClientFixture(options: options)
        _ = try await fixture.client.fetch()
        fixture.clock.advance(by: .seconds(809))
        // The server drops the token. The client, assuming 900 s (refresh at 810 s) and not anything
        // shorter, still uses it 809 s on, gets a 401, refreshes once and retries: one poll, still
        // successful.
        fixture.simulator.revokeAllTokens()
        var before = fixture.simulator.requestLog.count
        _ = try await fixture.client.fetch()
        #expect(requests(after: before, in: fixture.simulator) == ["bulk 401", "token", "bulk 200"])
        // The token fetched at 809 s is renewed at 90 % of 900 s after it, not a moment later.
        fixture.clock.advance(by: .seconds(809))
        before = fixture.simulator.requestLog.count
        _ = try await fixture.client.fetch()
        #expect(requests(after: before, in: fixture.simulator) == ["bulk 200"])
        fixture.clock.advance(by: .seconds(1))
        before = fixture.simulator.requestLog.count
        _ = try await fixture.client.fetch()
        #expect(requests(after: before, in: fixture.simulator) == ["token", "bulk 200"])
        await fixture.stop()
    }

    @Test func refreshesTheTokenAfterNinetyPercentOfItsLifetime() async throws {
        var options = SimulatorOptions.manual()
        options.tokenLifetime = 100
        let fixture = try await ClientFixture(options: options)
        _ = try await fixture.client.fetch()
        // Just short of 90 % of the announced 100 s: the cached token is still used.
        fixture.clock.advance(by: .milliseconds(89_999))
        var before = fixture.simulator.requestLog.count
        _ = try await fixture.client.fetch()
        #expect(requests(after: before, in: fixture.simulator) == ["bulk 200"])
        // At 90 %: a new token is fetched before the bulk call, proactively (the old one is still
        // valid upstream), and only once.
        fixture.clock.advance(by: .milliseconds(1))
        before = fixture.simulator.requestLog.count
        _ = try await fixture.client.fetch()
        _ = try await fixture.client.fetch()
        #expect(requests(after: before, in: fixture.simulator) == ["token", "bulk 200", "bulk 200"])
        #expect(await fixture.tokens.refreshCount == 2)
        await fixture.stop()
    }

    @Test func concurrentPollsShareOneTokenRefresh() async throws {
        let fixture = try await ClientFixture()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<10 { group.addTask { _ = try await fixture.client.fetch() } }
            try await group.waitForAll()
        }
        #expect(fixture.simulator.stats.tokensIssued == 1)
        await fixture.stop()
    }

    @Test func aRevokedTokenIsRefreshedOnceAndTheRequestRetriedAtOnce() async throws {
        let fixture = try await ClientFixture()
        fixture.simulator.upsert(bulkId: "b-1")
        _ = try await fixture.client.fetch()
        fixture.simulator.revokeAllTokens()
        let listing = try await fixture.client.fetch()
        #expect(listing.items.count == 1)
        #expect(fixture.simulator.stats.tokensIssued == 2)
        await fixture.stop()
    }

    @Test func aSecond401IsAnAuthenticationError() async throws {
        let fixture = try await ClientFixture()
        fixture.simulator.enqueue(.status(401), times: 2)
        let error = await fixture.fetchError()
        #expect(error?.code == .unauthorized)
        #expect(fixture.simulator.stats.tokensIssued == 2)
        await fixture.stop()
    }

    @Test(arguments: [
        (400, FetchError.Code.badRequest), (500, .serverError), (504, .gatewayTimeout), (503, .unexpectedStatus),
    ])
    func mapsEachDocumentedStatusToItsOwnError(status: Int, code: FetchError.Code) async throws {
        let fixture = try await ClientFixture()
        fixture.simulator.enqueue(.status(status))
        let error = await fixture.fetchError()
        #expect(error?.code == code)
        #expect(error?.status == status)
        // Only a 401 justifies a new token.
        #expect(fixture.simulator.stats.tokensIssued == 1)
        await fixture.stop()
    }

    @Test(arguments: [SimulatedResponse.malformedJSON, .truncatedBody, .htmlErrorPage])
    func aBrokenTwoHundredIsAFailedPoll(response: SimulatedResponse) async throws {
        let fixture = try await ClientFixture()
        fixture.simulator.upsert(bulkId: "b-1")
        fixture.simulator.enqueue(response)
        let error = await fixture.fetchError()
        #expect(error != nil)
        #expect(error?.code == .malformedBody || error?.code == .transport)
        await fixture.stop()
    }

    @Test func anOversizedBodyIsAFailedPoll() async throws {
        let fixture = try await ClientFixture()
        for index in 0..<200 { fixture.simulator.upsert(bulkId: "b-\(index)") }
        let small = BulkStatusClient(
            endpoint: BulkEndpoint(url: fixture.simulator.bulkURL, maxResponseBytes: 2000),
            transport: fixture.transport, tokens: fixture.tokens, logger: fixture.logs.logger())
        await #expect(throws: FetchError.self) { try await small.fetch() }
        await fixture.stop()
    }

    @Test func surfacesDruIDTokenErrors() async throws {
        let fixture = try await ClientFixture(secret: "wrong-secret")
        let error = await fixture.fetchError()
        #expect(error?.code == .token)
        #expect(error?.detail.contains("InvalidGrantException") == true)
        #expect(error?.detail.contains("wrong-secret") == false)
        await fixture.stop()
    }

    @Test func authenticatesWithHTTPBasicWhenAsked() async throws {
        let fixture = try await ClientFixture(style: .httpBasic)
        _ = try await fixture.client.fetch()
        let tokenRequest = try #require(fixture.simulator.requestLog.first { $0.path == DruIDSimulator.tokenPath })
        #expect(tokenRequest.header("Authorization")?.hasPrefix("Basic ") == true)
        #expect(!tokenRequest.body.contains("client_secret"))
        await fixture.stop()
    }

    @Test func acceptsAFixedTokenWithoutRefreshing() async throws {
        let fixture = try await ClientFixture()
        let issued = try await fixture.tokens.token()
        let fixed = TokenProvider(
            source: .staticToken(issued.revealed), transport: fixture.transport, logger: fixture.logs.logger())
        let client = BulkStatusClient(
            endpoint: BulkEndpoint(url: fixture.simulator.bulkURL), transport: fixture.transport, tokens: fixed,
            logger: fixture.logs.logger())
        _ = try await client.fetch()
        fixture.simulator.revokeAllTokens()
        let error = await #expect(throws: FetchError.self) { try await client.fetch() }
        #expect(error?.code == .unauthorized)
        #expect(fixture.simulator.stats.tokensIssued == 1)
        await fixture.stop()
    }

    @Test func neverLogsTheSecretOrTheToken() async throws {
        let fixture = try await ClientFixture(secret: nil)
        fixture.simulator.upsert(bulkId: "b-1")
        _ = try await fixture.client.fetch()
        fixture.simulator.revokeAllTokens()
        _ = try await fixture.client.fetch()
        fixture.simulator.enqueue(.status(401), times: 2)
        _ = await fixture.fetchError()
        fixture.simulator.enqueue(.status(500))
        _ = await fixture.fetchError()
        let tokens = fixture.simulator.requestLog.compactMap { $0.header("Authorization") }
            .map { String($0.dropFirst("Bearer ".count)) }
        #expect(!tokens.isEmpty)
        #expect(!fixture.logs.lines.isEmpty)
        for line in fixture.logs.lines {
            #expect(!line.contains("demo-secret"))
            for token in tokens { #expect(!line.contains(token)) }
        }
        await fixture.stop()
    }
}
