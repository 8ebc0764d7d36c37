import Foundation
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch

@Suite("libcurl transport against loopback servers")
struct CurlTransportTests {
    let transport = CurlTransport()

    @Test func getReturnsStatusHeadersAndBody() async throws {
        let server = try LoopbackHTTPServer { _ in .json(201, #"{"ok":true}"#, headers: [("X-Thing", "a b")]) }
        defer { server.stop() }
        let response = try await transport.send(HTTPRequest(url: server.baseURL + "/x?y=1"))
        #expect(response.status == 201)
        #expect(response.headers["x-thing"] == "a b")
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"ok":true}"#)
        #expect(server.requests.first?.method == "GET")
        #expect(server.requests.first?.path == "/x?y=1")
    }

    @Test func postsFormBodiesPercentEncoded() async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        let request = HTTPRequest(
            method: .post, url: server.baseURL, body: .form([("a", "x y&z=1"), ("b", "é/+")]))
        _ = try await transport.send(request)
        let received = try #require(server.requests.first)
        #expect(received.method == "POST")
        #expect(received.header("Content-Type") == "application/x-www-form-urlencoded")
        #expect(String(decoding: received.body, as: UTF8.self) == "a=x%20y%26z%3D1&b=%C3%A9%2F%2B")
        #expect(received.header("Expect") == nil)
    }

    @Test func postsJSONBodiesWithTheirContentType() async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        let payload = Array(String(repeating: "x", count: 5000).utf8)
        _ = try await transport.send(
            HTTPRequest(method: .post, url: server.baseURL, body: .bytes(payload, contentType: "application/json")))
        let received = try #require(server.requests.first)
        #expect(received.header("Content-Type") == "application/json")
        #expect(received.body == payload)
    }

    @Test func reusesOneConnectionForSequentialRequests() async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        for _ in 0..<20 {
            _ = try await transport.send(HTTPRequest(url: server.baseURL))
        }
        #expect(server.requests.count == 20)
        #expect(server.connectionCount == 1)
    }

    @Test func capsConnectionsPerHost() async throws {
        var configuration = TransportConfiguration()
        configuration.maxConnectionsPerHost = 2
        let capped = CurlTransport(configuration: configuration)
        defer { capped.shutdown() }
        let server = try LoopbackHTTPServer { _ in .delayed(seconds: 0.05, status: 200, body: []) }
        defer { server.stop() }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<12 {
                group.addTask { try await capped.send(HTTPRequest(url: server.baseURL)).status }
            }
            for try await status in group { #expect(status == 200) }
        }
        #expect(server.requests.count == 12)
        #expect(server.connectionCount <= 2)
    }

    @Test func refusesBodiesOverTheLimitWhenLengthIsAnnounced() async throws {
        let server = try LoopbackHTTPServer { _ in .respond(status: 200, body: [UInt8](repeating: 65, count: 10_000)) }
        defer { server.stop() }
        let error = await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: server.baseURL, maxResponseBytes: 1000))
        }
        #expect(error?.code == .responseTooLarge)
    }

    @Test func refusesBodiesOverTheLimitWithoutContentLength() async throws {
        let head = Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".utf8)
        let server = try LoopbackHTTPServer { _ in .raw(head + [UInt8](repeating: 65, count: 200_000)) }
        defer { server.stop() }
        let error = await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: server.baseURL, maxResponseBytes: 50_000))
        }
        #expect(error?.code == .responseTooLarge)
    }

    /// A large body (past 1 MiB) is received into the transport's spare buffer once the caller has let go
    /// of the last one: same storage, no new pages to fault in. Both ways a body can arrive are covered:
    /// announced by Content-Length, and read until the connection closes.
    @Test(arguments: [true, false])
    func reusesTheLastLargeBodyBufferOnceItIsReleased(announced: Bool) async throws {
        let count = 3 << 20
        let served = Mutex(0)
        let server = try LoopbackHTTPServer { _ in
            let fill = served.withLock { n -> UInt8 in
                defer { n += 1 }
                return UInt8(65 + n % 26)
            }
            let body = [UInt8](repeating: fill, count: count)
            if announced { return .respond(status: 200, body: body) }
            return .raw(Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".utf8) + body)
        }
        defer { server.stop() }
        let request = HTTPRequest(url: server.baseURL, maxResponseBytes: 64 << 20)
        var first = try await transport.send(request)
        let firstBase = first.body.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(first.body.count == count && first.body.allSatisfy { $0 == 65 })
        let capacity = first.body.capacity
        first = HTTPResponse(status: 0, headers: HTTPHeaders(), body: [])  // let go of it
        // Had the transport freed it, an allocation of the same size would most likely take its place, so the
        // next body could not land at the same address by chance.
        var blocker: [UInt8] = []
        blocker.reserveCapacity(capacity)
        blocker.append(1)
        let second = try await transport.send(request)
        withExtendedLifetime(blocker) {}
        let secondBase = second.body.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(second.body.count == count && second.body.allSatisfy { $0 == 66 })
        #expect(secondBase == firstBase, "the released buffer was not reused")
    }

    /// While the caller still holds a large response, the next one gets a buffer of its own: the held
    /// bytes never change under it (a listing keeps offsets into its body for the whole poll).
    @Test func neverReusesABodyBufferTheCallerStillHolds() async throws {
        let count = 3 << 20
        let served = Mutex(0)
        let server = try LoopbackHTTPServer { _ in
            let fill = served.withLock { n -> UInt8 in
                defer { n += 1 }
                return UInt8(65 + n)
            }
            return .respond(status: 200, body: [UInt8](repeating: fill, count: count))
        }
        defer { server.stop() }
        let request = HTTPRequest(url: server.baseURL, maxResponseBytes: 64 << 20)
        let first = try await transport.send(request)
        let second = try await transport.send(request)
        let third = try await transport.send(request)
        #expect(first.body.count == count && first.body.allSatisfy { $0 == 65 })
        #expect(second.body.count == count && second.body.allSatisfy { $0 == 66 })
        #expect(third.body.count == count && third.body.allSatisfy { $0 == 67 })
        let bases = [first, second, third].map { $0.body.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } }
        #expect(Set(bases).count == 3)
    }

    @Test func reportsATruncatedBodyAsAnError() async throws {
        let server = try LoopbackHTTPServer { _ in .truncated(announcedLength: 1000, body: Array(#"{"content":["#.utf8))
        }
        defer { server.stop() }
        await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: server.baseURL))
        }
    }

    @Test func timesOutAgainstAServerThatNeverAnswers() async throws {
        let server = try LoopbackHTTPServer { _ in .neverAnswer }
        defer { server.stop() }
        let error = await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: server.baseURL, timeout: .milliseconds(300)))
        }
        #expect(error?.code == .timedOut)
    }

    @Test func abortsAStalledTransferThroughTheLowSpeedLimit() async throws {
        var configuration = TransportConfiguration()
        configuration.lowSpeedBytesPerSecond = 1000
        configuration.lowSpeedWindow = .seconds(1)
        let strict = CurlTransport(configuration: configuration)
        defer { strict.shutdown() }
        let server = try LoopbackHTTPServer { _ in .neverAnswer }
        defer { server.stop() }
        let error = await #expect(throws: TransportError.self) {
            try await strict.send(HTTPRequest(url: server.baseURL, timeout: .seconds(60)))
        }
        #expect(error?.code == .timedOut)
    }

    @Test func cancellingTheAwaitingTaskEndsTheTransfer() async throws {
        let server = try LoopbackHTTPServer { _ in .neverAnswer }
        defer { server.stop() }
        let task = Task { try await transport.send(HTTPRequest(url: server.baseURL, timeout: .seconds(120))) }
        while server.requests.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        let cancelledAt = ContinuousClock.now
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        // Generous bound: only shows the transfer did not run to its 120 s deadline.
        #expect(ContinuousClock.now - cancelledAt < .seconds(30))
    }

    @Test func doesNotFollowRedirectsUnlessAsked() async throws {
        let server = try LoopbackHTTPServer { request in
            request.path == "/final" ? .json(200, "{}") : .respond(status: 302, headers: [("Location", "/final")])
        }
        defer { server.stop() }
        let direct = try await transport.send(HTTPRequest(url: server.baseURL + "/start"))
        #expect(direct.status == 302)
        #expect(server.requests.count == 1)
        let followed = try await transport.send(HTTPRequest(url: server.baseURL + "/start", followRedirects: true))
        #expect(followed.status == 200)
    }

    @Test func acceptsAndDecodesGzip() async throws {
        let plain = Array(String(repeating: #"{"bulkId":"b-1"}"#, count: 100).utf8)
        let gzipped = try runProcess("/bin/gzip", ["-c"], input: plain)
        let server = try LoopbackHTTPServer { _ in
            .respond(status: 200, headers: [("Content-Encoding", "gzip")], body: gzipped)
        }
        defer { server.stop() }
        let response = try await transport.send(HTTPRequest(url: server.baseURL))
        #expect(response.body == plain)
        #expect(server.requests.first?.header("Accept-Encoding")?.contains("gzip") == true)
    }

    @Test func reportsARefusedConnection() async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        let url = server.baseURL
        server.stop()
        let error = await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: url))
        }
        #expect(error?.code == .couldNotConnect)
    }

    @Test func rejectsNonHTTPSchemesBeforeSending() async throws {
        let error = await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: "file:///etc/passwd"))
        }
        #expect(error?.code == .invalidRequest)
    }

    @Test func verifiesTLSAndTrustsAnExplicitCAFile() async throws {
        let tls = try SelfSignedTLSServer.start()
        defer { tls.stop() }
        let untrusted = await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: tls.url, timeout: .seconds(10)))
        }
        #expect(untrusted?.code == .tls)

        var configuration = TransportConfiguration()
        configuration.caFile = tls.certificatePath
        let trusting = CurlTransport(configuration: configuration)
        defer { trusting.shutdown() }
        let response = try await trusting.send(HTTPRequest(url: tls.url, timeout: .seconds(10)))
        #expect(response.status == 200)
    }
}
