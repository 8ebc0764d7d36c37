public import Foundation

/// How a ``DruIDSimulator`` behaves: its credentials, its simulated world and its faults.
///
/// Every random choice the world makes comes from a PRNG seeded with ``seed``, so two simulators with the same
/// options produce the same operations and the same transitions in the same order; only *when* the automatic
/// world moves depends on the wall clock. Durations are seconds, as `Double`, so sub-second values work for tests.
public struct SimulatorOptions: Sendable {
    /// The only client id the token endpoint accepts.
    public var clientID: String
    /// The only client secret the token endpoint accepts.
    public var clientSecret: String
    /// Seeds the world, the fault draws and the issued tokens.
    public var seed: UInt64
    /// How long an issued token stays valid (real, monotonic clock); `expires_in` is this rounded down.
    public var tokenLifetime: Double
    /// Operations present from the start, in every lifecycle state, ids `b-000001` upwards.
    public var initialOperations: Int
    /// Mean rate of new operations (Poisson arrivals); `0` disables creation.
    public var creationsPerSecond: Double
    /// Mean time an operation spends in `PENDING` and again in `PROCESSING` (uniform in 0.5...1.5 times this).
    public var stepSeconds: Double
    /// How long a finished operation stays listed before it disappears.
    public var retentionSeconds: Double
    /// Share of finished operations that end as `FINISHED_WITH_ERRORS` rather than `FINISHED`.
    public var errorOutcomeRate: Double
    /// `true`: the world follows the wall clock. `false` (tests): it moves only through
    /// ``DruIDSimulator/advance(by:)`` and the upsert/remove calls.
    public var automaticChurn: Bool
    /// Simulated time at creation, the base of every `createdOn`/`updatedOn`; `nil` means now.
    /// Fix it to make rendered bodies byte-for-byte reproducible.
    public var clockStart: Date?
    /// Faults in force from the start; change them later with ``DruIDSimulator/faults``.
    public var faults: SimulatorFaults
    /// The request log keeps at most this many of the newest records, so long benchmarks stay bounded.
    public var requestLogLimit: Int
    /// Keep every visible change of the world (``DruIDSimulator/history``, `GET /simulator/history`): the truth
    /// fault and crash tests compare a journal against. Off by default: it grows with every change.
    public var recordsHistory: Bool

    public init(
        clientID: String = "bulkwatch-demo",
        clientSecret: String = "demo-secret",
        seed: UInt64 = 42,
        tokenLifetime: Double = 900,
        initialOperations: Int = 8,
        creationsPerSecond: Double = 0.5,
        stepSeconds: Double = 5,
        retentionSeconds: Double = 60,
        errorOutcomeRate: Double = 0.2,
        automaticChurn: Bool = true,
        clockStart: Date? = nil,
        faults: SimulatorFaults = SimulatorFaults(),
        requestLogLimit: Int = 10_000,
        recordsHistory: Bool = false
    ) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.seed = seed
        self.tokenLifetime = tokenLifetime
        self.initialOperations = initialOperations
        self.creationsPerSecond = creationsPerSecond
        self.stepSeconds = stepSeconds
        self.retentionSeconds = retentionSeconds
        self.errorOutcomeRate = errorOutcomeRate
        self.automaticChurn = automaticChurn
        self.clockStart = clockStart
        self.faults = faults
        self.requestLogLimit = requestLogLimit
        self.recordsHistory = recordsHistory
    }

    /// A world for tests: no initial operations, no creations, nothing moves unless the test says so.
    public static func manual(seed: UInt64 = 42) -> SimulatorOptions {
        SimulatorOptions(seed: seed, initialOperations: 0, creationsPerSecond: 0, automaticChurn: false)
    }
}

/// Misbehaviour injected into the simulator's answers, to prove the client survives what DruID may do.
///
/// Rates are probabilities in `0...1` drawn once per bulk request from a seeded PRNG. The error rates are checked
/// first, in the order 400, 401, 500, 504, and add up (a sum over 1 starves the later ones); the body rates are
/// then checked the same way, in declaration order, for requests that got past authentication and the error rates.
/// For exact sequences use ``DruIDSimulator/enqueue(_:times:on:)`` instead of rates.
public struct SimulatorFaults: Sendable, Hashable {
    /// Bulk endpoint answers 400 with a DruID error body.
    public var badRequestRate: Double
    /// Bulk endpoint answers 401 although the token is valid (the token stays valid).
    public var unauthorizedRate: Double
    /// Bulk endpoint answers 500.
    public var serverErrorRate: Double
    /// Bulk endpoint answers 504, DruID's "could not reach the OAuth server".
    public var gatewayTimeoutRate: Double
    /// 200 with a body that is not valid JSON.
    public var malformedJSONRate: Double
    /// 200 whose body stops half-way; `Content-Length` matches the cut body, so HTTP itself is well formed.
    public var truncatedBodyRate: Double
    /// 200 with `text/html`: the proxy error page a load balancer serves.
    public var htmlErrorPageRate: Double
    /// 200 with `"content":[]`, the glitch that must never cause expiries.
    public var emptyListRate: Double
    /// 200 listing only the first half of the operations.
    public var halfListRate: Double
    /// Added before every answer, on both endpoints.
    public var latency: Double
    /// When set, the token endpoint answers this status (503, 500, ...) with a DruID error body.
    public var tokenEndpointFailureStatus: Int?
    /// Token answers leave out `expires_in`, so the client must assume its default.
    public var omitExpiresIn: Bool

    public init(
        badRequestRate: Double = 0,
        unauthorizedRate: Double = 0,
        serverErrorRate: Double = 0,
        gatewayTimeoutRate: Double = 0,
        malformedJSONRate: Double = 0,
        truncatedBodyRate: Double = 0,
        htmlErrorPageRate: Double = 0,
        emptyListRate: Double = 0,
        halfListRate: Double = 0,
        latency: Double = 0,
        tokenEndpointFailureStatus: Int? = nil,
        omitExpiresIn: Bool = false
    ) {
        self.badRequestRate = badRequestRate
        self.unauthorizedRate = unauthorizedRate
        self.serverErrorRate = serverErrorRate
        self.gatewayTimeoutRate = gatewayTimeoutRate
        self.malformedJSONRate = malformedJSONRate
        self.truncatedBodyRate = truncatedBodyRate
        self.htmlErrorPageRate = htmlErrorPageRate
        self.emptyListRate = emptyListRate
        self.halfListRate = halfListRate
        self.latency = latency
        self.tokenEndpointFailureStatus = tokenEndpointFailureStatus
        self.omitExpiresIn = omitExpiresIn
    }
}

/// One scripted answer, queued with ``DruIDSimulator/enqueue(_:times:on:)``.
///
/// A scripted answer is served before authentication is checked, so a test gets exactly what it queued.
public enum SimulatedResponse: Sendable, Hashable {
    /// Serve the request as if nothing were queued (authentication included); useful inside a sequence.
    case normal
    /// This status with a DruID error body `{"error":…,"type":…}`.
    case status(Int)
    /// 200 with invalid JSON.
    case malformedJSON
    /// 200 whose body is cut half-way, with a matching `Content-Length`.
    case truncatedBody
    /// 200 with an HTML error page.
    case htmlErrorPage
    /// 200 with `"content":[]` (on the token endpoint: served normally).
    case emptyList
    /// 200 with the first half of the operations (on the token endpoint: served normally).
    case halfList
    /// Exactly this answer.
    case raw(status: Int, contentType: String, body: String)
}

/// The simulator's two endpoints, for ``DruIDSimulator/enqueue(_:times:on:)``.
public enum SimulatorEndpoint: Sendable, Hashable {
    /// `POST /oauth2/token`
    case token
    /// `GET /activityid/v1/user/bulk`
    case bulk
}

/// A field value for ``DruIDSimulator/upsert(bulkId:status:createdOn:updatedOn:extraJSONFields:)``, able to
/// express what DESIGN §2 says the client must survive: missing fields, nulls, odd types.
public enum SimulatedField: Sendable, Hashable, ExpressibleByStringLiteral {
    /// The simulated clock's current time, ISO-8601 UTC with milliseconds.
    case now
    /// This instant, ISO-8601 UTC with milliseconds.
    case date(Date)
    /// This text as a JSON string (escaped as needed).
    case string(String)
    /// This text verbatim as the JSON value, e.g. `null`, `1764325000000` or `{"a":1}`.
    case rawJSON(String)
    /// The field is left out of the item.
    case absent

    /// JSON `null`.
    public static let null = SimulatedField.rawJSON("null")

    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

/// One HTTP header as the client sent it (name in its original spelling).
public struct SimulatorHeader: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// One request the simulator answered, kept so tests can check exactly what the client sent.
public struct SimulatorRequestRecord: Sendable, Hashable {
    public var method: String
    /// Path and query, as requested.
    public var path: String
    /// Every request header, in order, as sent.
    public var headers: [SimulatorHeader]
    /// The request body decoded as UTF-8 (the token form; usually empty for the bulk endpoint).
    public var body: String
    /// The status the simulator answered.
    public var status: Int
    /// When the request arrived.
    public var time: Date

    /// The first value of header `name`, compared case-insensitively as HTTP requires.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// All values of header `name`, to catch a header sent twice.
    public func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }
}

/// Counters since the simulator was created.
public struct SimulatorStats: Sendable, Hashable {
    /// Requests to the token endpoint, whatever their outcome.
    public var tokenRequests: Int
    /// Tokens handed out.
    public var tokensIssued: Int
    /// Requests to the bulk endpoint, whatever their outcome.
    public var bulkRequests: Int
    /// Bulk requests answered with the complete, well-formed list.
    public var bulkListsServed: Int
    /// Operations currently in the world.
    public var operations: Int
}
