import BulkWatchOperate
import BulkWatchSupport
import Metrics

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
