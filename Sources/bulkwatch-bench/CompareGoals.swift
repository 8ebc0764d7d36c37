// The goals of issue 12, judged from one `bulkwatch-bench compare` run and printed as met / not met. The
// machine is shared, so every speed and size goal is a ratio against pywatcher measured in the same run; only
// the idle footprint and the webhook rate are absolute. Printed, never asserted: a missed goal is a finding.
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The ratios (pywatcher / bulkwatch) of one in-process size.
struct InProcessRatios {
    var steadyWall = Double.nan
    var steadyCPU = Double.nan
    var firstWall = Double.nan
    var firstPeak = Double.nan
    var steadyPeak = Double.nan
    /// Bytes the steady commit wrote (the WAL frames of one commit).
    var commitWritten = Double.nan
}

/// Everything one compare run measured, gathered so the goals can be judged at the end.
struct CompareFigures {
    var rows: [(size: Int, bulkwatch: PollSizeResult?, python: PythonResult?, failure: String?)] = []
    var inProcess: [Int: InProcessRatios] = [:]
    var once: [Int: OnceSizeResult] = [:]
    var idle: IdleFigures?
    var webhook: WebhookThroughput?
    var loadAtStart = LoadAverage()
    var loadAtEnd = LoadAverage()

    /// One line per goal of the table: what the issue measured before, the goal, this run's figure.
    func goalsTable() -> String {
        var table = BenchTable(["goal (issue 12)", "issue", "goal", "this run", "met?"], leftAligned: [0, 1, 2, 3, 4])
        func verdict(_ met: Bool?) -> String { met.map { $0 ? "met" : "NOT MET" } ?? "not measured" }
        func ratioGoal(_ name: String, _ now: String, _ goal: Double, _ value: Double?, _ detail: String = "") {
            guard let value, value.isFinite else {
                table.add([name, now, "≥ \(Bench.fixed(goal, 0))×", "-", verdict(nil)])
                return
            }
            table.add([name, now, "≥ \(Bench.fixed(goal, 0))×", Bench.ratio(value) + detail, verdict(value >= goal)])
        }
        let k100 = inProcess[100_000]
        let m1 = inProcess[1_000_000]
        ratioGoal(
            "steady poll, 100k items, 3 % churn", "1.7×", 10, k100?.steadyWall,
            k100.map { " (CPU \(Bench.ratio($0.steadyCPU)))" } ?? "")
        ratioGoal(
            "steady poll, 1M items", "1.4×", 8, m1?.steadyWall, m1.map { " (CPU \(Bench.ratio($0.steadyCPU)))" } ?? "")
        ratioGoal("first poll, 100k items", "0.8×", 2, k100?.firstWall)
        ratioGoal("first poll, 1M items", "0.5×", 2, m1?.firstWall)
        for (label, ratios, now) in [("100k", k100, "0.88×"), ("1M", m1, "1.1×")] {
            // Both marks count: the lifetime peak (first poll) and the steady one.
            let worst = ratios.map { min($0.firstPeak, $0.steadyPeak) }
            let detail = ratios.map { " (first \(Bench.ratio($0.firstPeak)), steady \(Bench.ratio($0.steadyPeak)))" }
            ratioGoal("peak RSS, \(label), pywatcher / bulkwatch", now, 2, worst, detail ?? "")
        }
        if let idle {
            table.add([
                "idle run, 1k items, 1 s interval", "46 MB", "≤ 25 MB",
                "\(Bench.megabytes(Int(idle.bulkwatchRSS))) MB (anon \(Bench.megabytes(Int(idle.bulkwatchAnon))), file "
                    + "\(Bench.megabytes(Int(idle.bulkwatchFile))); pywatcher \(Bench.megabytes(Int(idle.pythonRSS))))",
                verdict(idle.bulkwatchRSS <= 25e6),
            ])
        } else {
            table.add(["idle run, 1k items, 1 s interval", "46 MB", "≤ 25 MB", "-", verdict(nil)])
        }
        if let webhook {
            table.add([
                "unbatched webhook, loopback", "~1.1k/s", "≥ 2,000/s, order kept",
                "\(Bench.fixed(webhook.eventsPerSecond, 0))/s, " + (webhook.inOrder ? "order kept" : "ORDER BROKEN"),
                verdict(webhook.eventsPerSecond >= 2_000 && webhook.inOrder),
            ])
        } else {
            table.add(["unbatched webhook, loopback", "~1.1k/s", "≥ 2,000/s, order kept", "-", verdict(nil)])
        }
        let wal = k100.map { Bench.megabytes(Int($0.commitWritten)) + " MB" } ?? "-"
        table.add(["WAL written per steady 100k commit", "~18 MB", "O(changes)", wal, "reported"])
        for (size, once) in once.sorted(by: { $0.key < $1.key }) {
            table.add([
                "run --once, \(size) items, steady / first", "-", "reported",
                "\(Bench.ratio(once.pythonSteady.wall / once.bulkwatchSteady.wall)) / "
                    + "\(Bench.ratio(once.pythonFirst.wall / once.bulkwatchFirst.wall)) wall, peak RSS "
                    + "\(Bench.ratio(Double(once.pythonSteady.peakRSS) / Double(once.bulkwatchSteady.peakRSS))) / "
                    + "\(Bench.ratio(Double(once.pythonFirst.peakRSS) / Double(once.bulkwatchFirst.peakRSS)))",
                "reported",
            ])
        }
        return table.render() + "\n"
            + "ratios = pywatcher / bulkwatch from this run; issue = the figure issue 12 was filed with. Load average "
            + "\(loadAtStart.description) at start, \(loadAtEnd.description) at the end (\(LoadAverage.processors) "
            + "CPUs, shared machine)."
    }
}

/// /proc/loadavg's three averages: the machine is shared, so every run says how busy it was.
struct LoadAverage: CustomStringConvertible {
    var one = Double.nan
    var five = Double.nan
    var fifteen = Double.nan

    static func sample() -> LoadAverage {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return LoadAverage() }
        let fields = text.split(separator: " ").prefix(3).map { Double($0) ?? .nan }
        guard fields.count == 3 else { return LoadAverage() }
        return LoadAverage(one: fields[0], five: fields[1], fifteen: fields[2])
    }

    static var processors: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    var description: String { [one, five, fifteen].map { Bench.fixed($0, 2) }.joined(separator: " / ") }
}

extension Bench {
    /// `pywatcher / bulkwatch` as printed everywhere: two decimals below 1, one below 10, none above.
    static func ratio(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        return fixed(value, value < 1 ? 2 : value < 10 ? 1 : 0) + "×"
    }

    /// The `bulkwatch` binary the whole-process and idle figures run: `$BULKWATCH_BENCH_BINARY` when set (to
    /// measure another build, e.g. one linked with --static-swift-stdlib), else the one next to this executable.
    static func bulkwatchBinary() throws -> String {
        let binary =
            ProcessInfo.processInfo.environment["BULKWATCH_BENCH_BINARY"]
            ?? URL(fileURLWithPath: executablePath).deletingLastPathComponent().appendingPathComponent("bulkwatch").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchError("\(binary) not found: build it with swift build -c release --product bulkwatch")
        }
        return binary
    }

    /// Bytes this process has passed to write(2) and its kin so far, all threads (`wchar` of /proc/self/io).
    static func writtenChars() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("wchar:") {
            return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
