import BulkWatch
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private let verifyKey: [UInt8] = Array("verify-command test key, 32 byte".utf8)
private let verifySecret = "whsec_" + Data(verifyKey).base64EncodedString()

/// The request as a receiver would capture it: request line, headers, empty line, body.
private func captured(_ request: RecordedRequest, body: [UInt8]? = nil, replacing: [String: String] = [:]) -> [UInt8] {
    var text = "\(request.method) \(request.path) HTTP/1.1\r\n"
    for (name, value) in request.headers where name.lowercased() != "content-length" {
        text += "\(name): \(replacing[name.lowercased()] ?? value)\r\n"
    }
    let body = body ?? request.body
    text += "Content-Length: \(body.count)\r\n\r\n"
    return Array(text.utf8) + body
}

private func write(_ bytes: [UInt8], _ path: String, mode: mode_t = 0o600) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    chmod(path, mode)
}

@Suite("bulkwatch verify on requests a real bulkwatch run sent")
struct VerifyCommandTests {
    /// Runs bulkwatch once against the simulator with a webhook sink and returns what it POSTed.
    private func capture() async throws -> (RunFixture, RecordedRequest) {
        let fixture = try await RunFixture()
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        fixture.simulator.upsert(bulkId: "b-1", status: "FAILED")
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "webhook:\(server.baseURL)/hook?format=slack"]),
            environment: fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": verifySecret]) { $1 },
            directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let request = try #require(server.requests.first)
        try write(Array((verifySecret + "\n").utf8), fixture.directory + "/secret")
        return (fixture, request)
    }

    private func verify(_ fixture: RunFixture, _ arguments: [String]) async throws -> (Int32?, String, String) {
        let result = try await runBulkWatch(["verify"] + arguments, directory: fixture.directory)
        return (result.status, result.stdout, result.stderr)
    }

    @Test func aGoodRequestIsValidAndATamperedOneIsNot() async throws {
        let (fixture, request) = try await capture()
        let secret = fixture.directory + "/secret"
        try write(captured(request), fixture.directory + "/good.http")
        let good = try await verify(fixture, ["--secret-file", secret, fixture.directory + "/good.http"])
        #expect(good.0 == 0, "stdout: \(good.1) stderr: \(good.2)")
        #expect(good.1.hasPrefix("valid: "))
        #expect(good.1.contains("matches secret 1 of 1"))

        var body = request.body
        let index = try #require(body.firstIndex(of: UInt8(ascii: "b")))
        body[index] = UInt8(ascii: "c")
        try write(captured(request, body: body), fixture.directory + "/tampered.http")
        let tampered = try await verify(fixture, ["--secret-file", secret, fixture.directory + "/tampered.http"])
        #expect(tampered.0 == 1)
        #expect(tampered.1.contains("invalid:"))
        #expect(tampered.1.contains("no signature matches"))
        #expect(!tampered.1.contains("webhook-timestamp is"))

        // Standard input works the same; a wrong secret is refused.
        let other = fixture.directory + "/other"
        try write(Array(WebhookSecret.generate().utf8), other)
        let child = try runProcess(
            "/bin/sh",
            [
                "-c",
                "\(BulkWatchBinary.path) verify --secret-file \(other) < \(fixture.directory)/good.http; "
                    + "echo \"exit=$?\"",
            ])
        let output = String(decoding: child, as: UTF8.self)
        #expect(output.contains("no signature matches"))
        #expect(output.contains("exit=1"))
        await fixture.stop()
    }

    @Test func aStaleRequestIsInvalidForItsTimestampAlone() async throws {
        let (fixture, request) = try await capture()
        let id = try #require(request.header("webhook-id"))
        let old = Int64(Date().timeIntervalSince1970) - 600
        let signer = WebhookSigner(secrets: [try WebhookSecret(parsing: verifySecret)])
        let resigned = captured(
            request,
            replacing: [
                "webhook-timestamp": "\(old)",
                "webhook-signature": signer.signature(id: id, timestamp: old, body: request.body),
            ])
        try write(resigned, fixture.directory + "/stale.http")
        let secret = fixture.directory + "/secret"
        let stale = try await verify(fixture, ["--secret-file", secret, fixture.directory + "/stale.http"])
        #expect(stale.0 == 1)
        #expect(stale.1.contains("s old, more than the tolerance of 300 s"))
        #expect(stale.1.contains("ok: signature 1 of 1 matches secret 1 of 1"))
        let tolerant = try await verify(
            fixture, ["--secret-file", secret, "--tolerance", "15m", fixture.directory + "/stale.http"])
        #expect(tolerant.0 == 0, "stdout: \(tolerant.1)")
        await fixture.stop()
    }

    @Test func aMissingHeaderOrAnUnsafeSecretFileSaysWhy() async throws {
        let (fixture, request) = try await capture()
        let secret = fixture.directory + "/secret"
        var headerless = request
        headerless.headers.removeAll { $0.name.lowercased() == "webhook-signature" }
        try write(captured(headerless), fixture.directory + "/unsigned.http")
        let unsigned = try await verify(fixture, ["--secret-file", secret, fixture.directory + "/unsigned.http"])
        #expect(unsigned.0 == 1)
        #expect(unsigned.1.contains("the webhook-signature header is missing"))

        try write(captured(request), fixture.directory + "/good.http")
        let loose = fixture.directory + "/loose"
        try write(Array(verifySecret.utf8), loose, mode: 0o644)
        let refused = try await verify(fixture, ["--secret-file", loose, fixture.directory + "/good.http"])
        #expect(refused.0 == 78)
        #expect(refused.2.contains("readable by group or others"))
        #expect(!refused.2.contains(verifySecret))
        let usage = try await verify(fixture, [fixture.directory + "/good.http"])
        #expect(usage.0 == 64)
        await fixture.stop()
    }
}
