// TokenResponse.parse: the token endpoint's answer as a pure function, including inputs found by
// the libFuzzer target in Fuzz/ (scripts/fuzz.sh token).
import BulkWatch
import Testing

private func parse(_ status: Int, _ body: String) throws(TokenError) -> TokenResponse {
    try TokenResponse.parse(status: status, body: Array(body.utf8))
}

@Suite struct TokenResponseTests {
    @Test func readsTheTokenAndRenewsAtNinetyPercentOfItsLifetime() throws {
        let answer = try parse(200, #"{"access_token":"t-1","token_type":"Bearer","expires_in":600}"#)
        #expect(answer.accessToken.revealed == "t-1")
        #expect(answer.lifetime == 600)
        #expect(answer.refreshAfter == .seconds(540))
    }

    @Test func missingLifetimeMeansNineHundredSeconds() throws {
        let answer = try parse(200, #"{"access_token":"t"}"#)
        #expect(answer.lifetime == 900)
        #expect(answer.refreshAfter == .seconds(810))
    }

    @Test func tinyOrNegativeLifetimesStillWaitAtLeastPartOfASecond() throws {
        #expect(try parse(200, #"{"access_token":"t","expires_in":0}"#).refreshAfter == .milliseconds(900))
        #expect(try parse(200, #"{"access_token":"t","expires_in":-5}"#).refreshAfter == .milliseconds(900))
    }

    @Test func druidErrorFieldsComeWithTheStatus() {
        let denied = #expect(throws: TokenError.self) {
            try parse(400, #"{"error":"invalid_client","type":"InvalidGrantException"}"#)
        }
        #expect(denied?.status == 400)
        #expect(denied?.error == "invalid_client")
        #expect(denied?.type == "InvalidGrantException")
        let broken = #expect(throws: TokenError.self) { try parse(500, "<html>boom</html>") }
        #expect(broken?.status == 500)
        #expect(broken?.detail == "unexpected body")
    }

    @Test(arguments: [#"{"access_token":""}"#, #"{"access_token":42}"#, #"{"token":"t"}"#, "[]", "not json"])
    func aSuccessWithoutATokenIsAnError(_ body: String) {
        #expect(throws: TokenError.self) { try parse(200, body) }
    }

    /// Fuzzer finding: `expires_in` of 8e95 trapped converting the refresh delay to Int64 milliseconds.
    @Test(arguments: [
        #"{"access_token":"t","expires_in":8e95}"#,
        #"{"access_token":"t","expires_in":188888888888888888888888888799.5}"#,
        #"{"access_token":"t","expires_in":1.7976931348623157e308}"#,
    ])
    func absurdLifetimesAreCappedAtADayInsteadOfTrapping(_ body: String) throws {
        let answer = try parse(200, body)
        #expect(answer.lifetime == TokenResponse.maximumLifetime)
        #expect(answer.refreshAfter == .seconds(TokenResponse.maximumLifetime * 0.9))
    }

    @Test func theTokenNeverShowsInTheDescription() throws {
        let answer = try parse(200, #"{"access_token":"very-secret-token"}"#)
        #expect(!"\(answer)".contains("very-secret-token"))
    }
}
