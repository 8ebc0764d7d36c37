import BulkWatch
import BulkWatchSimulator
import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 10: the spine never loses, repeats or destroys. Each test drives the real binary against the
/// simulator, a real SQLite file, real files, pipes and signals, and failed on the main before the fix.
@Suite("The spine: journal, cursors and sinks under retention, restarts, resets and closed pipes")
struct SpineTests {
    private static let hookSecret = "whsec_" + Data("spine test webhook key, 32 bytes".utf8).base64EncodedString()

    private func events(_ fixture: RunFixture, _ extra: [String] = []) async throws -> [[String: Any]] {
        let result = try await runBulkWatch(
            ["events", "--state", fixture.statePath, "--format", "json"] + extra, directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        return jsonObjects(result.stdout).compactMap { $0 }
    }

    private func deliveries(_ fixture: RunFixture) async throws -> [[String: Any]] {
        let result = try await runBulkWatch(
            ["deliveries", "--state", fixture.statePath, "--format", "json"], directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        return (try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]]) ?? []
    }

    private func subjects(_ objects: [[String: Any]]) -> [String] {
        objects.map { "\($0["type"] as? String ?? "?")/\($0["subject"] as? String ?? "?")" }
    }

    /// Runs `run` until `condition` holds, then SIGTERM; returns the exit status.
    private func runUntil(
        _ fixture: RunFixture, _ extra: [String], environment: [String: String]? = nil,
        _ condition: @escaping () throws -> Bool
    ) async throws -> Int32? {
        let child = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(extra), environment: environment ?? fixture.environment,
            directory: fixture.directory)
        let reached = try await ChildProcess.eventually(timeout: .seconds(30), condition)
        #expect(reached, "stderr: \(child.stderr)")
        child.signal(SIGTERM)
        let status = await child.waitForExit(timeout: .seconds(20))
        #expect(status == 0, "stderr: \(child.stderr)")
        return status
    }

    // MARK: 1. Sequences only grow

    @Test func sequencesKeepGrowingAfterRetentionPrunedEverything() async throws {
        let fixture = try await RunFixture()
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "FINISHED") }
        _ = try await runUntil(fixture, ["--interval", "200ms", "--retain", "1s"]) { fixture.fileEvents.count == 3 }
        try await Task.sleep(for: .milliseconds(1300))
        // The restarted watcher's first poll prunes all three (delivered, older than 1 s); what it detects
        // next must still reach the file.
        let child = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(["--interval", "200ms", "--retain", "1s"]),
            environment: fixture.environment, directory: fixture.directory)
        let pruned = await ChildProcess.eventually(timeout: .seconds(20)) { child.stderr.contains("pruned 3") }
        #expect(pruned, "stderr: \(child.stderr)")
        fixture.simulator.upsert(bulkId: "b-4", status: "PENDING")
        let delivered = await ChildProcess.eventually(timeout: .seconds(20)) { fixture.fileEvents.count == 4 }
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(20)) == 0)
        #expect(delivered, "stderr: \(child.stderr)")
        #expect(fixture.fileEvents.last?["subject"] as? String == "b-4")
        #expect(fixture.fileEvents.last?["sequence"] as? String == "4")
        await fixture.stop()
    }

    // MARK: 2. Pruning per target; unconfigured sinks do not pin the journal

    /// A cron'd `--once` is the whole life of its process: retention must apply there too.
    @Test func onceRunsPruneAsWell() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        let first = try await runBulkWatch(
            fixture.arguments(["--once", "--retain", "1s"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(first.status == 0, "stderr: \(first.stderr)")
        try await Task.sleep(for: .milliseconds(1300))
        fixture.simulator.upsert(bulkId: "b-2", status: "FINISHED")
        let second = try await runBulkWatch(
            fixture.arguments(["--once", "--retain", "1s"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(second.status == 0, "stderr: \(second.stderr)")
        #expect(second.stderr.contains("pruned 1"), "stderr: \(second.stderr)")
        #expect(subjects(try await events(fixture)) == ["bulk.created/b-2"])
        #expect(fixture.fileEvents.count == 2)
        await fixture.stop()
    }

    @Test func eachTargetPrunesWithItsOwnRetention() async throws {
        let short = try await RunFixture()
        let long = DruIDSimulator(options: .manual())
        try await long.start()
        short.simulator.upsert(bulkId: "s-1", status: "FINISHED")
        long.upsert(bulkId: "l-1", status: "FINISHED")
        let config = short.directory + "/bulkwatch.yaml"
        let yaml = """
            state: \(short.statePath)
            defaults:
              token-url: \(short.simulator.tokenURL)
              client-id: bulkwatch-demo
              client-secret: env:BULKWATCH_CLIENT_SECRET
              interval: 200ms
              sinks: ["file:\(short.logPath)"]
            targets:
              - name: short
                endpoint: \(short.simulator.bulkURL)
                retain: 1s
              - name: long
                endpoint: \(long.bulkURL)
                token-url: \(long.tokenURL)
                retain: 7d
            """
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        func runConfig(until condition: @escaping () -> Bool) async throws -> ChildProcess {
            let child = try ChildProcess(
                BulkWatchBinary.path, ["run", "--config", config], environment: short.environment,
                directory: short.directory)
            let reached = await ChildProcess.eventually(timeout: .seconds(30), condition)
            #expect(reached, "stderr: \(child.stderr)")
            return child
        }
        let first = try await runConfig { short.fileEvents.count == 2 }
        first.signal(SIGTERM)
        #expect(await first.waitForExit(timeout: .seconds(20)) == 0)
        try await Task.sleep(for: .milliseconds(1300))
        let second = try await runConfig { shortTargetPruned(short) }
        second.signal(SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(20)) == 0)
        let kept = subjects(try await events(short))
        #expect(kept == ["bulk.created/l-1"], "stderr: \(second.stderr)")
        await long.stop()
        await short.stop()
    }

    /// The journal's events as `bulkwatch events` prints them (the binary under test reads its own state).
    private func journaled(_ fixture: RunFixture) -> [[String: Any]] {
        let output =
            (try? runProcess(
                BulkWatchBinary.path, ["events", "--state", fixture.statePath, "--format", "json"])) ?? []
        return jsonObjects(String(decoding: output, as: UTF8.self)).compactMap { $0 }
    }

    /// True once the short target's event left the journal.
    private func shortTargetPruned(_ fixture: RunFixture) -> Bool {
        !journaled(fixture).contains { $0["subject"] as? String == "s-1" }
    }

    @Test func aSinkNoLongerConfiguredDoesNotPinTheJournal() async throws {
        let fixture = try await RunFixture()
        let other = fixture.directory + "/other.jsonl"
        for index in 1...2 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "FINISHED") }
        let both = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "file:" + other]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(both.status == 0, "stderr: \(both.stderr)")
        fixture.simulator.upsert(bulkId: "b-3", status: "FINISHED")
        let alone = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(alone.status == 0, "stderr: \(alone.stderr)")
        try await Task.sleep(for: .milliseconds(1300))
        _ = try await runUntil(fixture, ["--interval", "200ms", "--retain", "1s"]) { journaled(fixture).isEmpty }
        #expect(try await events(fixture).isEmpty)
        let sinks = try await deliveries(fixture)
        let stale = sinks.first { $0["sink"] as? String == "file:" + other }
        #expect(stale?["stale"] as? Bool == true, "\(sinks)")
        #expect(sinks.first { $0["sink"] as? String == "file:" + fixture.logPath }?["stale"] as? Bool == false)
        await fixture.stop()
    }

    // MARK: 3. A new incarnation after expiry

    @Test func anOperationThatExpiredAndCameBackIsCreatedAgainWithNewIDs() async throws {
        let fixture = try await RunFixture()
        let fields: (SimulatedField, SimulatedField) = ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z")
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED", createdOn: fields.0, updatedOn: fields.1)
        for _ in 1...3 {  // created, then two absent polls: expired
            let result = try await runBulkWatch(
                fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            fixture.simulator.remove(bulkId: "b-1")
        }
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED", createdOn: fields.0, updatedOn: fields.1)
        for _ in 1...3 {
            let result = try await runBulkWatch(
                fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            fixture.simulator.remove(bulkId: "b-1")
        }
        let lines = fixture.fileEvents
        #expect(subjects(lines) == ["bulk.created/b-1", "bulk.expired/b-1", "bulk.created/b-1", "bulk.expired/b-1"])
        let ids = lines.compactMap { $0["id"] as? String }
        #expect(Set(ids).count == 4, "\(ids)")
        await fixture.stop()
    }

    // MARK: 4. Mass-removal guard

    @Test func aGuardTrippingPollConfirmsNoExpiry() async throws {
        let fixture = try await RunFixture()
        for index in 1...10 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "FINISHED") }
        func poll() async throws -> String {
            let result = try await runBulkWatch(
                fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            return result.stderr
        }
        _ = try await poll()  // 10 created
        fixture.simulator.remove(bulkId: "b-1")
        _ = try await poll()  // b-1 absent once
        fixture.simulator.removeAll()
        let tripped = try await poll()  // 9 of 10 newly missing: the guard trips
        #expect(tripped.contains("known operations missing from one answer"))
        #expect(subjects(fixture.fileEvents).filter { $0.hasPrefix("bulk.expired") }.isEmpty)
        _ = try await poll()  // everything absent: b-1 three times, the rest twice; guarded needs four
        #expect(subjects(fixture.fileEvents).filter { $0.hasPrefix("bulk.expired") }.isEmpty)
        _ = try await poll()  // b-1: four absences, confirmed; the rest three
        #expect(subjects(fixture.fileEvents).filter { $0.hasPrefix("bulk.expired") } == ["bulk.expired/b-1"])
        await fixture.stop()
    }

    // MARK: 5. Shutdown drain keeps the delivery policy

    @Test func aDrainNeverDeadLettersNorSpins() async throws {
        let fixture = try await RunFixture()
        let receiver = try FaultyReceiver()
        receiver.set(.status(400))
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        let child = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(["--interval", "1h", "--sink", "webhook:" + receiver.url]),
            environment: fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": Self.hookSecret]) { $1 },
            directory: fixture.directory)
        let attempted = await ChildProcess.eventually(timeout: .seconds(30)) { receiver.requestCount >= 1 }
        #expect(attempted, "stderr: \(child.stderr)")
        let beforeStop = receiver.requestCount
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(20)) == 0)
        let sink = try await deliveries(fixture).first { $0["sink"] as? String == receiver.sinkName }
        #expect(sink?["deadLetters"] as? Int == 0, "\(String(describing: sink)) stderr: \(child.stderr)")
        #expect(sink?["cursor"] as? Int == 0)
        // At most the one attempt whose backoff was already running (waited out, never cut short).
        #expect(
            receiver.requestCount <= beforeStop + 1, "the drain retried \(receiver.requestCount - beforeStop) times")
        let failures = child.stderr.split(separator: "\n").filter { $0.contains("delivery of") }
        #expect(failures.count <= receiver.requestCount, "\(failures.count) failure lines")
        receiver.stop()
        await fixture.stop()
    }

    // MARK: 6. The file sink: resumption by identity, and foreign files left alone

    @Test func aFileSinkAppendsTheEventsOfANewJournal() async throws {
        let fixture = try await RunFixture()
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "FINISHED") }
        let first = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(first.status == 0, "stderr: \(first.stderr)")
        // The documented answer to a malformed database: move it aside and start a new one.
        for suffix in ["", "-wal", "-shm"] {
            _ = rename(fixture.statePath + suffix, fixture.statePath + ".broken" + suffix)
        }
        let second = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(second.status == 0, "stderr: \(second.stderr)")
        #expect(fixture.fileEvents.count == 6, "stderr: \(second.stderr)")
        await fixture.stop()
    }

    @Test func redeliverSinceRewritesAFileSink() async throws {
        let fixture = try await RunFixture()
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "FINISHED") }
        let first = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(first.status == 0, "stderr: \(first.stderr)")
        let rewind = try await runBulkWatch(
            ["redeliver", "--state", fixture.statePath, "--sink", "file:" + fixture.logPath, "--since", "1"],
            directory: fixture.directory)
        #expect(rewind.status == 0, "stderr: \(rewind.stderr)")
        let second = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(second.status == 0, "stderr: \(second.stderr)")
        #expect(fixture.fileEvents.compactMap { $0["sequence"] as? String } == ["1", "2", "3", "2", "3"])
        await fixture.stop()
    }

    @Test func aFileThatIsNotABulkwatchLogIsNeverModified() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        let key = "-----BEGIN PRIVATE KEY----- not an event"
        try key.write(toFile: fixture.logPath, atomically: false, encoding: .utf8)
        let torn = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(torn.status == 78, "stderr: \(torn.stderr)")
        #expect(nonEmptyLines(torn.stderr).count == 1, "stderr: \(torn.stderr)")
        #expect(try String(contentsOfFile: fixture.logPath, encoding: .utf8) == key)

        let lines = "first line\nsecond line\n"
        try lines.write(toFile: fixture.logPath, atomically: false, encoding: .utf8)
        let foreign = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(foreign.status == 78, "stderr: \(foreign.stderr)")
        #expect(try String(contentsOfFile: fixture.logPath, encoding: .utf8) == lines)
        await fixture.stop()
    }

    @Test func aFileSinkFollowsNoSymlink() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        let victim = fixture.directory + "/victim.jsonl"
        try "".write(toFile: victim, atomically: false, encoding: .utf8)
        #expect(symlink(victim, fixture.logPath) == 0)
        let linked = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(linked.status == 78, "stderr: \(linked.stderr)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "")

        unlink(fixture.logPath)
        let missing = fixture.directory + "/created-through-a-dangling-link"
        #expect(symlink(missing, fixture.logPath) == 0)
        let dangling = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        #expect(dangling.status == 78, "stderr: \(dangling.stderr)")
        #expect(!FileManager.default.fileExists(atPath: missing))
        await fixture.stop()
    }

    // MARK: 7. One watcher per state

    @Test func aSecondRunOnTheSameStateExitsAtOnce() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        let first = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(["--interval", "200ms"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(await ChildProcess.eventually(timeout: .seconds(30)) { fixture.fileEvents.count == 1 })
        let second = try await runBulkWatch(
            fixture.arguments(["--interval", "200ms"]), environment: fixture.environment,
            directory: fixture.directory, timeout: .seconds(20))
        #expect(second.status == 1, "stderr: \(second.stderr)")
        #expect(second.stderr.contains(fixture.statePath) && second.stderr.contains("pid \(first.pid)"))
        #expect(nonEmptyLines(second.stderr).count == 1, "stderr: \(second.stderr)")
        // Read-only commands and redeliver keep working beside the running watcher.
        #expect(try await events(fixture).count == 1)
        let rewind = try await runBulkWatch(
            ["redeliver", "--state", fixture.statePath, "--sink", "file:" + fixture.logPath, "--since", "0"],
            directory: fixture.directory)
        #expect(rewind.status == 0, "stderr: \(rewind.stderr)")
        #expect(await ChildProcess.eventually(timeout: .seconds(30)) { fixture.fileEvents.count == 2 })
        first.signal(SIGTERM)
        #expect(await first.waitForExit(timeout: .seconds(20)) == 0)
        await fixture.stop()
    }

    // MARK: 8. A closed stdout

    /// Starts `bulkwatch` with stdout on a pipe the test holds; stderr goes to a file.
    private func spawnWithStdoutPipe(_ arguments: [String], directory: String, environment: [String: String])
        throws -> (process: Process, stdout: FileHandle, stderrPath: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BulkWatchBinary.path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let pipe = Pipe()
        let stderrPath = directory + "/stderr-\(UUID().uuidString).txt"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardOutput = pipe
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try pipe.fileHandleForWriting.close()
        return (process, pipe.fileHandleForReading, stderrPath)
    }

    /// Reads from `handle` until a newline arrived.
    private func readLine(_ handle: FileHandle) -> String {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while read(handle.fileDescriptor, &byte, 1) == 1 {
            if byte == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test func demoPipedIntoHeadEndsWhenTheReaderLeaves() async throws {
        let directory = try makeTemporaryDirectory("spine-head")
        let (process, stdout, stderrPath) = try spawnWithStdoutPipe(
            ["demo", "--state", directory + "/demo.db", "--interval", "200ms"], directory: directory,
            environment: [:])
        let line = readLine(stdout)
        #expect(!line.isEmpty)
        try stdout.close()  // `head -1` has what it wanted and exits
        let status = await ChildProcess.waitForExit(process, timeout: .seconds(20))
        let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        #expect(status != nil, "still running after stdout closed; stderr: \(stderr.suffix(2000))")
        let pipeLines = stderr.split(separator: "\n").filter { $0.localizedCaseInsensitiveContains("pipe") }
        #expect(pipeLines.count <= 2, "\(pipeLines.count) lines about the pipe")
    }

    @Test func aClosedStdoutStopsOnlyTheStdoutSink() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "PENDING")
        let (process, stdout, stderrPath) = try spawnWithStdoutPipe(
            fixture.arguments(["--interval", "200ms", "--sink", "stdout:json"]), directory: fixture.directory,
            environment: fixture.environment)
        #expect(!readLine(stdout).isEmpty)
        try stdout.close()
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        fixture.simulator.upsert(bulkId: "b-2", status: "PENDING")
        let more = await ChildProcess.eventually(timeout: .seconds(30)) { fixture.fileEvents.count == 3 }
        #expect(more)
        #expect(process.isRunning)
        kill(process.processIdentifier, SIGTERM)
        #expect(await ChildProcess.waitForExit(process, timeout: .seconds(20)) == 0)
        let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        let pipeLines = stderr.split(separator: "\n").filter { $0.contains("stdout") && $0.contains("error") }
        #expect(pipeLines.count == 1, "stderr: \(stderr.suffix(3000))")
        await fixture.stop()
    }

    // MARK: 9. SIGHUP right after start

    @Test func aSighupDuringStartupDoesNotKillTheDaemon() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        let config = fixture.directory + "/bulkwatch.yaml"
        let yaml = """
            state: \(fixture.statePath)
            targets:
              - name: default
                endpoint: \(fixture.simulator.bulkURL)
                token-url: \(fixture.simulator.tokenURL)
                client-id: bulkwatch-demo
                client-secret: env:BULKWATCH_CLIENT_SECRET
                interval: 200ms
                sinks: ["file:\(fixture.logPath)"]
            """
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        for _ in 1...3 {
            let child = try ChildProcess(
                BulkWatchBinary.path, ["run", "--config", config], environment: fixture.environment,
                directory: fixture.directory)
            // HUPs from the first instant until the daemon is up (it delivered), then a few more.
            let before = fixture.fileEvents.count
            let end = ContinuousClock.now + .seconds(20)
            var afterUp = 0
            while ContinuousClock.now < end, child.process.isRunning, afterUp < 20 {
                child.signal(SIGHUP)
                if fixture.fileEvents.count > before || child.stderr.contains("SIGHUP") { afterUp += 1 }
                try await Task.sleep(for: .milliseconds(2))
            }
            #expect(child.process.isRunning, "stderr: \(child.stderr)")
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: .seconds(20)) == 0, "stderr: \(child.stderr)")
        }
        await fixture.stop()
    }

    // MARK: 10. --once and an undelivered sink

    @Test func onceExitsNonZeroWhenASinkCouldNotDeliver() async throws {
        let fixture = try await RunFixture()
        let receiver = try FaultyReceiver()
        receiver.set(.status(500))
        fixture.simulator.upsert(bulkId: "b-1", status: "FINISHED")
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "webhook:" + receiver.url]),
            environment: fixture.environment.merging(["BULKWATCH_WEBHOOK_SECRET": Self.hookSecret]) { $1 },
            directory: fixture.directory)
        #expect(result.status == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains(receiver.url) && result.stderr.contains("undelivered"), "\(result.stderr)")
        #expect(fixture.fileEvents.count == 1)
        receiver.stop()
        await fixture.stop()
    }

    // MARK: 11. A restart after a fold

    /// A cron'd `--once` folds its state's deltas into an image once they pass 1 MiB, which a first poll of
    /// 8,000 items does. The SQLite deltas' ids then started again from 1, at or below the image's mark, so
    /// the run after next loaded the image without the poll in between and journaled its changes again.
    @Test func cronOnceRunsAfterAFoldNeverJournalAChangeTwice() async throws {
        let fixture = try await RunFixture()
        for index in 0..<8_000 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "PENDING") }
        func once() async throws {
            let run = try await runBulkWatch(
                fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
            #expect(run.status == 0, "stderr: \(run.stderr)")
        }
        try await once()  // 8,000 created; the fold writes the first image
        for index in 0..<3 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "FINISHED") }
        try await once()  // 3 changed, as a delta after the image
        try await once()  // nothing changed upstream: nothing to journal
        try await once()
        let journaled = try await events(fixture)
        #expect(journaled.count == 8_003)
        let changes = journaled.filter { $0["type"] as? String == "bulk.changed" }
        #expect(changes.count == 3, "changes journaled: \(subjects(changes))")
        #expect(fixture.fileEvents.count == 8_003)
        await fixture.stop()
    }
}
