package import BulkWatchSupport
import BulkWatchTransport
import Foundation

/// What the token endpoint's answer means for the provider: a token and when to fetch the next one.
///
/// A pure function of the HTTP status and body, kept apart from ``TokenProvider`` so the parsing of
/// bytes that come from the network can be tested and fuzzed without a server (see `Fuzz/`).
package struct TokenResponse: Sendable, Equatable {
    /// The app token (`access_token`).
    package var accessToken: Secret
    /// Lifetime in seconds as the endpoint stated it (`expires_in`), 900 when absent (DESIGN.md §2),
    /// at most ``maximumLifetime``.
    package var lifetime: Double
    /// How long after sending the request the token should be renewed: 90 % of the lifetime, so a
    /// token is never used right up to its end.
    package var refreshAfter: Duration

    /// The longest lifetime taken at its word: one day. Renewing a longer-lived token daily costs
    /// one request, while an absurd `expires_in` (`8e95`, found by fuzzing) would overflow the
    /// refresh deadline, and a merely huge one would keep a token in use long after it was revoked.
    package static let maximumLifetime: Double = 86_400

    package init(accessToken: Secret, lifetime: Double, refreshAfter: Duration) {
        self.accessToken = accessToken
        self.lifetime = lifetime
        self.refreshAfter = refreshAfter
    }

    /// Reads the token endpoint's answer.
    ///
    /// - Throws: ``TokenError`` when the status is not 200 (carrying DruID's `error` and `type`
    ///   fields when the body has them) or when a 200 body has no `access_token` made of RFC 6750
    ///   `b64token` characters.
    package static func parse(status: Int, body: [UInt8]) throws(TokenError) -> TokenResponse {
        let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        guard status == 200 else {
            throw TokenError(
                status: status, error: object?["error"] as? String, type: object?["type"] as? String,
                detail: object == nil ? "unexpected body" : "")
        }
        guard let accessToken = object?["access_token"] as? String, !accessToken.isEmpty else {
            throw TokenError(status: 200, detail: "answer has no access_token")
        }
        // It becomes the `Authorization` header: a CR/LF in it would add headers of the token
        // endpoint's choosing to every API request (issue 11). Never quoted: it is a credential.
        guard HeaderValidation.isB64Token(accessToken) else {
            throw TokenError(
                status: 200, detail: "access_token refused: not an RFC 6750 bearer token (b64token characters only)")
        }
        let lifetime = min((object?["expires_in"] as? NSNumber)?.doubleValue ?? 900, maximumLifetime)
        let usable = max(1, lifetime) * 0.9
        return TokenResponse(
            accessToken: Secret(accessToken), lifetime: lifetime,
            refreshAfter: .milliseconds(Int64(usable * 1000)))
    }
}
