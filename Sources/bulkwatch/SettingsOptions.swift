import ArgumentParser
import BulkWatch
import Foundation
import Logging

/// Flags that set what one target does. Every one is optional: a flag given overrides the
/// configuration file for every target; a flag left out leaves the file (or the default) alone.
struct TargetOptions: ParsableArguments {
    @Option(help: "Bulk-status URL, e.g. https://api.example.com/activityid/v1/user/bulk (no user:pass@).")
    var endpoint: String?

    @Option(help: "OAuth2 token URL, e.g. https://auth.example.com/oauth2/token (no user:pass@).")
    var tokenURL: String?

    @Option(name: .customLong("client-id"), help: "OAuth2 client id.")
    var clientID: String?

    @Option(help: "File holding the client secret: a regular file (no symlink) you own, mode 0600 or stricter.")
    var clientSecretFile: String?

    @Option(
        help: "DruID's oauthconf.xml: client id, secret, token endpoint and bulk endpoint in one file (mode 0600).")
    var oauthconf: String?

    @Option(help: "How the client authenticates to the token URL: 'form' (body) or 'basic' (HTTP Basic). [form]")
    var tokenAuth: String?

    @Option(help: "Sent as Accept-Language (CR, LF or NUL refused).")
    var acceptLanguage: String?

    @Option(help: "Poll interval: 300ms, 30s, 5m. [30s]")
    var interval: String?

    @Option(help: "Poll interval while any operation is in progress (non-terminal status), e.g. 5s. [off]")
    var activeInterval: String?

    @Option(
        help: "Comma-separated terminal statuses. [FINISHED,FINISHED_WITH_ERRORS,FAILED,ERROR,CANCELLED,COMPLETED,DONE]"
    )
    var terminalStatuses: String?

    @Option(help: "Per-request timeout. [30s]")
    var timeout: String?

    @Option(help: "Largest accepted (decompressed) response body, e.g. 128MiB. [64MiB]")
    var maxBodySize: String?

    @Option(
        name: .customLong("sink"),
        help: ArgumentHelp(
            "Where events go; repeatable: stdout, stdout:json, file:PATH, webhook:URL[?batch=N]. [stdout]",
            discussion: "Filters: ?types=changed&statuses=FAILED&previous-statuses=..&targets=..; webhooks also "
                + "format=slack|discord|teams|mattermost|googlechat, template=PATH, link=URL-TEMPLATE (README)."))
    var sinks: [String] = []

    @Option(help: "Consecutive successful polls an item must be missing from before it expires. [2]")
    var expireAfter: String?

    @Option(help: "First run: 'emit' reports every existing item as created, 'skip' records them silently. [emit]")
    var initial: String?

    @Option(
        help:
            "This target's events older than this are pruned once every sink configured for it delivered them (e.g. 7d, 12h). [7d]"
    )
    var retain: String?

    @Option(help: "Polls failing this long raise one bulkwatch.target.failing event (e.g. 5m). [5m]")
    var failingAfter: String?

    /// The flag layer, checked with the same parsers as the file and the environment.
    func settings() throws -> TargetSettings {
        let pairs: [(String, String?)] = [
            ("endpoint", endpoint), ("token-url", tokenURL), ("client-id", clientID), ("oauthconf", oauthconf),
            ("token-auth", tokenAuth), ("accept-language", acceptLanguage), ("interval", interval),
            ("active-interval", activeInterval), ("terminal-statuses", terminalStatuses), ("timeout", timeout),
            ("max-body-size", maxBodySize), ("expire-after", expireAfter), ("initial", initial), ("retain", retain),
            ("failing-after", failingAfter),
        ]
        var settings = try Self.settings(
            pairs.compactMap { key, value in value.map { (key, SettingValue.scalar($0)) } }
                + (sinks.isEmpty ? [] : [("sinks", .list(sinks))]))
        if let clientSecretFile { settings.clientSecret = .file(clientSecretFile) }
        return settings
    }

    /// Applies flag values by key; a bad one is a usage error naming its flag.
    static func settings(_ pairs: [(String, SettingValue)]) throws -> TargetSettings {
        try SettingLayer.apply(pairs, setters: TargetSettings.keys, into: TargetSettings()) { key, error in
            ValidationError("--\(key == "sinks" ? "sink" : key): \(error.message)")
        }
    }
}

/// Flags for the process as a whole: state, listener, logging, sinks' shared settings.
struct ProcessOptions: ParsableArguments {
    @Option(
        name: .customLong("state"),
        help:
            "SQLite state file (created 0600; another program's database is refused; one run or demo at a time holds STATE.lock), or postgres://user@host:5432/db?sslmode=verify-full for replicated mode (password from PGPASSWORD, PGPASSFILE or BULKWATCH_STATE_PASSWORD_FILE, never in the URL). [./bulkwatch.db]"
    )
    var statePath: String?

    @Option(help: "Serve /metrics, /healthz, /readyz on HOST:PORT (a bare PORT binds 127.0.0.1). [off]")
    var listen: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. [info]")
    var logLevel: String?

    @Option(help: "Log format on stderr: text or json (one object per line). [text]")
    var logFormat: String?

    @Option(help: "Extra CA certificates (PEM) to trust for TLS, in addition to the system bundle.")
    var caFile: String?

    @Option(help: "Rotate a file sink when it would exceed this many bytes (e.g. 64MiB). [64MiB]")
    var fileMaxSize: String?

    @Option(help: "Rotated files kept per file sink. [5]")
    var fileKeep: String?

    @Option(
        help: ArgumentHelp(
            "File with the webhook signing secret(s), whsec_..., one per line (a regular file you own, mode 0600).",
            discussion: "Default: BULKWATCH_WEBHOOK_SECRET (space-separated for several)."))
    var webhookSecretFile: String?

    @Option(help: "Per-request webhook timeout, connection included. [10s]")
    var webhookTimeout: String?

    @Option(help: "First webhook retry delay (exponential backoff with full jitter from here). [1s]")
    var webhookBackoffBase: String?

    @Option(help: "Longest webhook retry delay (a longer Retry-After still wins). [5m]")
    var webhookBackoffCap: String?

    @Option(help: "A webhook event still failing after this long (from its detection time) is dead-lettered. [24h]")
    var webhookMaxAge: String?

    @Option(help: "How long an exec: sink's program may run per batch before it is stopped and retried. [30s]")
    var execTimeout: String?

    func settings() throws -> GlobalSettings {
        let pairs: [(String, String?)] = [
            ("state", statePath), ("listen", listen), ("log-level", logLevel), ("log-format", logFormat),
            ("ca-file", caFile), ("file-max-size", fileMaxSize), ("file-keep", fileKeep),
            ("webhook-timeout", webhookTimeout), ("webhook-backoff-base", webhookBackoffBase),
            ("webhook-backoff-cap", webhookBackoffCap), ("webhook-max-age", webhookMaxAge),
            ("exec-timeout", execTimeout),
        ]
        var settings = try SettingLayer.apply(
            pairs.compactMap { key, value in value.map { (key, SettingValue.scalar($0)) } },
            setters: GlobalSettings.keys,
            into: GlobalSettings()
        ) { key, error in ValidationError("--\(key): \(error.message)") }
        if let webhookSecretFile { settings.webhookSecret = .file(webhookSecretFile) }
        return settings
    }
}

enum LogSetup {
    /// Logs to stderr (stdout belongs to the stdout sink), at `level`, as text or JSON lines.
    static func bootstrapStderr(level: String, format: GlobalSettings.LogFormat = .text) -> Logger {
        let parsed = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = EscapingLogHandler(StreamLogHandler.standardError(label: label))
                handler.logLevel = parsed
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = parsed
                return handler
            }
        }
        return Logger(label: "bulkwatch")
    }
}

/// Webhook signing secrets from `--webhook-secret-file` (one per line), `BULKWATCH_WEBHOOK_SECRET`
/// (space-separated) or the systemd credential `webhook-secret`. Errors name the source, never the secret.
enum WebhookSecretLoader {
    static func load(file: String?) throws -> [WebhookSecret] {
        let environment = ProcessInfo.processInfo.environment
        let reference: SecretReference
        if let file {
            reference = .file(file)
        } else if let value = environment["BULKWATCH_WEBHOOK_SECRET"],
            !value.trimmingCharacters(in: .whitespaces).isEmpty
        {
            reference = .environment("BULKWATCH_WEBHOOK_SECRET")
        } else if let directory = environment["CREDENTIALS_DIRECTORY"],
            FileManager.default.fileExists(atPath: directory + "/webhook-secret")
        {
            reference = .credential("webhook-secret")
        } else {
            throw ConfigurationError(
                "a webhook sink needs a signing secret: set BULKWATCH_WEBHOOK_SECRET or pass --webhook-secret-file "
                    + "(create one with: bulkwatch webhook-secret)")
        }
        do {
            return try WebhookSecret.parseList(try reference.resolve(environment: environment))
        } catch let error as SettingError {
            throw ConfigurationError(error.message)
        } catch {
            throw ConfigurationError("\(reference): \(error)")
        }
    }
}

/// `run` and `check` take the same flags: both validate them the same way.
func validateOptions(config: String?, target: TargetOptions, process: ProcessOptions) throws {
    _ = try target.settings()
    _ = try process.settings()
    if config == nil { try target.validateSingleTarget() }
}

extension TargetOptions {
    /// Without `--config`, the flags are the whole target: what is missing is a usage error (64).
    func validateSingleTarget() throws {
        guard endpoint != nil || oauthconf != nil else {
            throw ValidationError("missing --endpoint URL (or --oauthconf FILE, or --config FILE)")
        }
        let staticToken = ProcessInfo.processInfo.environment["BULKWATCH_TOKEN"].map { !$0.isEmpty } ?? false
        guard !staticToken, oauthconf == nil else { return }
        guard tokenURL != nil else {
            throw ValidationError("missing --token-url (or --oauthconf FILE, or BULKWATCH_TOKEN for a fixed app token)")
        }
        guard clientID != nil else { throw ValidationError("missing --client-id") }
    }
}
