import Foundation
import Metrics

/// The metric names bulkwatch reports through swift-metrics (listed for dashboards in
/// examples/grafana-metrics.md). Labels are fixed per name: Prometheus refuses one name with two
/// label sets.
public enum MetricName {
    public static let polls = "bulkwatch_polls_total"
    public static let pollDuration = "bulkwatch_poll_duration_seconds"
    public static let itemsTracked = "bulkwatch_items_tracked"
    public static let itemsActive = "bulkwatch_items_active"
    public static let pollInterval = "bulkwatch_poll_interval_seconds"
    public static let lastSuccess = "bulkwatch_last_success_timestamp_seconds"
    public static let events = "bulkwatch_events_total"
    public static let tokenRefreshes = "bulkwatch_token_refreshes_total"
    public static let sinkDelivered = "bulkwatch_sink_delivered_total"
    public static let sinkFailures = "bulkwatch_sink_failures_total"
    public static let sinkDeadLetters = "bulkwatch_sink_dead_letters_total"
    public static let sinkFiltered = "bulkwatch_sink_filtered_total"
    public static let sinkLag = "bulkwatch_sink_lag_events"
    public static let sinkStopped = "bulkwatch_sink_stopped"
    public static let configReloads = "bulkwatch_config_reloads_total"
}

/// One target's metric handles, made once so a poll costs no registry lookups.
struct WatcherMetrics: Sendable {
    let target: String
    let pollDuration: Metrics.Timer
    let itemsTracked: Gauge
    let itemsActive: Gauge
    let pollInterval: Gauge
    let lastSuccess: Gauge
    let created: Counter
    let changed: Counter
    let expired: Counter
    let failing: Counter
    let recovered: Counter
    let tokenRefreshes: Counter

    init(target: String) {
        self.target = target
        let dimensions = [("target", target)]
        pollDuration = Metrics.Timer(label: MetricName.pollDuration, dimensions: dimensions)
        itemsTracked = Gauge(label: MetricName.itemsTracked, dimensions: dimensions)
        itemsActive = Gauge(label: MetricName.itemsActive, dimensions: dimensions)
        pollInterval = Gauge(label: MetricName.pollInterval, dimensions: dimensions)
        lastSuccess = Gauge(label: MetricName.lastSuccess, dimensions: dimensions)
        created = Counter(label: MetricName.events, dimensions: [("target", target), ("type", "created")])
        changed = Counter(label: MetricName.events, dimensions: [("target", target), ("type", "changed")])
        expired = Counter(label: MetricName.events, dimensions: [("target", target), ("type", "expired")])
        failing = Counter(label: MetricName.events, dimensions: [("target", target), ("type", "target.failing")])
        recovered = Counter(label: MetricName.events, dimensions: [("target", target), ("type", "target.recovered")])
        tokenRefreshes = Counter(label: MetricName.tokenRefreshes, dimensions: dimensions)
    }

    /// `outcome` is `ok`, or what went wrong: `http_400`, `http_401`, `http_500`, `http_504`,
    /// `http_other`, `malformed`, `transport`, `token`, `journal`.
    func poll(outcome: String) {
        Counter(label: MetricName.polls, dimensions: [("target", target), ("outcome", outcome)]).increment()
    }

    func events(_ events: [JournalEvent]) {
        var counts = (0, 0, 0)
        for event in events {
            switch event.kind {
            case .created: counts.0 += 1
            case .changed: counts.1 += 1
            case .expired: counts.2 += 1
            case .targetFailing: failing.increment()
            case .targetRecovered: recovered.increment()
            }
        }
        if counts.0 > 0 { created.increment(by: counts.0) }
        if counts.1 > 0 { changed.increment(by: counts.1) }
        if counts.2 > 0 { expired.increment(by: counts.2) }
    }

    static func outcome(of error: FetchError) -> String {
        switch error.code {
        case .badRequest: "http_400"
        case .unauthorized: "http_401"
        case .serverError: "http_500"
        case .gatewayTimeout: "http_504"
        case .unexpectedStatus: "http_other"
        case .malformedBody: "malformed"
        case .transport: "transport"
        case .token: "token"
        default: "other"
        }
    }
}

/// One sink's metric handles.
struct SinkMetrics: Sendable {
    let delivered: Counter
    let failures: Counter
    let deadLetters: Counter
    let filtered: Counter
    let lag: Gauge
    let stopped: Gauge

    init(sink: String) {
        // A webhook URL may carry credentials: labels show it redacted (DESIGN.md §5).
        let dimensions = [("sink", URLRedaction.sinkName(sink))]
        delivered = Counter(label: MetricName.sinkDelivered, dimensions: dimensions)
        failures = Counter(label: MetricName.sinkFailures, dimensions: dimensions)
        deadLetters = Counter(label: MetricName.sinkDeadLetters, dimensions: dimensions)
        filtered = Counter(label: MetricName.sinkFiltered, dimensions: dimensions)
        lag = Gauge(label: MetricName.sinkLag, dimensions: dimensions)
        stopped = Gauge(label: MetricName.sinkStopped, dimensions: dimensions)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
