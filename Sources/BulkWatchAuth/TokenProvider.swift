package import BulkWatchSupport
package import BulkWatchTransport
import Foundation
package import Logging
import Synchronization

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
/// The cached token is refreshed once 90 % of its lifetime has passed, measured on an injected
/// monotonic clock (`ContinuousClock` in production, a manual one in tests) so wall-clock jumps
/// neither expire it early nor keep it past its end, and a test can pass a token's lifetime without
/// waiting for it.
///
/// Concurrent callers share one fetch: the first caller to find no fresh token fetches in its own
/// task (no unstructured task outlives a caller), the others wait for its outcome. A fetch that
/// fails hands its error to every waiter, so an outage costs the endpoint one request, not one per
/// caller; a fetch whose caller was cancelled wakes the waiters to try again, one of them becoming
/// the next fetcher, so one watcher being stopped never fails another's poll.
package actor TokenProvider {
    /// Fetches one token from the endpoint. Tests inject one to hold a fetch open.
    typealias Fetch = @Sendable (ClientCredentials) async throws -> TokenResponse

    private struct CachedToken: Sendable {
        var value: Secret
        /// On the provider's own timeline (see ``elapsed``).
        var refreshAt: Duration
    }

    /// What a caller waiting on another caller's fetch is woken with.
    private enum Outcome: Sendable {
        case fetched(CachedToken)
        case failed(any Error)
        /// The fetching caller was cancelled: nobody is fetching any more, try again.
        case abandoned
        /// The waiting caller itself was cancelled.
        case cancelled
    }

    private let source: TokenSource
    private let fetch: Fetch
    private let logger: Logger
    /// Time since the provider was created, read from the injected clock. A duration rather than the
    /// clock's instant so the actor need not be generic over the clock type.
    private let elapsed: @Sendable () -> Duration
    private var cached: CachedToken?
    /// True while one caller's fetch is in progress.
    private var fetching = false
    private var nextWaiter: UInt64 = 0
    /// Callers waiting on the fetch in progress. Behind a lock rather than plain actor state because a
    /// waiter's cancellation handler runs synchronously, outside the actor, and must resume it there.
    private let waiters = Mutex<[UInt64: CheckedContinuation<Outcome, Never>]>([:])
    /// Tokens obtained from the endpoint so far (for metrics and tests).
    package private(set) var refreshCount = 0

    /// - Parameter clock: the monotonic clock token lifetimes are measured on.
    package init(
        source: TokenSource, transport: CurlTransport, logger: Logger,
        clock: some Clock<Duration> = ContinuousClock()
    ) {
        self.init(
            source: source, logger: logger, clock: clock,
            fetch: { credentials in try await Self.request(credentials, transport: transport) })
    }

    init(source: TokenSource, logger: Logger, clock: some Clock<Duration>, fetch: @escaping Fetch) {
        self.source = source
        self.logger = logger
        self.fetch = fetch
        let origin = clock.now
        self.elapsed = { origin.duration(to: clock.now) }
    }

    /// A usable token: the cached one while fresh, otherwise the outcome of the one fetch in flight.
    package func token() async throws -> Secret {
        switch source {
        case .staticToken(let value):
            return Secret(value)
        case .clientCredentials(let credentials):
            while true {
                if let cached, elapsed() < cached.refreshAt {
                    return cached.value
                }
                guard fetching else {
                    return try await lead(credentials).value
                }
                switch await awaitFetchInFlight() {
                case .fetched(let fresh): return fresh.value
                case .failed(let error): throw error
                case .cancelled: throw CancellationError()
                case .abandoned: continue
                }
            }
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

    /// Callers currently waiting on another caller's fetch (for tests).
    var waiting: Int { waiters.withLock { $0.count } }

    /// Fetches in the calling task, then hands the outcome to every caller that queued up meanwhile.
    private func lead(_ credentials: ClientCredentials) async throws -> CachedToken {
        fetching = true
        // Taken before the request: the lifetime counts from when the endpoint could have issued it.
        let started = elapsed()
        do {
            let answer = try await fetch(credentials)
            logger.debug("app token obtained", metadata: ["expires_in": "\(Int(answer.lifetime))"])
            let fresh = CachedToken(value: answer.accessToken, refreshAt: started + answer.refreshAfter)
            cached = fresh
            refreshCount += 1
            finish(.fetched(fresh))
            return fresh
        } catch {
            finish(Task.isCancelled ? .abandoned : .failed(error))
            throw error
        }
    }

    /// Ends the fetch in flight. Runs on the actor with no suspension, so a caller arriving after it
    /// sees the new cache instead of queueing for a fetch that is over.
    private func finish(_ outcome: Outcome) {
        fetching = false
        let woken = waiters.withLock { waiters in
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        for waiter in woken { waiter.resume(returning: outcome) }
    }

    /// Queues the caller until the fetch in flight ends, or until the caller is cancelled.
    private func awaitFetchInFlight() async -> Outcome {
        let id = nextWaiter
        nextWaiter += 1
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                waiters.withLock { $0[id] = continuation }
                // Cancelled before the handler could find the continuation: whoever takes it out resumes it.
                if Task.isCancelled, let mine = waiters.withLock({ $0.removeValue(forKey: id) }) {
                    mine.resume(returning: .cancelled)
                }
            }
        } onCancel: {
            self.waiters.withLock { $0.removeValue(forKey: id) }?.resume(returning: .cancelled)
        }
    }

    private static func request(_ credentials: ClientCredentials, transport: CurlTransport) async throws
        -> TokenResponse
    {
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
        let response: HTTPResponse
        do {
            response = try await transport.send(request)
        } catch let error as TransportError {
            throw TokenError(status: nil, detail: error.description)
        }
        return try TokenResponse.parse(status: response.status, body: response.body)
    }
}
