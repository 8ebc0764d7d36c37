import BulkWatchSimulator
import Foundation
import Testing

@Suite struct TokenEndpointTests {
    @Test func issuesTokenForFormCredentials() async throws {
        try await withSimulator { simulator in
            let response = try await curl(
                simulator.tokenURL, method: "POST",
                form: "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=demo-secret")
            #expect(response.status == 200)
            #expect(response.headers["content-type"]?.hasPrefix("application/json") == true)
            let json = try #require(response.json)
            #expect((json["access_token"] as? String)?.isEmpty == false)
            #expect(json["token_type"] as? String == "Bearer")
            #expect(json["expires_in"] as? Int == 900)
            #expect(simulator.stats.tokensIssued == 1)
        }
    }

    @Test func issuesTokenForBasicCredentials() async throws {
        try await withSimulator { simulator in
            let response = try await curl(
                simulator.tokenURL, method: "POST", form: "grant_type=client_credentials",
                basicAuth: "bulkwatch-demo:demo-secret")
            #expect(response.status == 200)
            #expect(response.json?["access_token"] is String)
            let sent = try #require(simulator.requestLog.last)
            #expect(sent.header("authorization")?.hasPrefix("Basic ") == true)
        }
    }

    @Test func acceptsPercentEncodedCredentials() async throws {
        var options = SimulatorOptions.manual()
        options.clientSecret = "s3cr&t =+"
        try await withSimulator(options) { simulator in
            let response = try await curl(
                simulator.tokenURL, method: "POST",
                form: "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=s3cr%26t+%3D%2B")
            #expect(response.status == 200)
        }
    }

    @Test func rejectsBadCredentialsWithDruIDError() async throws {
        try await withSimulator { simulator in
            let wrongSecret = try await curl(
                simulator.tokenURL, method: "POST",
                form: "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=nope")
            #expect(wrongSecret.status == 400)
            #expect(wrongSecret.json?["error"] as? String == "invalid_client")
            #expect(wrongSecret.json?["type"] as? String == "InvalidGrantException")

            let wrongBasic = try await curl(
                simulator.tokenURL, method: "POST", form: "grant_type=client_credentials",
                basicAuth: "bulkwatch-demo:nope")
            #expect(wrongBasic.status == 400)
            #expect(wrongBasic.json?["error"] as? String == "invalid_client")
            #expect(simulator.stats.tokensIssued == 0)
        }
    }

    @Test func rejectsWrongGrantType() async throws {
        try await withSimulator { simulator in
            let response = try await curl(
                simulator.tokenURL, method: "POST",
                form: "grant_type=password&client_id=bulkwatch-demo&client_secret=demo-secret")
            #expect(response.status == 400)
            #expect(response.json?["error"] as? String == "unsupported_grant_type")
            #expect(response.json?["type"] as? String == "InvalidGrantException")
        }
    }

    @Test func tokenEndpointDownAnswersItsStatus() async throws {
        try await withSimulator { simulator in
            simulator.faults.tokenEndpointFailureStatus = 503
            let down = try await curl(
                simulator.tokenURL, method: "POST",
                form: "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=demo-secret")
            #expect(down.status == 503)
            #expect(down.json?["type"] is String)
            #expect(down.json?["error"] is String)

            simulator.faults.tokenEndpointFailureStatus = nil
            simulator.enqueue(.status(500), on: .token)
            let scripted = try await curl(
                simulator.tokenURL, method: "POST",
                form: "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=demo-secret")
            #expect(scripted.status == 500)
            _ = try await fetchToken(simulator)
            #expect(simulator.stats.tokenRequests == 3)
            #expect(simulator.stats.tokensIssued == 1)
        }
    }

    @Test func canOmitExpiresIn() async throws {
        try await withSimulator { simulator in
            simulator.faults.omitExpiresIn = true
            let response = try await curl(
                simulator.tokenURL, method: "POST",
                form: "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=demo-secret")
            #expect(response.status == 200)
            #expect(response.json?["access_token"] is String)
            #expect(response.json?["expires_in"] == nil)
        }
    }
}
