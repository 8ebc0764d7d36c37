package import BulkWatchAuth
package import BulkWatchSupport
package import BulkWatchTransport
import Foundation
package import Logging

/// Where and how to fetch the bulk-status list.
package struct BulkEndpoint: Sendable, Equatable {
    /// Full URL of the list, normally `https://{domain}/activityid/v1/user/bulk`.
    package var url: String
    /// Sent as `Accept-Language` when set.
    package var acceptLanguage: String?
    package var timeout: Duration
    /// Larger bodies are a failed poll, never a partial list.
    package var maxResponseBytes: Int

    package init(
        url: String, acceptLanguage: String? = nil, timeout: Duration = Defaults.timeout,
        maxResponseBytes: Int = Defaults.maxBodySize
    ) {
        self.url = url
        self.acceptLanguage = acceptLanguage
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
    }
}

/// Why a poll produced no listing. Every case means: no diff, no events, no state change.
package struct FetchError: Error, Sendable, CustomStringConvertible {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// DruID answered 400.
        package static let badRequest = Code(name: "bad request (400)")
        /// 401 even with a freshly obtained token.
        package static let unauthorized = Code(name: "authentication failed (401)")
        /// DruID answered 500.
        package static let serverError = Code(name: "server error (500)")
        /// 504: DruID could not reach its OAuth server.
        package static let gatewayTimeout = Code(name: "upstream OAuth unreachable (504)")
        /// Any other non-200 status.
        package static let unexpectedStatus = Code(name: "unexpected status")
        /// A 200 whose body is not a complete, well-formed listing.
        package static let malformedBody = Code(name: "malformed body")
        /// No HTTP answer at all (timeout, connection, TLS, size limit).
        package static let transport = Code(name: "transport failure")
        /// The token endpoint refused or failed.
        package static let token = Code(name: "token failure")
        package var description: String { name }
    }

    package var code: Code
    package var status: Int?
    /// One line, safe to log: never contains a token or a secret.
    package var detail: String
    /// The server's `Retry-After`, when it sent one.
    package var retryAfter: Duration?

    package var description: String {
        detail.isEmpty ? code.description : "\(code): \(detail)"
    }
}

/// Fetches and decodes the DruID bulk-status list (DESIGN.md §2).
///
/// A 401 triggers exactly one token refresh and one immediate retry: tokens can be revoked
/// server-side before their announced expiry, and that should cost one extra request, not a
/// backoff. A second 401 is reported as ``FetchError/Code/unauthorized``.
package struct BulkStatusClient: Sendable {
    package let endpoint: BulkEndpoint
    private let transport: CurlTransport
    private let tokens: TokenProvider
    private let logger: Logger

    package init(endpoint: BulkEndpoint, transport: CurlTransport, tokens: TokenProvider, logger: Logger) {
        self.endpoint = endpoint
        self.transport = transport
        self.tokens = tokens
        self.logger = logger
    }

    /// One complete, validated listing, or a ``FetchError``. Cancellation propagates as is.
    package func fetch() async throws -> BulkListing {
        let (response, arrived) = try await authorizedGet()
        defer { arrived.finish() }  // no reader outlives the fetch, whatever the answer
        return try Self.interpret(response, arrived: arrived)
    }

    /// The answer, and what was parsed of its body while it arrived.
    private func authorizedGet() async throws -> (HTTPResponse, ArrivingContent) {
        var token = try await obtainToken()
        var (response, arrived) = try await get(with: token)
        if response.status == 401, tokens.canRefresh {
            arrived.finish()
            logger.info("bulk endpoint answered 401; refreshing the app token and retrying once")
            await tokens.invalidate(token)
            token = try await obtainToken()
            (response, arrived) = try await get(with: token)
        }
        return (response, arrived)
    }

    private func obtainToken() async throws -> Secret {
        do {
            return try await tokens.token()
        } catch let error as TokenError {
            throw FetchError(code: .token, status: error.status, detail: error.description)
        }
    }

    private func get(with token: Secret) async throws -> (HTTPResponse, ArrivingContent) {
        var headers = HTTPHeaders([
            ("Authorization", "Bearer \(token.revealed)"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ])
        if let language = endpoint.acceptLanguage {
            headers.add("Accept-Language", language)
        }
        // A large answer is parsed as it arrives (``ArrivingContent``); its reader is always waited for before
        // this fetch returns or throws.
        let arrived = ArrivingContent()
        let request = HTTPRequest(
            url: endpoint.url, headers: headers, timeout: endpoint.timeout,
            maxResponseBytes: endpoint.maxResponseBytes, arrivingBody: arrived.body())
        do {
            return (try await transport.send(request), arrived)
        } catch let error as TransportError {
            arrived.finish()
            throw FetchError(code: .transport, detail: error.description)
        } catch {
            arrived.finish()
            throw error
        }
    }

    /// Maps a response to a listing or a typed failure. Internal so tests can feed it directly.
    static func interpret(_ response: HTTPResponse, arrived: ArrivingContent? = nil) throws -> BulkListing {
        let retryAfter = RetryAfter.parse(response.headers["Retry-After"])
        let code: FetchError.Code
        switch response.status {
        case 200:
            do {
                return try BulkListDecoder.decode(response.body, arrived: arrived)
            } catch {
                let looksLikeHTML = response.headers["Content-Type"]?.lowercased().contains("html") ?? false
                let detail = looksLikeHTML ? "HTML page instead of JSON (\(error))" : "\(error)"
                throw FetchError(code: .malformedBody, status: 200, detail: detail, retryAfter: retryAfter)
            }
        case 400: code = .badRequest
        case 401: code = .unauthorized
        case 500: code = .serverError
        case 504: code = .gatewayTimeout
        default: code = .unexpectedStatus
        }
        throw FetchError(
            code: code, status: response.status, detail: ErrorBody.summary(response), retryAfter: retryAfter)
    }
}

/// A short, single-line, log-safe summary of an error response body.
enum ErrorBody {
    static func summary(_ response: HTTPResponse) -> String {
        var status = "HTTP \(response.status)"
        let text = String(decoding: response.body.prefix(200), as: UTF8.self)
        if let error = jsonField("error", in: text) { status += ", error=\(error)" }
        if let type = jsonField("type", in: text) { status += ", type=\(type)" }
        if let message = jsonField("message", in: text) { status += ", message=\(message)" }
        return status
    }

    /// Extracts `"key":"value"` from a short JSON text without a full parse (the body may be cut).
    private static func jsonField(_ key: String, in text: String) -> String? {
        guard let keyRange = text.range(of: "\"\(key)\"") else { return nil }
        let rest = text[keyRange.upperBound...].drop { $0 == " " || $0 == ":" }
        guard rest.first == "\"" else { return nil }
        let value = rest.dropFirst().prefix { $0 != "\"" && $0 != "\n" }
        return String(value.prefix(100))
    }
}
