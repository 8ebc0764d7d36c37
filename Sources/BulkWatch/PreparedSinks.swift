import BulkWatchConfig
import BulkWatchDelivery
import BulkWatchTransport

/// The sinks of one configuration, opened (so a file that cannot be opened fails before anything
/// runs) and routed, plus the sinks an embedding program added in code.
struct PreparedSinks: Sendable {
    var plans: [SinkPlan]
    var routes: [Dispatcher.Route]
    var fileSinks: [FileSink]

    /// Every sink's journal name: the configured ones and the embedder's.
    var names: [String] { routes.map(\.sink.name) }

    init(configuration: RuntimeConfiguration, transport: CurlTransport, extra: [Dispatcher.Route]) throws {
        plans = try configuration.sinkPlans()
        routes = []
        fileSinks = []
        for plan in plans {
            let sink: any EventSink
            switch plan.spec.destination {
            case .stdout(let format):
                sink = StdoutSink(format: format)
            case .file(let path):
                let fileSink = try FileSink(
                    path: path, maxBytes: configuration.fileMaxBytes, keep: configuration.fileKeep)
                fileSinks.append(fileSink)
                sink = fileSink
            case .webhook(let url, let batch):
                sink = WebhookSink(
                    url: url, signer: WebhookSigner(secrets: configuration.webhook.secrets), transport: transport,
                    batchSize: batch, timeout: configuration.webhook.timeout, policy: configuration.webhook.policy,
                    body: try WebhookBody(format: plan.spec.format, link: plan.spec.link))
            case .exec(let program, let batch, let arguments, let environment):
                sink = try ExecSink(
                    program: program, arguments: arguments, passEnvironment: environment, batchSize: batch,
                    timeout: configuration.execTimeout, policy: configuration.webhook.policy)
            }
            routes.append(
                Dispatcher.Route(
                    sink: sink, targets: plan.targets, filter: plan.spec.filter,
                    operationalByDefault: plan.spec.receivesOperationalByDefault))
        }
        routes += extra
        var seen: Set<String> = []
        for name in names where !seen.insert(name).inserted {
            throw RuntimeConfigurationError(description: "two sinks are named \(name): each sink needs its own cursor")
        }
    }

    /// The sinks that receive `target`'s events: retention keeps what they have not delivered.
    func names(routing target: String) -> [String] {
        routes.filter { $0.targets?.contains(target) ?? true }.map(\.sink.name)
    }
}
