// `bulkwatch-bench compare`: bulkwatch side by side with bench/pywatcher.py, the watcher a user would write with the
// Python standard library (urllib, json, sqlite3), on identical inputs in the same run. Printed, never asserted.
//
// Per size, each side gets its own fresh in-process DruID simulator (same seed, same mutations, so byte-identical
// bodies poll by poll) and runs in its own child process, so each VmHWM is that side's alone:
//   bulkwatch  the `poll --single N` child of `bulkwatch-bench poll` (real Watcher, Journal, FileSink; then the same
//              stages called one by one for the phase split)
//   pywatcher  `python3 bench/pywatcher.py --step-stdin --timing`: one poll per line on its stdin, and one
//              `@@POLL {json}` line back with the wall time of each phase, timed inside the script
// Then the whole-process cycle (OnceBench.swift: `bulkwatch run --once` vs `pywatcher.py --once`, cold processes),
// idle (`bulkwatch run` and `pywatcher.py` both polling one unchanging 1k-item simulator every second), unbatched
// webhook throughput (WebhookBench.swift), and the issue-12 goals, each marked met / not met.
import BulkWatch
import BulkWatchSimulator
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What `body` returned or threw, as a value: both sides of a lockstep `compare` run at once, and one's failure must
/// not cancel the other's measurement.
private func measuredOutcome<T: Sendable>(_ body: () async throws -> T) async -> Result<T, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}

/// Entry point for `bulkwatch-bench compare [--sizes 1000,100000,1000000] [--runs N] [--warmup N]
/// [--once-sizes 100000] [--once-runs N] [--idle-seconds N] [--webhook-events N] [--python PATH] [--script PATH]`.
func compareBenchmark(arguments: [String]) async throws {
    let usage =
        "compare [--sizes 1000,100000,1000000] [--runs N] [--warmup N] [--once-sizes 100000|none] [--once-runs 3]"
        + " [--idle-seconds 30] [--webhook-events 5000] [--python python3] [--script bench/pywatcher.py]"
        + " [--order lockstep|sequential]"
    let flags = try BenchFlags(
        arguments,
        known: [
            "--sizes", "--runs", "--warmup", "--once-sizes", "--once-runs", "--idle-seconds", "--webhook-events",
            "--python", "--script", "--order",
        ], usage: usage)
    let sizes = try flags["--sizes"].map(Bench.parseSizes) ?? [1_000, 100_000, 1_000_000]
    let fixedRuns = try flags["--runs"].map { try Bench.positiveInt($0, "--runs") }
    let warmup = try flags["--warmup"].map { try Bench.positiveInt($0, "--warmup") } ?? 2
    let onceSizes = try flags["--once-sizes"].map { $0 == "none" ? [] : try Bench.parseSizes($0) } ?? [100_000]
    let onceRuns = try flags["--once-runs"].map { try Bench.positiveInt($0, "--once-runs") } ?? 3
    let idleSeconds = try flags["--idle-seconds"].map { try Bench.positiveInt($0, "--idle-seconds") } ?? 30
    let webhookEvents = try flags["--webhook-events"].map { try Bench.positiveInt($0, "--webhook-events") } ?? 5_000
    let python = try PyWatcher(interpreter: flags["--python"] ?? "python3", script: flags["--script"])
    let lockstep: Bool
    switch flags["--order"] ?? "lockstep" {
    case "lockstep": lockstep = true
    case "sequential": lockstep = false
    case let other: throw BenchError("--order \(other): lockstep or sequential; usage: \(usage)")
    }
    let load = LoadAverage.sample()

    print("compare: bulkwatch vs \(python.script) (\(python.version)), the stdlib-only watcher a user would write;")
    print("identical bodies from a fresh in-process DruID simulator per side; each side in its own child process.")
    print("steady = 1 % changed, 1 % new, 1 % gone per poll, after \(warmup) warm-up polls. Times are medians of the")
    print("steady polls, wall clock (CPU = user+sys of the whole child). Phases: bulkwatch's come from the same stages")
    print("called one by one (BulkStatusClient.fetch, SnapshotDiffer.apply, Journal.commit, FileSink.deliver + journal")
    print("read/cursor); pywatcher's are timed inside the script with time.perf_counter (--timing). Peak RSS = child")
    print("VmHWM: first = lifetime peak through the first poll; steady = VmHWM reset after malloc_trim (both sides)")
    print("just before the steady polls. ratio = pywatcher / bulkwatch (above 1: bulkwatch faster or smaller).")
    if lockstep {
        print("The two sides take turns (--order lockstep): pywatcher's poll k, then bulkwatch's poll k, each with its")
        print("world's move before it, so both meet the same minutes of this shared machine; only one side is active")
        print("at a time. bulkwatch's phase split (its stages called one by one) runs after pywatcher's last poll.")
    } else {
        print("pywatcher's polls first, then bulkwatch's (--order sequential): each side meets other minutes.")
    }
    print("Between turns, and after each whole-process cycle, sync(2) writes back what a side left in the page cache")
    print("(pywatcher does not fsync), outside both timings, so it is never written back during the other's turn.")
    print("MB = 10^6 bytes. Load average at start: \(load.description) on \(LoadAverage.processors) CPUs.")
    print("")

    var figures = CompareFigures()
    for size in sizes {
        let runs = fixedRuns ?? (size <= 10_000 ? 11 : size <= 200_000 ? 7 : 3)
        var failure: [String] = []
        let turns = lockstep ? PollTurns() : nil
        async let pythonMeasured = measuredOutcome {
            try await python.measure(size: size, runs: runs, warmup: warmup, turns: turns)
        }
        if !lockstep {
            _ = await pythonMeasured
            Bench.settleWrites()
        }
        async let bulkwatchMeasured = measuredOutcome {
            try await runPollChild(size: size, runs: runs, warmup: warmup, turns: turns)
        }
        var pythonResult: PythonResult?
        switch await pythonMeasured {
        case .success(let result): pythonResult = result
        case .failure(let error):
            Bench.progress("compare \(size): pywatcher: \(error)")
            failure.append("pywatcher: \(error)")
        }
        var bulkwatchResult: PollSizeResult?
        switch await bulkwatchMeasured {
        case .success(let result): bulkwatchResult = result
        case .failure(let error):
            Bench.progress("compare \(size): bulkwatch: \(error)")
            failure.append("bulkwatch: \(error)")
        }
        if let bulkwatchResult, let pythonResult {
            figures.inProcess[size] = InProcessRatios(
                steadyWall: pythonResult.steady.total / bulkwatchResult.steady.wall,
                steadyCPU: pythonResult.steady.cpu / bulkwatchResult.steady.cpu,
                firstWall: pythonResult.first.total / bulkwatchResult.first.wall,
                firstPeak: Double(pythonResult.firstPeak) / Double(bulkwatchResult.first.peakRSS),
                steadyPeak: Double(pythonResult.steadyPeak) / Double(bulkwatchResult.steady.peakRSS),
                commitWritten: bulkwatchResult.steadyPieces.written)
        } else if let bulkwatchResult {
            figures.inProcess[size] = InProcessRatios(commitWritten: bulkwatchResult.steadyPieces.written)
        }
        let failed = failure.isEmpty ? nil : failure.joined(separator: "; ")
        figures.rows.append((size, bulkwatchResult, pythonResult, failed))
    }
    printInProcessTable(figures.rows)

    var onceRows: [(size: Int, result: OnceSizeResult?, failure: String?)] = []
    for size in onceSizes {
        do {
            let result = try await measureOnceCycles(size: size, runs: onceRuns, python: python)
            onceRows.append((size, result, nil))
            figures.once[size] = result
        } catch {
            Bench.progress("compare once \(size): \(error)")
            onceRows.append((size, nil, "\(error)"))
        }
    }
    if !onceRows.isEmpty { printOnceTable(onceRows) }

    do {
        figures.idle = try await compareIdle(python: python, seconds: idleSeconds)
    } catch {
        Bench.progress("compare idle: \(error)")
        print("idle: failed: \(error)\n")
    }

    do {
        let result = try await webhookUnbatchedThroughput(events: webhookEvents)
        figures.webhook = result
        print("webhook: \(webhookEvents) events committed at once, then drained by the real Dispatcher into an")
        print("unbatched WebhookSink (one signed POST per event, one kept-alive connection) to a loopback HTTP/1.1")
        print("receiver answering 204; order = the event ids in the bodies, as received, against the journal's order.")
        print("")
        print(result.render())
        print("")
    } catch {
        Bench.progress("compare webhook: \(error)")
        print("webhook: failed: \(error)\n")
    }

    figures.loadAtEnd = LoadAverage.sample()
    figures.loadAtStart = load
    print(figures.goalsTable())
}

/// The in-process side-by-side table, one block of rows per size.
private func printInProcessTable(
    _ rows: [(size: Int, bulkwatch: PollSizeResult?, python: PythonResult?, failure: String?)]
) {
    var table = BenchTable(["items", "measure", "bulkwatch", "pywatcher", "ratio", "goal"], leftAligned: [1, 5])
    for row in rows {
        if let failure = row.failure { table.add(["\(row.size)", "failed", "", "", "", failure]) }
        let bw = row.bulkwatch
        let py = row.python
        func add(_ name: String, _ left: Double?, _ right: Double?, goal: String = "", format: (Double) -> String) {
            let ratio = left.flatMap { l in right.map { r in r / l } }
            table.add([
                "\(row.size)", name, left.map(format) ?? "-", right.map(format) ?? "-", ratio.map(Bench.ratio) ?? "-",
                goal,
            ])
        }
        let ms = Bench.millis
        let mb = { (bytes: Double) in Bench.megabytes(Int(bytes)) }
        let goalSize = row.size == 100_000 || row.size == 1_000_000
        add("fetch+decode ms", bw?.steadyPieces.fetch, py?.steady.fetchDecode, format: ms)
        add("diff ms", bw?.steadyPieces.diff, py?.steady.diff, format: ms)
        add("commit ms", bw?.steadyPieces.commit, py?.steady.commit, format: ms)
        add(
            "file sink ms", bw.map { $0.steadyPieces.sink + $0.steadyPieces.dispatch }, py?.steady.sink, format: ms)
        add("first poll ms", bw?.first.wall, py?.first.total, goal: goalSize ? "≥ 2×" : "", format: ms)
        add("first poll CPU ms", bw?.first.cpu, py?.first.cpu, format: ms)
        let steadyGoal = row.size == 100_000 ? "≥ 10×" : row.size == 1_000_000 ? "≥ 8×" : ""
        add("steady poll ms", bw?.steady.wall, py?.steady.total, goal: steadyGoal, format: ms)
        add("steady poll CPU ms", bw?.steady.cpu, py?.steady.cpu, format: ms)
        add(
            "peak RSS first MB", bw.map { Double($0.first.peakRSS) }, py.map { Double($0.firstPeak) },
            goal: goalSize ? "≥ 2×" : "", format: mb)
        add(
            "peak RSS steady MB", bw.map { Double($0.steady.peakRSS) }, py.map { Double($0.steadyPeak) },
            goal: goalSize ? "≥ 2×" : "", format: mb)
        add("commit written MB", bw.map { $0.steadyPieces.written }, nil, format: mb)
        let events = [bw.map { "bulkwatch \($0.steady.events)" }, py.map { "pywatcher \($0.steady.events)" }]
        table.add(["\(row.size)", "steady events/poll", "", "", "", events.compactMap { $0 }.joined(separator: ", ")])
    }
    print(table.render())
    print("file sink = bulkwatch FileSink.deliver (write + fsync per \(Dispatcher.defaultBatchSize) events) + journal")
    print("read + cursor write; pywatcher: one append of the poll's lines, no fsync. commit = event encoding + the")
    print("SQLite transaction on both sides (bulkwatch: CloudEvents with a SHA-256 stable id, WAL, synchronous=FULL;")
    print("pywatcher: json.dumps, sqlite3 defaults: rollback journal, synchronous=FULL). pywatcher expires an item on")
    print("its first absence, bulkwatch on its second (--expire-after 2), so steady event counts differ slightly.")
    print("commit written = bytes the steady commit passed to write(2)/pwrite(2) (/proc/self/io wchar around the call;")
    print("nothing else writes meanwhile): with wal_autocheckpoint=0 that is the WAL frames of the one commit, 24 B +")
    print("one page each. (The -wal file's size says nothing per commit: after the checkpoint between polls SQLite")
    print("rewrites the WAL from its start, so the file keeps the first poll's high-water size.)")
    print("")
}

// MARK: - pywatcher

/// What the Python side measured for one size.
struct PythonResult {
    struct Poll {
        var fetchDecode = 0.0
        var diff = 0.0
        var commit = 0.0
        var sink = 0.0
        var total = 0.0
        var cpu = 0.0
        var events = 0

        static func median(_ polls: [Poll]) -> Poll {
            func of(_ key: KeyPath<Poll, Double>) -> Double { Bench.median(polls.map { $0[keyPath: key] }) }
            return Poll(
                fetchDecode: of(\.fetchDecode), diff: of(\.diff), commit: of(\.commit), sink: of(\.sink),
                total: of(\.total), cpu: of(\.cpu), events: Int(Bench.median(polls.map { Double($0.events) })))
        }
    }

    var first = Poll()
    var steady = Poll()
    var firstPeak = 0
    var steadyPeak = 0
}

/// `python3 bench/pywatcher.py`: resolved once, run as a stepped child (in-process figures) or cold (`--once`).
struct PyWatcher {
    let interpreter: String
    let script: String
    let version: String

    init(interpreter: String, script: String?) throws {
        self.interpreter = try Self.resolve(interpreter)
        self.script = try script ?? Self.findScript()
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: self.interpreter)
        probe.arguments = ["--version"]
        let pipe = Pipe()
        probe.standardOutput = pipe
        try probe.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        probe.waitUntilExit()
        version = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `python3` → its absolute path through PATH (posix_spawn does not search).
    private static func resolve(_ name: String) throws -> String {
        if name.contains("/") { return name }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw BenchError("\(name) not found in PATH (pass --python)")
    }

    /// bench/pywatcher.py in the current directory or above this executable (it lives in .build/…/release/).
    private static func findScript() throws -> String {
        var directory = URL(fileURLWithPath: Bench.executablePath).deletingLastPathComponent()
        var candidates = [FileManager.default.currentDirectoryPath + "/bench/pywatcher.py"]
        for _ in 0..<5 {
            candidates.append(directory.appendingPathComponent("bench/pywatcher.py").path)
            directory = directory.deletingLastPathComponent()
        }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw BenchError("bench/pywatcher.py not found (run from the package root or pass --script)")
        }
        return found
    }

    /// First poll, `warmup` polls, then `runs` measured steady polls, the world moved before each by the same
    /// ``WorldMutator`` sequence the bulkwatch child sees. With `turns`, each poll (with the world's move before it,
    /// and the start-up before the first) waits for its turn, and the child and its simulator are let go only once
    /// the bulkwatch side has finished, so their exit never overlaps a poll of the other side.
    func measure(size: Int, runs: Int, warmup: Int, turns: PollTurns? = nil) async throws -> PythonResult {
        await turns?.begin(.python)
        var inTurn = true
        var started: (simulator: DruIDSimulator, child: BenchChild, directory: String)?
        do {
            Bench.progress("compare \(size): pywatcher: building the simulator")
            let simulator = try await compareSimulator(items: size)
            let directory = try Bench.makeTemporaryDirectory("bulkwatch-bench-py")
            let child: BenchChild
            do {
                child = try BenchChild.spawn(
                    interpreter,
                    [
                        script, "--url", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id",
                        Bench.clientID, "--client-secret", Bench.clientSecret, "--state", directory + "/py.db", "--out",
                        directory + "/py.jsonl", "--step-stdin", "--timing",
                    ], pipes: true)
            } catch {
                Bench.removeTree(directory)
                await simulator.stop()
                throw error
            }
            started = (simulator, child, directory)
            var mutator = WorldMutator(size: size)
            var result = PythonResult()
            Bench.progress("compare \(size): pywatcher: first poll")
            result.first = try await poll(child)
            result.firstPeak = Bench.procStatus("VmHWM", pid: child.pid) ?? 0
            var steady: [PythonResult.Poll] = []
            Bench.progress("compare \(size): pywatcher: \(warmup) warm-up + \(runs) steady polls")
            for round in 0..<(warmup + runs) {
                await turns?.end(.python)
                inTurn = false
                await turns?.begin(.python)
                inTurn = true
                mutator.step(simulator)
                _ = simulator.currentListBody()
                if round == warmup {
                    child.send("trim")
                    guard await child.output?.nextLine() == "@@TRIMMED" else { throw BenchError("no @@TRIMMED") }
                    resetPeak(of: child.pid)
                }
                let measured = try await poll(child)
                if round >= warmup { steady.append(measured) }
            }
            result.steadyPeak = Bench.procStatus("VmHWM", pid: child.pid) ?? 0
            result.steady = PythonResult.Poll.median(steady)
            await turns?.finish(.python, duringTurn: true)
            inTurn = false
            await turns?.waitUntilFinished(.bulkwatch)
            child.closePipes()
            _ = await child.wait()
            Bench.removeTree(directory)
            await simulator.stop()
            return result
        } catch {
            await turns?.finish(.python, duringTurn: inTurn)
            if let (simulator, child, directory) = started {
                child.closePipes()
                kill(child.pid, SIGKILL)
                _ = await child.wait()
                Bench.removeTree(directory)
                await simulator.stop()
            }
            throw error
        }
    }

    private func poll(_ child: BenchChild) async throws -> PythonResult.Poll {
        child.send("poll")
        while let line = await child.output?.nextLine() {
            if line.hasPrefix("@@FAILED ") { throw BenchError("pywatcher poll failed: \(line.dropFirst(9))") }
            guard line.hasPrefix("@@POLL ") else { continue }
            let timing = try JSONDecoder().decode([String: Double].self, from: Data(line.dropFirst(7).utf8))
            return PythonResult.Poll(
                fetchDecode: (timing["fetch"] ?? .nan) + (timing["decode"] ?? .nan), diff: timing["diff"] ?? .nan,
                commit: timing["commit"] ?? .nan, sink: timing["sink"] ?? .nan, total: timing["total"] ?? .nan,
                cpu: timing["cpu"] ?? .nan, events: Int(timing["events"] ?? 0))
        }
        throw BenchError("pywatcher ended (\(child.poll()?.description ?? "?"))")
    }

    /// Resets `pid`'s VmHWM to its current RSS (`/proc/PID/clear_refs`, as the bulkwatch child does for itself).
    private func resetPeak(of pid: pid_t) {
        let fd = open("/proc/\(pid)/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = write(fd, "5", 1)
        close(fd)
    }
}

/// The simulator every compare child polls: the same options as the poll suite's.
private func compareSimulator(items: Int) async throws -> DruIDSimulator {
    let simulator = DruIDSimulator(
        options: SimulatorOptions(
            initialOperations: items, creationsPerSecond: 0, automaticChurn: false, clockStart: Bench.clockStart,
            requestLogLimit: 1_000),
        logger: Bench.quietLogger("bulkwatch-bench.simulator"))
    try await simulator.start()
    _ = simulator.currentListBody()
    return simulator
}

// MARK: - idle

/// What the idle comparison measured, for the goals table.
struct IdleFigures {
    var bulkwatchRSS: Double
    var pythonRSS: Double
    var bulkwatchAnon: Double
    var bulkwatchFile: Double
}

/// `bulkwatch run` and `pywatcher.py` side by side, each polling the same unchanging 1k-item simulator every second:
/// RSS sampled every second (split into anonymous and file-backed pages, which is where the footprint work looks),
/// CPU from /proc/PID/stat over the window, scaled to an hour.
private func compareIdle(python: PyWatcher, seconds: Int) async throws -> IdleFigures {
    let items = 1_000
    let warmup = 5
    let binary = try Bench.bulkwatchBinary()
    print("idle: `bulkwatch run --interval 1s --sink file:…` and `pywatcher.py --interval 1 --out …`, both polling")
    print("one in-process simulator with \(items) unchanging items; \(warmup) s warm-up (first poll, \(items) created")
    print("events), then VmRSS sampled every second for \(seconds) s; CPU = utime+stime from /proc/PID/stat over the")
    print("window.")
    print("bulkwatch binary: \(binary)")
    print("")
    let simulator = try await compareSimulator(items: items)
    let directory = try Bench.makeTemporaryDirectory("bulkwatch-bench-compare-idle")
    defer { Bench.removeTree(directory) }
    let bulkwatch = try Bench.spawnIdleWatcher(binary: binary, simulator: simulator, directory: directory, name: "bw")
    let pywatcher = try BenchChild.spawn(
        python.interpreter,
        [
            python.script, "--url", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id", Bench.clientID,
            "--client-secret", Bench.clientSecret, "--state", directory + "/py.db", "--out", directory + "/py.jsonl",
            "--interval", "1",
        ], pipes: false)
    let children = [("bulkwatch", bulkwatch), ("pywatcher", pywatcher)]
    Bench.progress("compare idle: warm-up \(warmup) s")
    try await Task.sleep(for: .seconds(warmup))
    for (name, child) in children {
        if let exit = child.poll() {
            for (_, other) in children { _ = await other.stop() }
            await simulator.stop()
            throw BenchError("\(name) ended during the idle warm-up (\(exit))")
        }
    }
    Bench.progress("compare idle: sampling \(seconds) s")
    let cpuBefore = children.map { Bench.cpuSeconds(pid: $0.1.pid) ?? .nan }
    let start = ContinuousClock.now
    var samples: [[Double]] = [[], []]
    var anonymous: [[Double]] = [[], []]
    var fileBacked: [[Double]] = [[], []]
    for second in 1...seconds {
        try await Task.sleep(until: start + .seconds(second), clock: .continuous)
        for (index, (_, child)) in children.enumerated() {
            if let rss = Bench.procStatus("VmRSS", pid: child.pid) { samples[index].append(Double(rss)) }
            if let anon = Bench.procStatus("RssAnon", pid: child.pid) { anonymous[index].append(Double(anon)) }
            if let file = Bench.procStatus("RssFile", pid: child.pid) { fileBacked[index].append(Double(file)) }
        }
    }
    let elapsed = Bench.seconds(since: start)
    let cpu = children.enumerated().map { index, child in
        (Bench.cpuSeconds(pid: child.1.pid) ?? .nan) - cpuBefore[index]
    }
    let peaks = children.map { Double(Bench.procStatus("VmHWM", pid: $0.1.pid) ?? 0) }
    for (_, child) in children { _ = await child.stop() }
    await simulator.stop()

    var table = BenchTable(["items", "measure", "bulkwatch", "pywatcher", "ratio", "goal"], leftAligned: [1, 5])
    func add(_ name: String, _ values: [Double], goal: String = "", format: (Double) -> String) {
        table.add(["\(items)", name, format(values[0]), format(values[1]), Bench.ratio(values[1] / values[0]), goal])
    }
    let megabytes = { (bytes: Double) in Bench.megabytes(Int(bytes)) }
    let rss = samples.map { Bench.median($0) }
    let anon = anonymous.map { Bench.median($0) }
    let file = fileBacked.map { Bench.median($0) }
    add("idle RSS median MB", rss, goal: "bulkwatch ≤ 25 MB", format: megabytes)
    add("  of which anonymous MB", anon, format: megabytes)
    add("  of which file-backed MB", file, format: megabytes)
    add("idle VmHWM MB", peaks, format: megabytes)
    add("idle CPU s/hour", cpu.map { $0 / elapsed * 3_600 }) { Bench.fixed($0, 0) }
    print(table.render())
    print("window \(Bench.fixed(elapsed, 1)) s; both processes polled the same simulator concurrently. anonymous /")
    print("file-backed = RssAnon / RssFile (heap and stacks / mapped binary and shared libraries) of /proc/PID/status.")
    print("")
    return IdleFigures(bulkwatchRSS: rss[0], pythonRSS: rss[1], bulkwatchAnon: anon[0], bulkwatchFile: file[0])
}
