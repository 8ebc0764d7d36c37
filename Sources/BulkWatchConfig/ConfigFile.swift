import BulkWatchSupport
import Foundation
import Yams

/// A configuration file problem, with where it is: `bulkwatch.yaml:12: targets[0].interval: ...`.
package struct ConfigFileError: Error, Sendable, CustomStringConvertible {
    package var path: String
    package var line: Int?
    package var key: String?
    package var message: String

    package var description: String {
        var text = path
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}

/// One named target of the configuration file.
package struct ConfiguredTarget: Sendable, Equatable {
    package var name: String
    package var settings: TargetSettings
    /// Where its entry starts, for messages about it.
    package var line: Int?
}

/// The parsed `--config` file (YAML): process-wide settings, `defaults:` for every target, and
/// `targets:`. Secrets stay references here; they are read at resolution time.
///
/// Keys are the command-line flags without dashes, so what an operator knows from `--help` is
/// what they write in the file. Unknown keys are errors, not warnings: a misspelt `intervl` would
/// otherwise silently poll at the default rate for months.
package struct ConfigFile: Sendable, Equatable {
    package var global: GlobalSettings
    package var defaults: TargetSettings
    package var targets: [ConfiguredTarget]

    /// Reads and parses `path`; relative paths inside are relative to its directory.
    package static func load(path: String) throws(ConfigFileError) -> ConfigFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot read" : "no such file"
            throw ConfigFileError(path: path, message: reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigFileError(path: path, message: "not UTF-8 text")
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(text, path: path, directory: directory)
    }

    /// Parses configuration text. `path` only labels messages; `directory` anchors relative paths.
    package static func parse(_ text: String, path: String, directory: String? = nil) throws(ConfigFileError)
        -> ConfigFile
    {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigFileError(path: path, line: Self.line(of: error), message: Self.summary(of: error))
        } catch {
            throw ConfigFileError(path: path, message: "not valid YAML: \(error)")
        }
        var file = ConfigFile(global: GlobalSettings(), defaults: TargetSettings(), targets: [])
        guard let root else {
            throw ConfigFileError(path: path, message: "the file is empty; it needs a 'targets:' list")
        }
        guard let mapping = root.mapping else {
            throw ConfigFileError(
                path: path, line: root.mark?.line, message: "expected a mapping of settings at the top level")
        }
        let parser = Parser(path: path, directory: directory)
        var sawTargets = false
        for (keyNode, value) in try parser.entries(of: mapping, at: nil) {
            let key = keyNode.string ?? ""
            switch key {
            case "defaults":
                guard let defaults = value.mapping else {
                    throw parser.error(value, key: key, "expected a mapping of target settings")
                }
                file.defaults = try parser.targetSettings(defaults, at: "defaults", allowName: false).settings
            case "targets":
                sawTargets = true
                guard let list = value.sequence else {
                    throw parser.error(value, key: key, "expected a list of targets (each '- name: ...')")
                }
                var names: Set<String> = []
                for (index, entry) in list.enumerated() {
                    let where_ = "targets[\(index)]"
                    guard let entryMapping = entry.mapping else {
                        throw parser.error(entry, key: where_, "expected a mapping with at least name and endpoint")
                    }
                    let (name, settings) = try parser.targetSettings(entryMapping, at: where_, allowName: true)
                    guard let name else { throw parser.error(entry, key: where_, "missing 'name'") }
                    guard names.insert(name).inserted else {
                        throw parser.error(entry, key: "\(where_).name", "target '\(name)' is defined twice")
                    }
                    file.targets.append(ConfiguredTarget(name: name, settings: settings, line: entry.mark?.line))
                }
            default:
                guard let setter = GlobalSettings.keys[key] else {
                    throw parser.error(keyNode, key: key, Parser.unknownKeyMessage(key, known: Parser.topLevelKeys))
                }
                do {
                    try setter(&file.global, try parser.value(value, key: key), directory)
                } catch let error as SettingError {
                    throw parser.error(value, key: key, error.message)
                } catch let error as ConfigFileError {
                    throw error
                } catch {
                    throw parser.error(value, key: key, "\(error)")
                }
            }
        }
        guard sawTargets, !file.targets.isEmpty else {
            throw ConfigFileError(path: path, line: nil, key: "targets", message: "at least one target is required")
        }
        return file
    }

    private static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): mark.line
        case .duplicatedKeysInMapping(_, let context): context.mark.line
        default: nil
        }
    }

    private static func summary(of error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _),
            .composer(let context, let problem, _, _):
            "not valid YAML: \(problem)" + (context.map { " \($0.text)" } ?? "")
        case .duplicatedKeysInMapping(let duplicates, _):
            "\(duplicates.map { "'\($0)'" }.joined(separator: ", ")) given twice in this mapping"
        default: "not valid YAML: \(error)"
        }
    }

    /// Walks the YAML tree, turning each node into settings or a located error.
    private struct Parser {
        var path: String
        var directory: String?

        static let topLevelKeys = ["defaults", "targets"] + GlobalSettings.keys.keys.sorted()

        func error(_ node: Node, key: String?, _ message: String) -> ConfigFileError {
            ConfigFileError(path: path, line: node.mark?.line, key: key, message: message)
        }

        /// The mapping's pairs, refusing duplicate and non-string keys (YAML allows both; we don't).
        func entries(of mapping: Node.Mapping, at prefix: String?) throws(ConfigFileError) -> [(Node, Node)] {
            var seen: Set<String> = []
            var pairs: [(Node, Node)] = []
            for (key, value) in mapping {
                guard let name = key.scalar?.string else {
                    throw error(key, key: prefix, "keys must be plain strings")
                }
                let qualified = prefix.map { "\($0).\(name)" } ?? name
                guard seen.insert(name).inserted else { throw error(key, key: qualified, "given twice") }
                pairs.append((key, value))
            }
            return pairs
        }

        /// A scalar or a list of scalars; nested mappings are not setting values.
        func value(_ node: Node, key: String) throws(ConfigFileError) -> SettingValue {
            switch node {
            case .scalar(let scalar):
                return .scalar(scalar.string)
            case .sequence(let sequence):
                var items: [String] = []
                for item in sequence {
                    guard let text = item.scalar?.string else {
                        throw error(item, key: key, "list items must be plain values")
                    }
                    items.append(text)
                }
                return .list(items)
            case .mapping:
                throw error(node, key: key, "expected a value or a list, not a mapping")
            case .alias:
                throw error(node, key: key, "aliases are not supported")
            }
        }

        func targetSettings(
            _ mapping: Node.Mapping, at prefix: String, allowName: Bool
        ) throws(ConfigFileError) -> (name: String?, settings: TargetSettings) {
            var settings = TargetSettings()
            var name: String?
            for (keyNode, valueNode) in try entries(of: mapping, at: prefix) {
                let key = keyNode.string ?? ""
                let qualified = "\(prefix).\(key)"
                if key == "name", allowName {
                    guard case .scalar(let scalar) = valueNode, Self.isValidName(scalar.string) else {
                        throw error(
                            valueNode, key: qualified,
                            "must be letters, digits, '.', '_' or '-' (it keys the target's state)")
                    }
                    name = scalar.string
                    continue
                }
                if key == "sinks", case .sequence(let items) = valueNode, items.contains(where: { $0.mapping != nil }) {
                    try sinkObjects(items, into: &settings, at: qualified)
                    continue
                }
                guard let setter = TargetSettings.keys[key] else {
                    let known = (allowName ? ["name"] : []) + TargetSettings.keys.keys.sorted()
                    throw error(keyNode, key: qualified, Self.unknownKeyMessage(key, known: known))
                }
                let value = try value(valueNode, key: qualified)
                do {
                    try setter(&settings, value, directory)
                } catch {
                    throw self.error(valueNode, key: qualified, error.message)
                }
            }
            return (name, settings)
        }

        /// A `sinks:` list with sink objects (`- {sink: "webhook:https://…", types: [changed]}`)
        /// among plain spec strings (DESIGN.md §9).
        func sinkObjects(
            _ items: Node.Sequence, into settings: inout TargetSettings, at key: String
        ) throws(ConfigFileError) {
            var specs: [SinkSpec] = []
            for (index, item) in items.enumerated() {
                let itemKey = "\(key)[\(index)]"
                do {
                    if let mapping = item.mapping {
                        var pairs: [(String, SettingValue)] = []
                        for (keyNode, valueNode) in try entries(of: mapping, at: itemKey) {
                            pairs.append((keyNode.string ?? "", try value(valueNode, key: itemKey)))
                        }
                        specs.append(try SinkSpec.parse(object: pairs))
                    } else if let text = item.scalar?.string {
                        specs.append(try SinkSpec.parse(text))
                    } else {
                        throw SettingError("expected a sink spec or a sink object")
                    }
                } catch let error as SettingError {
                    throw self.error(item, key: itemKey, error.message)
                } catch let error as ConfigFileError {
                    throw error
                } catch {
                    throw self.error(item, key: itemKey, "\(error)")
                }
            }
            do {
                try settings.setSinks(specs, relativeTo: directory)
            } catch {
                throw self.error(items.first ?? Node(""), key: key, error.message)
            }
        }

        static func isValidName(_ name: String) -> Bool {
            !name.isEmpty && name.count <= 64
                && name.unicodeScalars.allSatisfy {
                    CharacterSet.alphanumerics.contains($0) && $0.isASCII || "._-".unicodeScalars.contains($0)
                }
        }

        /// "unknown key" plus the closest known key when it is a likely typo.
        static func unknownKeyMessage(_ key: String, known: [String]) -> String {
            let best = known.map { ($0, editDistance($0, key)) }.min { $0.1 < $1.1 }
            if let (suggestion, distance) = best, distance <= max(2, key.count / 4) {
                return "unknown key (did you mean '\(suggestion)'?)"
            }
            return "unknown key; known keys: \(known.joined(separator: ", "))"
        }

        static func editDistance(_ a: String, _ b: String) -> Int {
            let a = Array(a), b = Array(b)
            guard !a.isEmpty else { return b.count }
            guard !b.isEmpty else { return a.count }
            var previous = Array(0...b.count)
            for i in 1...a.count {
                var current = [i] + Array(repeating: 0, count: b.count)
                for j in 1...b.count {
                    current[j] = min(
                        previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                }
                previous = current
            }
            return previous[b.count]
        }
    }
}
