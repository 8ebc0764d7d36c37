import Foundation
import BulkWatchAuth
import BulkWatchDelivery
import BulkWatchDetect
import BulkWatchSource
import BulkWatchSupport
import BulkWatchTransport
import BulkWatchWatcher

/// Turns flags, the environment and an optional configuration file into a ``RuntimeConfiguration``,
/// reading every secret on the way.
///
/// Precedence, per setting and per target, highest first:
/// 1. command-line flags (they apply to every target),
/// 2. the target's own entry in the file,
/// 3. `BULKWATCH_*` environment variables,
/// 4. the file's `defaults:` and top-level settings,
/// 5. the built-in defaults below.
///
/// Environment variables sit below a target's own entry but above the file's defaults, so a
/// container can retune every target (`BULKWATCH_INTERVAL=10s`) without editing the file, while
/// a deliberate per-target value in the file still wins.
package struct ConfigurationResolver: Sendable {
    package var configPath: String?
    package var flagGlobal: GlobalSettings
    package var flagTarget: TargetSettings
    package var once: Bool
    package var environment: [String: String]
    /// The sinks of a target that names none: stdout for `run`; none when an embedding program
    /// added sinks in code (``BulkWatchBuilder``).
    package var defaultSinks: [SinkSpec] = [.stdout(.text)]

    package init(
        configPath: String?, flagGlobal: GlobalSettings = GlobalSettings(),
        flagTarget: TargetSettings = TargetSettings(),
        once: Bool = false, environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.configPath = configPath
        self.flagGlobal = flagGlobal
        self.flagTarget = flagTarget
        self.once = once
        self.environment = environment
    }

    /// The settings that apply before targets: state, listen, logging. Cheap, no secrets read.
    package func globalSettings() throws(RuntimeConfigurationError) -> GlobalSettings {
        let file = try loadFile()
        return try layeredGlobal(file)
    }

    /// Everything, resolved and validated. Errors are one line and name where the problem is.
    package func resolve() throws(RuntimeConfigurationError) -> RuntimeConfiguration {
        let file = try loadFile()
        let global = try layeredGlobal(file)
        let environmentTarget: TargetSettings
        do {
            environmentTarget = try TargetSettings.fromEnvironment(environment)
        } catch {
            throw RuntimeConfigurationError(description: error.message)
        }
        let entries = file?.targets ?? [ConfiguredTarget(name: "default", settings: TargetSettings(), line: nil)]
        let lower = environmentTarget.overlaid(on: file?.defaults ?? TargetSettings())
        var plans: [TargetPlan] = []
        for entry in entries {
            let merged = flagTarget.overlaid(on: entry.settings.overlaid(on: lower))
            let label = file == nil ? "" : "target \(entry.name): "
            do {
                plans.append(try plan(name: entry.name, merged))
            } catch {
                throw RuntimeConfigurationError(description: label + error.message)
            }
        }
        var transport = TransportConfiguration()
        if let caFile = global.caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw RuntimeConfigurationError(description: "ca-file \(caFile): not a readable file")
            }
            transport.caFile = caFile
        }
        var configuration = RuntimeConfiguration(
            targets: plans, statePath: global.state ?? Defaults.state, transport: transport, once: once,
            fileMaxBytes: Int64(global.fileMaxSize ?? Defaults.fileMaxSize),
            fileKeep: global.fileKeep ?? Defaults.fileKeep,
            webhook: try webhookSettings(global, plans: plans), listen: global.listen)
        configuration.logSettings = [global.logLevel ?? "info", global.logFormat?.rawValue ?? "text"]
        configuration.execTimeout = global.execTimeout ?? Defaults.execTimeout
        do {
            try configuration.validate()
        } catch let error as RuntimeConfigurationError {
            throw error
        } catch {
            throw RuntimeConfigurationError(description: "\(error)")
        }
        return configuration
    }

    private func loadFile() throws(RuntimeConfigurationError) -> ConfigFile? {
        guard let configPath else { return nil }
        do {
            return try ConfigFile.load(path: configPath)
        } catch {
            throw RuntimeConfigurationError(description: error.description)
        }
    }

    private func layeredGlobal(_ file: ConfigFile?) throws(RuntimeConfigurationError) -> GlobalSettings {
        do {
            let fromEnvironment = try GlobalSettings.fromEnvironment(environment)
            return flagGlobal.overlaid(on: fromEnvironment.overlaid(on: file?.global ?? GlobalSettings()))
        } catch {
            throw RuntimeConfigurationError(description: error.message)
        }
    }

    private func plan(name: String, _ settings: TargetSettings) throws(SettingError) -> TargetPlan {
        let conf = try oauthConf(settings)
        let endpointURL: String
        if let endpoint = settings.endpoint {
            endpointURL = endpoint
        } else if let conf {
            endpointURL = try conf.file.requireBulkEndpoint(path: conf.path)
        } else {
            throw SettingError(
                "missing endpoint (the bulk-status URL, e.g. https://api.example.com/activityid/v1/user/bulk)")
        }
        try Self.checkUpstreamURL(endpointURL, key: "endpoint")
        if let tokenURL = settings.tokenURL { try Self.checkUpstreamURL(tokenURL, key: "token-url") }
        if let language = settings.acceptLanguage, let problem = HeaderValidation.problem(inValue: language) {
            throw SettingError("accept-language \(problem): it would be sent as a header")
        }
        let timeout = settings.timeout ?? Defaults.timeout
        let endpoint = BulkEndpoint(
            url: endpointURL, acceptLanguage: settings.acceptLanguage, timeout: timeout,
            maxResponseBytes: settings.maxBodySize ?? Defaults.maxBodySize)
        var target = WatchTarget(
            name: name, endpoint: endpoint, interval: settings.interval ?? Defaults.interval,
            activeInterval: settings.activeInterval,
            terminalStatuses: Set(settings.terminalStatuses ?? Defaults.terminalStatuses),
            policy: DetectionPolicy(expireAfter: settings.expireAfter ?? Defaults.expireAfter, initial: settings.initial ?? .emit),
            retain: settings.retain ?? Defaults.retain)
        target.failingAfter = settings.failingAfter ?? Defaults.failingAfter
        return TargetPlan(
            target: target, tokenSource: try tokenSource(settings, conf: conf, timeout: timeout),
            sinks: settings.sinks ?? defaultSinks)
    }

    /// The target's `oauthconf.xml`, read once, with the path its errors name.
    private func oauthConf(_ settings: TargetSettings) throws(SettingError) -> (file: OAuthConf, path: String)? {
        guard let reference = settings.oauthconf else { return nil }
        // `credential:NAME` reads it from systemd's credentials directory (LoadCredential=).
        var path = reference
        if reference.hasPrefix("credential:") {
            guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw SettingError(
                    "oauthconf \(reference): CREDENTIALS_DIRECTORY is not set "
                        + "(use LoadCredential= in the systemd unit)")
            }
            path = directory + "/" + reference.dropFirst("credential:".count)
        }
        return (try OAuthConf.load(path: path, systemdCredential: reference.hasPrefix("credential:")), path)
    }

    /// An endpoint or token URL: no userinfo (issue 11). Named by its key, never echoed.
    private static func checkUpstreamURL(_ url: String, key: String) throws(SettingError) {
        do {
            try SettingParse.validateNoUserinfo(url)
        } catch {
            throw SettingError("\(key): \(error.message)")
        }
    }

    private func tokenSource(
        _ settings: TargetSettings, conf: (file: OAuthConf, path: String)?, timeout: Duration
    ) throws(SettingError) -> TokenSource {
        if let token = environment["BULKWATCH_TOKEN"], !token.isEmpty {
            // Sent as the Authorization header as is; never echoed.
            guard HeaderValidation.isB64Token(token) else {
                throw SettingError("BULKWATCH_TOKEN is not an RFC 6750 bearer token (b64token characters only)")
            }
            return .staticToken(token)
        }
        var tokenURL = settings.tokenURL
        var clientID = settings.clientID
        var secret: Secret?
        if let conf {
            if tokenURL == nil { tokenURL = try conf.file.requireTokenURL(path: conf.path) }
            clientID = clientID ?? conf.file.clientID
            secret = conf.file.clientSecret
        }
        if let reference = settings.clientSecret {
            secret = Secret(try reference.resolve(environment: environment))
        }
        guard let tokenURL else {
            throw SettingError("missing token-url (or oauthconf, or BULKWATCH_TOKEN for a fixed app token)")
        }
        guard let clientID else { throw SettingError("missing client-id") }
        if secret == nil {
            secret = try fallbackSecret(
                variable: "BULKWATCH_CLIENT_SECRET", credential: Defaults.clientSecretCredential,
                what:
                    "no client secret: set client-secret (env:NAME, file:PATH or credential:NAME), BULKWATCH_CLIENT_SECRET or --client-secret-file"
            ).map(Secret.init)
        }
        guard let secret else { throw SettingError("no client secret") }
        return .clientCredentials(
            ClientCredentials(
                tokenURL: tokenURL, clientID: clientID, clientSecret: secret, style: settings.tokenAuth ?? .formBody,
                timeout: timeout))
    }

    /// `BULKWATCH_…` if set, else the systemd credential of the conventional name if present.
    private func fallbackSecret(variable: String, credential: String, what: String) throws(SettingError) -> String? {
        if let value = environment[variable]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty {
            return value
        }
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty,
            FileManager.default.fileExists(
                atPath: URL(fileURLWithPath: directory).appendingPathComponent(credential).path)
        {
            return try SecretReference.credential(credential).resolve(environment: environment)
        }
        throw SettingError(what)
    }

    private func webhookSettings(_ global: GlobalSettings, plans: [TargetPlan]) throws(RuntimeConfigurationError)
        -> WebhookSettings
    {
        let policy = DeliveryPolicy(
            backoffBase: global.webhookBackoffBase ?? Defaults.webhookBackoffBase,
            backoffCap: global.webhookBackoffCap ?? Defaults.webhookBackoffCap,
            maxAge: global.webhookMaxAge ?? Defaults.webhookMaxAge)
        var settings = WebhookSettings(timeout: global.webhookTimeout ?? Defaults.webhookTimeout, policy: policy)
        let needed = plans.contains { $0.sinks.contains(where: \.isWebhook) }
        guard needed || global.webhookSecret != nil else { return settings }
        let text: String
        let origin: String
        do {
            if let reference = global.webhookSecret {
                text = try reference.resolve(environment: environment)
                origin = reference.description
            } else {
                guard
                    let value = try fallbackSecret(
                        variable: "BULKWATCH_WEBHOOK_SECRET", credential: Defaults.webhookSecretCredential,
                        what:
                            "a webhook sink needs a signing secret: set BULKWATCH_WEBHOOK_SECRET, --webhook-secret-file "
                            + "or webhook-secret in the file (create one with: bulkwatch webhook-secret)")
                else { return settings }
                text = value
                origin = "the webhook secret"
            }
        } catch {
            throw RuntimeConfigurationError(description: error.message)
        }
        do {
            settings.secrets = try WebhookSecret.parseList(text)
        } catch {
            throw RuntimeConfigurationError(description: "\(origin): \(error.description)")
        }
        return settings
    }
}
