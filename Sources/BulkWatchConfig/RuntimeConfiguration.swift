package import BulkWatchAuth
package import BulkWatchDelivery
import BulkWatchDetect
import BulkWatchSource
package import BulkWatchSupport
package import BulkWatchTransport
package import BulkWatchWatcher
import Foundation

/// How webhook sinks sign, time out and retry (`--webhook-*` options).
package struct WebhookSettings: Sendable, Equatable {
    /// Every configured `whsec_` secret; each attempt carries one signature per secret.
    package var secrets: [WebhookSecret]
    /// Per-request deadline, connection included.
    package var timeout: Duration
    package var policy: DeliveryPolicy

    package init(
        secrets: [WebhookSecret] = [], timeout: Duration = Defaults.webhookTimeout, policy: DeliveryPolicy = .webhook
    ) {
        self.secrets = secrets
        self.timeout = timeout
        self.policy = policy
    }
}

/// A configuration that cannot work (e.g. a webhook sink without a signing secret). One line.
package struct RuntimeConfigurationError: Error, Sendable, CustomStringConvertible {
    package var description: String
    package init(description: String) { self.description = description }
}

/// One target with its credentials and its sinks.
package struct TargetPlan: Sendable, Equatable {
    package var target: WatchTarget
    package var tokenSource: TokenSource
    package var sinks: [SinkSpec]

    package init(target: WatchTarget, tokenSource: TokenSource, sinks: [SinkSpec]) {
        self.target = target
        self.tokenSource = tokenSource
        self.sinks = sinks
    }
}

/// Everything `bulkwatch run` needs, already validated and with secrets resolved.
package struct RuntimeConfiguration: Sendable {
    package var targets: [TargetPlan]
    package var statePath: String
    package var transport: TransportConfiguration
    package var once: Bool
    package var fileMaxBytes: Int64
    package var fileKeep: Int
    package var webhook: WebhookSettings
    /// How long an `exec:` sink's program may run per batch before it is stopped and retried.
    package var execTimeout: Duration = Defaults.execTimeout
    /// Where `/metrics`, `/healthz` and `/readyz` are served; nil: not served.
    package var listen: ListenAddress?
    /// Level and format as configured; applied once at start (logging is bootstrapped once), kept
    /// here so a reload can say that a change needs a restart.
    package var logSettings: [String] = []

    package init(
        targets: [TargetPlan], statePath: String, transport: TransportConfiguration = TransportConfiguration(),
        once: Bool = false, fileMaxBytes: Int64 = Int64(Defaults.fileMaxSize), fileKeep: Int = Defaults.fileKeep,
        webhook: WebhookSettings = WebhookSettings(),
        listen: ListenAddress? = nil
    ) {
        self.targets = targets
        self.statePath = statePath
        self.transport = transport
        self.once = once
        self.fileMaxBytes = fileMaxBytes
        self.fileKeep = fileKeep
        self.webhook = webhook
        self.listen = listen
    }

    /// The single-target form (command-line flags, `demo`).
    package init(
        target: WatchTarget, tokenSource: TokenSource, statePath: String, sinks: [SinkSpec],
        transport: TransportConfiguration = TransportConfiguration(), once: Bool = false,
        fileMaxBytes: Int64 = Int64(Defaults.fileMaxSize), fileKeep: Int = Defaults.fileKeep,
        webhook: WebhookSettings = WebhookSettings(),
        listen: ListenAddress? = nil
    ) {
        self.init(
            targets: [TargetPlan(target: target, tokenSource: tokenSource, sinks: sinks)], statePath: statePath,
            transport: transport, once: once, fileMaxBytes: fileMaxBytes, fileKeep: fileKeep, webhook: webhook,
            listen: listen)
    }

    /// The first target (single-target callers).
    package var target: WatchTarget { targets[0].target }

    /// Each distinct sink once, with the targets that feed it.
    ///
    /// Sinks are keyed by name: two targets listing `file:/var/log/bulk.jsonl` share one file and
    /// one cursor. The same name configured two ways (different `batch=`) is an error. The target
    /// set is always explicit, never "all": the journal may hold events of targets no longer
    /// configured (removed by a reload, or renamed), and a sink must not pick those up.
    package func sinkPlans() throws -> [SinkPlan] {
        var order: [String] = []
        var plans: [String: SinkPlan] = [:]
        for plan in targets {
            for spec in plan.sinks {
                if var existing = plans[spec.name] {
                    guard existing.spec == spec else {
                        throw RuntimeConfigurationError(
                            description: "sink \(URLRedaction.sinkName(spec.name)) is configured differently "
                                + "for two targets (batch, filter or format)")
                    }
                    existing.targets?.insert(plan.target.name)
                    plans[spec.name] = existing
                } else {
                    order.append(spec.name)
                    plans[spec.name] = SinkPlan(spec: spec, targets: [plan.target.name])
                }
            }
        }
        return order.compactMap { plans[$0] }
    }

    /// Checks what can be checked without opening anything: unique target names, consistent sinks,
    /// a signing secret for every webhook sink.
    package func validate() throws {
        var names: Set<String> = []
        for plan in targets where !names.insert(plan.target.name).inserted {
            throw RuntimeConfigurationError(description: "target \(plan.target.name) is given twice")
        }
        guard !targets.isEmpty else { throw RuntimeConfigurationError(description: "no target to watch") }
        for plan in try sinkPlans() {
            // A template that does not parse is a configuration error now, not a failure at the first event.
            if case .template(let path) = plan.spec.format { _ = try TemplateFormat(path: path) }
            if case .webhook(let url, _) = plan.spec.destination, webhook.secrets.isEmpty {
                throw RuntimeConfigurationError(
                    description:
                        "webhook sink \(url) needs a signing secret: set BULKWATCH_WEBHOOK_SECRET, pass --webhook-secret-file or set webhook-secret in the file"
                )
            }
        }
    }
}

/// A sink and the targets it receives events from.
package struct SinkPlan: Sendable, Equatable {
    package var spec: SinkSpec
    package var targets: Set<String>?

    package init(spec: SinkSpec, targets: Set<String>?) {
        self.spec = spec
        self.targets = targets
    }
}

/// Re-reads the configuration on SIGHUP; throws (one line) when the new one is invalid.
package typealias ConfigurationReloader = @Sendable () throws -> RuntimeConfiguration
