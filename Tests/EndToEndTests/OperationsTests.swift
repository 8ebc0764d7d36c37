import BulkWatchSimulator
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Operating the binary: simulate, SIGHUP")
struct OperationsTests {
    @Test func simulateServesADruIDThatRunCanWatch() async throws {
        let directory = try makeTemporaryDirectory("simulate")
        let port = try reserveFreePort()
        let simulator = try ChildProcess(
            BulkWatchBinary.path,
            // Slow steps and long retention: a loaded machine must not see an operation leave the world.
            [
                "simulate", "--port", "\(port)", "--initial", "4", "--rate", "0", "--step", "3600", "--retention",
                "3600",
            ],
            environment: ["SIMULATOR_CLIENT_SECRET": "custom-s3cret"], directory: directory)
        defer {
            simulator.signal(SIGKILL)
        }
        #expect(waitUntilListening(port: port))
        #expect(await ChildProcess.eventually { simulator.stdout.contains("/activityid/v1/user/bulk") })
        let base = "http://127.0.0.1:\(port)"
        let result = try await runBulkWatch(
            [
                "run", "--once", "--endpoint", base + "/activityid/v1/user/bulk", "--token-url", base + "/oauth2/token",
                "--client-id", "bulkwatch-demo", "--state", directory + "/s.db", "--sink", "stdout:json",
            ], environment: ["BULKWATCH_CLIENT_SECRET": "custom-s3cret"], directory: directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(jsonObjects(result.stdout).count == 4)
        // The banner prints the built-in demo credential, but never one the operator chose.
        #expect(!simulator.stdout.contains("custom-s3cret"))
        #expect(simulator.stdout.contains("client id:      bulkwatch-demo"))
    }

    @Test func sighupReopensTheFileSinkAfterExternalRotation() async throws {
        let fixture = try await RunFixture()
        fixture.simulator.upsert(bulkId: "b-1")
        let child = try ChildProcess(
            BulkWatchBinary.path, fixture.arguments(["--interval", "100ms"]), environment: fixture.environment,
            directory: fixture.directory)
        #expect(await ChildProcess.eventually { fixture.fileEvents.count == 1 })
        // logrotate-style: move the file away, then tell bulkwatch.
        let rotated = fixture.logPath + ".rotated"
        #expect(rename(fixture.logPath, rotated) == 0)
        child.signal(SIGHUP)
        #expect(await ChildProcess.eventually { child.stderr.contains("SIGHUP") })
        fixture.simulator.upsert(bulkId: "b-2")
        #expect(await ChildProcess.eventually { fixture.fileEvents.count == 1 })
        #expect(fixture.fileEvents.first?["subject"] as? String == "b-2")
        let old = try String(contentsOfFile: rotated, encoding: .utf8)
        #expect(nonEmptyLines(old).count == 1)
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(20)) == 0)
        await fixture.stop()
    }
}
