import ArgumentParser
import BulkWatch
import Foundation
import Logging

/// Re-sends events to one sink, with their original event ids (receivers dedupe on them).
///
/// - `--since SEQ` rewinds the sink's durable cursor to SEQ: a running `bulkwatch run` notices
///   within its idle poll (about a second) and re-delivers every event after SEQ in order; if none
///   runs, the next `run` does. Works for every sink kind; nothing is sent by this command.
/// - `--dead-letters` and `--id ID` send now, one signed POST per event through the same webhook
///   code path as `run` (so they need the webhook secret), one attempt each; a dead letter that
///   is delivered is removed, one that fails stays and the command exits 1.
struct RedeliverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redeliver",
        abstract: "Re-send events to a sink: rewind its cursor, or re-send its dead letters now.")

    @Option(name: .customLong("state"), help: "SQLite state file, or a postgres:// URL.")
    var statePath = "./bulkwatch.db"

    @Option(
        help: ArgumentHelp(
            "The sink, as `bulkwatch deliveries` names it (e.g. webhook:https://example.com/hook).",
            discussion: "Or the sink spec as given to run: a webhook's format=, template= and link= then shape "
                + "what is re-sent (webhook:https://hooks.slack.com/services/…?format=slack)."))
    var sink: String

    @Option(help: "Rewind the sink's cursor so every event with a greater sequence is delivered again.")
    var since: Int64?

    @Flag(help: "Re-send this webhook sink's dead letters now.")
    var deadLetters = false

    @Option(help: "Re-send the event with this id to this webhook sink now.")
    var id: String?

    @Option(help: "File with the webhook signing secret(s); default BULKWATCH_WEBHOOK_SECRET.")
    var webhookSecretFile: String?

    @Option(help: "Per-request webhook timeout.")
    var webhookTimeout = "10s"

    func validate() throws {
        let chosen = [since != nil, deadLetters, id != nil].filter { $0 }.count
        guard chosen == 1 else { throw ValidationError("pass exactly one of --since SEQ, --dead-letters, --id ID") }
        if let since, since < 0 { throw ValidationError("--since must be >= 0") }
        if since == nil, !sink.hasPrefix("webhook:") {
            throw ValidationError("--dead-letters and --id re-send to webhook sinks only; use --since for \(sink)")
        }
        guard let timeout = Duration(parsing: webhookTimeout), timeout > .zero else {
            throw ValidationError("invalid --webhook-timeout '\(webhookTimeout)'")
        }
    }

    func run() async throws { try await StateFile.with(statePath) { try await run(journal: $0) } }

    func run(journal: any Store) async throws {
        // A full spec names the same sink (filters and formats are not part of the name) and says
        // how a webhook's body is shaped; a bare name is used as it is.
        let spec = try? SinkSpec.parse(sink)
        let named = spec?.name ?? self.sink
        let sink = try await storedName(journal, named)
        if let since {
            let last = try await journal.lastSequence()
            try await journal.rewindCursor(sink: sink, to: min(since, last))
            print(
                "\(URLRedaction.sinkName(sink)): cursor set to \(min(since, last)); "
                    + "\(max(0, last - since)) event(s) will be re-delivered "
                    + "by the running or next `bulkwatch run`")
            return
        }
        let secrets = try WebhookSecretLoader.load(file: webhookSecretFile)
        let transport = CurlTransport()
        defer { transport.shutdown() }
        let url = String(sink.dropFirst("webhook:".count))
        let body: WebhookBody
        do {
            body = try WebhookBody(format: spec?.format ?? .cloudEvents, link: spec?.link)
        } catch {
            throw ConfigurationError("\(error)")
        }
        let webhook = WebhookSink(
            url: url, signer: WebhookSigner(secrets: secrets), transport: transport, batchSize: 1,
            timeout: Duration(parsing: webhookTimeout) ?? Defaults.webhookTimeout, body: body)
        let letters = try await journal.deadLetters(sink: sink)
        var targets: [(event: JournalEvent, isDeadLetter: Bool)] = []
        if let id {
            guard let event = try await journal.event(id: id) else {
                throw ConfigurationError("no event with id \(id) in \(statePath) (it may have been pruned)")
            }
            targets = [(event, letters.contains { $0.sequence == event.sequence })]
        } else {
            for letter in letters {
                guard let event = letter.event else {
                    print("\(letter.sequence) \(letter.eventID): no longer in the journal; skipped")
                    continue
                }
                targets.append((event, true))
            }
            if targets.isEmpty { print("\(URLRedaction.sinkName(sink)): no dead letters") }
        }
        var failed = 0
        for (event, isDeadLetter) in targets {
            do {
                try await webhook.deliver([event])
                if isDeadLetter { _ = try await journal.removeDeadLetter(sink: sink, sequence: event.sequence) }
                print("\(event.sequence) \(event.id): delivered")
            } catch {
                failed += 1
                print("\(event.sequence) \(event.id): failed: \(error)")
            }
        }
        if failed > 0 { throw RuntimeFailure("\(failed) of \(targets.count) event(s) not delivered") }
    }
}

extension RedeliverCommand {
    /// The sink's full name (its cursor key). `deliveries` shows webhook URLs redacted, so the name
    /// it printed is accepted too when exactly one stored sink displays that way.
    fileprivate func storedName(_ journal: any Store, _ sink: String) async throws -> String {
        let stored = try await journal.sinkStatuses().map(\.sink)
        if stored.contains(sink) { return sink }
        let matching = stored.filter { URLRedaction.sinkName($0) == sink }
        return matching.count == 1 ? matching[0] : sink
    }
}
