import ArgumentParser
import BulkWatch
import Foundation
import Logging

/// Options shared by `run` and `demo`: the pipeline after the source.
struct PipelineOptions: ParsableArguments {
    @Option(name: .customLong("state"), help: "SQLite state file (created 0600).")
    var statePath = "./bulkwatch.db"

    @Option(
        name: .customLong("sink"),
        help: "Where events go; repeatable: stdout, stdout:json, file:PATH, webhook:URL. Default: stdout.")
    var sinks: [String] = []

    @Option(help: "Consecutive successful polls an item must be missing from before it expires.")
    var expireAfter = 2

    @Option(help: "First run: 'emit' reports every existing item as created, 'skip' records them silently.")
    var initial = "emit"

    @Option(help: "Delivered events older than this are pruned from the state (e.g. 7d, 12h).")
    var retain = "7d"

    @Option(help: "Rotate a file sink when it would exceed this many bytes (e.g. 64MiB, 1000000).")
    var fileMaxSize = "64MiB"

    @Option(help: "Rotated files kept per file sink.")
    var fileKeep = 5

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(
        help: ArgumentHelp(
            "File with the webhook signing secret(s), whsec_..., one per line (must not be readable by group or others).",
            discussion: "Default: BULKWATCH_WEBHOOK_SECRET (space-separated for several)."))
    var webhookSecretFile: String?

    @Option(help: "Per-request webhook timeout, connection included.")
    var webhookTimeout = "10s"

    @Option(help: "First webhook retry delay (exponential backoff with full jitter from here).")
    var webhookBackoffBase = "1s"

    @Option(help: "Longest webhook retry delay (a longer Retry-After still wins).")
    var webhookBackoffCap = "5m"

    @Option(help: "A webhook event still failing after this long (from its detection time) is dead-lettered.")
    var webhookMaxAge = "24h"

    func validate() throws {
        for spec in sinks where SinkSpec(parsing: spec) == nil {
            throw ValidationError("invalid --sink '\(spec)': expected stdout, stdout:json, file:PATH or webhook:URL")
        }
        guard expireAfter >= 2 else {
            throw ValidationError("--expire-after must be at least 2: a single glitching poll must never expire items")
        }
        guard DetectionPolicy.InitialMode(rawValue: initial) != nil else {
            throw ValidationError("--initial must be 'emit' or 'skip', not '\(initial)'")
        }
        guard Duration(parsing: retain) != nil else { throw ValidationError("invalid --retain '\(retain)'") }
        guard ByteSize.parse(fileMaxSize).map({ $0 >= 1024 }) == true else {
            throw ValidationError("invalid --file-max-size '\(fileMaxSize)': use bytes or KiB/MiB/GiB, at least 1KiB")
        }
        guard fileKeep >= 1 else { throw ValidationError("--file-keep must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("invalid --log-level '\(logLevel)'") }
        for (option, value) in [
            ("--webhook-timeout", webhookTimeout), ("--webhook-backoff-base", webhookBackoffBase),
            ("--webhook-backoff-cap", webhookBackoffCap), ("--webhook-max-age", webhookMaxAge),
        ] {
            guard let duration = Duration(parsing: value), duration > .zero else {
                throw ValidationError("invalid \(option) '\(value)': use e.g. 300ms, 10s, 5m, 24h")
            }
        }
        let names = sinkSpecs.map(\.name)
        if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
            throw ValidationError("--sink \(duplicate) is given twice")
        }
    }

    /// Loads and checks the webhook secrets and options; throws ``ConfigurationError`` (exit 78).
    /// Secrets are only required when a webhook sink is configured, but a given file is always checked.
    func webhookSettings() throws -> WebhookSettings {
        let policy = DeliveryPolicy(
            backoffBase: Duration(parsing: webhookBackoffBase) ?? .seconds(1),
            backoffCap: Duration(parsing: webhookBackoffCap) ?? .seconds(300),
            maxAge: Duration(parsing: webhookMaxAge) ?? .seconds(86400))
        var settings = WebhookSettings(timeout: Duration(parsing: webhookTimeout) ?? .seconds(10), policy: policy)
        let needed = sinkSpecs.contains { if case .webhook = $0 { true } else { false } }
        guard needed || webhookSecretFile != nil else { return settings }
        settings.secrets = try WebhookSecretLoader.load(file: webhookSecretFile)
        return settings
    }

    var sinkSpecs: [SinkSpec] {
        let parsed = sinks.compactMap(SinkSpec.init(parsing:))
        return parsed.isEmpty ? [.stdout(.text)] : parsed
    }

    var policy: DetectionPolicy {
        DetectionPolicy(expireAfter: expireAfter, initial: DetectionPolicy.InitialMode(rawValue: initial) ?? .emit)
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Watch a DruID bulk-status endpoint until SIGINT/SIGTERM.",
        discussion: """
            The client secret is read from BULKWATCH_CLIENT_SECRET or --client-secret-file, never from the \
            command line. BULKWATCH_TOKEN supplies a fixed app token instead (no refresh).
            """)

    @Option(help: "Bulk-status URL, e.g. https://api.example.com/activityid/v1/user/bulk.")
    var endpoint: String?

    @Option(help: "OAuth2 token URL, e.g. https://auth.example.com/oauth2/token.")
    var tokenURL: String?

    @Option(name: .customLong("client-id"), help: "OAuth2 client id.")
    var clientID: String?

    @Option(help: "File holding the client secret (must not be readable by group or others).")
    var clientSecretFile: String?

    @Option(help: "How the client authenticates to the token URL: 'form' (body) or 'basic' (HTTP Basic).")
    var tokenAuth = "form"

    @Option(help: "Sent as Accept-Language.")
    var acceptLanguage: String?

    @Option(help: "Poll interval: 300ms, 30s, 5m.")
    var interval = "30s"

    @Option(help: "Per-request timeout.")
    var timeout = "30s"

    @Option(help: "Largest accepted response body (e.g. 512MiB).")
    var maxBodySize = "512MiB"

    @Option(help: "Extra CA bundle (PEM) to trust for TLS.")
    var caFile: String?

    @Flag(help: "Poll once, deliver, exit.")
    var once = false

    @Option(help: "Configuration file (not supported yet).")
    var config: String?

    @OptionGroup var pipeline: PipelineOptions

    func validate() throws {
        if config != nil { throw ValidationError("--config is not supported yet; pass options on the command line") }
        guard let endpoint else { throw ValidationError("missing --endpoint URL") }
        try Self.validateURL(endpoint, option: "--endpoint")
        guard let value = Duration(parsing: interval), value >= .milliseconds(50) else {
            throw ValidationError("invalid --interval '\(interval)': use e.g. 300ms, 30s, 5m (at least 50ms)")
        }
        guard let value = Duration(parsing: timeout), value > .zero else {
            throw ValidationError("invalid --timeout '\(timeout)': use e.g. 10s")
        }
        guard ByteSize.parse(maxBodySize) != nil else { throw ValidationError("invalid --max-body-size '\(maxBodySize)'") }
        guard tokenAuth == "form" || tokenAuth == "basic" else {
            throw ValidationError("--token-auth must be 'form' or 'basic'")
        }
        let staticToken = ProcessInfo.processInfo.environment["BULKWATCH_TOKEN"].map { !$0.isEmpty } ?? false
        if !staticToken {
            guard let tokenURL else {
                throw ValidationError("missing --token-url (or set BULKWATCH_TOKEN to use a fixed app token)")
            }
            try Self.validateURL(tokenURL, option: "--token-url")
            guard clientID != nil else { throw ValidationError("missing --client-id") }
        }
    }

    static func validateURL(_ text: String, option: String) throws {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            url.host?.isEmpty == false
        else {
            throw ValidationError("invalid \(option) '\(text)': expected an http(s) URL")
        }
    }

    func run() async throws {
        let logger = LogSetup.bootstrapStderr(level: pipeline.logLevel)
        let configuration = try runtimeConfiguration()
        let runtime: BulkWatchRuntime
        do {
            runtime = try BulkWatchRuntime(configuration: configuration, logger: logger)
        } catch {
            throw ConfigurationError("\(error)")
        }
        logger.info(
            "watching \(configuration.target.endpoint.url) every \(interval); state \(configuration.statePath)")
        try await runtime.run()
    }

    /// Resolves secrets and builds the validated configuration; throws ``ConfigurationError``.
    func runtimeConfiguration() throws -> RuntimeConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let tokenSource: TokenSource
        if let token = environment["BULKWATCH_TOKEN"], !token.isEmpty {
            tokenSource = .staticToken(token)
        } else {
            let secret = try SecretLoader.load(
                file: clientSecretFile, environmentVariable: "BULKWATCH_CLIENT_SECRET", what: "client secret")
            tokenSource = .clientCredentials(
                ClientCredentials(
                    tokenURL: tokenURL ?? "", clientID: clientID ?? "", clientSecret: secret,
                    style: tokenAuth == "basic" ? .httpBasic : .formBody,
                    timeout: Duration(parsing: timeout) ?? .seconds(30)))
        }
        var transport = TransportConfiguration()
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw ConfigurationError("--ca-file \(caFile): not a readable file")
            }
            transport.caFile = caFile
        }
        let endpoint = BulkEndpoint(
            url: self.endpoint ?? "", acceptLanguage: acceptLanguage, timeout: Duration(parsing: timeout) ?? .seconds(30),
            maxResponseBytes: ByteSize.parse(maxBodySize) ?? 512 << 20)
        let target = WatchTarget(
            endpoint: endpoint, interval: Duration(parsing: interval) ?? .seconds(30), policy: pipeline.policy,
            retain: Duration(parsing: pipeline.retain) ?? .seconds(7 * 86400))
        return RuntimeConfiguration(
            target: target, tokenSource: tokenSource, statePath: pipeline.statePath, sinks: pipeline.sinkSpecs,
            transport: transport, once: once, fileMaxBytes: Int64(ByteSize.parse(pipeline.fileMaxSize) ?? 64 << 20),
            fileKeep: pipeline.fileKeep, webhook: try pipeline.webhookSettings())
    }
}

/// Reads secrets from a file or an environment variable, never from the command line.
enum SecretLoader {
    static func load(file: String?, environmentVariable: String, what: String) throws -> Secret {
        if let file {
            return Secret(try readPrivateFile(file, what: what))
        }
        if let value = ProcessInfo.processInfo.environment[environmentVariable], !value.isEmpty {
            return Secret(value)
        }
        throw ConfigurationError("no \(what): set \(environmentVariable) or pass --\(what.replacingOccurrences(of: " ", with: "-"))-file")
    }

    /// The trimmed contents of a secret file that only its owner can read.
    static func readPrivateFile(_ file: String, what: String) throws -> String {
        var info = stat()
        guard stat(file, &info) == 0 else {
            throw ConfigurationError("\(what) file \(file): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw ConfigurationError(
                "\(what) file \(file) is readable by group or others; run: chmod 600 \(file)")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigurationError("\(what) file \(file): cannot read")
        }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty else { throw ConfigurationError("\(what) file \(file) is empty") }
        return value
    }
}

/// Webhook signing secrets from `--webhook-secret-file` (one per line) or
/// `BULKWATCH_WEBHOOK_SECRET` (space-separated). Errors name the source, never the secret.
enum WebhookSecretLoader {
    static func load(file: String?) throws -> [WebhookSecret] {
        let text: String
        let origin: String
        if let file {
            text = try SecretLoader.readPrivateFile(file, what: "webhook secret")
            origin = "webhook secret file \(file)"
        } else if let value = ProcessInfo.processInfo.environment["BULKWATCH_WEBHOOK_SECRET"],
            !value.trimmingCharacters(in: .whitespaces).isEmpty
        {
            text = value
            origin = "BULKWATCH_WEBHOOK_SECRET"
        } else {
            throw ConfigurationError(
                "a webhook sink needs a signing secret: set BULKWATCH_WEBHOOK_SECRET or pass --webhook-secret-file "
                    + "(create one with: bulkwatch webhook-secret)")
        }
        do {
            return try WebhookSecret.parseList(text)
        } catch {
            throw ConfigurationError("\(origin): \(error.description)")
        }
    }
}

/// `64MiB`, `10MB`, `1000000`.
enum ByteSize {
    static func parse(_ text: String) -> Int? {
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30),
        ]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Int(text.dropLast(suffix.count)), value >= 0 else { return nil }
            return value * factor
        }
        return Int(text).flatMap { $0 >= 0 ? $0 : nil }
    }
}

enum LogSetup {
    /// Logs to stderr (stdout belongs to the stdout sink), at `level`.
    static func bootstrapStderr(level: String) -> Logger {
        let parsed = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = parsed
            return handler
        }
        return Logger(label: "bulkwatch")
    }
}
