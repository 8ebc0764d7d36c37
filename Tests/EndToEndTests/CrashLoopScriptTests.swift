import Foundation
import TestSupport
import Testing

/// Runs `scripts/crashloop.sh` with a few kills, so CI exercises the crash loop and its checker on every run;
/// `scripts/crashloop.sh --kills 200` is the full run (docs/FAULTS.md records its result).
@Suite("Crash loop script")
struct CrashLoopScriptTests {
    @Test func survivesSIGKILLsWhileTheSimulatorChurnsAndTheReceiverFlaps() async throws {
        // No silent pass: the crash loop's checker is Python (standard library only).
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "the crash loop needs python3")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let directory = try makeTemporaryDirectory("crashloop")
        let summaryPath = directory + "/summary.json"
        let result = try await runBulkWatchScript(
            root + "/scripts/crashloop.sh",
            // --retain: every restart's first poll prunes, so sequences must keep growing across pruning.
            // --max-alive 3: the suite runs beside other tests, and a debug watcher that is killed before its
            // first poll, again and again, would let a 2-6 s simulated state go unseen (a false "missing").
            [
                "--kills", "15", "--retain", "2s", "--max-alive", "3", "--summary", summaryPath, "--directory",
                directory + "/work",
            ],
            environment: ["BULKWATCH_BIN": BulkWatchBinary.path], directory: directory)
        let summary =
            (try? Data(contentsOf: URL(fileURLWithPath: summaryPath)))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        #expect(result.status == 0, "stderr:\n\(result.stderr)")
        #expect(summary["ok"] as? Bool == true, "\(summary)")
        #expect((summary["kills"] as? Int ?? 0) >= 10, "\(summary)")
        #expect((summary["journalEvents"] as? Int ?? 0) > 0, "\(summary)")
        #expect((summary["prunedEvents"] as? Int ?? 0) > 0, "\(summary)")
    }

    private func runBulkWatchScript(
        _ script: String, _ arguments: [String], environment: [String: String], directory: String
    ) async throws -> (status: Int32?, stderr: String) {
        let child = try ChildProcess("/bin/bash", [script] + arguments, environment: environment, directory: directory)
        let status = await child.waitForExit(timeout: .seconds(300))
        return (status, child.stderr)
    }
}
