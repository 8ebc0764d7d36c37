import BulkWatchSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What `/metrics` serves beyond the registry's own text: a `# HELP` line for every family,
/// `bulkwatch_build_info`, and the standard `process_*` metrics read from `/proc/self`.
///
/// HELP lines are added to the rendered text rather than given to the registry: swift-metrics
/// creates every family with an empty help text, and swift-prometheus refuses (fatally) a second
/// registration of one name with a different help. Process metrics are read at scrape time, so
/// they cost nothing between scrapes.
package enum MetricsExposition {
    /// One line per family bulkwatch reports (examples/grafana-metrics.md has the details).
    package static let help: [String: String] = [
        MetricName.polls: "Polls by target and outcome (ok, http_400, http_401, http_500, http_504, http_other, "
            + "malformed, transport, token, journal, other).",
        MetricName.pollDuration: "Duration of successful polls: fetch, diff and journal commit.",
        MetricName.itemsTracked: "Operations in the target's snapshot after the last successful poll.",
        MetricName.itemsActive: "Listed operations in a non-terminal status at the last successful poll.",
        MetricName.pollInterval: "The poll interval in force (interval or active-interval).",
        MetricName.lastSuccess: "Unix time of the target's last successful poll.",
        MetricName.events: "Events journaled, by target and type (created, changed, expired, target.failing, "
            + "target.recovered).",
        MetricName.tokenRefreshes: "OAuth2 access tokens fetched.",
        MetricName.sinkDelivered: "Events the sink accepted.",
        MetricName.sinkFailures: "Failed delivery attempts (each retry counts).",
        MetricName.sinkDeadLetters: "Events the sink gave up on (see bulkwatch deliveries, redeliver).",
        MetricName.sinkFiltered: "Events the sink's filter passed over (its cursor moved past them).",
        MetricName.sinkLag: "Journaled events the sink has not delivered yet.",
        MetricName.sinkStopped: "1 when the sink has stopped for good until a reload or restart.",
        MetricName.configReloads: "SIGHUP reloads by outcome (applied, rejected).",
        buildInfo: "Always 1; the version label says which bulkwatch is running.",
        "process_resident_memory_bytes": "Resident memory size in bytes.",
        "process_virtual_memory_bytes": "Virtual memory size in bytes.",
        "process_cpu_seconds_total": "Total user and system CPU time spent in seconds.",
        "process_open_fds": "Number of open file descriptors.",
        "process_max_fds": "Maximum number of open file descriptors.",
        "process_start_time_seconds": "Start time of the process since unix epoch in seconds.",
    ]

    package static let buildInfo = "bulkwatch_build_info"

    /// The registry's text with HELP lines, then build info and process metrics.
    package static func render(registry: [UInt8]) -> [UInt8] {
        var out = annotate(String(decoding: registry, as: UTF8.self))
        out += family(buildInfo, type: "gauge", "\(buildInfo){version=\"\(BulkWatchVersion.current)\"} 1")
        for (name, type, value) in processMetrics() {
            out += family(name, type: type, "\(name) \(value)")
        }
        return Array(out.utf8)
    }

    /// Inserts `# HELP name …` before each `# TYPE name …` line that has none.
    package static func annotate(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count + 2048)
        var previous = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE ") {
                let name = line.dropFirst(7).prefix { $0 != " " }
                if !previous.hasPrefix("# HELP \(name) ") {
                    out += "# HELP \(name) \(help[String(name)] ?? "bulkwatch metric \(name).")\n"
                }
            }
            out += line
            out += "\n"
            previous = String(line)
        }
        while out.hasSuffix("\n\n") { out.removeLast() }
        return out
    }

    private static func family(_ name: String, type: String, _ sample: String) -> String {
        "# HELP \(name) \(help[name] ?? name)\n# TYPE \(name) \(type)\n\(sample)\n"
    }

    /// `(name, type, value)` for the process metrics that can be read here; those that cannot
    /// (no `/proc`) are left out rather than reported as 0.
    static func processMetrics() -> [(String, String, String)] {
        var metrics: [(String, String, String)] = []
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            // Fields after "(comm)": state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
            if let utime = field(14), let stime = field(15), ticks > 0 {
                metrics.append(("process_cpu_seconds_total", "counter", format((utime + stime) / ticks)))
            }
            if let vsize = field(23) { metrics.append(("process_virtual_memory_bytes", "gauge", format(vsize))) }
            if let rss = field(24) {
                metrics.append(("process_resident_memory_bytes", "gauge", format(rss * pageSize)))
            }
            if let start = field(22), ticks > 0, let boot = bootTime() {
                metrics.append(("process_start_time_seconds", "gauge", format(boot + start / ticks)))
            }
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            // The directory listing itself holds one descriptor while it is read.
            metrics.append(("process_open_fds", "gauge", String(max(0, entries.count - 1))))
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            metrics.append(("process_max_fds", "gauge", String(limit.rlim_cur)))
        }
        return metrics
    }

    /// `btime` from /proc/stat: boot time, Unix seconds.
    private static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
