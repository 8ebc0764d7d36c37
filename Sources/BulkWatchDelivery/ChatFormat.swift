import BulkWatchStore
package import BulkWatchSupport
import Foundation

/// The body a webhook sink posts (DESIGN.md §9): CloudEvents (§4–5), a chat service's own
/// incoming-webhook JSON, or a Mustache template of the user's.
package enum WebhookFormat: Sendable, Equatable, Hashable {
    case cloudEvents
    case chat(ChatService)
    /// A Mustache template file (see ``TemplateFormat``).
    case template(path: String)

    /// `cloudevents`, `slack`, `discord`, `teams`, `mattermost`, `googlechat`, `template:PATH`.
    package init(parsing text: String) throws(SettingError) {
        if text == "cloudevents" {
            self = .cloudEvents
        } else if let service = ChatService(rawValue: text) {
            self = .chat(service)
        } else if text.hasPrefix("template:"), text.count > 9 {
            self = .template(path: String(text.dropFirst(9)))
        } else {
            let names = (["cloudevents"] + ChatService.allCases.map(\.rawValue) + ["template:PATH"])
            throw SettingError("unknown format '\(text)': expected \(names.joined(separator: ", "))")
        }
    }
}

/// Chat services whose incoming webhooks take a message of their own shape.
package enum ChatService: String, Sendable, CaseIterable {
    /// Slack incoming webhook: `text` (fallback and notifications) and `blocks` (mrkdwn sections).
    case slack
    /// Discord webhook: `content` (≤ 2000 characters) and `embeds` (≤ 10).
    case discord
    /// Microsoft Teams (Workflows "post to a channel when a webhook request is received"): a
    /// `message` with one Adaptive Card attachment.
    case teams
    /// Mattermost incoming webhook: `text` (Markdown).
    case mattermost
    /// Google Chat space webhook: `text`.
    case googlechat

    /// Events joined into one message at most: what the service's documented limits allow
    /// (Slack 50 blocks, Discord 10 embeds, Google Chat's 4 KB of text).
    var maxBatch: Int {
        switch self {
        case .slack: 50
        case .discord: 10
        case .teams: 50
        case .mattermost: 50
        case .googlechat: 20
        }
    }
}

/// What a person reads about one event: the fields every format shows.
struct ChatLine {
    var kind: JournalEvent.Kind
    var target: String?
    var subject: String
    var status: String?
    var previousStatus: String?
    var time: String
    var lastError: String?
    var since: String?
    var failedAttempts: String?
    var link: String?

    init(_ event: JournalEvent, link template: String?) {
        kind = event.kind
        target = event.target
        subject = event.subject
        time = event.time
        let data = EventFields.object(event.body)?["data"] as? [String: Any]
        status = EventFields.scalar(data?["status"])
        previousStatus = EventFields.scalar((data?["previous"] as? [String: Any])?["status"])
        lastError = EventFields.scalar(data?["lastError"])
        since = EventFields.scalar(data?["since"])
        failedAttempts = EventFields.scalar(data?["failedAttempts"])
        link = template.map { Self.expand($0, event: event, status: status) }
    }

    /// `{bulkId}`, `{subject}`, `{target}`, `{status}`, `{type}` replaced, each percent-encoded.
    static func expand(_ template: String, event: JournalEvent, status: String?) -> String {
        func encoded(_ text: String) -> String {
            text.addingPercentEncoding(
                withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#&")))
                ?? text
        }
        var text = template
        for (name, value) in [
            ("bulkId", event.subject), ("subject", event.subject), ("target", event.target ?? ""),
            ("status", status ?? ""), ("type", event.type),
        ] {
            text = text.replacingOccurrences(of: "{\(name)}", with: encoded(value))
        }
        return text
    }

    /// `changed`, `created`, …: what the line starts with.
    var verb: String {
        switch kind {
        case .created: "created"
        case .changed: "changed"
        case .expired: "expired"
        case .targetFailing: "target failing"
        case .targetRecovered: "target recovered"
        }
    }

    /// The status part: `PROCESSING → FAILED`, `PENDING`, `last FINISHED`, or the outage.
    var detail: String {
        switch kind {
        case .created: return status ?? "?"
        case .changed:
            if let previousStatus, previousStatus != status { return "\(previousStatus) → \(status ?? "?")" }
            return "\(status ?? "?") (updated)"
        case .expired: return "last \(status ?? "?")"
        case .targetFailing:
            return "\(failedAttempts ?? "?") failed poll(s) since \(since ?? "?"): \(lastError ?? "?")"
        case .targetRecovered:
            return "after \(failedAttempts ?? "?") failed poll(s) since \(since ?? "?")"
        }
    }

    /// One plain line: `[target] changed b-123: PROCESSING → FAILED at 2026-…Z`.
    var plain: String {
        let prefix = target.map { "[\($0)] " } ?? ""
        let what = kind.isBulk ? "\(verb) \(subject)" : verb
        return "\(prefix)\(what): \(detail) at \(time)" + (link.map { " \($0)" } ?? "")
    }

    /// The same line in a Markdown dialect: `[text](url)` (Discord, Teams, Mattermost) or
    /// `<url|text>` (Slack, Google Chat), with `escape` applied to upstream text.
    func markdown(linkStyle: LinkStyle, escape: (String) -> String = { $0 }) -> String {
        let prefix = target.map { "*\(escape($0))* " } ?? ""
        var name = "`\(subject.replacingOccurrences(of: "`", with: "'"))`"
        if let link {
            switch linkStyle {
            case .parentheses: name = "[\(escape(subject))](\(link))"
            case .angle: name = "<\(link)|\(escape(subject))>"
            }
        }
        let what = kind.isBulk ? "\(verb) \(name)" : verb
        return "\(prefix)\(what): \(escape(detail)) at \(time)"
    }

    enum LinkStyle { case parentheses, angle }

    /// Slack and Google Chat: `&`, `<`, `>` must be entities in message text.
    static func angleEscape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Colours for cards and embeds: red for failures, green for finished, amber otherwise.
    var colour: Int {
        if kind == .targetFailing { return 0xD0_30_30 }
        if kind == .targetRecovered { return 0x2E_A0_43 }
        if kind == .expired { return 0x80_80_80 }
        switch status {
        case "FAILED", "ERROR", "FINISHED_WITH_ERRORS", "CANCELLED": return 0xD0_30_30
        case "FINISHED", "COMPLETED", "DONE": return 0x2E_A0_43
        default: return 0xE0_A0_20
        }
    }
}

/// Renders events as one chat service's incoming-webhook JSON (several events: one message).
enum ChatFormat {
    static func body(_ service: ChatService, events: [JournalEvent], link: String?) -> [UInt8] {
        let lines = events.map { ChatLine($0, link: link) }
        let object: [String: Any]
        switch service {
        case .slack:
            let blocks: [[String: Any]] = lines.map { line in
                [
                    "type": "section",
                    "text": ["type": "mrkdwn", "text": line.markdown(linkStyle: .angle, escape: ChatLine.angleEscape)],
                ]
            }
            object = ["text": lines.map { ChatLine.angleEscape($0.plain) }.joined(separator: "\n"), "blocks": blocks]
        case .discord:
            let embeds: [[String: Any]] = lines.prefix(10).map { line in
                var embed: [String: Any] = [
                    "title": String("\(line.verb) \(line.kind.isBulk ? line.subject : line.target ?? "")".prefix(256)),
                    "description": String(line.detail.prefix(4096)),
                    "timestamp": line.time,
                    "color": line.colour,
                ]
                if let target = line.target { embed["footer"] = ["text": String(target.prefix(2048))] }
                if let link = line.link { embed["url"] = link }
                return embed
            }
            let content = lines.map { $0.markdown(linkStyle: .parentheses) }.joined(separator: "\n")
            // No @everyone or role pings from upstream text.
            object = [
                "content": content.count > 2000 ? String(content.prefix(1999)) + "…" : content,
                "embeds": embeds, "allowed_mentions": ["parse": [String]()],
            ]
        case .teams:
            let blocks: [[String: Any]] = lines.map { line in
                ["type": "TextBlock", "text": line.markdown(linkStyle: .parentheses), "wrap": true]
            }
            let card: [String: Any] = [
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": blocks,
            ]
            object = [
                "type": "message",
                "attachments": [
                    ["contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": NSNull(), "content": card]
                ],
            ]
        case .mattermost:
            object = ["text": lines.map { $0.markdown(linkStyle: .parentheses) }.joined(separator: "\n")]
        case .googlechat:
            object = [
                "text": lines.map { $0.markdown(linkStyle: .angle, escape: ChatLine.angleEscape) }.joined(
                    separator: "\n")
            ]
        }
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return Array(data)
    }
}

/// A webhook sink's body renderer, ready for delivery: built (and a template parsed) when the sink
/// is built, so a template that does not parse fails at start, not at the first event.
package struct WebhookBody: Sendable {
    let format: WebhookFormat
    let link: String?
    let template: TemplateFormat?

    package init(format: WebhookFormat = .cloudEvents, link: String? = nil) throws {
        self.format = format
        self.link = link
        if case .template(let path) = format {
            template = try TemplateFormat(path: path, link: link)
        } else {
            template = nil
        }
    }

    /// CloudEvents, the default (DESIGN.md §4–5).
    package static let cloudEvents = WebhookBody(format: .cloudEvents, link: nil, template: nil)

    private init(format: WebhookFormat, link: String?, template: TemplateFormat?) {
        self.format = format
        self.link = link
        self.template = template
    }

    /// The most events one message may hold for this format (nil: no limit of its own).
    var maxBatch: Int? {
        switch format {
        case .cloudEvents: nil
        case .chat(let service): service.maxBatch
        case .template: nil
        }
    }

    /// Body and content type for `events`; nil for CloudEvents (the sink's own encoding).
    func render(_ events: [JournalEvent]) -> (body: [UInt8], contentType: String)? {
        switch format {
        case .cloudEvents: return nil
        case .chat(let service): return (ChatFormat.body(service, events: events, link: link), "application/json")
        case .template: return template.map { ($0.render(events), $0.contentType) }
        }
    }
}
