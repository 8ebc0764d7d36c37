public import Foundation
import Hummingbird
public import Logging
import ServiceLifecycle

/// An in-process fake of DruID's OAuth2 token endpoint and bulk-status endpoint, serving real HTTP on loopback.
///
/// It exists so that `bulkwatch demo`, the tests and the benchmarks can exercise the whole client — token
/// caching, headers, status handling, decoding, change detection — against something that behaves like the real
/// API, including its failures, without credentials or network. It guarantees:
/// - the wire contract of DESIGN §2: `POST /oauth2/token` (form or HTTP Basic client credentials) and
///   `GET /activityid/v1/user/bulk` with a Bearer token, DruID-shaped error bodies `{"error","type"}`;
/// - a world that is a deterministic function of ``SimulatorOptions/seed`` and the control calls (only the moments
///   the automatic world moves depend on the wall clock), with `updatedOn` strictly increasing per item;
/// - faults that are exactly what they claim, settable at start and at any time (``faults``, ``enqueue(_:times:on:)``);
/// - a record of every request (``requestLog``) so tests can check headers as sent.
///
/// All control and observation calls are synchronous and thread-safe. Each instance owns its server; many can run
/// in one process. Call ``stop()`` when done: the running server holds a reference to the simulator.
public final class DruIDSimulator: Sendable {
    /// The path of the token endpoint.
    public static let tokenPath = "/oauth2/token"
    /// The path of the bulk-status endpoint.
    public static let bulkPath = "/activityid/v1/user/bulk"
    /// The path of the change history (served only with ``SimulatorOptions/recordsHistory``).
    public static let historyPath = "/simulator/history"

    /// The options the simulator was created with (``faults`` holds the faults in force now).
    public let options: SimulatorOptions
    private let logger: Logger
    private let state: Locked<SimulatorState>
    private let server = Locked(ServerState())
    private let origin = ContinuousClock.now
    private let startMillis: Int64

    /// Builds the world (including ``SimulatorOptions/initialOperations``, which for a million items takes a
    /// moment); nothing listens until ``start(host:port:)``.
    public init(options: SimulatorOptions, logger: Logger = Logger(label: "bulkwatch.simulator")) {
        self.options = options
        self.logger = logger
        let start = options.clockStart ?? Date()
        startMillis = Int64((start.timeIntervalSince1970 * 1000).rounded(.down))
        let world = SimulatedWorld(options: options, startMillis: startMillis)
        // Separate streams, so that fault draws and token values never shift the world's sequence.
        var seeder = SplitMix64(seed: options.seed ^ 0x5EED_F00D_CAFE_D00D)
        state = Locked(
            SimulatorState(
                world: world,
                faults: options.faults,
                faultRNG: SplitMix64(seed: seeder.next()),
                tokenRNG: SplitMix64(seed: seeder.next())
            ))
    }

    // MARK: Lifecycle

    /// Starts serving and returns once the socket is listening; `port` 0 picks a free port (see ``port``).
    /// Calling it while already running does nothing.
    public func start(host: String = "127.0.0.1", port: Int = 0) async throws {
        guard server.withLock({ $0.running == nil }) else { return }
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Result<Int, any Error>.self)
        let responder = CallbackResponder<BasicRequestContext> { [weak self] request, _ in
            guard let self else { return Response(status: .serviceUnavailable) }
            return await self.respond(to: request)
        }
        let app = Application(
            responder: responder,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
            onServerRunning: { channel in
                readyContinuation.yield(.success(channel.localAddress?.port ?? port))
            },
            logger: logger
        )
        // Our own group, so that stop() can ask the server to shut down gracefully (stop accepting, finish the
        // requests in progress, close idle connections) instead of cancelling it mid-response.
        let group = ServiceGroup(services: [app], logger: logger)
        let task = Task {
            do {
                try await group.run()
                readyContinuation.yield(.failure(SimulatorError(description: "server stopped before listening")))
            } catch {
                readyContinuation.yield(.failure(error))
            }
            readyContinuation.finish()
        }
        var iterator = ready.makeAsyncIterator()
        switch await iterator.next() {
        case .success(let boundPort):
            server.withLock {
                $0.running = RunningServer(group: group, task: task)
                $0.host = host
                $0.port = boundPort
            }
            logger.debug("DruID simulator listening", metadata: ["url": "\(baseURL)"])
        case .failure(let error):
            await task.value
            throw error
        case nil:
            await group.triggerGracefulShutdown()
            await task.value
            throw CancellationError()
        }
    }

    /// Stops serving gracefully: no new connections, requests in progress finish (cut off after
    /// `gracePeriod` seconds), then every connection closes. Safe to call more than once, or without
    /// ``start(host:port:)``.
    public func stop(gracePeriod: Double = 5) async {
        guard
            let running = server.withLock({ server -> RunningServer? in
                defer { server.running = nil }
                return server.running
            })
        else { return }
        await running.group.triggerGracefulShutdown()
        let watchdog = Task {
            try await Task.sleep(for: .milliseconds(Int64(max(0, gracePeriod) * 1000)))
            running.task.cancel()
        }
        await running.task.value
        watchdog.cancel()
    }

    /// The bound port; 0 before ``start(host:port:)``.
    public var port: Int { server.withLock { $0.port } }

    /// `http://HOST:PORT`.
    public var baseURL: String {
        server.withLock { server in
            let host = server.host.contains(":") ? "[\(server.host)]" : server.host
            return "http://\(host):\(server.port)"
        }
    }

    /// The bulk-status endpoint's URL, for `--endpoint`.
    public var bulkURL: String { baseURL + Self.bulkPath }

    /// The token endpoint's URL, for `--token-url`.
    public var tokenURL: String { baseURL + Self.tokenPath }

    // MARK: Control

    /// The faults in force; assign (or mutate a field) to change them for the following requests.
    public var faults: SimulatorFaults {
        get { state.withLock { $0.faults } }
        set { state.withLock { $0.faults = newValue } }
    }

    /// Queues `response` as the answer to the next `times` requests to `endpoint`, after anything already queued.
    /// Scripted answers come before authentication and before the random ``faults``.
    public func enqueue(_ response: SimulatedResponse, times: Int = 1, on endpoint: SimulatorEndpoint = .bulk) {
        guard times > 0 else { return }
        state.withLock { state in
            state.scripts[endpoint, default: []].append(contentsOf: repeatElement(response, count: times))
        }
    }

    /// Forgets every issued token, so the next bulk request with any of them gets 401.
    public func revokeAllTokens() {
        state.withLock { $0.tokens.removeAll() }
    }

    /// Inserts or replaces the item `bulkId`. A replaced item keeps its place in the list; either way the item is
    /// then only changed by further control calls, never by the automatic world. Timestamps default to the
    /// simulated clock's current time.
    public func upsert(
        bulkId: String,
        status: SimulatedField = "PENDING",
        createdOn: SimulatedField = .now,
        updatedOn: SimulatedField = .now,
        extraJSONFields: String = ""
    ) {
        state.withLock { state in
            advanceWorld(&state)
            let now = state.world.nowMillis
            let operation = SimulatedOperation(
                bulkId: bulkId,
                status: status.fieldValue(now: now),
                createdOn: createdOn.fieldValue(now: now),
                updatedOn: updatedOn.fieldValue(now: now),
                extraJSONFields: extraJSONFields,
                phase: .manual,
                dueMillis: .max
            )
            state.world.upsert(operation)
        }
    }

    /// Removes the item `bulkId`; returns whether it existed.
    @discardableResult
    public func remove(bulkId: String) -> Bool {
        state.withLock { state in
            advanceWorld(&state)
            return state.world.remove(bulkId)
        }
    }

    /// Removes every item (automatic creation, if enabled, goes on).
    public func removeAll() {
        state.withLock { $0.world.removeAll() }
    }

    /// Moves the simulated clock forward by `seconds`, running every creation, transition and deletion that falls
    /// due, in order. This is how tests drive the world without sleeping; with automatic churn it adds to the wall
    /// clock.
    public func advance(by seconds: Double) {
        state.withLock { state in
            state.manualOffsetMillis += Int64((max(0, seconds) * 1000).rounded())
            advanceWorld(&state)
        }
    }

    // MARK: Observation

    /// Every request answered so far (the newest ``SimulatorOptions/requestLogLimit``), oldest first.
    public var requestLog: [SimulatorRequestRecord] { state.withLock { $0.log } }

    /// Empties ``requestLog``.
    public func clearRequestLog() {
        state.withLock { $0.log.removeAll() }
    }

    /// Every visible change of the world so far, oldest first; empty unless ``SimulatorOptions/recordsHistory``.
    public var history: [SimulatorChange] {
        state.withLock { state in
            advanceWorld(&state)
            return state.world.history ?? []
        }
    }

    /// Counters since creation.
    public var stats: SimulatorStats {
        state.withLock { state in
            SimulatorStats(
                tokenRequests: state.tokenRequests,
                tokensIssued: state.tokensIssued,
                bulkRequests: state.bulkRequests,
                bulkListsServed: state.bulkListsServed,
                operations: state.world.count
            )
        }
    }

    /// The simulated clock, as milliseconds since 1970: the `updatedOn` an upsert with `.now` would get.
    public var currentTimeMillis: Int64 {
        state.withLock { state in
            advanceWorld(&state)
            return state.world.nowMillis
        }
    }

    /// The complete 200 body a bulk request would get now, without HTTP: for decoding benchmarks.
    public func currentListBody() -> [UInt8] {
        state.withLock { state in
            let list = renderedList(&state)
            return Array(list.body.readableBytesView)
        }
    }

    /// Formats `date` the way the simulator writes `createdOn`/`updatedOn` (ISO-8601 UTC, milliseconds).
    public static func timestamp(_ date: Date) -> String {
        BodyRenderer.iso8601(millis: Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
    }

    // MARK: Serving

    private func respond(to request: Request) async -> Response {
        let arrived = Date()
        let latency = state.withLock { $0.faults.latency }
        var request = request
        let body = (try? await request.collectBody(upTo: 1 << 20)) ?? ByteBuffer()
        if latency > 0 {
            try? await Task.sleep(for: .milliseconds(Int64((latency * 1000).rounded())))
        }
        let path = request.uri.path
        let response: Response
        switch path {
        case Self.tokenPath:
            response =
                request.method == .post
                ? tokenResponse(headers: request.headers, form: String(decoding: body.readableBytesView, as: UTF8.self))
                : Self.errorResponse(405)
        case Self.bulkPath:
            response = request.method == .get ? bulkResponse(headers: request.headers) : Self.errorResponse(405)
        case Self.historyPath where options.recordsHistory:
            response = request.method == .get ? historyResponse() : Self.errorResponse(405)
        default:
            response = Self.errorResponse(404)
        }
        let record = SimulatorRequestRecord(
            method: request.method.rawValue,
            path: request.uri.description,
            headers: request.headers.map { SimulatorHeader(name: $0.name.rawName, value: $0.value) },
            body: String(decoding: body.readableBytesView, as: UTF8.self),
            status: response.status.code,
            time: arrived
        )
        let limit = max(1, options.requestLogLimit)
        state.withLock { state in
            state.log.append(record)
            if state.log.count > limit {
                // Drop a tenth at a time so trimming stays amortised O(1) per request.
                state.log.removeFirst(min(state.log.count, max(state.log.count - limit, limit / 10)))
            }
        }
        return response
    }

    private func tokenResponse(headers: HTTPFields, form: String) -> Response {
        state.withLock { state in
            state.tokenRequests += 1
            if let scripted = state.popScript(.token), scripted != .normal {
                return Self.scriptedResponse(scripted, okBody: nil)
            }
            if let status = state.faults.tokenEndpointFailureStatus {
                return Self.errorResponse(status)
            }
            let fields = Self.parseForm(form)
            var clientID = fields["client_id"]
            var clientSecret = fields["client_secret"]
            if let (id, secret) = Self.basicCredentials(headers[.authorization]) {
                clientID = id
                clientSecret = secret
            }
            guard let grantType = fields["grant_type"] else {
                return Self.errorResponse(400, error: "invalid_request", type: "InvalidRequestException")
            }
            guard grantType == "client_credentials" else {
                return Self.errorResponse(400, error: "unsupported_grant_type", type: "InvalidGrantException")
            }
            guard clientID == options.clientID, clientSecret == options.clientSecret else {
                return Self.errorResponse(400, error: "invalid_client", type: "InvalidGrantException")
            }
            let now = ContinuousClock.now
            state.tokens = state.tokens.filter { $0.value > now }
            var token = ""
            for _ in 0..<4 { token += String(state.tokenRNG.next(), radix: 16) }
            state.tokens[token] = now + .milliseconds(Int64((options.tokenLifetime * 1000).rounded()))
            state.tokensIssued += 1
            var json = #"{"access_token":"\#(token)","token_type":"Bearer""#
            if !state.faults.omitExpiresIn {
                json += #","expires_in":\#(Int(max(0, options.tokenLifetime).rounded(.down)))"#
            }
            json += "}"
            return Self.jsonResponse(200, ByteBuffer(string: json))
        }
    }

    /// The history with the simulated clock, so a checker knows how recent the last change it may expect is.
    private func historyResponse() -> Response {
        state.withLock { state in
            advanceWorld(&state)
            let body = SimulatorChange.renderHistory(state.world.history ?? [], nowMillis: state.world.nowMillis)
            return Self.jsonResponse(200, ByteBuffer(bytes: body))
        }
    }

    private func bulkResponse(headers: HTTPFields) -> Response {
        state.withLock { state in
            state.bulkRequests += 1
            if let scripted = state.popScript(.bulk), scripted != .normal {
                return bulkFault(scripted, state: &state)
            }
            guard isAuthorized(headers[.authorization], state: state) else {
                return Self.errorResponse(401)
            }
            let faults = state.faults
            let statusDraw = state.faultRNG.unit()
            let bodyDraw = state.faultRNG.unit()
            let statusRates: [(Double, Int)] = [
                (faults.badRequestRate, 400), (faults.unauthorizedRate, 401),
                (faults.serverErrorRate, 500), (faults.gatewayTimeoutRate, 504),
            ]
            if let status = Self.pick(statusDraw, from: statusRates) {
                return Self.errorResponse(status)
            }
            let bodyRates: [(Double, SimulatedResponse)] = [
                (faults.malformedJSONRate, .malformedJSON), (faults.truncatedBodyRate, .truncatedBody),
                (faults.htmlErrorPageRate, .htmlErrorPage), (faults.emptyListRate, .emptyList),
                (faults.halfListRate, .halfList),
            ]
            return bulkFault(Self.pick(bodyDraw, from: bodyRates) ?? .normal, state: &state)
        }
    }

    /// The bulk answer for `fault`; `.normal` is the complete list.
    private func bulkFault(_ fault: SimulatedResponse, state: inout SimulatorState) -> Response {
        switch fault {
        case .normal:
            state.bulkListsServed += 1
            return Self.jsonResponse(200, renderedList(&state).body)
        case .emptyList:
            return Self.jsonResponse(200, ByteBuffer(bytes: BodyRenderer.prefix + BodyRenderer.suffix))
        case .halfList:
            let list = renderedList(&state)
            let head = list.body.getSlice(at: list.body.readerIndex, length: list.halfCut) ?? ByteBuffer()
            var response = Self.jsonResponse(200, ByteBuffer())
            response.body = ResponseBody(contentsOf: [head, ByteBuffer(bytes: BodyRenderer.suffix)])
            return response
        case .truncatedBody:
            return Self.scriptedResponse(fault, okBody: renderedList(&state).body)
        default:
            return Self.scriptedResponse(fault, okBody: nil)
        }
    }

    private func isAuthorized(_ authorization: String?, state: SimulatorState) -> Bool {
        guard let authorization, authorization.count > 7,
            authorization.prefix(7).caseInsensitiveCompare("Bearer ") == .orderedSame
        else { return false }
        let token = authorization.dropFirst(7).trimmingCharacters(in: .whitespaces)
        guard let expiry = state.tokens[token] else { return false }
        return ContinuousClock.now < expiry
    }

    /// Brings the world up to the simulated clock: wall time since creation (automatic churn only) plus every
    /// ``advance(by:)``.
    private func advanceWorld(_ state: inout SimulatorState) {
        var target = startMillis + state.manualOffsetMillis
        if options.automaticChurn {
            let elapsed = (ContinuousClock.now - origin).components
            target += elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000
        }
        state.world.advance(to: target)
    }

    /// The complete list body, rendered once per world version: a million items is ~150 MB, and polls of an
    /// unchanged world must cost a copy-free `ByteBuffer` share, not a render.
    private func renderedList(_ state: inout SimulatorState) -> RenderedList {
        advanceWorld(&state)
        if let cached = state.cache, cached.version == state.world.version { return cached }
        let (bytes, halfCut) = BodyRenderer.renderList(state.world)
        let list = RenderedList(version: state.world.version, body: ByteBuffer(bytes: bytes), halfCut: halfCut)
        state.cache = list
        return list
    }

    // MARK: Responses

    private static func pick<Value>(_ draw: Double, from rates: [(Double, Value)]) -> Value? {
        var cumulative = 0.0
        for (rate, value) in rates where rate > 0 {
            cumulative += rate
            if draw < cumulative { return value }
        }
        return nil
    }

    private static let malformedJSON =
        #"{"content":[{"bulkId":"b-000001","status":"PENDING",,}],"result":{"status":200"#
    private static let htmlErrorPage = """
        <!DOCTYPE html>
        <html><head><title>502 Bad Gateway</title></head>
        <body><h1>502 Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p><hr>nginx</body></html>

        """

    /// The answer for a scripted or drawn fault; `okBody` is the real body, needed only to truncate it.
    private static func scriptedResponse(_ fault: SimulatedResponse, okBody: ByteBuffer?) -> Response {
        switch fault {
        case .status(let code):
            return errorResponse(code)
        case .malformedJSON:
            return jsonResponse(200, ByteBuffer(string: malformedJSON))
        case .truncatedBody:
            let body = okBody ?? ByteBuffer(string: #"{"access_token":"truncated-token","token_type":"Bearer"}"#)
            let length = max(1, body.readableBytes / 2)
            return jsonResponse(200, body.getSlice(at: body.readerIndex, length: length) ?? body)
        case .htmlErrorPage:
            return response(200, contentType: "text/html; charset=utf-8", ByteBuffer(string: htmlErrorPage))
        case .raw(let status, let contentType, let body):
            return response(status, contentType: contentType, ByteBuffer(string: body))
        case .normal, .emptyList, .halfList:
            return errorResponse(500)  // not reached: callers serve these themselves
        }
    }

    static func errorResponse(_ status: Int, error: String? = nil, type: String? = nil) -> Response {
        let (defaultError, defaultType) = druidError(status)
        var out: [UInt8] = Array(#"{"error":"#.utf8)
        BodyRenderer.appendJSONString(error ?? defaultError, to: &out)
        out.append(contentsOf: #","type":"#.utf8)
        BodyRenderer.appendJSONString(type ?? defaultType, to: &out)
        out.append(UInt8(ascii: "}"))
        var response = jsonResponse(status, ByteBuffer(bytes: out))
        if status == 401 {
            response.headers[.wwwAuthenticate] = #"Bearer error="invalid_token""#
        }
        return response
    }

    private static func druidError(_ status: Int) -> (error: String, type: String) {
        switch status {
        case 400: ("invalid_request", "BadRequestException")
        case 401: ("invalid_token", "InvalidTokenException")
        case 404: ("not_found", "NotFoundException")
        case 405: ("method_not_allowed", "MethodNotAllowedException")
        case 500: ("server_error", "InternalServerErrorException")
        case 503: ("temporarily_unavailable", "ServiceUnavailableException")
        case 504: ("oauth_server_unreachable", "GatewayTimeoutException")
        default: ("error_\(status)", "HttpException")
        }
    }

    private static func jsonResponse(_ status: Int, _ body: ByteBuffer) -> Response {
        response(status, contentType: "application/json;charset=UTF-8", body)
    }

    private static func response(_ status: Int, contentType: String, _ body: ByteBuffer) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        return Response(
            status: HTTPResponse.Status(code: min(999, max(100, status)), reasonPhrase: reasonPhrase(status)),
            headers: headers,
            body: ResponseBody(byteBuffer: body)
        )
    }

    private static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: ""
        }
    }

    // MARK: Credentials

    /// `application/x-www-form-urlencoded` pairs; the first occurrence of a name wins.
    static func parseForm(_ form: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in form.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = formDecode(parts[0])
            let value = parts.count > 1 ? formDecode(parts[1]) : ""
            if fields[name] == nil { fields[name] = value }
        }
        return fields
    }

    private static func formDecode(_ text: Substring) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }

    /// Client id and secret from `Authorization: Basic …`; RFC 6749 §2.3.1 form-encodes both before base64.
    static func basicCredentials(_ authorization: String?) -> (String, String)? {
        guard let authorization, authorization.count > 6,
            authorization.prefix(6).caseInsensitiveCompare("Basic ") == .orderedSame,
            let data = Data(base64Encoded: authorization.dropFirst(6).trimmingCharacters(in: .whitespaces))
        else { return nil }
        let decoded = String(decoding: data, as: UTF8.self)
        guard let colon = decoded.firstIndex(of: ":") else { return nil }
        return (formDecode(decoded[..<colon]), formDecode(decoded[decoded.index(after: colon)...]))
    }
}

/// Everything a request or a control call may change, behind one lock.
struct SimulatorState: Sendable {
    var world: SimulatedWorld
    var faults: SimulatorFaults
    var faultRNG: SplitMix64
    var tokenRNG: SplitMix64
    var tokens: [String: ContinuousClock.Instant] = [:]
    var scripts: [SimulatorEndpoint: [SimulatedResponse]] = [:]
    var log: [SimulatorRequestRecord] = []
    var manualOffsetMillis: Int64 = 0
    var cache: RenderedList?
    var tokenRequests = 0
    var tokensIssued = 0
    var bulkRequests = 0
    var bulkListsServed = 0

    mutating func popScript(_ endpoint: SimulatorEndpoint) -> SimulatedResponse? {
        guard var queue = scripts[endpoint], !queue.isEmpty else { return nil }
        let first = queue.removeFirst()
        scripts[endpoint] = queue
        return first
    }
}

struct RenderedList: Sendable {
    var version: UInt64
    var body: ByteBuffer
    /// Byte offset in `body` just after the first half of the items.
    var halfCut: Int
}

struct RunningServer: Sendable {
    var group: ServiceGroup
    var task: Task<Void, Never>
}

struct ServerState: Sendable {
    var running: RunningServer?
    var host = "127.0.0.1"
    var port = 0
}

struct SimulatorError: Error, CustomStringConvertible {
    var description: String
}

extension SimulatedField {
    func fieldValue(now: Int64) -> FieldValue {
        switch self {
        case .now: .millis(now)
        case .date(let date): .millis(Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
        case .string(let text): .string(text)
        case .rawJSON(let json): .raw(json)
        case .absent: .absent
        }
    }
}
