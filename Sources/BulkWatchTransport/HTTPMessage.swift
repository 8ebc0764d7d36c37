import BulkWatchSupport

/// HTTP header fields in the order they were set or received; names compare case-insensitively.
package struct HTTPHeaders: Sendable, Equatable, Sequence {
    package private(set) var fields: [(name: String, value: String)] = []

    package init(_ fields: [(String, String)] = []) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    package mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// The first value of `name`, or nil.
    package subscript(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    package func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    package static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
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
package struct HTTPRequest: Sendable {
    package enum Method: String, Sendable { case get = "GET", post = "POST" }

    /// What a POST carries. Form bodies are percent-encoded by the transport.
    package enum Body: Sendable {
        case form([(String, String)])
        case bytes([UInt8], contentType: String)
    }

    package var method: Method
    package var url: String
    package var headers: HTTPHeaders
    package var body: Body?
    /// Whole-transfer deadline, connection included.
    package var timeout: Duration
    /// The most body bytes accepted; larger answers fail with ``TransportError/Code/responseTooLarge``.
    package var maxResponseBytes: Int
    /// Off by default: a webhook or API that redirects is misconfigured, and following could leak
    /// credentials to another host.
    package var followRedirects: Bool
    /// Optional HTTP Basic credentials (user, password); never logged.
    package var basicAuth: (user: String, password: String)?
    /// Where a 200's body is published while it arrives, for a reader that wants to start on it early.
    package var arrivingBody: ArrivingBody?

    package init(
        method: Method = .get,
        url: String,
        headers: HTTPHeaders = HTTPHeaders(),
        body: Body? = nil,
        timeout: Duration = .seconds(30),
        maxResponseBytes: Int = 64 << 20,
        followRedirects: Bool = false,
        basicAuth: (user: String, password: String)? = nil,
        arrivingBody: ArrivingBody? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
        self.followRedirects = followRedirects
        self.basicAuth = basicAuth
        self.arrivingBody = arrivingBody
    }
}

/// A complete HTTP answer: status, headers of the final response, and the whole body.
package struct HTTPResponse: Sendable {
    package var status: Int
    package var headers: HTTPHeaders
    package var body: [UInt8]

    package init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why a transfer produced no HTTP response. A struct with a nested code, so new codes don't
/// break callers that switch over the ones they know.
package struct TransportError: Error, Sendable, CustomStringConvertible {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        package static let timedOut = Code(name: "timed out")
        package static let couldNotConnect = Code(name: "could not connect")
        package static let tls = Code(name: "TLS failure")
        package static let responseTooLarge = Code(name: "response too large")
        package static let invalidRequest = Code(name: "invalid request")
        package static let other = Code(name: "transfer failed")
        package var description: String { name }
    }

    package var code: Code
    /// curl's own explanation (its error buffer), for the log line.
    package var message: String
    /// curl's numeric result, kept for diagnostics.
    package var curlCode: Int

    package var description: String {
        message.isEmpty ? code.description : "\(code): \(message)"
    }
}
