package import BulkWatchAuth
package import BulkWatchDetect
package import BulkWatchSupport
import Foundation

/// What one target may set; nil means "not set at this layer".
///
/// The same keys come from four layers, each overriding the next: command-line flags, the target's
/// own entry in the file, `BULKWATCH_*` environment variables, the file's `defaults:` — then the
/// built-in defaults (see ``ResolvedTargetSettings``).
package struct TargetSettings: Sendable, Equatable {
    package var endpoint: String?
    package var tokenURL: String?
    package var clientID: String?
    package var clientSecret: SecretReference?
    package var oauthconf: String?
    package var tokenAuth: ClientCredentials.Style?
    package var acceptLanguage: String?
    package var interval: Duration?
    package var activeInterval: Duration?
    package var terminalStatuses: [String]?
    package var timeout: Duration?
    package var maxBodySize: Int?
    package var expireAfter: Int?
    package var initial: DetectionPolicy.InitialMode?
    package var retain: Duration?
    package var sinks: [SinkSpec]?
    /// How long polls must keep failing before `bulkwatch.target.failing` (DESIGN.md §9).
    package var failingAfter: Duration?

    package init() {}

    /// `self` where set, `lower` elsewhere.
    package func overlaid(on lower: TargetSettings) -> TargetSettings {
        var merged = lower
        merged.endpoint = endpoint ?? lower.endpoint
        merged.tokenURL = tokenURL ?? lower.tokenURL
        merged.clientID = clientID ?? lower.clientID
        merged.clientSecret = clientSecret ?? lower.clientSecret
        merged.oauthconf = oauthconf ?? lower.oauthconf
        merged.tokenAuth = tokenAuth ?? lower.tokenAuth
        merged.acceptLanguage = acceptLanguage ?? lower.acceptLanguage
        merged.interval = interval ?? lower.interval
        merged.activeInterval = activeInterval ?? lower.activeInterval
        merged.terminalStatuses = terminalStatuses ?? lower.terminalStatuses
        merged.timeout = timeout ?? lower.timeout
        merged.maxBodySize = maxBodySize ?? lower.maxBodySize
        merged.expireAfter = expireAfter ?? lower.expireAfter
        merged.initial = initial ?? lower.initial
        merged.retain = retain ?? lower.retain
        merged.sinks = sinks ?? lower.sinks
        merged.failingAfter = failingAfter ?? lower.failingAfter
        return merged
    }

    package typealias Setter = SettingLayer.Setter<TargetSettings>

    /// Every key, named as its command-line flag without the dashes.
    package static let keys: [String: Setter] = [
        "endpoint": { s, v, _ throws(SettingError) in s.endpoint = try SettingParse.httpURL(v) },
        "token-url": { s, v, _ throws(SettingError) in s.tokenURL = try SettingParse.httpURL(v) },
        "client-id": { s, v, _ throws(SettingError) in s.clientID = try SettingParse.nonEmpty(v) },
        "client-secret": { s, v, directory throws(SettingError) in
            s.clientSecret = try SecretReference(parsing: try SettingParse.scalar(v), relativeTo: directory)
        },
        "oauthconf": { s, v, directory throws(SettingError) in
            let text = try SettingParse.nonEmpty(v)
            s.oauthconf = text.hasPrefix("credential:") ? text : SettingParse.path(text, relativeTo: directory)
        },
        "token-auth": { s, v, _ throws(SettingError) in
            switch try SettingParse.scalar(v) {
            case "form": s.tokenAuth = .formBody
            case "basic": s.tokenAuth = .httpBasic
            case let other: throw SettingError("must be 'form' or 'basic', not '\(other)'")
            }
        },
        "accept-language": { s, v, _ throws(SettingError) in s.acceptLanguage = try SettingParse.nonEmpty(v) },
        "interval": { s, v, _ throws(SettingError) in
            s.interval = try SettingParse.duration(v, atLeast: .milliseconds(50))
        },
        "active-interval": { s, v, _ throws(SettingError) in
            s.activeInterval = try SettingParse.duration(v, atLeast: .milliseconds(50))
        },
        "terminal-statuses": { s, v, _ throws(SettingError) in
            let items = v.items
            guard !items.isEmpty else { throw SettingError("needs at least one status") }
            s.terminalStatuses = items
        },
        "timeout": { s, v, _ throws(SettingError) in s.timeout = try SettingParse.duration(v, atLeast: .milliseconds(1))
        },
        "max-body-size": { s, v, _ throws(SettingError) in
            guard let size = ByteSize.parse(try SettingParse.scalar(v)), size >= 1024 else {
                throw SettingError("invalid size: use bytes or KiB/MiB/GiB, at least 1KiB")
            }
            s.maxBodySize = size
        },
        "expire-after": { s, v, _ throws(SettingError) in
            guard let count = Int(try SettingParse.scalar(v)), count >= 2 else {
                throw SettingError("must be an integer of at least 2: a single glitching poll must never expire items")
            }
            s.expireAfter = count
        },
        "initial": { s, v, _ throws(SettingError) in
            let text = try SettingParse.scalar(v)
            guard let mode = DetectionPolicy.InitialMode(rawValue: text) else {
                throw SettingError("must be 'emit' or 'skip', not '\(text)'")
            }
            s.initial = mode
        },
        "retain": { s, v, _ throws(SettingError) in s.retain = try SettingParse.duration(v, atLeast: .seconds(1)) },
        "sinks": { s, v, directory throws(SettingError) in
            var specs: [SinkSpec] = []
            for text in v.items {
                do throws(SettingError) {
                    specs.append(try SinkSpec.parse(text))
                } catch {
                    throw SettingError("invalid sink '\(text)': \(error.message)")
                }
            }
            try s.setSinks(specs, relativeTo: directory)
        },
        "failing-after": { s, v, _ throws(SettingError) in
            s.failingAfter = try SettingParse.duration(v, atLeast: .milliseconds(1))
        },
    ]

    /// Sets the sinks (strings or YAML sink objects), paths relative to `directory`, refusing a
    /// sink given twice.
    package mutating func setSinks(_ specs: [SinkSpec], relativeTo directory: String?) throws(SettingError) {
        let specs = specs.map { $0.resolvingPaths(relativeTo: directory) }
        let names = specs.map(\.name)
        if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
            throw SettingError("sink \(duplicate) is given twice")
        }
        sinks = specs
    }

    /// The environment layer: `BULKWATCH_INTERVAL`, `BULKWATCH_ACTIVE_INTERVAL`, ... for the keys
    /// that make sense for every target (not endpoints or credentials, which are per target).
    package static func fromEnvironment(_ environment: [String: String]) throws(SettingError) -> TargetSettings {
        try SettingLayer.fromEnvironment(environment, keys: environmentKeys, setters: keys, into: TargetSettings())
    }

    package static let environmentKeys = [
        "interval", "active-interval", "terminal-statuses", "timeout", "max-body-size", "accept-language",
        "token-auth", "expire-after", "initial", "retain", "failing-after",
    ]
}
