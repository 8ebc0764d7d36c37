import Foundation
public import Logging
import BulkWatchConfig
public import BulkWatchDelivery
import BulkWatchSupport

/// Builds a watcher to embed in your own program, with sinks of your own: the same composition
/// root, settings and configuration file as `bulkwatch run`, not a second code path.
///
/// Settings use the command line's names without the dashes (`endpoint`, `interval`, `state`,
/// `client-id`, `client-secret`, `retain`, …, see the README's settings table); a configuration file and
/// `BULKWATCH_*` variables apply as they do for `run`, with the same precedence (these settings act
/// as command-line flags). Secrets are references (`env:NAME`, `file:PATH`, `credential:NAME`), never
/// values.
///
/// ```swift
/// var builder = BulkWatchBuilder()
/// try builder.set("endpoint", "https://druid.example.com")
/// try builder.set("client-secret", "env:DRUID_CLIENT_SECRET")
/// try builder.set("state", "/var/lib/myapp/bulkwatch.db")
/// builder.addSink(MyQueueSink())
/// let watcher = try await builder.build(logger: logger)
/// try await watcher.run()  // or put `watcher` into your own ServiceGroup
/// ```
///
/// Each added sink gets its own durable cursor, keyed by its ``EventSink/name``: keep the name
/// stable across restarts, or the sink starts over from the beginning of the journal. When sinks
/// are added in code and the settings name none, the default `stdout` sink is not added.
/// The state is an SQLite file; replicated mode (PostgreSQL) runs through `bulkwatch run`.
public struct BulkWatchBuilder: Sendable {
    /// A YAML configuration file, as `--config`.
    public var configurationFile: String?
    /// `BULKWATCH_*` variables are read from here (the process environment by default).
    public var environment: [String: String]
    /// Poll once, deliver, and return from ``BulkWatchRuntime/run()`` (as `--once`).
    public var once = false
    /// Whether ``BulkWatchRuntime/run()`` itself shuts down gracefully on SIGTERM/SIGINT. Leave it on
    /// when the watcher runs on its own; inside your own `ServiceGroup` its graceful shutdown reaches
    /// the watcher either way.
    public var handlesSignals = true

    private var targetPairs: [(String, SettingValue)] = []
    private var globalPairs: [(String, SettingValue)] = []
    private var routes: [Dispatcher.Route] = []

    /// A builder with no settings, reading `BULKWATCH_*` from `environment` (nil: the process environment).
    public init(environment: [String: String]? = nil) {
        self.environment = environment ?? ProcessInfo.processInfo.environment
    }

    /// Sets one setting by its command-line name; throws (one line) for an unknown name or a bad value.
    public mutating func set(_ key: String, _ value: String) throws {
        if TargetSettings.keys[key] != nil {
            _ = try Self.apply([(key, .scalar(value))], to: TargetSettings(), setters: TargetSettings.keys)
            targetPairs.append((key, .scalar(value)))
        } else if GlobalSettings.keys[key] != nil {
            _ = try Self.apply([(key, .scalar(value))], to: GlobalSettings(), setters: GlobalSettings.keys)
            globalPairs.append((key, .scalar(value)))
        } else {
            throw BulkWatchBuilderError(description: "unknown setting '\(key)'")
        }
    }

    /// Adds a sink of your own. It receives the events of `targets` (nil: every target), after
    /// the configured sinks, with the dispatcher's ordering, retries and dead letters
    /// (``EventSink/deliveryPolicy``), exactly as a built-in sink does.
    public mutating func addSink(_ sink: any EventSink, targets: Set<String>? = nil) {
        routes.append(Dispatcher.Route(sink: sink, targets: targets))
    }

    /// Resolves the settings (reading every secret), opens the state and every sink and loads every
    /// snapshot; throws before any network call when one of them cannot be used.
    public func build(logger: Logger) async throws -> BulkWatchRuntime {
        let flagTarget = try Self.apply(targetPairs, to: TargetSettings(), setters: TargetSettings.keys)
        let flagGlobal = try Self.apply(globalPairs, to: GlobalSettings(), setters: GlobalSettings.keys)
        var resolver = ConfigurationResolver(
            configPath: configurationFile, flagGlobal: flagGlobal, flagTarget: flagTarget, once: once,
            environment: environment)
        if !routes.isEmpty { resolver.defaultSinks = [] }
        let configuration = try resolver.resolve()
        let fixedResolver = resolver
        let routes = routes
        let reloader: ConfigurationReloader? =
            configurationFile == nil ? nil : { @Sendable in try fixedResolver.resolve() }
        return try await BulkWatchRuntime(
            configuration: configuration, logger: logger, reloader: reloader, extraSinks: routes,
            handlesSignals: handlesSignals)
    }

    private static func apply<Settings>(
        _ pairs: [(String, SettingValue)], to settings: Settings, setters: [String: SettingLayer.Setter<Settings>]
    ) throws -> Settings {
        try SettingLayer.apply(pairs, setters: setters, into: settings) { key, error in
            BulkWatchBuilderError(description: "\(key): \(error.message)")
        }
    }
}

/// A setting the builder refused, in one line (the setting's name and why).
public struct BulkWatchBuilderError: Error, Sendable, CustomStringConvertible {
    public var description: String
}
