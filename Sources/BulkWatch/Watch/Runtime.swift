import Foundation
public import Logging
public import ServiceLifecycle
import UnixSignals

/// A `--sink` specification (DESIGN.md §6).
public enum SinkSpec: Sendable, Equatable {
    case stdout(StdoutSink.Format)
    case file(path: String)
    /// `batch` is 1 unless the URL carries bulkwatch's own `batch=N` query parameter, which is
    /// removed from the URL that is POSTed to (and from the sink's name, so turning batching on or
    /// off keeps the sink's cursor).
    case webhook(url: String, batch: Int)

    /// Parses `stdout`, `stdout:json`, `stdout:text`, `file:PATH`, `webhook:URL[?batch=N]`; nil when malformed.
    public init?(parsing text: String) {
        if text == "stdout" || text == "stdout:text" {
            self = .stdout(.text)
        } else if text == "stdout:json" {
            self = .stdout(.json)
        } else if text.hasPrefix("file:"), text.count > 5 {
            self = .file(path: String(text.dropFirst(5)))
        } else if text.hasPrefix("webhook:"), let (url, batch) = Self.webhook(String(text.dropFirst(8))) {
            self = .webhook(url: url, batch: batch)
        } else {
            return nil
        }
    }

    /// The sink's name, which keys its cursor (`webhook:URL` without `batch=`).
    public var name: String {
        switch self {
        case .stdout(let format): format == .text ? "stdout" : "stdout:json"
        case .file(let path): "file:\(path)"
        case .webhook(let url, _): "webhook:\(url)"
        }
    }

    private static func webhook(_ text: String) -> (String, Int)? {
        guard var components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", components.host?.isEmpty == false
        else { return nil }
        var batch = 1
        if let items = components.queryItems, let item = items.first(where: { $0.name == "batch" }) {
            guard let value = item.value.flatMap(Int.init), (1...10_000).contains(value) else { return nil }
            batch = value
            let rest = items.filter { $0.name != "batch" }
            components.queryItems = rest.isEmpty ? nil : rest
        }
        guard let url = components.string else { return nil }
        return (url, batch)
    }
}

/// How webhook sinks sign, time out and retry (`--webhook-*` options).
public struct WebhookSettings: Sendable {
    /// Every configured `whsec_` secret; each attempt carries one signature per secret.
    public var secrets: [WebhookSecret]
    /// Per-request deadline, connection included.
    public var timeout: Duration
    public var policy: DeliveryPolicy

    public init(secrets: [WebhookSecret] = [], timeout: Duration = .seconds(10), policy: DeliveryPolicy = .webhook) {
        self.secrets = secrets
        self.timeout = timeout
        self.policy = policy
    }
}

/// A configuration that cannot work (e.g. a webhook sink without a signing secret). One line.
public struct RuntimeConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Everything `bulkwatch run` needs, already validated.
public struct RuntimeConfiguration: Sendable {
    public var target: WatchTarget
    public var tokenSource: TokenSource
    public var statePath: String
    public var sinks: [SinkSpec]
    public var transport: TransportConfiguration
    public var once: Bool
    public var fileMaxBytes: Int64
    public var fileKeep: Int
    public var webhook: WebhookSettings

    public init(
        target: WatchTarget, tokenSource: TokenSource, statePath: String, sinks: [SinkSpec],
        transport: TransportConfiguration = TransportConfiguration(), once: Bool = false,
        fileMaxBytes: Int64 = 64 << 20, fileKeep: Int = 5, webhook: WebhookSettings = WebhookSettings()
    ) {
        self.webhook = webhook
        self.target = target
        self.tokenSource = tokenSource
        self.statePath = statePath
        self.sinks = sinks
        self.transport = transport
        self.once = once
        self.fileMaxBytes = fileMaxBytes
        self.fileKeep = fileKeep
    }
}

/// Wires transport → token → client → watcher → journal → dispatcher → sinks and runs them as one
/// service group: SIGTERM/SIGINT shut down gracefully (watcher first, then the dispatcher drains),
/// SIGHUP reopens file sinks for external log rotation.
public final class BulkWatchRuntime: Sendable {
    public let journal: Journal
    private let configuration: RuntimeConfiguration
    private let transport: CurlTransport
    private let watcher: Watcher
    private let dispatcher: Dispatcher
    private let fileSinks: [FileSink]
    private let logger: Logger

    /// Opens the state and every sink; throws (before any network call) when one cannot be opened.
    public init(configuration: RuntimeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let journal = try Journal(path: configuration.statePath)
        self.journal = journal
        let transport = CurlTransport(configuration: configuration.transport)
        self.transport = transport
        var names: Set<String> = []
        for spec in configuration.sinks where !names.insert(spec.name).inserted {
            throw RuntimeConfigurationError(description: "sink \(spec.name) is given twice")
        }
        var sinks: [any EventSink] = []
        var fileSinks: [FileSink] = []
        for spec in configuration.sinks {
            switch spec {
            case .stdout(let format):
                sinks.append(StdoutSink(format: format))
            case .file(let path):
                let sink = try FileSink(path: path, maxBytes: configuration.fileMaxBytes, keep: configuration.fileKeep)
                sinks.append(sink)
                fileSinks.append(sink)
            case .webhook(let url, let batch):
                guard !configuration.webhook.secrets.isEmpty else {
                    throw RuntimeConfigurationError(
                        description:
                            "webhook sink \(url) needs a signing secret: set BULKWATCH_WEBHOOK_SECRET or pass --webhook-secret-file"
                    )
                }
                sinks.append(
                    WebhookSink(
                        url: url, signer: WebhookSigner(secrets: configuration.webhook.secrets), transport: transport,
                        batchSize: batch, timeout: configuration.webhook.timeout, policy: configuration.webhook.policy))
            }
        }
        self.fileSinks = fileSinks
        let tokens = TokenProvider(source: configuration.tokenSource, transport: transport, logger: logger)
        let client = BulkStatusClient(
            endpoint: configuration.target.endpoint, transport: transport, tokens: tokens, logger: logger)
        let dispatcher = Dispatcher(journal: journal, sinks: sinks, logger: logger)
        self.dispatcher = dispatcher
        self.watcher = try Watcher(
            target: configuration.target, client: client, journal: journal, logger: logger, once: configuration.once,
            onCommit: { dispatcher.notify() })
    }

    /// Runs until SIGINT/SIGTERM (or after one poll with `once`), then shuts down gracefully.
    public func run(extraServices: [any Service] = []) async throws {
        let terminate = ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior.gracefullyShutdownGroup
        var services = extraServices.map {
            ServiceGroupConfiguration.ServiceConfiguration(
                service: $0, successTerminationBehavior: terminate, failureTerminationBehavior: terminate)
        }
        services.append(
            .init(service: dispatcher, successTerminationBehavior: terminate, failureTerminationBehavior: terminate))
        services.append(
            .init(service: watcher, successTerminationBehavior: terminate, failureTerminationBehavior: terminate))
        var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint]
        groupConfiguration.logger = logger
        let group = ServiceGroup(configuration: groupConfiguration)
        let reopener = Task { [fileSinks, logger] in
            guard !fileSinks.isEmpty else { return }
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                logger.info("SIGHUP: reopening file sinks")
                for sink in fileSinks {
                    do { try await sink.reopen() } catch { logger.error("cannot reopen \(sink.name): \(error)") }
                }
            }
        }
        defer {
            reopener.cancel()
            transport.shutdown()
        }
        try await group.run()
    }
}
