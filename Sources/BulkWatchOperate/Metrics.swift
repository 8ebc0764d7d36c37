import Foundation
import Metrics

/// The metric names bulkwatch reports through swift-metrics (listed for dashboards in
/// examples/grafana-metrics.md). Labels are fixed per name: Prometheus refuses one name with two
/// label sets.
package enum MetricName {
    package static let polls = "bulkwatch_polls_total"
    package static let pollDuration = "bulkwatch_poll_duration_seconds"
    package static let itemsTracked = "bulkwatch_items_tracked"
    package static let itemsActive = "bulkwatch_items_active"
    package static let pollInterval = "bulkwatch_poll_interval_seconds"
    package static let lastSuccess = "bulkwatch_last_success_timestamp_seconds"
    package static let events = "bulkwatch_events_total"
    package static let tokenRefreshes = "bulkwatch_token_refreshes_total"
    package static let sinkDelivered = "bulkwatch_sink_delivered_total"
    package static let sinkFailures = "bulkwatch_sink_failures_total"
    package static let sinkDeadLetters = "bulkwatch_sink_dead_letters_total"
    package static let sinkFiltered = "bulkwatch_sink_filtered_total"
    package static let sinkLag = "bulkwatch_sink_lag_events"
    package static let sinkStopped = "bulkwatch_sink_stopped"
    package static let configReloads = "bulkwatch_config_reloads_total"
}
