import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchDelivery

#if canImport(Glibc)
    import Glibc
#endif

/// A journal in a temp directory that commits `created` events the way the watcher does.
final class WebhookJournalFixture: @unchecked Sendable {
    let directory: String
    let journal: SQLiteStore
    private var snapshot = Snapshot(tracked: [], removalGuarded: [])
    private var next = 1
    private var items: [BulkItem] = []

    init() throws {
        directory = try makeTemporaryDirectory("webhook")
        journal = try SQLiteStore(path: directory + "/state.db")
    }

    /// Commits `count` new items as `created` events detected at `detectedAt`.
    @discardableResult
    func add(_ count: Int, detectedAt: Date = Date()) async throws -> [JournalEvent] {
        for _ in 0..<count {
            let id = "b-\(next)"
            next += 1
            let json = #"{"bulkId":"\#(id)","status":"PENDING","updatedOn":"2026-11-28T10:00:00Z"}"#
            items.append(
                BulkItem(
                    bulkId: id, status: "PENDING", updatedOn: "2026-11-28T10:00:00Z", rawJSON: Array(json.utf8)[...]))
        }
        let outcome = SnapshotDiffer.apply(
            BulkListing(items: items), to: &snapshot, policy: DetectionPolicy(), isFirstRun: false)
        return try await journal.commitReadingBack(
            PollCommit(
                target: "default", source: "https://api.example.com/bulk", outcome: outcome, snapshot: snapshot,
                detectedAt: detectedAt),
            fence: .exclusive)
    }
}

/// Small, fast retry settings: tests must not wait for production backoff.
let quickPolicy = DeliveryPolicy(
    backoffBase: .milliseconds(50), backoffCap: .milliseconds(200), maxAge: .seconds(3600), rejectAttempts: 3)

/// Two well-formed secrets (rotation): raw keys known to the test, independent of the signer.
let testKeyA: [UInt8] = Array("bulkwatch-test-key-A-0123456789!".utf8)
let testKeyB: [UInt8] = Array(0..<24)
let testSecrets = ["whsec_" + Data(testKeyA).base64EncodedString(), "whsec_" + Data(testKeyB).base64EncodedString()]

/// HMAC-SHA256 computed by `openssl dgst`, base64: an implementation independent of the sink's signer.
func opensslSignature(key: [UInt8], message: [UInt8]) throws -> String {
    let hexKey = key.map { String(format: "%02x", $0) }.joined()
    let output = String(
        decoding: try runProcess(
            "/usr/bin/openssl", ["dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:\(hexKey)"],
            input: message), as: UTF8.self)
    let hex = output.split(separator: "=").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
        bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
        index = next
    }
    return Data(bytes).base64EncodedString()
}

/// Checks a recorded request's Standard Webhooks headers against `keys` with openssl.
func expectValidSignature(_ request: RecordedRequest, keys: [[UInt8]]) throws {
    let id = try #require(request.header("webhook-id"))
    let timestamp = try #require(request.header("webhook-timestamp"))
    let signature = try #require(request.header("webhook-signature"))
    let message = Array("\(id).\(timestamp).".utf8) + request.body
    let expected = try keys.map { "v1," + (try opensslSignature(key: $0, message: message)) }
    #expect(signature.split(separator: " ").map(String.init) == expected)
    let now = Int64(Date().timeIntervalSince1970)
    #expect(abs((Int64(timestamp) ?? 0) - now) < 120)
}

/// Runs a dispatcher over `sinks` until `condition` holds (or a generous timeout), then stops it.
func dispatch(
    _ journal: any Store, _ sinks: [any EventSink], until condition: () async throws -> Bool
) async rethrows -> Bool {
    let dispatcher = Dispatcher(
        store: journal, sinks: sinks, logger: Logger(label: "test"), drainTimeout: .milliseconds(200),
        idlePoll: .milliseconds(50))
    let running = Task { try await dispatcher.run() }
    let reached = try await ChildProcess.eventually(timeout: .seconds(90), condition)
    // A graceful finish lets the cursor of a delivered batch be recorded; a sink still stuck after ten
    // seconds (a receiver that never answers) is cancelled.
    dispatcher.finish(drainTimeout: .milliseconds(200))
    let cancel = Task {
        try await Task.sleep(for: .seconds(10))
        running.cancel()
    }
    _ = try? await running.value
    cancel.cancel()
    return reached
}

func webhookSink(_ server: LoopbackHTTPServer, path: String = "/hook", batch: Int = 1, timeout: Duration = .seconds(10))
    throws -> (WebhookSink, CurlTransport)
{
    let transport = CurlTransport()
    let secrets = try testSecrets.map { try WebhookSecret(parsing: $0) }
    let sink = WebhookSink(
        url: server.baseURL + path, signer: WebhookSigner(secrets: secrets), transport: transport, batchSize: batch,
        timeout: timeout, policy: quickPolicy)
    return (sink, transport)
}

@Suite("webhook sink against a loopback receiver")
struct WebhookSinkTests {
    @Test func postsTheCloudEventSignedWithEverySecret() async throws {
        let fixture = try WebhookJournalFixture()
        let events = try await fixture.add(2)
        let server = try LoopbackHTTPServer { _ in .respond(status: 204) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(await dispatch(fixture.journal, [sink]) { server.requests.count == 2 })

        let requests = server.requests
        #expect(requests.map(\.body) == events.map(\.body))
        #expect(requests.map { $0.header("webhook-id") } == events.map(\.id))
        for request in requests {
            #expect(request.method == "POST")
            #expect(request.path == "/hook")
            #expect(request.header("Content-Type") == "application/cloudevents+json")
            #expect(request.header("User-Agent") == "bulkwatch/\(BulkWatchVersion.current)")
            try expectValidSignature(request, keys: [testKeyA, testKeyB])
        }
        #expect(try await fixture.journal.cursor(sink: sink.name) == 2)
        #expect(sink.name == "webhook:\(server.baseURL)/hook")
    }

    /// Recorded as skipped (never a silent pass) where Python's `standardwebhooks` is missing;
    /// scripts/setup.sh tries to install it.
    @Test(
        .enabled(
            if: (try? runProcess("/usr/bin/env", ["python3", "-c", "import standardwebhooks"])) != nil,
            "needs Python's standardwebhooks package (pip install standardwebhooks)"))
    func pythonStandardWebhooksAcceptsTheSignature() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(1)
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(await dispatch(fixture.journal, [sink]) { server.requests.count == 1 })
        let request = try #require(server.requests.first)
        let script = """
            import json, sys
            from standardwebhooks import Webhook
            message = json.load(sys.stdin)
            headers = message["headers"]
            for secret in message["secrets"]:
                Webhook(secret).verify(message["body"].encode(), headers)
            print("verified")
            """
        let input: [String: Any] = [
            "secrets": testSecrets, "body": String(decoding: request.body, as: UTF8.self),
            "headers": [
                "webhook-id": request.header("webhook-id") ?? "",
                "webhook-timestamp": request.header("webhook-timestamp") ?? "",
                "webhook-signature": request.header("webhook-signature") ?? "",
            ],
        ]
        let output = try runProcess(
            "/usr/bin/env", ["python3", "-c", script], input: Array(try JSONSerialization.data(withJSONObject: input)))
        #expect(String(decoding: output, as: UTF8.self).contains("verified"))
    }

    @Test func retryAfterIsHonouredAndEveryAttemptIsSignedAfresh() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(1)
        let calls = Mutex(0)
        let server = try LoopbackHTTPServer { _ in
            calls.withLock { count in
                count += 1
                return count == 1 ? .respond(status: 429, headers: [("Retry-After", "2")]) : .respond(status: 200)
            }
        }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        let started = ContinuousClock.now
        #expect(
            try await dispatch(fixture.journal, [sink]) {
                let cursor = try await fixture.journal.cursor(sink: sink.name)
                return server.requests.count == 2 && cursor == 1
            })
        #expect(ContinuousClock.now - started >= .seconds(2))
        let requests = server.requests
        try #require(requests.count == 2)
        #expect(Set(requests.map { $0.header("webhook-id") }).count == 1)
        #expect(requests[0].header("webhook-timestamp") != requests[1].header("webhook-timestamp"))
        #expect(requests[0].header("webhook-signature") != requests[1].header("webhook-signature"))
        for request in requests { try expectValidSignature(request, keys: [testKeyA, testKeyB]) }
        #expect(try await fixture.journal.cursor(sink: sink.name) == 1)
    }

    @Test func aReceiverThatIsDownThenUpGetsEveryEventInOrderWithStableIDs() async throws {
        let fixture = try WebhookJournalFixture()
        let events = try await fixture.add(5)
        let calls = Mutex(0)
        // Dropped connections, then server errors, then healthy.
        let server = try LoopbackHTTPServer { _ in
            calls.withLock { count in
                count += 1
                if count <= 3 { return .raw([]) }
                if count <= 6 { return .respond(status: count == 5 ? 408 : 503) }
                return .respond(status: 200)
            }
        }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(
            try await dispatch(fixture.journal, [sink]) { (try await fixture.journal.cursor(sink: sink.name)) == 5 })

        let requests = server.requests
        let accepted = requests.dropFirst(6)
        #expect(accepted.map { $0.header("webhook-id") } == events.map(\.id))
        // Until it succeeded, every attempt was for the first event: never skipped ahead.
        #expect(requests.prefix(7).allSatisfy { $0.header("webhook-id") == events[0].id })
        #expect(try await fixture.journal.deadLetters().isEmpty)
    }

    @Test func aRedirectIsNotFollowedAndDeadLettersAfterThreeAttempts() async throws {
        let fixture = try WebhookJournalFixture()
        let events = try await fixture.add(2)
        let server = try LoopbackHTTPServer { request in
            if request.path == "/hook", request.body == events[0].body {
                return .respond(status: 302, headers: [("Location", "/elsewhere")])
            }
            return .respond(status: 200)
        }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(
            try await dispatch(fixture.journal, [sink]) { (try await fixture.journal.cursor(sink: sink.name)) == 2 })

        #expect(!server.requests.contains { $0.path == "/elsewhere" })
        #expect(server.requests.count == 4)
        let letters = try await fixture.journal.deadLetters(sink: sink.name)
        #expect(letters.map(\.eventID) == [events[0].id])
        #expect(letters.first?.attempts == 3)
        #expect(letters.first?.reason.contains("302") == true)
        #expect(letters.first?.event == events[0])
    }

    @Test func a400DeadLettersAfterThreeAttemptsAndTheNextEventFollows() async throws {
        let fixture = try WebhookJournalFixture()
        let events = try await fixture.add(3)
        let server = try LoopbackHTTPServer { request in
            request.header("webhook-id") == events[1].id ? .respond(status: 400) : .respond(status: 200)
        }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(
            try await dispatch(fixture.journal, [sink]) { (try await fixture.journal.cursor(sink: sink.name)) == 3 })

        #expect(
            server.requests.map { $0.header("webhook-id") ?? "" }
                == [events[0].id, events[1].id, events[1].id, events[1].id, events[2].id])
        let status = try #require(try await fixture.journal.sinkStatuses().first { $0.sink == sink.name })
        #expect(status.deadLetters == 1)
        #expect(status.lag == 0)
        #expect(try await fixture.journal.deadLetters().first?.reason == "HTTP 400")
    }

    @Test func eventsOlderThanTheMaxAgeAreDeadLetteredInsteadOfRetried() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(2, detectedAt: Date().addingTimeInterval(-7200))
        let server = try LoopbackHTTPServer { _ in .respond(status: 503) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        #expect(
            try await dispatch(fixture.journal, [sink]) { (try await fixture.journal.cursor(sink: sink.name)) == 2 })
        let letters = try await fixture.journal.deadLetters(sink: sink.name)
        #expect(letters.count == 2)
        #expect(letters.allSatisfy { $0.reason.contains("max age") && $0.attempts == 1 })
    }

    @Test func a410StopsOnlyThatSinkAndTheFileSinkGoesOn() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(3)
        let server = try LoopbackHTTPServer { _ in .respond(status: 410) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server)
        defer { transport.shutdown() }
        let file = try FileSink(path: fixture.directory + "/events.jsonl")
        #expect(
            try await dispatch(fixture.journal, [sink, file]) {
                let stopped = try await fixture.journal.sinkStatuses().first { $0.sink == sink.name }?.lastError != nil
                return try await fixture.journal.cursor(sink: file.name) == 3 && stopped
            })
        try await fixture.add(2)
        let reopened = try FileSink(path: fixture.directory + "/events.jsonl")
        #expect(
            try await dispatch(fixture.journal, [reopened]) { (try await fixture.journal.cursor(sink: file.name)) == 5 }
        )
        let status = try #require(try await fixture.journal.sinkStatuses().first { $0.sink == sink.name })
        #expect(status.lastError == "stopped: 410 Gone")
        #expect(status.cursor == 0)
        #expect(status.lag == 5)
        #expect(server.requests.count == 1)
        #expect(try await fixture.journal.deadLetters().isEmpty)
    }

    @Test func aReceiverThatNeverAnswersDoesNotStallTheOtherSinks() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(3)
        let silent = try LoopbackHTTPServer { _ in .neverAnswer }
        defer { silent.stop() }
        let healthy = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { healthy.stop() }
        let (stuck, transport) = try webhookSink(silent, timeout: .seconds(60))
        defer { transport.shutdown() }
        let (fine, otherTransport) = try webhookSink(healthy)
        defer { otherTransport.shutdown() }
        let file = try FileSink(path: fixture.directory + "/events.jsonl")
        #expect(
            try await dispatch(fixture.journal, [stuck, file, fine]) {
                let fileDone = try await fixture.journal.cursor(sink: file.name) == 3
                let fineDone = try await fixture.journal.cursor(sink: fine.name) == 3
                return fileDone && fineDone
            })
        #expect(try await (fixture.journal.cursor(sink: stuck.name) ?? 0) == 0)
        #expect(silent.requests.count == 1)
    }

    @Test func batchesArePostedAsOneSignedArray() async throws {
        let fixture = try WebhookJournalFixture()
        let events = try await fixture.add(5)
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        let (sink, transport) = try webhookSink(server, batch: 3)
        defer { transport.shutdown() }
        #expect(
            try await dispatch(fixture.journal, [sink]) { (try await fixture.journal.cursor(sink: sink.name)) == 5 })
        let requests = server.requests
        try #require(requests.count == 2)
        var received: [String] = []
        for request in requests {
            #expect(request.header("Content-Type") == "application/cloudevents-batch+json")
            try expectValidSignature(request, keys: [testKeyA, testKeyB])
            let array = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [[String: Any]])
            received += array.compactMap { $0["id"] as? String }
        }
        #expect(received == events.map(\.id))
        #expect(requests[0].header("webhook-id") == WebhookSink.batchID(Array(events[0..<3])))
        #expect(requests[0].header("webhook-id")?.hasPrefix("batch_") == true)
    }

    @Test func malformedSecretsAreRefusedWithoutEchoingThem() {
        for text in ["nope", "whsec_", "whsec_!!!not-base64!!!", "whsec_===="] {
            do {
                _ = try WebhookSecret(parsing: text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(!error.description.contains(text.dropFirst(6)) || text.count <= 6)
            }
        }
        #expect(throws: WebhookSecretError.self) { try WebhookSecret.parseList("  \n ") }
        let generated = WebhookSecret.generate()
        #expect(generated.hasPrefix("whsec_"))
        #expect(Data(base64Encoded: String(generated.dropFirst(6)))?.count == 32)
        #expect((try? WebhookSecret(parsing: generated)) != nil)
    }

    /// The webhook sink took any `Retry-After` as given, so `Retry-After: 99999999` parked the sink
    /// for three years; it shares the upstream client's parser now, capped at an hour.
    @Test func aHugeRetryAfterIsCappedAtAnHourAndAMalformedOneIgnored() {
        func disposition(_ value: String) -> DeliveryFailure.Disposition? {
            WebhookSink.classify(status: 503, headers: HTTPHeaders([("Retry-After", value)]))?.disposition
        }
        #expect(disposition("99999999") == .retry(retryAfter: .seconds(3600)))
        #expect(disposition("3600") == .retry(retryAfter: .seconds(3600)))
        #expect(disposition("-5") == .retry(retryAfter: nil))
        #expect(disposition("Wed, 21 Oct 2026 07:28:00 GMT") == .retry(retryAfter: nil))
    }

    @Test func statusCodesMapToTheDesignTable() {
        func disposition(_ status: Int, _ headers: [(String, String)] = []) -> DeliveryFailure.Disposition? {
            WebhookSink.classify(status: status, headers: HTTPHeaders(headers))?.disposition
        }
        #expect(disposition(200) == nil)
        #expect(disposition(204) == nil)
        #expect(disposition(410) == .stopSink)
        #expect(disposition(408) == .retry(retryAfter: nil))
        #expect(disposition(429, [("Retry-After", "7")]) == .retry(retryAfter: .seconds(7)))
        #expect(disposition(503) == .retry(retryAfter: nil))
        #expect(disposition(301) == .reject)
        #expect(disposition(400) == .reject)
        #expect(disposition(404) == .reject)
    }
}
