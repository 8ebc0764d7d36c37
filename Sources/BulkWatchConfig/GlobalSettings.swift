package import BulkWatchSupport
import Foundation

/// Process-wide settings (one state file, one listener, one log format), same layering.
package struct GlobalSettings: Sendable, Equatable {
    package enum LogFormat: String, Sendable {
        case text, json
    }

    package var state: String?
    package var listen: ListenAddress?
    package var logLevel: String?
    package var logFormat: LogFormat?
    package var caFile: String?
    package var fileMaxSize: Int?
    package var fileKeep: Int?
    package var webhookSecret: SecretReference?
    package var webhookTimeout: Duration?
    /// How long an `exec:` sink's program may run per batch.
    package var execTimeout: Duration?
    package var webhookBackoffBase: Duration?
    package var webhookBackoffCap: Duration?
    package var webhookMaxAge: Duration?

    package init() {}

    package func overlaid(on lower: GlobalSettings) -> GlobalSettings {
        var merged = lower
        merged.state = state ?? lower.state
        merged.listen = listen ?? lower.listen
        merged.logLevel = logLevel ?? lower.logLevel
        merged.logFormat = logFormat ?? lower.logFormat
        merged.caFile = caFile ?? lower.caFile
        merged.fileMaxSize = fileMaxSize ?? lower.fileMaxSize
        merged.fileKeep = fileKeep ?? lower.fileKeep
        merged.webhookSecret = webhookSecret ?? lower.webhookSecret
        merged.webhookTimeout = webhookTimeout ?? lower.webhookTimeout
        merged.execTimeout = execTimeout ?? lower.execTimeout
        merged.webhookBackoffBase = webhookBackoffBase ?? lower.webhookBackoffBase
        merged.webhookBackoffCap = webhookBackoffCap ?? lower.webhookBackoffCap
        merged.webhookMaxAge = webhookMaxAge ?? lower.webhookMaxAge
        return merged
    }

    package typealias Setter = SettingLayer.Setter<GlobalSettings>

    package static let keys: [String: Setter] = [
        "state": { s, v, directory throws(SettingError) in
            s.state = SettingParse.path(try SettingParse.nonEmpty(v), relativeTo: directory)
        },
        "listen": { s, v, _ throws(SettingError) in s.listen = try ListenAddress(parsing: try SettingParse.scalar(v)) },
        "log-level": { s, v, _ throws(SettingError) in
            let text = try SettingParse.scalar(v)
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(text) else { throw SettingError("must be one of \(levels.joined(separator: ", "))") }
            s.logLevel = text
        },
        "log-format": { s, v, _ throws(SettingError) in
            let text = try SettingParse.scalar(v)
            guard let format = LogFormat(rawValue: text) else { throw SettingError("must be 'text' or 'json'") }
            s.logFormat = format
        },
        "ca-file": { s, v, directory throws(SettingError) in
            s.caFile = SettingParse.path(try SettingParse.nonEmpty(v), relativeTo: directory)
        },
        "file-max-size": { s, v, _ throws(SettingError) in
            guard let size = ByteSize.parse(try SettingParse.scalar(v)), size >= 1024 else {
                throw SettingError("invalid size: use bytes or KiB/MiB/GiB, at least 1KiB")
            }
            s.fileMaxSize = size
        },
        "file-keep": { s, v, _ throws(SettingError) in
            guard let keep = Int(try SettingParse.scalar(v)), keep >= 1 else {
                throw SettingError("must be at least 1")
            }
            s.fileKeep = keep
        },
        "webhook-secret": { s, v, directory throws(SettingError) in
            s.webhookSecret = try SecretReference(parsing: try SettingParse.scalar(v), relativeTo: directory)
        },
        "exec-timeout": { s, v, _ throws(SettingError) in
            s.execTimeout = try SettingParse.duration(v, atLeast: .milliseconds(1))
        },
        "webhook-timeout": { s, v, _ throws(SettingError) in
            s.webhookTimeout = try SettingParse.duration(v, atLeast: .milliseconds(1))
        },
        "webhook-backoff-base": { s, v, _ throws(SettingError) in
            s.webhookBackoffBase = try SettingParse.duration(v, atLeast: .milliseconds(1))
        },
        "webhook-backoff-cap": { s, v, _ throws(SettingError) in
            s.webhookBackoffCap = try SettingParse.duration(v, atLeast: .milliseconds(1))
        },
        "webhook-max-age": { s, v, _ throws(SettingError) in
            s.webhookMaxAge = try SettingParse.duration(v, atLeast: .seconds(1))
        },
    ]

    /// `BULKWATCH_STATE`, `BULKWATCH_LISTEN`, `BULKWATCH_LOG_LEVEL`, `BULKWATCH_LOG_FORMAT`, ...
    package static func fromEnvironment(_ environment: [String: String]) throws(SettingError) -> GlobalSettings {
        try SettingLayer.fromEnvironment(environment, keys: environmentKeys, setters: keys, into: GlobalSettings())
    }

    package static let environmentKeys = [
        "state", "listen", "log-level", "log-format", "ca-file", "file-max-size", "file-keep", "webhook-timeout",
        "webhook-backoff-base", "webhook-backoff-cap", "webhook-max-age", "exec-timeout",
    ]
}
