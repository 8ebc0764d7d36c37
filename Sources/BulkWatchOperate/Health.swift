import BulkWatchSupport
import Foundation
import Synchronization

/// What `/healthz` and `/readyz` answer, fed by the watchers and the dispatcher.
///
/// Healthy means: every target's last successful poll is within 3 of its (idle) intervals — counted
/// from start-up until the first one — and no sink is stopped. Three intervals, not one, so a
/// single slow or failed poll does not page anyone; a stopped sink is unhealthy at once because it
/// will not recover by itself. Ready means: every target has completed a successful poll since
/// start-up, so a freshly (re)started instance is not counted on before it has seen upstream.
///
/// Ages are measured on an injected monotonic clock (`ContinuousClock` in production), so a wall-clock
/// step neither pages anyone nor hides an outage, and a test can let three intervals pass without
/// waiting for them.
package final class HealthBoard: Sendable {
    package struct Report: Sendable, Equatable {
        package var healthy: Bool
        package var reasons: [String]
        /// Replicated mode: the leases this replica holds (`/readyz` lists them).
        package var leases: [String]? = nil
    }

    private struct TargetHealth {
        var interval: Duration
        /// Times on the board's own timeline (see ``elapsed``).
        var since: Duration
        var lastSuccess: Duration?
        var lastError: String?
    }

    private struct State {
        var targets: [String: TargetHealth] = [:]
        var stoppedSinks: [String: String] = [:]
        var leases: [String]?
    }

    private let state = Mutex(State())
    /// Time since the board was created, read from the injected clock. A duration rather than the
    /// clock's instant so the board need not be generic over the clock type.
    private let elapsed: @Sendable () -> Duration

    package init(clock: some Clock<Duration> = ContinuousClock()) {
        let origin = clock.now
        elapsed = { origin.duration(to: clock.now) }
    }

    /// Declares the targets being watched (start-up and reload); unknown ones are forgotten.
    package func setTargets(_ targets: [(name: String, interval: Duration)]) {
        let now = elapsed()
        state.withLock { state in
            var next: [String: TargetHealth] = [:]
            for (name, interval) in targets {
                var entry = state.targets[name] ?? TargetHealth(interval: interval, since: now)
                entry.interval = interval
                next[name] = entry
            }
            state.targets = next
        }
    }

    package func pollSucceeded(target: String) {
        let now = elapsed()
        state.withLock {
            $0.targets[target]?.lastSuccess = now
            $0.targets[target]?.lastError = nil
        }
    }

    package func pollFailed(target: String, reason: String) {
        state.withLock { $0.targets[target]?.lastError = reason }
    }

    package func sinkStopped(_ sink: String, reason: String) {
        state.withLock { $0.stoppedSinks[URLRedaction.sinkName(sink)] = reason }
    }

    /// Sinks are rebuilt on reload: a stopped sink gets a fresh start, like at process start.
    package func resetSinks() {
        state.withLock { $0.stoppedSinks.removeAll() }
    }

    package func health() -> Report {
        let now = elapsed()
        return state.withLock { state in
            var reasons: [String] = []
            for (name, target) in state.targets.sorted(by: { $0.key < $1.key }) {
                let limit = target.interval * 3
                let reference = target.lastSuccess ?? target.since
                let age = now - reference
                guard age > limit else { continue }
                let what = target.lastSuccess == nil ? "no successful poll since start-up" : "last successful poll"
                var reason = "target \(name): \(what) \(Self.seconds(age)) ago (limit \(Self.seconds(limit)))"
                if let error = target.lastError { reason += ": \(error)" }
                reasons.append(reason)
            }
            for (sink, reason) in state.stoppedSinks.sorted(by: { $0.key < $1.key }) {
                reasons.append("sink \(sink) stopped: \(reason)")
            }
            return Report(healthy: reasons.isEmpty, reasons: reasons)
        }
    }

    package func readiness() -> Report {
        state.withLock { state in
            let waiting = state.targets.filter { $0.value.lastSuccess == nil }.keys.sorted()
            return Report(
                healthy: waiting.isEmpty, reasons: waiting.map { "target \($0): no successful poll yet" },
                leases: state.leases)
        }
    }

    /// Replicated mode: the leases held now (the coordinator declares the held targets with
    /// ``setTargets(_:now:)`` too, so a replica is judged only on what it polls).
    package func setLeases(_ leases: [String]) {
        state.withLock { $0.leases = leases.sorted() }
    }

    private static func seconds(_ duration: Duration) -> String {
        String(format: "%.0fs", duration.seconds)
    }
}
