import BulkWatch
import BulkWatchSimulator
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("kill -9 while committing, then restart")
struct CrashRecoveryTests {
    /// A churning world, a watcher polling every 50 ms, and SIGKILL at random moments. After each
    /// restart the journal must be intact, hold every change once, and the file log must hold
    /// every journaled event exactly once, in order, with only complete lines.
    @Test func sigkillAtRandomMomentsLosesAndDuplicatesNothing() async throws {
        var options = SimulatorOptions(
            seed: 11, initialOperations: 40, creationsPerSecond: 40, stepSeconds: 0.3, retentionSeconds: 0.6)
        options.errorOutcomeRate = 0.3
        let fixture = try await RunFixture(options: options)
        var generator = SystemRandomNumberGenerator()
        let kills = 8
        for round in 0..<kills {
            let child = try ChildProcess(
                BulkWatchBinary.path, fixture.arguments(["--interval", "50ms"]),
                environment: fixture.environment, directory: fixture.directory)
            let before = fixture.fileEvents.count
            // Wait for progress so every kill lands in a busy process, then kill at a random moment.
            _ = await ChildProcess.eventually(timeout: .seconds(30)) { fixture.fileEvents.count > before }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...300, using: &generator)))
            child.signal(SIGKILL)
            let status = await child.waitForExit(timeout: .seconds(10))
            #expect(status != 0, "round \(round): the child should have died from SIGKILL")
        }
        // A last graceful run drains whatever was journaled but not yet written to the file.
        let final = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(final.status == 0, "stderr: \(final.stderr)")

        let journal = try SQLiteStore(path: fixture.statePath)
        #expect(try await journal.integrityCheck() == "ok")
        let events = try await journal.allEvents()
        #expect(events.count > 40)
        #expect(events.map(\.sequence) == Array(1...Int64(events.count)), "sequences must be contiguous")
        #expect(Set(events.map(\.id)).count == events.count, "ids must be unique")
        // The simulator never reuses a bulkId, so each one is created at most once and expires at most once.
        for kind in [JournalEvent.Kind.created, .expired] {
            let subjects = events.filter { $0.kind == kind }.map(\.subject)
            #expect(Set(subjects).count == subjects.count, "duplicate \(kind) events")
        }
        // Each (bulkId, status) transition is reported once: statuses only move forward in the simulator.
        let transitions = events.filter { $0.kind == .changed }.map { event -> String in
            let object = try? JSONSerialization.jsonObject(with: Data(event.body)) as? [String: Any]
            let data = object?["data"] as? [String: Any]
            return "\(event.subject)/\(data?["status"] ?? "")/\(data?["updatedOn"] ?? "")"
        }
        #expect(Set(transitions).count == transitions.count, "duplicate changed events")

        let text = try String(contentsOfFile: fixture.logPath, encoding: .utf8)
        #expect(text.hasSuffix("\n"), "the file log must end with a complete line")
        let lines = nonEmptyLines(text)
        let parsed = jsonObjects(text)
        #expect(parsed.allSatisfy { $0 != nil }, "every line must be valid JSON")
        let fileSequences = parsed.compactMap { ($0?["sequence"] as? String).flatMap { Int64($0) } }
        #expect(fileSequences == events.map(\.sequence), "the log holds every event once, in order")
        #expect(lines.count == events.count)
        await fixture.stop()
    }
}
