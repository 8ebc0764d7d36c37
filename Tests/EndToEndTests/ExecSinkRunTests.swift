import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `bulkwatch run --sink exec:PROGRAM` end to end: the real binary, the simulator, a real shell script.
@Suite("exec sink, from the command line")
struct ExecSinkRunTests {
    @Test func runOnceHandsTheEventsToTheProgramWithoutTheWatchersSecrets() async throws {
        let fixture = try await RunFixture()
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "PENDING") }
        let out = fixture.directory + "/exec-out.txt"
        let program = fixture.directory + "/notify.sh"
        try """
        #!/bin/sh
        echo "== $BULKWATCH_COUNT" >> \(out)
        cat >> \(out)
        env | sed 's/^/ENV /' >> \(out)
        echo "notified $BULKWATCH_COUNT event(s)" >&2
        """.write(toFile: program, atomically: true, encoding: .utf8)
        chmod(program, 0o755)
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "exec:\(program)?batch=10&env=EXEC_RUN_TEST_PASSED"]),
            environment: fixture.environment.merging(["EXEC_RUN_TEST_PASSED": "yes"]) { $1 },
            directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let written = nonEmptyLines((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
        #expect(written.first == "== 3")
        let events = jsonObjects(written.filter { $0.hasPrefix("{") }.joined(separator: "\n")).compactMap { $0 }
        #expect(events.map { $0["subject"] as? String } == ["b-1", "b-2", "b-3"])
        #expect(events.map { $0["id"] as? String } == fixture.fileEvents.map { $0["id"] as? String })
        // The client secret reached the watcher through its environment; the child never sees it.
        #expect(!written.contains { $0.contains(fixture.environment["BULKWATCH_CLIENT_SECRET"] ?? "demo-secret") })
        #expect(written.contains("ENV EXEC_RUN_TEST_PASSED=yes"))
        // The program's stderr is in the log, under the sink's name.
        #expect(
            result.stderr.split(separator: "\n").contains {
                $0.contains("sink=exec:\(program)") && $0.contains("notified 3 event(s)")
            })
        await fixture.stop()
    }

    @Test func aRelativeProgramIsAUsageErrorBeforeAnyRequest() async throws {
        let fixture = try await RunFixture()
        let result = try await runBulkWatch(
            fixture.arguments(["--once", "--sink", "exec:notify.sh"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(result.status == 64, "stderr: \(result.stderr)")
        #expect(nonEmptyLines(result.stderr).first?.contains("exec: needs the program's absolute path") == true)
        #expect(fixture.simulator.requestLog.isEmpty)
        await fixture.stop()
    }
}
