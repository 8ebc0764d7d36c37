/// HTTP header fields in the order they were set or received; names compare case-insensitively.
public struct HTTPHeaders: Sendable, Equatable, Sequence {
    public private(set) var fields: [(name: String, value: String)] = []

    public init(_ fields: [(String, String)] = []) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// The first value of `name`, or nil.
    public subscript(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        utf8.count == other.utf8.count && lowercased() == other.lowercased()
    }
}

/// A request for ``CurlTransport``. Limits and deadlines travel with the request, so no caller
/// depends on a global setting it cannot see.
public struct HTTPRequest: Sendable {
    public enum Method: String, Sendable { case get = "GET", post = "POST" }

    /// What a POST carries. Form bodies are percent-encoded by the transport.
    public enum Body: Sendable {
        case form([(String, String)])
        case bytes([UInt8], contentType: String)
    }

    public var method: Method
    public var url: String
    public var headers: HTTPHeaders
    public var body: Body?
    /// Whole-transfer deadline, connection included.
    public var timeout: Duration
    /// The most body bytes accepted; larger answers fail with ``TransportError/Code/responseTooLarge``.
    public var maxResponseBytes: Int
    /// Off by default: a webhook or API that redirects is misconfigured, and following could leak
    /// credentials to another host.
    public var followRedirects: Bool
    /// Optional HTTP Basic credentials (user, password); never logged.
    public var basicAuth: (user: String, password: String)?

    public init(
        method: Method = .get,
        url: String,
        headers: HTTPHeaders = HTTPHeaders(),
        body: Body? = nil,
        timeout: Duration = .seconds(30),
        maxResponseBytes: Int = 64 << 20,
        followRedirects: Bool = false,
        basicAuth: (user: String, password: String)? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
        self.followRedirects = followRedirects
        self.basicAuth = basicAuth
    }
}

/// A complete HTTP answer: status, headers of the final response, and the whole body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why a transfer produced no HTTP response. A struct with a nested code, so new codes don't
/// break callers that switch over the ones they know.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let timedOut = Code(name: "timed out")
        public static let couldNotConnect = Code(name: "could not connect")
        public static let tls = Code(name: "TLS failure")
        public static let responseTooLarge = Code(name: "response too large")
        public static let invalidRequest = Code(name: "invalid request")
        public static let other = Code(name: "transfer failed")
        public var description: String { name }
    }

    public var code: Code
    /// curl's own explanation (its error buffer), for the log line.
    public var message: String
    /// curl's numeric result, kept for diagnostics.
    public var curlCode: Int

    public var description: String {
        message.isEmpty ? code.description : "\(code): \(message)"
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so a tiny positive duration never becomes "no limit" (0).
    var roundedUpMilliseconds: Int {
        let (seconds, attoseconds) = components
        let millis = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int(max(0, millis))
    }
}
