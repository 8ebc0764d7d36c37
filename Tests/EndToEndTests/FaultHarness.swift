import BulkWatch
import BulkWatchSimulator
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The built `bulkwatch run` as a child process against an in-process simulator (which records its history),
/// a file sink and optionally a webhook to a ``FaultyReceiver``: one watcher, one fault at a time.
///
/// The five properties every fault test checks (docs/FAULTS.md):
/// 1. **stays up** — the child is still running after the fault, and exits 0 on SIGTERM at the end;
/// 2. **no false event** — while the fault lasts, nothing that is not in the simulator's history is journaled;
/// 3. **nothing lost** — once it clears, the journal matches the history exactly (each change once), the file
///    sink holds each journaled event exactly once and the receiver accepted each one;
/// 4. **one clear log line** — a single stderr line names the problem, and every stderr line is one log record;
/// 5. **recovers by itself** — after the fault clears, without a restart, the changes made during the fault
///    arrive and the watcher logs its recovery.
final class FaultHarness: @unchecked Sendable {
    let simulator: DruIDSimulator
    let directory: String
    let statePath: String
    let logPath: String
    let receiver: FaultyReceiver?
    let environment: [String: String]
    /// Start the watcher through `/usr/bin/env` (see ``init(items:webhook:stateDirectory:environment:throughEnv:)``).
    let throughEnv: Bool
    private(set) var child: ChildProcess?
    /// stderr of watchers stopped by ``restart()``.
    private var earlierStderr = ""
    private var round = 0
    private var lastCreated: String?

    static let webhookKey: [UInt8] = Array("fault-injection webhook key, 32b".utf8)
    static let webhookSecret = "whsec_" + Data(webhookKey).base64EncodedString()

    /// - Parameters:
    ///   - items: live items at the start (12: enough for the mass-removal guard to apply).
    ///   - stateDirectory: where the state file lives (a small file system for the disk-full test).
    ///   - throughEnv: exec the watcher through `/usr/bin/env`. libfaketime's constructor calls `setenv` in the
    ///     first process it is preloaded into, which moves `environ`, and the Swift runtime on Linux finds `argv`
    ///     next to the original `environ`: the watcher would start with no arguments. In the second process of a
    ///     chain libfaketime finds its shared state in the environment and leaves `environ` alone.
    init(
        items: Int = 12, webhook: Bool = false, stateDirectory: String? = nil, environment: [String: String] = [:],
        throughEnv: Bool = false
    ) async throws {
        self.throughEnv = throughEnv
        var options = SimulatorOptions.manual(seed: 23)
        options.recordsHistory = true
        simulator = DruIDSimulator(options: options)
        try await simulator.start()
        directory = try makeTemporaryDirectory("faults")
        statePath = (stateDirectory ?? directory) + "/state.db"
        logPath = directory + "/events.jsonl"
        receiver = webhook ? try FaultyReceiver() : nil
        var environment = environment
        environment["BULKWATCH_CLIENT_SECRET"] = "demo-secret"
        if webhook { environment["BULKWATCH_WEBHOOK_SECRET"] = Self.webhookSecret }
        self.environment = environment
        for index in 1...items { simulator.upsert(bulkId: String(format: "b-%02d", index), status: "PENDING") }
    }

    var arguments: [String] {
        var arguments = [
            "run", "--endpoint", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id", "bulkwatch-demo",
            "--state", statePath, "--sink", "file:" + logPath, "--interval", "200ms", "--timeout", "1s",
        ]
        if let receiver {
            arguments += [
                "--sink", "webhook:" + receiver.url, "--webhook-timeout", "1s", "--webhook-backoff-base", "50ms",
                "--webhook-backoff-cap", "300ms",
            ]
        }
        return arguments
    }

    /// Starts the watcher and waits until it has journaled and delivered the initial items.
    func start(_ extra: [String] = []) async throws {
        child = try launch(arguments + extra)
        let ready = await settled()
        try #require(ready, "the watcher never settled on the initial items: \(diagnosis)")
    }

    private func launch(_ arguments: [String]) throws -> ChildProcess {
        throughEnv
            ? try ChildProcess(
                "/usr/bin/env", [BulkWatchBinary.path] + arguments, environment: environment, directory: directory)
            : try ChildProcess(BulkWatchBinary.path, arguments, environment: environment, directory: directory)
    }

    // MARK: Driving the world

    /// One round of upstream changes: an item changes status, one is created, the previous round's new item (or
    /// the last initial one) is removed. The simulated clock moves first, so no two states share an `updatedOn`.
    func mutate() {
        round += 1
        simulator.advance(by: 1)
        simulator.upsert(bulkId: "b-01", status: round % 2 == 1 ? "PROCESSING" : "PENDING")
        simulator.remove(bulkId: lastCreated ?? "b-12")
        let created = String(format: "n-%02d", round)
        simulator.upsert(bulkId: created, status: "PENDING")
        lastCreated = created
    }

    // MARK: Observation

    var isRunning: Bool { child?.process.isRunning ?? false }
    var stderr: String { earlierStderr + (child?.stderr ?? "") }
    var stderrLines: [String] { nonEmptyLines(stderr) }

    /// The journal as the watcher committed it; nil when it cannot be read right now.
    var events: [JournalEvent]? { try? SQLiteStore(path: statePath).allEventsBlocking() }

    var truth: JournalTruth { JournalTruth(events: events ?? [], history: simulator.history) }

    /// Event ids in the file sink, in order.
    var fileIDs: [String] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return jsonObjects(text).map { ($0?["id"] as? String) ?? "<invalid line>" }
    }

    /// True once the journal matches the history and every sink holds every journaled event.
    var isSettled: Bool {
        guard let events else { return false }
        let truth = JournalTruth(events: events, history: simulator.history)
        guard truth.isExact else { return false }
        let ids = events.map(\.id)
        guard fileIDs == ids else { return false }
        if let receiver { return Set(receiver.acceptedIDs).isSuperset(of: ids) }
        return true
    }

    func settled(timeout: Duration = .seconds(60)) async -> Bool {
        await ChildProcess.eventually(timeout: timeout) { self.isSettled }
    }

    /// Waits for `count` stderr lines containing `text`.
    func logged(_ text: String, count: Int = 1, timeout: Duration = .seconds(30)) async -> Bool {
        await ChildProcess.eventually(timeout: timeout) { self.stderrLines.filter { $0.contains(text) }.count >= count }
    }

    /// What differs, for failure messages.
    var diagnosis: String {
        let events = self.events
        var text = "journal: \(events.map { "\($0.count) events" } ?? "unreadable"); \(truth)"
        text += "; file: \(fileIDs.count) lines"
        if let receiver { text += "; receiver accepted \(receiver.acceptedIDs.count) of \(receiver.requestCount)" }
        text += "; running: \(isRunning)"
        if let process = child?.process, !process.isRunning {
            text +=
                " (exit \(process.terminationStatus), \(process.terminationReason == .uncaughtSignal ? "signal" : "status"))"
        }
        text += "\nstderr (last lines):\n" + stderrLines.suffix(15).joined(separator: "\n")
        return text
    }

    // MARK: The five properties

    /// While the fault lasts: the watcher is up and has journaled nothing false. With `upstreamBlocked`, the
    /// journal must not have moved at all (no poll could succeed).
    func expectDuringFault(
        journaledBefore: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(isRunning, "the watcher died during the fault: \(diagnosis)", sourceLocation: sourceLocation)
        let events = self.events ?? []
        #expect(
            JournalTruth(events: events, history: simulator.history).hasNoFalseEvents,
            "false events during the fault: \(diagnosis)", sourceLocation: sourceLocation)
        if let journaledBefore {
            #expect(
                events.count == journaledBefore, "a failed poll changed the journal: \(diagnosis)",
                sourceLocation: sourceLocation)
        }
    }

    /// After the fault cleared: recovered without a restart, nothing lost, one clear line about the problem,
    /// then a graceful stop.
    func expectRecovered(
        problem: String, recovery: String?, sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        #expect(await settled(), "did not recover: \(diagnosis)", sourceLocation: sourceLocation)
        if let recovery {
            #expect(
                await logged(recovery), "no recovery line '\(recovery)': \(diagnosis)", sourceLocation: sourceLocation)
        }
        expectOneClearLine(problem, sourceLocation: sourceLocation)
        #expect(isRunning, "the watcher is not running: \(diagnosis)", sourceLocation: sourceLocation)
    }

    func expectOneClearLine(_ problem: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let lines = stderrLines
        let line = lines.first { $0.contains(problem) }
        #expect(line != nil, "no log line says '\(problem)': \(diagnosis)", sourceLocation: sourceLocation)
        if let line { print("fault log line: \(line)") }
        // Every line is one log record (timestamp first): no multi-line dumps, no stack traces.
        let stray = lines.filter { !Self.isLogRecord($0) }
        #expect(
            stray.isEmpty, "stderr lines that are not log records: \(stray.prefix(3))", sourceLocation: sourceLocation)
    }

    static func isLogRecord(_ line: String) -> Bool {
        line.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"#, options: .regularExpression) != nil
    }

    /// SIGTERM, expect exit 0, stop everything.
    func finish(sourceLocation: SourceLocation = #_sourceLocation) async {
        if let child {
            child.signal(SIGTERM)
            let status = await child.waitForExit(timeout: .seconds(20))
            #expect(
                status == 0, "graceful stop failed (\(String(describing: status))): \(diagnosis)",
                sourceLocation: sourceLocation)
        }
        receiver?.stop()
        await simulator.stop()
    }

    /// SIGTERM and wait, then start a new watcher on the same state (the documented recovery for a 410).
    func restart() async throws {
        if let child {
            child.signal(SIGTERM)
            _ = await child.waitForExit(timeout: .seconds(20))
        }
        earlierStderr = stderr
        child = try launch(arguments)
    }
}
