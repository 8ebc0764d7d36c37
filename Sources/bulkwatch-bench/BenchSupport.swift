// Helpers shared by the fetch, poll and idle suites: clocks, CPU time, resident memory, child
// processes, loggers and aligned tables. Everything here measures; nothing asserts.
import BulkWatch
import BulkWatchSimulator
import Dispatch
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Namespace for the shared measuring helpers (prefixed so they never clash with a suite's private ones).
enum Bench {
    /// `bulkwatch run` on `simulator` every second with a file sink, quiet: the idle measurements.
    static func spawnIdleWatcher(binary: String, simulator: DruIDSimulator, directory: String, name: String) throws
        -> BenchChild
    {
        var environment = ProcessInfo.processInfo.environment
        environment["BULKWATCH_CLIENT_SECRET"] = clientSecret
        environment.removeValue(forKey: "BULKWATCH_TOKEN")
        return try BenchChild.spawn(
            binary,
            [
                "run", "--endpoint", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id", clientID,
                "--interval", "1s", "--sink", "file:\(directory)/\(name).jsonl", "--state", "\(directory)/\(name).db",
                "--log-level", "warning",
            ], environment: environment, pipes: false)
    }

    /// The simulator's fixed clock for every suite, so bodies are the same bytes on every run.
    static let clockStart = Date(timeIntervalSince1970: 1_795_860_963)  // 2026-11-28T10:16:03Z
    /// The simulator's default credentials (`SimulatorOptions` defaults).
    static let clientID = "bulkwatch-demo"
    static let clientSecret = "demo-secret"

    // MARK: Time

    static func seconds(_ duration: Duration) -> Double {
        duration.seconds
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        seconds(ContinuousClock.now - start)
    }

    /// Writes everything still dirty in the page cache to disk (`sync(2)`): in `compare`, between the two sides'
    /// turns (``PollTurns``) and after each whole-process cycle, outside both sides' timings.
    ///
    /// Why: pywatcher does not `fsync` (a steady 100k poll leaves ~23 MB of its database and event file in the page
    /// cache, a first poll ~75 MB), so the kernel wrote its data back during bulkwatch's turn, and bulkwatch's own
    /// `fsync`s (the journal commit, the file sink) queued behind that writeback: the file sink stage took 4.75–4.88
    /// ms in some `compare` runs against 1.2–1.9 ms in `poll`, where nothing else writes; `poll --sizes 100000
    /// --runs 30` while a `sync` wrote back 1.5 GB of another file: 3.7–4.0 against 1.3 ms (seventeenth round).
    /// bulkwatch's writes are on disk when its turn ends (it syncs them itself), so this costs its turn nothing;
    /// pywatcher's poll times do not include its writeback either way.
    static func settleWrites() {
        sync()
    }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// User + system CPU seconds of this process so far, all threads (getrusage `RUSAGE_SELF`).
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func value(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return value(usage.ru_utime) + value(usage.ru_stime)
    }

    /// User + system CPU seconds of process `pid`, from fields 14 and 15 of `/proc/PID/stat`.
    static func cpuSeconds(pid: pid_t) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm)" the fields start at `state` (field 3), so utime (14) is index 11.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (user + system) / (ticks > 0 ? ticks : 100)
    }

    // MARK: Memory

    /// A `kB` line of `/proc/PID/status` (`/proc/self/…` when `pid` is nil; `file: "smaps_rollup"` for `Pss`), in
    /// bytes.
    static func procStatus(_ key: String, pid: pid_t? = nil, file: String = "status") -> Int? {
        let path = "/proc/\(pid.map(String.init) ?? "self")/\(file)"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            let fields = line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.first.flatMap { Int($0) }.map { $0 * 1_024 }
        }
        return nil
    }

    /// Gives freed heap back to the kernel (glibc `malloc_trim`), then resets VmHWM to the current RSS by
    /// writing 5 to `/proc/self/clear_refs`. Returns false where the reset is refused: VmHWM is then the
    /// lifetime peak.
    @discardableResult
    static func resetPeakResident() -> Bool {
        FreedMemory.release()
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    // MARK: Processes and files

    /// This executable's absolute path (for re-exec and for finding `bulkwatch` next to it).
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func makeTemporaryDirectory(_ prefix: String) throws -> String {
        var template = Array((NSTemporaryDirectory() + "/\(prefix)-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw BenchError("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Progress on stderr, after flushing stdout so the two stay in order in a terminal.
    static func progress(_ message: String) {
        fflush(nil)
        FileHandle.standardError.write(Data("  … \(message)\n".utf8))
    }

    // MARK: Pipeline pieces

    /// A logger that only lets warnings through, so logging never shows up in the timings.
    static func quietLogger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        return logger
    }

    /// The request ``BulkStatusClient`` sends, for transport-only timings (same headers, same limits).
    static func bulkRequest(endpoint: BulkEndpoint, token: Secret) -> HTTPRequest {
        HTTPRequest(
            url: endpoint.url,
            headers: HTTPHeaders([
                ("Authorization", "Bearer \(token.revealed)"), ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ]),
            timeout: endpoint.timeout, maxResponseBytes: endpoint.maxResponseBytes)
    }

    static func tokenProvider(tokenURL: String, transport: CurlTransport, logger: Logger) -> TokenProvider {
        TokenProvider(
            source: .clientCredentials(
                ClientCredentials(tokenURL: tokenURL, clientID: clientID, clientSecret: Secret(clientSecret))),
            transport: transport, logger: logger)
    }

    // MARK: Formatting

    static func millis(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "-" }
        let value = seconds * 1_000
        if value < 10 { return String(format: "%.2f", value) }
        if value < 100 { return String(format: "%.1f", value) }
        return String(format: "%.0f", value)
    }

    /// Bytes as MB (10^6), one decimal.
    static func megabytes(_ bytes: Int) -> String {
        String(format: "%.1f", Double(bytes) / 1e6)
    }

    static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        return String(format: "%.\(decimals)f", value)
    }

    /// `--sizes 1000,100_000,1e6`-style lists of positive integers.
    static func parseSizes(_ text: String) throws -> [Int] {
        let sizes = text.split(separator: ",").map { part -> Int? in
            let cleaned = part.filter { $0 != "_" && $0 != " " }
            return Int(cleaned) ?? Double(cleaned).flatMap { $0 >= 1 && $0 < 1e12 ? Int($0) : nil }
        }
        guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw BenchError("--sizes wants positive integers separated by commas, got '\(text)'")
        }
        return sizes.compactMap { $0 }
    }

    static func positiveInt(_ text: String, _ flag: String) throws -> Int {
        guard let value = Int(text), value > 0 else { throw BenchError("\(flag) wants a positive integer") }
        return value
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

/// `--flag value` pairs, every flag known in advance.
struct BenchFlags {
    private var values: [String: String] = [:]

    init(_ arguments: [String], known: Set<String>, usage: String) throws {
        var remaining = arguments[...]
        while let flag = remaining.popFirst() {
            guard known.contains(flag) else { throw BenchError("unknown option \(flag); usage: \(usage)") }
            guard let value = remaining.popFirst() else { throw BenchError("\(flag) needs a value; usage: \(usage)") }
            values[flag] = value
        }
    }

    subscript(_ flag: String) -> String? { values[flag] }
}

/// A plain text table: right-aligned columns (left-aligned where asked), two spaces apart, a rule under the header.
struct BenchTable {
    var headers: [String]
    var leftAligned: Set<Int> = []
    private var rows: [[String]] = []

    init(_ headers: [String], leftAligned: Set<Int> = []) {
        self.headers = headers
        self.leftAligned = leftAligned
    }

    mutating func add(_ row: [String]) {
        rows.append(row)
    }

    func render() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (column, cell) in row.enumerated() where column < widths.count {
                widths[column] = max(widths[column], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for (column, width) in widths.enumerated() {
                let cell = column < cells.count ? cells[column] : ""
                let padding = String(repeating: " ", count: max(0, width - cell.count))
                parts.append(leftAligned.contains(column) ? cell + padding : padding + cell)
            }
            var text = parts.joined(separator: "  ")
            while text.hasSuffix(" ") { text.removeLast() }
            return text
        }
        var out = [line(headers), String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }
}

/// Blocking line reads from a file descriptor, done off the cooperative pool so a waiting reader never
/// starves the in-process simulator's server tasks.
final class BenchLineReader: Sendable {
    let fd: Int32
    private let buffer = Mutex<[UInt8]>([])

    init(fd: Int32) {
        self.fd = fd
    }

    /// The next line without its newline; nil at end of file.
    func nextLine() async -> String? {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: self.blockingNextLine())
            }
        }
    }

    private func blockingNextLine() -> String? {
        buffer.withLock { buffer in
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: buffer[..<newline], as: UTF8.self)
                    buffer.removeSubrange(...newline)
                    return line
                }
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else {
                    guard !buffer.isEmpty else { return nil }
                    defer { buffer.removeAll() }
                    return String(decoding: buffer, as: UTF8.self)
                }
                buffer.append(contentsOf: chunk[..<count])
            }
        }
    }
}

/// Writes `line` and a newline to `fd`, whole (unbuffered: pipes between bench processes must not wait on stdio).
func benchWriteLine(_ line: String, to fd: Int32) {
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0, errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
}

/// A child process started with posix_spawn: signal mask cleared and SIGTERM/SIGINT/SIGPIPE at their defaults
/// (whatever the bench inherited), optionally with stdin/stdout on pipes to the parent.
struct BenchChild: Sendable {
    enum Exit: Sendable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        var description: String {
            switch self {
            case .exited(let code): "exit \(code)"
            case .signalled(let signal): "signal \(signal)"
            }
        }
    }

    let pid: pid_t
    /// Writes to the child's stdin (piped children only).
    let input: Int32?
    /// Reads the child's stdout (piped children only).
    let output: BenchLineReader?

    /// - Parameter pipes: stdin and stdout on pipes to us; otherwise both on /dev/null. stderr is inherited.
    static func spawn(_ path: String, _ arguments: [String], environment: [String: String]? = nil, pipes: Bool)
        throws -> BenchChild
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        if pipes {
            guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else {
                throw BenchError("pipe failed: \(String(cString: strerror(errno)))")
            }
            // Only the dup2'ed copies (0 and 1) may survive into the child.
            for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
            posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environmentPairs = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = environmentPairs.map { strdup($0) } + [nil]
        defer { for pointer in envp { free(pointer) } }

        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        if pipes {
            close(toChild[0])
            close(fromChild[1])
        }
        guard status == 0 else {
            if pipes {
                close(toChild[1])
                close(fromChild[0])
            }
            throw BenchError("cannot start \(path): \(String(cString: strerror(status)))")
        }
        return BenchChild(
            pid: pid, input: pipes ? toChild[1] : nil, output: pipes ? BenchLineReader(fd: fromChild[0]) : nil)
    }

    func send(_ line: String) {
        if let input { benchWriteLine(line, to: input) }
    }

    func closePipes() {
        if let input { close(input) }
        if let output { close(output.fd) }
    }

    /// The exit status if the child has ended (reaping it), nil while it runs.
    func poll() -> Exit? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        guard result == pid else { return nil }
        return status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signalled(status & 0x7F)
    }

    /// Waits for the child to end, at most `timeout`; nil if it is still running then.
    func wait(timeout: Duration = .seconds(3600)) async -> Exit? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let exit = poll() { return exit }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return poll()
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace`. Returns how it ended and whether SIGKILL was needed.
    func stop(grace: Duration = .seconds(3)) async -> (exit: Exit?, killed: Bool) {
        kill(pid, SIGTERM)
        if let exit = await wait(timeout: grace) { return (exit, false) }
        kill(pid, SIGKILL)
        return (await wait(timeout: .seconds(5)), true)
    }
}

extension SplitMix64 {
    /// Uniform-enough index in `0..<bound` for benchmark data (modulo bias is irrelevant here).
    mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}
