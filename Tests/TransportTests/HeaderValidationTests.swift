import Foundation
import TestSupport
import Testing

@testable import BulkWatch

/// Header values are checked at the transport's edge (issue 11): whatever the caller, a value
/// with CR, LF or NUL never reaches the wire, and nothing is sent at all.
@Suite("transport refuses header values that could split a request")
struct HeaderValidationTests {
    let transport = CurlTransport()

    @Test(arguments: ["fr\r\nX-Injected: 1", "fr\nX-Injected: 1", "fr\rX-Injected: 1", "fr\u{0}X-Injected: 1"])
    func aControlCharacterInAHeaderValueFailsBeforeAnyByteIsSent(_ value: String) async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        let request = HTTPRequest(url: server.baseURL + "/x", headers: HTTPHeaders([("Accept-Language", value)]))
        do {
            _ = try await transport.send(request)
            Issue.record("the request was sent")
        } catch let error as TransportError {
            #expect(error.code == .invalidRequest)
            #expect(error.message.contains("Accept-Language"))
            #expect(!error.message.contains("X-Injected"), "the value itself is not echoed")
        }
        #expect(server.requests.isEmpty)
        #expect(server.connectionCount == 0)
    }

    @Test func aControlCharacterInAHeaderNameIsRefusedToo() async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        let request = HTTPRequest(url: server.baseURL, headers: HTTPHeaders([("X-A\r\nX-B", "1")]))
        await #expect(throws: TransportError.self) { _ = try await transport.send(request) }
        #expect(server.requests.isEmpty)
    }

    @Test func ordinaryValuesStillPass() async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        let request = HTTPRequest(
            url: server.baseURL, headers: HTTPHeaders([("Accept-Language", "fr-FR, en;q=0.8"), ("X-Tab", "a\tb")]))
        let response = try await transport.send(request)
        #expect(response.status == 200)
        #expect(server.requests.first?.header("Accept-Language") == "fr-FR, en;q=0.8")
    }
}

/// `curl_multi_wakeup` races `curl_multi_cleanup` unless they are ordered; this hammers the two
/// paths together. It cannot prove the absence of a use-after-free (that needs a sanitizer), but
/// each round must end with every send answered or cancelled, never a hang or a crash.
@Suite("transport shutdown while requests are being submitted")
struct ShutdownRaceTests {
    @Test func sendsRacingShutdownAllFinish() async throws {
        let server = try LoopbackHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        for _ in 0..<40 {
            let transport = CurlTransport()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        do {
                            _ = try await transport.send(HTTPRequest(url: server.baseURL, timeout: .seconds(5)))
                        } catch is CancellationError {
                        } catch {
                            Issue.record("unexpected \(error)")
                        }
                    }
                }
                group.addTask { transport.shutdown() }
            }
        }
    }
}
