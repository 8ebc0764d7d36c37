public import Logging
public import ServiceLifecycle
import UnixSignals

/// A `--sink` specification (DESIGN.md §6).
public enum SinkSpec: Sendable, Equatable {
    case stdout(StdoutSink.Format)
    case file(path: String)
    case webhook(url: String)

    /// Parses `stdout`, `stdout:json`, `stdout:text`, `file:PATH`, `webhook:URL`; nil when malformed.
    public init?(parsing text: String) {
        if text == "stdout" || text == "stdout:text" {
            self = .stdout(.text)
        } else if text == "stdout:json" {
            self = .stdout(.json)
        } else if text.hasPrefix("file:"), text.count > 5 {
            self = .file(path: String(text.dropFirst(5)))
        } else if text.hasPrefix("webhook:"), text.dropFirst(8).hasPrefix("http") {
            self = .webhook(url: String(text.dropFirst(8)))
        } else {
            return nil
        }
    }
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

    public init(
        target: WatchTarget, tokenSource: TokenSource, statePath: String, sinks: [SinkSpec],
        transport: TransportConfiguration = TransportConfiguration(), once: Bool = false,
        fileMaxBytes: Int64 = 64 << 20, fileKeep: Int = 5
    ) {
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
            case .webhook(let url):
                throw JournalError(description: "webhook sink \(url): webhook delivery is not available in this build")
            }
        }
        self.fileSinks = fileSinks
        let transport = CurlTransport(configuration: configuration.transport)
        self.transport = transport
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
