import BulkWatchOperate
import BulkWatchSource
import BulkWatchStore
import Foundation
import Metrics

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
        self.events(created: counts.0, changed: counts.1, expired: counts.2)
    }

    func events(created createdCount: Int, changed changedCount: Int, expired expiredCount: Int) {
        if createdCount > 0 { created.increment(by: createdCount) }
        if changedCount > 0 { changed.increment(by: changedCount) }
        if expiredCount > 0 { expired.increment(by: expiredCount) }
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
