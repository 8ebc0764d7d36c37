import BulkWatchStore
import Foundation
import Mustache

/// Why a `template=` file cannot be used: one line with the file and, for a parse error, where.
package struct TemplateError: Error, Sendable, CustomStringConvertible {
    package var description: String
}

/// A webhook body from the user's own Mustache template (DESIGN.md §9), for receivers that want
/// neither CloudEvents nor a chat service's shape.
///
/// The template sees one event's fields at the top level — `id`, `type`, `kind`, `subject`,
/// `bulkId`, `target`, `time`, `sequence`, `source`, `status`, `previousStatus`, `createdOn`,
/// `updatedOn`, `previousUpdatedOn`, `lastError`, `since`, `failedAttempts`, `link`, `text` (the
/// readable line), `data` (the item as received), flags `isCreated`, `isChanged`, `isExpired`,
/// `isFailing`, `isRecovered` — and `events` (every event of the message, with the same fields;
/// one unless `batch=`) and `count`. A template that starts like JSON (`[`, or `{` that is not a
/// `{{` tag) or a file named `*.json` or `*.json.mustache` renders JSON: values are escaped as
/// JSON string content and the body is sent as `application/json`; any other is text
/// (`text/plain`), unescaped.
package struct TemplateFormat: Sendable {
    let template: MustacheTemplate
    let contentType: String
    let link: String?

    package init(path: String, link: String? = nil) throws(TemplateError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot read" : "no such file"
            throw TemplateError(description: "template \(path): \(reason)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TemplateError(description: "template \(path): not UTF-8 text")
        }
        try self.init(text: text, name: path, link: link)
    }

    init(text: String, name: String, link: String? = nil) throws(TemplateError) {
        let trimmed = text.drop { $0.isWhitespace }
        // `{{` opens a tag, not a JSON object.
        let json =
            (trimmed.hasPrefix("{") && !trimmed.hasPrefix("{{")) || trimmed.hasPrefix("[")
            || name.hasSuffix(".json.mustache") || name.hasSuffix(".json")
        _ = Self.registerJSON
        // The pragma sits on line 1 with no newline, so line numbers in parse errors stay the user's.
        let pragma = json ? "{{% CONTENT_TYPE: JSON}}" : "{{% CONTENT_TYPE: TEXT}}"
        do {
            template = try MustacheTemplate(string: pragma + text)
        } catch let error as MustacheTemplate.ParserError {
            let line = error.context.lineNumber
            let column = line == 1 ? max(1, error.context.columnNumber - pragma.count) : error.context.columnNumber
            throw TemplateError(
                description: "template \(name):\(line):\(column): does not parse: \(Self.describe(error.error))")
        } catch {
            throw TemplateError(description: "template \(name): does not parse (\(error))")
        }
        contentType = json ? "application/json" : "text/plain; charset=utf-8"
        self.link = link
    }

    /// swift-mustache's parse errors in words.
    private static func describe(_ error: any Error) -> String {
        guard let error = error as? MustacheTemplate.Error else { return "\(error)" }
        switch error {
        case .sectionCloseNameIncorrect: return "a section is closed with a different name than it was opened with"
        case .unfinishedName: return "a tag is not closed with }}"
        case .expectedSectionEnd: return "a section ({{#name}} or {{^name}}) is never closed ({{/name}})"
        case .invalidSetDelimiter: return "a set-delimiter tag is malformed"
        case .transformAppliedToInheritanceSection: return "a transform is applied to an inheritance section"
        case .illegalTokenInsideInheritSection: return "an illegal tag inside an inherited section"
        case .textInsideInheritSection: return "text inside an inherited section"
        case .invalidConfigVariableSyntax: return "a {{% pragma }} is malformed"
        case .unrecognisedConfigVariable: return "an unknown {{% pragma }}"
        @unknown default: return "\(error)"
        }
    }

    /// Registered once, before the first template is parsed.
    private static let registerJSON: Void = MustacheContentTypes.register(JSONStringContent(), named: "JSON")

    func render(_ events: [JournalEvent]) -> [UInt8] {
        let contexts = events.map(context(of:))
        var top = contexts.first ?? [:]
        top["events"] = contexts
        top["count"] = contexts.count
        return Array(template.render(top).utf8)
    }

    /// Everything the template may name for one event (missing values are simply absent).
    func context(of event: JournalEvent) -> [String: Any] {
        let object = EventFields.object(event.body) ?? [:]
        let data = object["data"] as? [String: Any] ?? [:]
        let previous = data["previous"] as? [String: Any]
        let line = ChatLine(event, link: link)
        var context: [String: Any] = [
            "id": event.id, "type": event.type, "kind": event.kind.rawValue, "subject": event.subject,
            "time": event.time, "sequence": String(event.sequence), "text": line.plain, "data": data,
            "isCreated": event.kind == .created, "isChanged": event.kind == .changed,
            "isExpired": event.kind == .expired, "isFailing": event.kind == .targetFailing,
            "isRecovered": event.kind == .targetRecovered,
        ]
        if event.kind.isBulk { context["bulkId"] = event.subject }
        let optional: [(String, String?)] = [
            ("target", event.target), ("source", EventFields.scalar(object["source"])),
            ("status", EventFields.scalar(data["status"])), ("previousStatus", EventFields.scalar(previous?["status"])),
            ("createdOn", EventFields.scalar(data["createdOn"])), ("updatedOn", EventFields.scalar(data["updatedOn"])),
            ("previousUpdatedOn", EventFields.scalar(previous?["updatedOn"])),
            ("lastError", EventFields.scalar(data["lastError"])), ("since", EventFields.scalar(data["since"])),
            ("failedAttempts", EventFields.scalar(data["failedAttempts"])), ("link", line.link),
        ]
        for (key, value) in optional {
            if let value { context[key] = value }
        }
        return context
    }
}

/// Escapes a value as the inside of a JSON string, so `"{{status}}"` stays valid JSON whatever
/// upstream sent.
private struct JSONStringContent: MustacheContentType {
    func escapeText(_ text: String) -> String {
        var out: [UInt8] = []
        JSONText.appendString(text, to: &out)
        return String(decoding: out.dropFirst().dropLast(), as: UTF8.self)
    }
}
