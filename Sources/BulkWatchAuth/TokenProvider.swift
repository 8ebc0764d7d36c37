import Foundation
package import Logging
package import BulkWatchSupport
package import BulkWatchTransport

/// Where the DruID app token comes from.
package enum TokenSource: Sendable, Equatable {
    /// OAuth2 client-credentials grant against a token endpoint; cached and refreshed.
    case clientCredentials(ClientCredentials)
    /// A fixed token (`BULKWATCH_TOKEN`): used as is, never refreshed.
    case staticToken(String)
}

/// Settings for the OAuth2 client-credentials grant (DESIGN.md §2).
package struct ClientCredentials: Sendable, Equatable {
    package enum Style: Sendable {
        /// `client_id` and `client_secret` in the form body (DruID's documented way).
        case formBody
        /// HTTP Basic `Authorization` header.
        case httpBasic
    }

    package var tokenURL: String
    package var clientID: String
    package var clientSecret: Secret
    package var style: Style
    package var timeout: Duration

    package init(
        tokenURL: String, clientID: String, clientSecret: Secret, style: Style = .formBody,
        timeout: Duration = .seconds(30)
    ) {
        self.tokenURL = tokenURL
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.style = style
        self.timeout = timeout
    }
}

/// Why no token could be had.
package struct TokenError: Error, Sendable, CustomStringConvertible {
    /// HTTP status of the token endpoint, when it answered.
    package var status: Int?
    /// DruID's `error` and `type` fields, when the body had them.
    package var error: String?
    package var type: String?
    package var detail: String

    package var description: String {
        var parts = ["token request failed"]
        if let status { parts.append("HTTP \(status)") }
        if let error { parts.append("error=\(error)") }
        if let type { parts.append("type=\(type)") }
        if !detail.isEmpty { parts.append(detail) }
        return parts.joined(separator: ", ")
    }
}

/// Hands out a valid app token, fetching a new one only when needed.
///
/// The cached token is refreshed once 90 % of its lifetime has passed, measured on the monotonic
/// clock so wall-clock jumps neither expire it early nor keep it past its end. Concurrent callers
/// share one refresh in flight instead of each hitting the token endpoint.
package actor TokenProvider {
    private struct CachedToken {
        var value: Secret
        var refreshAt: ContinuousClock.Instant
    }

    private let source: TokenSource
    private let transport: CurlTransport
    private let logger: Logger
    private var cached: CachedToken?
    private var refreshInFlight: Task<CachedToken, any Error>?
    /// Tokens obtained from the endpoint so far (for metrics and tests).
    package private(set) var refreshCount = 0

    package init(source: TokenSource, transport: CurlTransport, logger: Logger) {
        self.source = source
        self.transport = transport
        self.logger = logger
    }

    /// A usable token: the cached one while fresh, otherwise the result of the shared refresh.
    package func token() async throws -> Secret {
        switch source {
        case .staticToken(let value):
            return Secret(value)
        case .clientCredentials(let credentials):
            if let cached, ContinuousClock.now < cached.refreshAt {
                return cached.value
            }
            return try await refresh(credentials).value
        }
    }

    /// Drops `rejected` (the token a 401 came back for) so the next ``token()`` fetches a new one.
    /// A newer token obtained meanwhile by another caller is kept.
    package func invalidate(_ rejected: Secret) {
        if cached?.value == rejected {
            cached = nil
        }
    }

    /// True when the token can be renewed; a static token cannot.
    package nonisolated var canRefresh: Bool {
        if case .clientCredentials = source { return true }
        return false
    }

    private func refresh(_ credentials: ClientCredentials) async throws -> CachedToken {
        if let refreshInFlight {
            return try await refreshInFlight.value
        }
        let task = Task { [transport, logger] in
            try await Self.fetch(credentials, transport: transport, logger: logger)
        }
        refreshInFlight = task
        defer { refreshInFlight = nil }
        let fresh = try await task.value
        cached = fresh
        refreshCount += 1
        return fresh
    }

    private static func fetch(
        _ credentials: ClientCredentials, transport: CurlTransport, logger: Logger
    ) async throws -> CachedToken {
        var form = [("grant_type", "client_credentials")]
        var basic: (user: String, password: String)?
        switch credentials.style {
        case .formBody:
            form.append(("client_id", credentials.clientID))
            form.append(("client_secret", credentials.clientSecret.revealed))
        case .httpBasic:
            basic = (credentials.clientID, credentials.clientSecret.revealed)
        }
        let request = HTTPRequest(
            method: .post, url: credentials.tokenURL,
            headers: HTTPHeaders([("Accept", "application/json")]),
            body: .form(form), timeout: credentials.timeout, maxResponseBytes: 1 << 20, basicAuth: basic)
        let started = ContinuousClock.now
        let response: HTTPResponse
        do {
            response = try await transport.send(request)
        } catch let error as TransportError {
            throw TokenError(status: nil, detail: error.description)
        }
        let answer = try TokenResponse.parse(status: response.status, body: response.body)
        logger.debug("app token obtained", metadata: ["expires_in": "\(Int(answer.lifetime))"])
        return CachedToken(value: answer.accessToken, refreshAt: started + answer.refreshAfter)
    }
}
