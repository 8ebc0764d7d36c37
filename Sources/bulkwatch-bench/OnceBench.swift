// `bulkwatch-bench compare`, whole-process part: the real `bulkwatch run --once` binary against
// `pywatcher.py --once`, a cold process per poll on each side (start, load the state, poll, commit,
// deliver, exit). The in-process figures leave out what a cron'd watcher pays on every run: the
// process start, dynamic linking and the state load; this puts them back. Printed, never asserted.
//
// Both sides poll one shared simulator, so in every round they read byte-identical bodies; the
// world moves between rounds (the same WorldMutator as the in-process suites), never during one.
import BulkWatch
import BulkWatchSimulator
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One cold process, from posix_spawn to reaping it with wait4.
struct ProcessCycle {
    var wall = 0.0
    /// User + system CPU of the child (wait4's rusage), seconds.
    var cpu = 0.0
    /// The child's VmHWM, bytes: the last reading of /proc/PID/status before it exited, sampled every 2 ms
    /// (VmHWM only grows, so the last reading is the peak but for the child's final 2 ms). Not wait4's
    /// ru_maxrss: posix_spawn's child execs from the parent's address space, and Linux folds that address
    /// space's peak (this benchmark's own ~50 MB) into ru_maxrss at exec.
    var peakRSS = 0
    /// ru_oublock × 512, bytes: what the child queued for storage (database, WAL, checkpoint, event file).
    var writtenBytes = 0
    /// Lines the child appended to its event file.
    var events = 0

    static func median(_ cycles: [ProcessCycle]) -> ProcessCycle {
        func of(_ key: KeyPath<ProcessCycle, Double>) -> Double { Bench.median(cycles.map { $0[keyPath: key] }) }
        func ofInt(_ key: KeyPath<ProcessCycle, Int>) -> Int {
            Int(Bench.median(cycles.map { Double($0[keyPath: key]) }))
        }
        return ProcessCycle(
            wall: of(\.wall), cpu: of(\.cpu), peakRSS: ofInt(\.peakRSS), writtenBytes: ofInt(\.writtenBytes),
            events: ofInt(\.events))
    }
}

/// The whole-process figures of one size.
struct OnceSizeResult {
    var size: Int
    var runs: Int
    var bulkwatchFirst = ProcessCycle()
    var pythonFirst = ProcessCycle()
    var bulkwatchSteady = ProcessCycle()
    var pythonSteady = ProcessCycle()
}

extension BenchChild {
    /// Blocks in wait4 on a Dispatch thread (never on the cooperative pool, where the in-process simulator's
    /// tasks run) while another one samples the child's VmHWM every 2 ms; returns how the child ended, its
    /// resource usage and the last VmHWM read.
    func waitWithUsage() async -> (exit: Exit, usage: rusage, peak: Int) {
        let pid = self.pid
        let sampler = PeakSampler()
        DispatchQueue.global().async {
            while !sampler.state.withLock({ $0.done }) {
                if let peak = Bench.procStatus("VmHWM", pid: pid) {
                    sampler.state.withLock { $0.peak = max($0.peak, peak) }
                }
                usleep(2_000)
            }
        }
        let (exit, usage) = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var status: Int32 = 0
                var usage = rusage()
                while wait4(pid, &status, 0, &usage) < 0, errno == EINTR {}
                let exit: Exit = status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signalled(status & 0x7F)
                continuation.resume(returning: (exit, usage))
            }
        }
        let peak = sampler.state.withLock { state in
            state.done = true
            return state.peak
        }
        return (exit, usage, peak)
    }
}

/// The highest VmHWM read so far, shared by the sampling thread and the waiter.
private final class PeakSampler: Sendable {
    let state = Mutex((peak: 0, done: false))
}

/// Runs `first` + `runs` steady rounds of both cold processes at `size` items.
func measureOnceCycles(size: Int, runs: Int, python: PyWatcher) async throws -> OnceSizeResult {
    let binary = try Bench.bulkwatchBinary()
    Bench.progress("compare once \(size): building the simulator")
    let simulator = DruIDSimulator(
        options: SimulatorOptions(
            initialOperations: size, creationsPerSecond: 0, automaticChurn: false, clockStart: Bench.clockStart,
            requestLogLimit: 1_000),
        logger: Bench.quietLogger("bulkwatch-bench.simulator"))
    try await simulator.start()
    _ = simulator.currentListBody()
    let directory = try Bench.makeTemporaryDirectory("bulkwatch-bench-once")
    defer { Bench.removeTree(directory) }
    var environment = ProcessInfo.processInfo.environment
    environment["BULKWATCH_CLIENT_SECRET"] = Bench.clientSecret
    environment.removeValue(forKey: "BULKWATCH_TOKEN")
    let bulkwatchArguments = [
        "run", "--once", "--endpoint", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id",
        Bench.clientID, "--timeout", "300s", "--sink", "file:\(directory)/bw.jsonl", "--state", "\(directory)/bw.db",
        "--log-level", "warning",
    ]
    let pythonArguments = [
        python.script, "--url", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id", Bench.clientID,
        "--client-secret", Bench.clientSecret, "--state", directory + "/py.db", "--out", directory + "/py.jsonl",
        "--once",
    ]
    var bulkwatchLines = LineCounter(path: directory + "/bw.jsonl")
    var pythonLines = LineCounter(path: directory + "/py.jsonl")

    func cycle(_ path: String, _ arguments: [String], _ environment: [String: String]?, _ lines: inout LineCounter)
        async throws -> ProcessCycle
    {
        let start = ContinuousClock.now
        let child = try BenchChild.spawn(path, arguments, environment: environment, pipes: false)
        let (exit, usage, peak) = await child.waitWithUsage()
        let wall = Bench.seconds(since: start)
        // What a side left unsynced (pywatcher never syncs) must not be written back during the next cycle.
        Bench.settleWrites()
        guard case .exited(0) = exit else { throw BenchError("\(path) \(arguments.first ?? "") ended with \(exit)") }
        func value(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return ProcessCycle(
            wall: wall, cpu: value(usage.ru_utime) + value(usage.ru_stime), peakRSS: peak,
            writtenBytes: usage.ru_oublock * 512, events: lines.advance())
    }

    var result = OnceSizeResult(size: size, runs: runs)
    var mutator = WorldMutator(size: size)
    var bulkwatchSteady: [ProcessCycle] = []
    var pythonSteady: [ProcessCycle] = []
    do {
        for round in 0...runs {
            if round > 0 {
                mutator.step(simulator)
                _ = simulator.currentListBody()  // render now, outside both timings
            }
            Bench.progress("compare once \(size): round \(round) of \(runs) (0 = first poll on empty state)")
            // Alternate who goes first, so neither side always meets the warmer page cache.
            var bulkwatch = ProcessCycle()
            var pywatcher = ProcessCycle()
            if round % 2 == 0 {
                bulkwatch = try await cycle(binary, bulkwatchArguments, environment, &bulkwatchLines)
                pywatcher = try await cycle(python.interpreter, pythonArguments, nil, &pythonLines)
            } else {
                pywatcher = try await cycle(python.interpreter, pythonArguments, nil, &pythonLines)
                bulkwatch = try await cycle(binary, bulkwatchArguments, environment, &bulkwatchLines)
            }
            if round == 0 {
                result.bulkwatchFirst = bulkwatch
                result.pythonFirst = pywatcher
            } else {
                bulkwatchSteady.append(bulkwatch)
                pythonSteady.append(pywatcher)
            }
        }
    } catch {
        await simulator.stop()
        throw error
    }
    await simulator.stop()
    result.bulkwatchSteady = ProcessCycle.median(bulkwatchSteady)
    result.pythonSteady = ProcessCycle.median(pythonSteady)
    return result
}

/// Prints the whole-process table (one block per size, same columns as the in-process table).
func printOnceTable(_ results: [(size: Int, result: OnceSizeResult?, failure: String?)]) {
    print("whole process, `bulkwatch run --once` vs `pywatcher.py --once`: one cold process per poll on each side")
    print("(start, dynamic linking, load the state, token, fetch, decode, diff, commit, file sink, exit), timed from")
    print("posix_spawn to wait4; peak RSS = the child's VmHWM, read every 2 ms until it exits; written =")
    print("ru_oublock × 512 (database, WAL, checkpoint, event file). first = empty state; steady = the same state")
    print("after each round's 1 % changed / new / gone, medians. Both read the same simulator, so identical bodies,")
    print("in alternating order.")
    print("")
    var table = BenchTable(["items", "measure", "bulkwatch", "pywatcher", "ratio"], leftAligned: [1])
    for (size, result, failure) in results {
        guard let result else {
            table.add(["\(size)", "failed: \(failure ?? "?")", "", "", ""])
            continue
        }
        func add(_ name: String, _ left: Double, _ right: Double, _ format: (Double) -> String) {
            table.add(["\(size)", name, format(left), format(right), Bench.ratio(right / left)])
        }
        let mb = { (bytes: Double) in Bench.megabytes(Int(bytes)) }
        let pairs = [
            ("first", result.bulkwatchFirst, result.pythonFirst),
            ("steady", result.bulkwatchSteady, result.pythonSteady),
        ]
        for (label, bw, py) in pairs {
            add("run --once \(label) ms", bw.wall, py.wall, Bench.millis)
            add("run --once \(label) CPU ms", bw.cpu, py.cpu, Bench.millis)
            add("run --once \(label) peak RSS MB", Double(bw.peakRSS), Double(py.peakRSS), mb)
            add("run --once \(label) written MB", Double(bw.writtenBytes), Double(py.writtenBytes), mb)
            table.add(["\(size)", "run --once \(label) events", "\(bw.events)", "\(py.events)", ""])
        }
    }
    print(table.render())
    print("steady = median of \(results.compactMap(\.result).first?.runs ?? 0) rounds per size.")
    print("")
}

/// Counts the lines appended to a file since the last call (an event file grows by one line per event).
struct LineCounter {
    let path: String
    private var offset: UInt64 = 0

    init(path: String) {
        self.path = path
    }

    mutating func advance() -> Int {
        guard let handle = FileHandle(forReadingAtPath: path) else { return 0 }
        defer { try? handle.close() }
        var count = 0
        do {
            try handle.seek(toOffset: offset)
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                offset += UInt64(chunk.count)
                count += chunk.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
            }
        } catch {
            return count
        }
        return count
    }
}
