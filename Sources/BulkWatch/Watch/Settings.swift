import Foundation

/// A raw setting as it arrives from a flag, an environment variable or the configuration file.
public enum SettingValue: Sendable, Equatable {
    case scalar(String)
    /// A YAML sequence or a repeated flag (`--sink`).
    case list([String])

    /// List keys also take one comma-separated string (environment variables, one-line YAML).
    var items: [String] {
        switch self {
        case .scalar(let text):
            text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case .list(let items): items
        }
    }
}

/// Why one setting is invalid; the caller prefixes where it came from (file and line, flag, variable).
public struct SettingError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A secret held elsewhere: configuration never carries the secret itself.
///
/// `env:NAME` reads an environment variable; `file:PATH` a file only its owner can read (relative
/// paths are relative to the configuration file); `credential:NAME` a systemd credential,
/// `$CREDENTIALS_DIRECTORY/NAME` (`LoadCredential=` in the unit).
public enum SecretReference: Sendable, Equatable, CustomStringConvertible {
    case environment(String)
    case file(String)
    case credential(String)

    public init(parsing text: String, relativeTo directory: String? = nil) throws(SettingError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("env:"), trimmed.count > 4 {
            self = .environment(String(trimmed.dropFirst(4)))
        } else if trimmed.hasPrefix("file:"), trimmed.count > 5 {
            let path = String(trimmed.dropFirst(5))
            if let directory, !path.hasPrefix("/") {
                self = .file(URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path)
            } else {
                self = .file(path)
            }
        } else if trimmed.hasPrefix("credential:"), trimmed.count > 11, !trimmed.dropFirst(11).contains("/") {
            self = .credential(String(trimmed.dropFirst(11)))
        } else {
            // Never echo the value: it may be the secret pasted in by mistake.
            throw SettingError("must be a reference — env:NAME, file:PATH or credential:NAME — never the secret itself")
        }
    }

    /// How the reference reads in messages (never the value).
    public var description: String {
        switch self {
        case .environment(let name): "env:\(name)"
        case .file(let path): "file:\(path)"
        case .credential(let name): "credential:\(name)"
        }
    }

    /// The secret's text, trimmed. Files must not be readable by group or others.
    public func resolve(environment: [String: String]) throws(SettingError) -> String {
        switch self {
        case .environment(let name):
            guard let value = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
                throw SettingError("\(self): the environment variable \(name) is not set")
            }
            return value
        case .file(let path):
            return try Self.readPrivateFile(path, what: "\(self)")
        case .credential(let name):
            guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw SettingError(
                    "\(self): CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the systemd unit)")
            }
            // systemd writes credential files itself; where it grants access by an ACL they stay
            // root's, so root is accepted as their owner too.
            return try Self.readPrivateFile(
                URL(fileURLWithPath: directory).appendingPathComponent(name).path, what: "\(self)",
                systemdCredential: true)
        }
    }

    /// True for a path inside `$CREDENTIALS_DIRECTORY` (also when given as a plain path).
    private static func isSystemdCredential(_ path: String) -> Bool {
        guard let directory = ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
            return false
        }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return path.hasPrefix(prefix) && !path.dropFirst(prefix.count).contains("/")
            && !path.contains("/../")
    }

    /// The most a secret file may hold; a secret, or an `oauthconf.xml`, is far smaller.
    public static let maxSecretFileBytes = 1 << 20

    /// The trimmed contents of a private file: a regular file (not a symbolic link), owned by the
    /// effective user, with no group or other permission bits.
    ///
    /// The checks are made on the open descriptor (`O_NOFOLLOW`, then `fstat`) and the content is
    /// read from that same descriptor, so the file cannot be swapped between check and read.
    /// Following a symlink would let anyone who can write the configured path point it at any
    /// owner-only file (a private key, `/proc/self/environ`) whose content would then be POSTed to
    /// the token URL; a file owned by someone else may be rewritten by them. A systemd credential
    /// (`systemdCredential`) may also be owned by root, which wrote it.
    public static func readPrivateFile(
        _ path: String, what: String, systemdCredential: Bool = false
    ) throws(SettingError) -> String {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP {
                throw SettingError("\(what): \(path) is a symbolic link; give the path of the file itself")
            }
            throw SettingError("\(what): \(path): \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SettingError("\(what): \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SettingError("\(what): \(path) is not a regular file")
        }
        let credential = systemdCredential || isSystemdCredential(path)
        guard info.st_uid == geteuid() || (credential && info.st_uid == 0) else {
            throw SettingError(
                "\(what): \(path) is owned by uid \(info.st_uid), not by the user bulkwatch runs as (uid \(geteuid()))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw SettingError("\(what): \(path) is readable by group or others; run: chmod 600 \(path)")
        }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw SettingError("\(what): \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            data.append(contentsOf: chunk[..<count])
            guard data.count <= maxSecretFileBytes else {
                throw SettingError("\(what): \(path) is larger than \(maxSecretFileBytes >> 20) MiB: not a secret file")
            }
        }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty else { throw SettingError("\(what): \(path) is empty") }
        return value
    }
}

/// The statuses after which a bulk operation no longer changes (adaptive polling).
public let defaultTerminalStatuses: [String] = [
    "FINISHED", "FINISHED_WITH_ERRORS", "FAILED", "ERROR", "CANCELLED", "COMPLETED", "DONE",
]

/// What one target may set; nil means "not set at this layer".
///
/// The same keys come from four layers, each overriding the next: command-line flags, the target's
/// own entry in the file, `BULKWATCH_*` environment variables, the file's `defaults:` — then the
/// built-in defaults (see ``ResolvedTargetSettings``).
public struct TargetSettings: Sendable, Equatable {
    public var endpoint: String?
    public var tokenURL: String?
    public var clientID: String?
    public var clientSecret: SecretReference?
    public var oauthconf: String?
    public var tokenAuth: ClientCredentials.Style?
    public var acceptLanguage: String?
    public var interval: Duration?
    public var activeInterval: Duration?
    public var terminalStatuses: [String]?
    public var timeout: Duration?
    public var maxBodySize: Int?
    public var expireAfter: Int?
    public var initial: DetectionPolicy.InitialMode?
    public var retain: Duration?
    public var sinks: [SinkSpec]?
    /// How long polls must keep failing before `bulkwatch.target.failing` (DESIGN.md §9).
    public var failingAfter: Duration?

    public init() {}

    /// `self` where set, `lower` elsewhere.
    public func overlaid(on lower: TargetSettings) -> TargetSettings {
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

    public typealias Setter = SettingLayer.Setter<TargetSettings>

    /// Every key, named as its command-line flag without the dashes.
    public static let keys: [String: Setter] = [
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
    public mutating func setSinks(_ specs: [SinkSpec], relativeTo directory: String?) throws(SettingError) {
        let specs = specs.map { $0.resolvingPaths(relativeTo: directory) }
        let names = specs.map(\.name)
        if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
            throw SettingError("sink \(duplicate) is given twice")
        }
        sinks = specs
    }

    /// The environment layer: `BULKWATCH_INTERVAL`, `BULKWATCH_ACTIVE_INTERVAL`, ... for the keys
    /// that make sense for every target (not endpoints or credentials, which are per target).
    public static func fromEnvironment(_ environment: [String: String]) throws(SettingError) -> TargetSettings {
        try SettingLayer.fromEnvironment(environment, keys: environmentKeys, setters: keys, into: TargetSettings())
    }

    public static let environmentKeys = [
        "interval", "active-interval", "terminal-statuses", "timeout", "max-body-size", "accept-language",
        "token-auth", "expire-after", "initial", "retain", "failing-after",
    ]
}

/// Process-wide settings (one state file, one listener, one log format), same layering.
public struct GlobalSettings: Sendable, Equatable {
    public enum LogFormat: String, Sendable {
        case text, json
    }

    public var state: String?
    public var listen: ListenAddress?
    public var logLevel: String?
    public var logFormat: LogFormat?
    public var caFile: String?
    public var fileMaxSize: Int?
    public var fileKeep: Int?
    public var webhookSecret: SecretReference?
    public var webhookTimeout: Duration?
    /// How long an `exec:` sink's program may run per batch.
    public var execTimeout: Duration?
    public var webhookBackoffBase: Duration?
    public var webhookBackoffCap: Duration?
    public var webhookMaxAge: Duration?

    public init() {}

    public func overlaid(on lower: GlobalSettings) -> GlobalSettings {
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

    public typealias Setter = SettingLayer.Setter<GlobalSettings>

    public static let keys: [String: Setter] = [
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
    public static func fromEnvironment(_ environment: [String: String]) throws(SettingError) -> GlobalSettings {
        try SettingLayer.fromEnvironment(environment, keys: environmentKeys, setters: keys, into: GlobalSettings())
    }

    public static let environmentKeys = [
        "state", "listen", "log-level", "log-format", "ca-file", "file-max-size", "file-keep", "webhook-timeout",
        "webhook-backoff-base", "webhook-backoff-cap", "webhook-max-age", "exec-timeout",
    ]
}

/// Where `/metrics`, `/healthz` and `/readyz` are served: `127.0.0.1:9464`, `[::1]:9464`, or a
/// bare port, which binds loopback — exposing metrics beyond the host must be asked for.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(SettingError) {
        var host = "127.0.0.1"
        var portText = Substring(text)
        if let colon = text.lastIndex(of: ":") {
            let hostPart = text[..<colon]
            portText = text[text.index(after: colon)...]
            if !hostPart.isEmpty {
                host = String(hostPart)
                if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            }
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw SettingError("invalid listen address '\(text)': expected HOST:PORT or PORT, e.g. 127.0.0.1:9464")
        }
        self.host = host
        self.port = port
    }

    public var isLoopback: Bool { host == "127.0.0.1" || host == "::1" || host == "localhost" }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// `64MiB`, `10MB`, `1000000`.
public enum ByteSize {
    public static func parse(_ text: String) -> Int? {
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000),
            ("GB", 1_000_000_000),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30),
        ]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Int(text.dropLast(suffix.count)), value >= 0 else { return nil }
            // A size past Int.max is refused rather than trapping (fuzz finding).
            let (bytes, overflow) = value.multipliedReportingOverflow(by: factor)
            return overflow ? nil : bytes
        }
        return Int(text).flatMap { $0 >= 0 ? $0 : nil }
    }
}

/// Applying raw values to a settings value by key: one implementation for every layer and struct.
public enum SettingLayer {
    public typealias Setter<Settings> =
        @Sendable (inout Settings, SettingValue, _ directory: String?) throws(SettingError) -> Void

    /// `BULKWATCH_<KEY>` for each of `keys`; a bad value names its variable.
    static func fromEnvironment<Settings>(
        _ environment: [String: String], keys: [String], setters: [String: Setter<Settings>], into settings: Settings
    ) throws(SettingError) -> Settings {
        var settings = settings
        for key in keys {
            let variable = "BULKWATCH_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
            guard let value = environment[variable], !value.isEmpty, let setter = setters[key] else { continue }
            do {
                try setter(&settings, .scalar(value), nil)
            } catch {
                throw SettingError("\(variable): \(error.message)")
            }
        }
        return settings
    }

    /// Flag values by key; a bad one is reported by `describe(key, error)` (the caller names its flag).
    public static func apply<Settings>(
        _ pairs: [(String, SettingValue)], setters: [String: Setter<Settings>], into settings: Settings,
        describe: (String, SettingError) -> any Error
    ) throws -> Settings {
        var settings = settings
        for (key, value) in pairs {
            guard let setter = setters[key] else { continue }
            do {
                try setter(&settings, value, nil)
            } catch {
                throw describe(key, error)
            }
        }
        return settings
    }
}

/// Value parsers shared by every layer, so a flag, a variable and a file key fail the same way.
public enum SettingParse {
    public static func scalar(_ value: SettingValue) throws(SettingError) -> String {
        guard case .scalar(let text) = value else { throw SettingError("expected a single value, not a list") }
        return text
    }

    public static func nonEmpty(_ value: SettingValue) throws(SettingError) -> String {
        let text = try scalar(value).trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { throw SettingError("must not be empty") }
        return text
    }

    public static func duration(_ value: SettingValue, atLeast minimum: Duration) throws(SettingError) -> Duration {
        let text = try scalar(value)
        guard let duration = Duration(parsing: text) else {
            throw SettingError("invalid duration '\(text)': use e.g. 300ms, 30s, 5m, 1h, 7d")
        }
        guard duration >= minimum else {
            throw SettingError("\(text) is too short (at least \(minimum.shortDescription))")
        }
        return duration
    }

    public static func httpURL(_ value: SettingValue) throws(SettingError) -> String {
        let text = try nonEmpty(value)
        try validateHTTPURL(text)
        return text
    }

    public static func validateHTTPURL(_ text: String) throws(SettingError) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            url.host?.isEmpty == false
        else {
            throw SettingError("invalid URL '\(text)': expected an http(s) URL")
        }
    }

    /// Refuses `https://user:pass@host/…` for an upstream URL: curl would not even use it (the
    /// Bearer header wins), and a password in a URL ends up in logs, `ps` and shell history.
    /// The URL is not echoed, since it holds the password.
    public static func validateNoUserinfo(_ text: String) throws(SettingError) {
        guard let components = URLComponents(string: text) else { return }
        if components.user != nil || components.password != nil {
            throw SettingError(
                "must not contain a user name or password (user:pass@host); "
                    + "credentials go in client-id and client-secret")
        }
    }

    static func path(_ path: String, relativeTo directory: String?) -> String {
        guard let directory, !path.hasPrefix("/") else { return path }
        return URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path
    }
}
