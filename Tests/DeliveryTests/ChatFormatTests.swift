import Foundation
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch

private let link = "https://console.example.com/bulk/{bulkId}?t={target}"

/// A sink with `format` posting to `server`, signed with the shared test secrets.
private func chatSink(
    _ server: LoopbackHTTPServer, _ format: WebhookFormat, batch: Int = 1, link: String? = link
) throws -> (WebhookSink, CurlTransport) {
    let transport = CurlTransport()
    let secrets = try testSecrets.map { try WebhookSecret(parsing: $0) }
    let sink = WebhookSink(
        url: server.baseURL + "/hook", signer: WebhookSigner(secrets: secrets), transport: transport,
        batchSize: batch, timeout: .seconds(10), policy: quickPolicy, body: try WebhookBody(format: format, link: link))
    return (sink, transport)
}

private func object(_ request: RecordedRequest) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
}

/// Journals `b-1` created PENDING then changed to FAILED on target `eu`, posts them with `format`,
/// and returns the requests (each checked for a valid Standard Webhooks signature).
private func post(_ format: WebhookFormat, batch: Int = 1) async throws -> [RecordedRequest] {
    let fixture = try RoutingJournal()
    let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
    defer { server.stop() }
    try await fixture.set("b-1", "PENDING", target: "eu")
    try await fixture.set("b-1", "FAILED", target: "eu")
    let (sink, transport) = try chatSink(server, format, batch: batch)
    defer { transport.shutdown() }
    #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 2 })
    let requests = server.requests
    for request in requests {
        try expectValidSignature(request, keys: [testKeyA, testKeyB])
        #expect(request.header("Content-Type") == "application/json")
    }
    return requests
}

@Suite("chat formats and templates for webhook sinks, against a loopback receiver")
struct ChatFormatTests {
    @Test func slackGetsTextAndMrkdwnSectionBlocksWithTheLink() async throws {
        let requests = try await post(.chat(.slack))
        try #require(requests.count == 2)
        let changed = try object(requests[1])
        let text = try #require(changed["text"] as? String)
        #expect(text.contains("[eu] changed b-1: PENDING → FAILED at 20"))
        let blocks = try #require(changed["blocks"] as? [[String: Any]])
        #expect(blocks.count == 1)
        #expect(blocks[0]["type"] as? String == "section")
        let section = try #require(blocks[0]["text"] as? [String: Any])
        #expect(section["type"] as? String == "mrkdwn")
        let mrkdwn = try #require(section["text"] as? String)
        #expect(mrkdwn.contains("<https://console.example.com/bulk/b-1?t=eu|b-1>"))
        #expect(mrkdwn.contains("PENDING → FAILED"))
    }

    @Test func discordGetsContentAndEmbedsWithoutMentions() async throws {
        let requests = try await post(.chat(.discord))
        try #require(requests.count == 2)
        let changed = try object(requests[1])
        let content = try #require(changed["content"] as? String)
        #expect(content.count <= 2000)
        #expect(content.contains("[b-1](https://console.example.com/bulk/b-1?t=eu)"))
        let embeds = try #require(changed["embeds"] as? [[String: Any]])
        #expect(embeds.count == 1)
        #expect(embeds[0]["title"] as? String == "changed b-1")
        #expect(embeds[0]["description"] as? String == "PENDING → FAILED")
        #expect(embeds[0]["url"] as? String == "https://console.example.com/bulk/b-1?t=eu")
        #expect(embeds[0]["color"] as? Int == 0xD0_30_30)
        #expect((embeds[0]["timestamp"] as? String)?.hasSuffix("Z") == true)
        let mentions = try #require(changed["allowed_mentions"] as? [String: Any])
        #expect((mentions["parse"] as? [Any])?.isEmpty == true)
    }

    @Test func teamsGetsAMessageWithOneAdaptiveCard() async throws {
        let requests = try await post(.chat(.teams))
        try #require(requests.count == 2)
        let message = try object(requests[1])
        #expect(message["type"] as? String == "message")
        let attachments = try #require(message["attachments"] as? [[String: Any]])
        #expect(attachments.count == 1)
        #expect(attachments[0]["contentType"] as? String == "application/vnd.microsoft.card.adaptive")
        let card = try #require(attachments[0]["content"] as? [String: Any])
        #expect(card["type"] as? String == "AdaptiveCard")
        #expect(card["version"] as? String == "1.4")
        #expect(card["$schema"] as? String == "http://adaptivecards.io/schemas/adaptive-card.json")
        let body = try #require(card["body"] as? [[String: Any]])
        #expect(body.first?["type"] as? String == "TextBlock")
        #expect((body.first?["text"] as? String)?.contains("PENDING → FAILED") == true)
    }

    @Test func mattermostGetsMarkdownText() async throws {
        let requests = try await post(.chat(.mattermost))
        try #require(requests.count == 2)
        let text = try #require(try object(requests[1])["text"] as? String)
        let line = "*eu* changed [b-1](https://console.example.com/bulk/b-1?t=eu): PENDING → FAILED at 20"
        #expect(text.contains(line))
    }

    @Test func googleChatGetsTextWithAngleLinks() async throws {
        let requests = try await post(.chat(.googlechat))
        try #require(requests.count == 2)
        let created = try object(requests[0])
        #expect(created.keys.sorted() == ["text"])
        let text = try #require(created["text"] as? String)
        #expect(text.contains("created <https://console.example.com/bulk/b-1?t=eu|b-1>: PENDING at 20"))
    }

    @Test func batchingJoinsEventsIntoOneMessageUpToTheServiceLimit() async throws {
        let fixture = try RoutingJournal()
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        for index in 1...12 { try await fixture.set("b-\(index)", "PENDING") }
        let (discord, transport) = try chatSink(server, .chat(.discord), batch: 50)
        defer { transport.shutdown() }
        #expect(discord.preferredBatchSize == 10)
        #expect(
            try await dispatch(fixture.journal, [discord]) {
                try await fixture.journal.cursor(sink: discord.name) == 12
            })
        let embedCounts = try server.requests.map { try #require(try object($0)["embeds"] as? [Any]).count }
        #expect(embedCounts.reduce(0, +) == 12)
        #expect(embedCounts.allSatisfy { $0 <= 10 })
        #expect(embedCounts.count >= 2)
        let first = try object(server.requests[0])
        let lines = (first["content"] as? String)?.split(separator: "\n") ?? []
        #expect(lines.count == embedCounts[0])
        #expect(
            server.requests.allSatisfy { $0.header("webhook-id")?.hasPrefix("batch_") == true || embedCount($0) == 1 })
        for request in server.requests { try expectValidSignature(request, keys: [testKeyA, testKeyB]) }
    }

    @Test func aChatReceiverThatFailsOnceGetsTheMessageOnRetry() async throws {
        let fixture = try RoutingJournal()
        let calls = Mutex(0)
        let server = try LoopbackHTTPServer { _ in
            calls.withLock {
                $0 += 1
                return $0
            } == 1 ? .respond(status: 503) : .respond(status: 200)
        }
        defer { server.stop() }
        try await fixture.set("b-1", "FAILED")
        let (sink, transport) = try chatSink(server, .chat(.slack))
        defer { transport.shutdown() }
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 1 })
        let requests = server.requests
        try #require(requests.count == 2)
        #expect(requests[0].body == requests[1].body)
        #expect(requests[0].header("webhook-id") == requests[1].header("webhook-id"))
        for request in requests { try expectValidSignature(request, keys: [testKeyA, testKeyB]) }
    }

    @Test func aJSONTemplateRendersEscapedValuesAndEveryEventOfABatch() async throws {
        let fixture = try RoutingJournal()
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        let path = fixture.directory + "/hook.mustache"
        try """
        {"summary": "{{bulkId}} is {{status}} (was {{previousStatus}}) on {{target}}", "count": {{count}},
         "ids": [{{#events}}"{{id}}"{{^last()}},{{/last()}}{{/events}}], "link": "{{link}}", "kind": "{{kind}}"}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        try await fixture.set(#"b-"q\"#, "PENDING", target: "eu")
        try await fixture.set(#"b-"q\"#, "FAILED", target: "eu")
        let (sink, transport) = try chatSink(server, .template(path: path), batch: 1)
        defer { transport.shutdown() }
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 2 })
        try #require(server.requests.count == 2)
        let request = server.requests[1]
        #expect(request.header("Content-Type") == "application/json")
        try expectValidSignature(request, keys: [testKeyA, testKeyB])
        let rendered = try object(request)
        #expect(rendered["summary"] as? String == #"b-"q\ is FAILED (was PENDING) on eu"#)
        #expect(rendered["count"] as? Int == 1)
        #expect(rendered["kind"] as? String == "changed")
        #expect(rendered["ids"] as? [String] == [request.header("webhook-id") ?? "?"])
        #expect(rendered["link"] as? String == "https://console.example.com/bulk/b-%22q%5C?t=eu")
    }

    @Test func aTextTemplateIsSentAsPlainText() async throws {
        let fixture = try RoutingJournal()
        let server = try LoopbackHTTPServer { _ in .respond(status: 200) }
        defer { server.stop() }
        let path = fixture.directory + "/hook.txt"
        try "{{#events}}{{text}}\n{{/events}}".write(toFile: path, atomically: true, encoding: .utf8)
        for index in 1...3 { try await fixture.set("b-\(index)", "DONE") }
        let (sink, transport) = try chatSink(server, .template(path: path), batch: 10, link: nil)
        defer { transport.shutdown() }
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 3 })
        try #require(server.requests.count == 1)
        #expect(server.requests[0].header("Content-Type") == "text/plain; charset=utf-8")
        let lines = String(decoding: server.requests[0].body, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("[default] created b-1: DONE at 20"))
    }

    @Test func aTemplateThatDoesNotParseIsRefusedWithItsLine() throws {
        let directory = try makeTemporaryDirectory("template")
        let path = directory + "/broken.mustache"
        try "{\n  \"a\": \"{{#events}}x{{/evnts}}\"\n}".write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try WebhookBody(format: .template(path: path))
            Issue.record("a broken template was accepted")
        } catch let error as TemplateError {
            #expect(error.description.hasPrefix("template \(path):2:"))
            #expect(error.description.contains("does not parse"))
            #expect(!error.description.contains("\n"))
        }
        #expect(throws: TemplateError.self) { try WebhookBody(format: .template(path: directory + "/missing")) }
    }
}

private func embedCount(_ request: RecordedRequest) -> Int {
    ((try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])?["embeds"] as? [Any])?.count ?? 0
}
