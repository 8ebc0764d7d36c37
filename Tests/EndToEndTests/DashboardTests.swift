import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The repository's root, from this file's path (Tests/EndToEndTests/DashboardTests.swift).
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// Every `expr` of every panel, rows' nested panels included.
private func expressions(_ panels: [[String: Any]]) -> [(panel: String, expr: String)] {
    panels.flatMap { panel -> [(panel: String, expr: String)] in
        let title = panel["title"] as? String ?? "?"
        let own = (panel["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String }.map { (title, $0) }
        return own + expressions(panel["panels"] as? [[String: Any]] ?? [])
    }
}

/// Metric names in a PromQL expression: identifiers starting `bulkwatch_` or `process_`.
private func metricNames(_ expr: String) -> Set<String> {
    let pattern = try! NSRegularExpression(pattern: "\\b(bulkwatch|process)_[a-z_]+")
    let range = NSRange(expr.startIndex..., in: expr)
    return Set(
        pattern.matches(in: expr, range: range).compactMap { Range($0.range, in: expr).map { String(expr[$0]) } })
}

@Suite("/metrics: HELP lines, build info, process metrics; the Grafana dashboard queries what is served")
struct DashboardTests {
    @Test func everyFamilyHasHelpAndTheDashboardOnlyQueriesServedMetrics() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "PENDING")
        let port = try reserveFreePort()
        let child = try ChildProcess(
            BulkWatchBinary.path,
            fixture.arguments([
                "--interval", "200ms", "--listen", "127.0.0.1:\(port)", "--sink", "stdout:json?types=changed",
            ]), environment: fixture.environment, directory: fixture.directory)
        #expect(waitUntilListening(port: port, timeout: .seconds(60)), "stderr: \(child.stderr)")
        var text = ""
        let ready = await ChildProcess.eventually(timeout: .seconds(60)) {
            text = (try? httpGet("http://127.0.0.1:\(port)/metrics").body) ?? ""
            return text.contains("bulkwatch_poll_duration_seconds_count")
                && text.contains("bulkwatch_sink_filtered_total{sink=\"stdout:json\"} 1")
        }
        #expect(ready, "metrics: \(text)\nstderr: \(child.stderr)")
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(30)) == 0)

        let metrics = try PrometheusText(parsing: text)
        // One HELP line right before each TYPE line, for every family.
        let lines = text.split(separator: "\n").map(String.init)
        for (index, line) in lines.enumerated() where line.hasPrefix("# TYPE ") {
            let name = line.split(separator: " ")[2]
            #expect(index > 0 && lines[index - 1].hasPrefix("# HELP \(name) "), "no HELP before \(line)")
            #expect(index > 0 && lines[index - 1].count > "# HELP \(name) ".count + 10)
        }
        #expect(lines.filter { $0.hasPrefix("# HELP ") }.count == metrics.types.count)
        let version = try #require(metrics.samples.first { $0.name == "bulkwatch_build_info" })
        #expect(version.value == 1)
        #expect(version.labels["version"]?.isEmpty == false)
        #expect(metrics.types["process_cpu_seconds_total"] == "counter")
        #expect((metrics.value("process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((metrics.value("process_open_fds") ?? 0) >= 3)
        let started = metrics.value("process_start_time_seconds") ?? 0
        #expect(abs(started - Date().timeIntervalSince1970) < 600)
        #expect((metrics.value("process_cpu_seconds_total") ?? -1) >= 0)

        let data = try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/examples/grafana-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        // Importable: a datasource input, a uid, a schema version and panels.
        let inputs = try #require(dashboard["__inputs"] as? [[String: Any]])
        #expect(
            inputs.contains { $0["name"] as? String == "DS_PROMETHEUS" && $0["pluginId"] as? String == "prometheus" })
        #expect(dashboard["uid"] as? String == "bulkwatch-overview")
        #expect((dashboard["schemaVersion"] as? Int ?? 0) >= 36)
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let queries = expressions(panels)
        #expect(queries.count >= 15)
        let served = Set(metrics.types.keys)
        var used: Set<String> = []
        for (panel, expr) in queries {
            let names = metricNames(expr)
            #expect(!names.isEmpty, "panel \(panel) queries no bulkwatch or process metric: \(expr)")
            for name in names {
                var family = name
                for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && !served.contains(name) {
                    family = String(name.dropLast(suffix.count))
                }
                #expect(served.contains(family), "panel \(panel) queries \(name), which /metrics does not serve")
                used.insert(family)
            }
        }
        // Built on the existing metrics: polls, latency, items, events by type, sink lag, dead letters.
        for needed in [
            "bulkwatch_polls_total", "bulkwatch_poll_duration_seconds", "bulkwatch_items_tracked",
            "bulkwatch_events_total", "bulkwatch_sink_lag_events", "bulkwatch_sink_dead_letters_total",
        ] {
            #expect(used.contains(needed), "the dashboard has no panel on \(needed)")
        }
        await fixture.stop()
    }
}
