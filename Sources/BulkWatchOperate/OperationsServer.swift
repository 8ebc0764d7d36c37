package import BulkWatchSupport
import Foundation
import Hummingbird
package import Logging
import Metrics
package import Prometheus
import ServiceLifecycle

/// Points swift-metrics at a Prometheus registry, once per process; `/metrics` renders that registry.
package enum PrometheusMetrics {
    /// Bootstraps the process-wide metrics system. Call once, before any metric is made.
    package static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Poll latency spans loopback milliseconds to a slow 1M-item listing.
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }
}

/// Serves `/metrics` (Prometheus text format), `/healthz` and `/readyz` on `--listen`.
///
/// Health answers are JSON — `{"status":"ok"}` or `{"status":"unhealthy","reasons":[...]}` with
/// 503 — so a human with curl and a load balancer read the same thing.
package struct OperationsServer: Service {
    private let address: ListenAddress
    private let registry: PrometheusCollectorRegistry?
    private let health: HealthBoard
    private let logger: Logger

    package init(address: ListenAddress, registry: PrometheusCollectorRegistry?, health: HealthBoard, logger: Logger) {
        self.address = address
        self.registry = registry
        self.health = health
        self.logger = logger
    }

    package func run() async throws {
        let router = Router()
        let registry = self.registry
        let health = self.health
        router.get("metrics") { _, _ -> Response in
            let bytes = MetricsExposition.render(registry: registry?.emitToBuffer() ?? [])
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.get("healthz") { _, _ -> Response in Self.answer(health.health()) }
        router.get("readyz") { _, _ -> Response in Self.answer(health.readiness()) }
        let address = self.address
        let logger = self.logger
        if !address.isLoopback {
            logger.warning("metrics and health are served beyond loopback on \(address); make sure that is intended")
        }
        // Hummingbird logs every request at info: too chatty for a scrape every 15 s.
        var serverLogger = logger
        serverLogger.logLevel = max(logger.logLevel, .warning)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(address.host, port: address.port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? address.port
                logger.info("metrics and health on http://\(ListenAddress(host: address.host, port: port))/metrics")
            },
            logger: serverLogger)
        do {
            try await app.run()
        } catch {
            throw OperationsServerError(description: "cannot serve metrics on \(address): \(error)")
        }
    }

    static func answer(_ report: HealthBoard.Report) -> Response {
        var object: [String: Any] = ["status": report.healthy ? "ok" : "unhealthy"]
        if !report.reasons.isEmpty { object["reasons"] = report.reasons }
        if let leases = report.leases { object["leases"] = leases }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Response(
            status: report.healthy ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

package struct OperationsServerError: Error, CustomStringConvertible {
    package var description: String
}
