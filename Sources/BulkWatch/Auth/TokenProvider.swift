import Foundation
public import Logging

/// Where the DruID app token comes from.
public enum TokenSource: Sendable, Equatable {
    /// OAuth2 client-credentials grant against a token endpoint; cached and refreshed.
    case clientCredentials(ClientCredentials)
    /// A fixed token (`BULKWATCH_TOKEN`): used as is, never refreshed.
    case staticToken(String)
}

/// Settings for the OAuth2 client-credentials grant (DESIGN.md §2).
public struct ClientCredentials: Sendable, Equatable {
    public enum Style: Sendable {
        /// `client_id` and `client_secret` in the form body (DruID's documented way).
        case formBody
        /// HTTP Basic `Authorization` header.
        case httpBasic
    }

    public var tokenURL: String
    public var clientID: String
    public var clientSecret: Secret
    public var style: Style
    public var timeout: Duration

    public init(
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
public struct TokenError: Error, Sendable, CustomStringConvertible {
    /// HTTP status of the token endpoint, when it answered.
    public var status: Int?
    /// DruID's `error` and `type` fields, when the body had them.
    public var error: String?
    public var type: String?
    public var detail: String

    public var description: String {
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
public actor TokenProvider {
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
    public private(set) var refreshCount = 0

    public init(source: TokenSource, transport: CurlTransport, logger: Logger) {
        self.source = source
        self.transport = transport
        self.logger = logger
    }

    /// A usable token: the cached one while fresh, otherwise the result of the shared refresh.
    public func token() async throws -> Secret {
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
    public func invalidate(_ rejected: Secret) {
        if cached?.value == rejected {
            cached = nil
        }
    }

    /// True when the token can be renewed; a static token cannot.
    public nonisolated var canRefresh: Bool {
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

/// A credential that never prints itself: `description` and string interpolation show
/// `<redacted>`, so a secret cannot leak into a log line by accident.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The actual value; the name makes every use of it easy to find.
    public let revealed: String

    public init(_ value: String) {
        self.revealed = value
    }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}
