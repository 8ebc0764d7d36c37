package import BulkWatchDelivery
package import BulkWatchSupport
import Foundation

/// A `--sink` specification (DESIGN.md §6, §9): where events go, which of them, and (webhooks) in
/// which body format.
///
/// Syntax — bulkwatch's own parameters ride on the spec, and are removed from the URL that is
/// called and from the sink's ``name`` (which keys its cursor: changing a filter or a format keeps
/// the cursor):
/// - `stdout`, `stdout:json`, `file:PATH`, each optionally followed by `?name=value&…`;
/// - `webhook:URL`, with bulkwatch's parameters among the URL's query parameters;
/// - `exec:/PATH[?batch=N&arg=A&env=NAME]`, an operator's program run per batch (``ExecSink``).
///
/// Parameters: `types`, `statuses`, `previous-statuses`, `targets` (comma-separated; see
/// ``SinkFilter``) for every sink; `batch`, `format`, `link`, `template` for webhooks. For a file,
/// the part after the *last* `?` is read as parameters only when it is `name=value` pairs; a path
/// that itself ends in such a part is written with a trailing `?` (`file:/odd?a=b?`).
package struct SinkSpec: Sendable, Equatable, Hashable {
    package enum Destination: Sendable, Equatable, Hashable {
        case stdout(StdoutSink.Format)
        case file(path: String)
        /// `batch` is 1 unless `batch=N` was given.
        case webhook(url: String, batch: Int)
        /// The program's absolute path, its batch size, arguments, and the variables it may see
        /// (names of the watcher's, or `NAME=value`).
        case exec(program: String, batch: Int, arguments: [String], environment: [String])
    }

    package var destination: Destination
    package var filter: SinkFilter
    /// The webhook body; always ``WebhookFormat/cloudEvents`` for stdout and files.
    package var format: WebhookFormat
    /// A link for chat messages, with `{bulkId}`, `{target}`, `{status}`, `{type}` placeholders.
    package var link: String?

    package init(
        destination: Destination, filter: SinkFilter = SinkFilter(), format: WebhookFormat = .cloudEvents,
        link: String? = nil
    ) {
        self.destination = destination
        self.filter = filter
        self.format = format
        self.link = link
    }

    package static func stdout(_ format: StdoutSink.Format) -> SinkSpec { SinkSpec(destination: .stdout(format)) }
    package static func file(path: String) -> SinkSpec { SinkSpec(destination: .file(path: path)) }
    package static func webhook(url: String, batch: Int) -> SinkSpec {
        SinkSpec(destination: .webhook(url: url, batch: batch))
    }

    /// Parses a spec; nil when malformed (``parse(_:)`` says why).
    package init?(parsing text: String) {
        guard let spec = try? Self.parse(text) else { return nil }
        self = spec
    }

    /// The sink's name, which keys its cursor: `stdout`, `stdout:json`, `file:PATH`, `webhook:URL`
    /// without bulkwatch's parameters.
    package var name: String {
        switch destination {
        case .stdout(let format): format == .text ? "stdout" : "stdout:json"
        case .file(let path): "file:\(path)"
        case .webhook(let url, _): "webhook:\(url)"
        case .exec(let program, _, _, _): "exec:\(program)"
        }
    }

    package var isWebhook: Bool {
        if case .webhook = destination { true } else { false }
    }

    /// Stdout shows operational events unless its filter names types (DESIGN.md §9).
    package var receivesOperationalByDefault: Bool {
        if case .stdout = destination { true } else { false }
    }

    static let webhookParameterNames = ["batch", "format", "link", "template"]
    static let execParameterNames = ["batch", "arg", "args", "env"]

    /// Parses `stdout[:json|:text][?…]`, `file:PATH[?…]`, `webhook:URL`; the error says what is wrong.
    package static func parse(_ text: String) throws(SettingError) -> SinkSpec {
        if text.hasPrefix("webhook:") {
            return try webhook(String(text.dropFirst(8)))
        }
        var base = text
        var parameters: [(String, String)] = []
        if let mark = text.lastIndex(of: "?") {
            let query = String(text[text.index(after: mark)...])
            if query.isEmpty {
                base = String(text[..<mark])
            } else if let pairs = Self.pairs(query) {
                base = String(text[..<mark])
                parameters = pairs
            }
        }
        var spec: SinkSpec
        if base == "stdout" || base == "stdout:text" {
            spec = .stdout(.text)
        } else if base == "stdout:json" {
            spec = .stdout(.json)
        } else if base.hasPrefix("file:"), base.count > 5 {
            spec = .file(path: String(base.dropFirst(5)))
        } else if base.hasPrefix("exec:") {
            let program = String(base.dropFirst(5))
            guard program.hasPrefix("/"), program.count > 1 else {
                throw SettingError("exec: needs the program's absolute path (exec:/usr/local/bin/notify)")
            }
            spec = SinkSpec(destination: .exec(program: program, batch: 1, arguments: [], environment: []))
        } else {
            throw SettingError("expected stdout, stdout:json, file:PATH, webhook:URL or exec:/PROGRAM")
        }
        for (name, value) in parameters {
            try spec.apply(name, values: value.split(separator: ",").map(String.init))
        }
        return spec
    }

    /// `a=b&c=d` as pairs; nil when it is not that shape (then it is part of a file path).
    private static func pairs(_ query: String) -> [(String, String)]? {
        var pairs: [(String, String)] = []
        for piece in query.split(separator: "&", omittingEmptySubsequences: false) {
            guard let equals = piece.firstIndex(of: "="), equals != piece.startIndex else { return nil }
            let name = piece[..<equals]
            guard name.allSatisfy({ $0.isLetter || $0 == "-" }) else { return nil }
            let value = String(piece[piece.index(after: equals)...])
            pairs.append((String(name), value.removingPercentEncoding ?? value))
        }
        return pairs
    }

    private static func webhook(_ text: String) throws(SettingError) -> SinkSpec {
        guard var components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", components.host?.isEmpty == false
        else { throw SettingError("expected webhook:URL with an http(s) URL") }
        var spec = SinkSpec.webhook(url: text, batch: 1)
        let ours = Set(SinkFilter.parameterNames + webhookParameterNames)
        if let items = components.queryItems, items.contains(where: { ours.contains($0.name) }) {
            for item in items where ours.contains(item.name) {
                let value = item.value ?? ""
                let values =
                    item.name == "link" || item.name == "template"
                    ? [value] : value.split(separator: ",").map(String.init)
                try spec.apply(item.name, values: values)
            }
            let rest = items.filter { !ours.contains($0.name) }
            components.queryItems = rest.isEmpty ? nil : rest
        }
        guard let url = components.string else { throw SettingError("expected webhook:URL with an http(s) URL") }
        spec.setURL(url)
        return spec
    }

    private mutating func setURL(_ url: String) {
        if case .webhook(_, let batch) = destination { destination = .webhook(url: url, batch: batch) }
    }

    /// Applies one parameter, from the spec's query or from a YAML sink object's key.
    mutating func apply(_ name: String, values: [String]) throws(SettingError) {
        if SinkFilter.parameterNames.contains(name) {
            try filter.apply(name, values: values)
            return
        }
        if case .exec(let program, let batch, let arguments, let environment) = destination {
            switch name {
            case "batch":
                let value = values.joined(separator: ",").trimmingCharacters(in: .whitespaces)
                guard let size = Int(value), (1...10_000).contains(size) else {
                    throw SettingError("batch must be an integer from 1 to 10000")
                }
                destination = .exec(program: program, batch: size, arguments: arguments, environment: environment)
            case "arg", "args":
                destination = .exec(
                    program: program, batch: batch, arguments: arguments + values, environment: environment)
            case "env":
                guard values.allSatisfy({ !$0.isEmpty && !$0.hasPrefix("=") }) else {
                    throw SettingError("env takes variable names (or NAME=value)")
                }
                destination = .exec(
                    program: program, batch: batch, arguments: arguments, environment: environment + values)
            default:
                throw SettingError("'\(name)' does not apply to exec sinks (they take batch, args, env)")
            }
            return
        }
        guard Self.webhookParameterNames.contains(name) else {
            let known = (SinkFilter.parameterNames + Self.webhookParameterNames + ["args", "env"]).joined(
                separator: ", ")
            throw SettingError("unknown sink parameter '\(name)' (known: \(known))")
        }
        guard case .webhook(let url, _) = destination else {
            throw SettingError("'\(name)' applies to webhook sinks only")
        }
        let value = values.joined(separator: ",").trimmingCharacters(in: .whitespaces)
        switch name {
        case "batch":
            guard let size = Int(value), (1...10_000).contains(size) else {
                throw SettingError("batch must be an integer from 1 to 10000")
            }
            destination = .webhook(url: url, batch: size)
        case "format":
            format = try WebhookFormat(parsing: value)
        case "template":
            guard !value.isEmpty else { throw SettingError("template needs a file path") }
            format = .template(path: value)
        default:
            guard !value.isEmpty else { throw SettingError("link needs a URL template") }
            link = value
        }
    }

    /// Relative file and template paths made relative to `directory` (the configuration file's).
    func resolvingPaths(relativeTo directory: String?) -> SinkSpec {
        var copy = self
        if case .file(let path) = destination {
            copy.destination = .file(path: SettingParse.path(path, relativeTo: directory))
        }
        if case .template(let path) = format {
            copy.format = .template(path: SettingParse.path(path, relativeTo: directory))
        }
        return copy
    }

    /// A YAML sink object: `{sink: "webhook:https://…", types: [changed], statuses: [FAILED], …}`.
    /// Keys are the same parameters as in the spec string and win over them.
    package static func parse(object: [(String, SettingValue)]) throws(SettingError) -> SinkSpec {
        guard let sink = object.first(where: { $0.0 == "sink" }) else {
            throw SettingError("a sink object needs 'sink: SPEC' (e.g. sink: webhook:https://…)")
        }
        var spec = try parse(try SettingParse.nonEmpty(sink.1))
        for (name, value) in object where name != "sink" {
            let values: [String]
            switch value {
            case .scalar(let text):
                values = name == "link" || name == "template" || name == "args" || name == "arg" ? [text] : value.items
            case .list(let items): values = items
            }
            try spec.apply(name, values: values)
        }
        return spec
    }
}
