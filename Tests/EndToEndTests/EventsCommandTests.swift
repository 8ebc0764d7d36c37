import BulkWatchSimulator
import Foundation
import TestSupport
import Testing

@Suite("bulkwatch events")
struct EventsCommandTests {
    /// Three created events, then one changed: four journal entries to query.
    func journaled() async throws -> RunFixture {
        let fixture = try await RunFixture()
        for index in 1...3 { fixture.simulator.upsert(bulkId: "b-\(index)", status: "PENDING") }
        _ = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        fixture.simulator.upsert(bulkId: "b-2", status: "FINISHED")
        _ = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        return fixture
    }

    func events(_ fixture: RunFixture, _ arguments: [String]) async throws -> (Int32?, String, String) {
        let result = try await runBulkWatch(
            ["events", "--state", fixture.statePath] + arguments, directory: fixture.directory)
        return (result.status, result.stdout, result.stderr)
    }

    @Test func printsTheJournalAsCloudEventsAndFilters() async throws {
        let fixture = try await journaled()
        let (status, all, stderr) = try await events(fixture, [])
        #expect(status == 0, "stderr: \(stderr)")
        #expect(jsonObjects(all).compactMap { $0?["sequence"] as? String } == ["1", "2", "3", "4"])
        // The journal and the file sink hold the same bytes.
        let fileText = try String(contentsOfFile: fixture.logPath, encoding: .utf8)
        #expect(all == fileText)

        let (_, since, _) = try await events(fixture, ["--since", "2"])
        #expect(jsonObjects(since).compactMap { $0?["sequence"] as? String } == ["3", "4"])
        let (_, changed, _) = try await events(fixture, ["--type", "changed"])
        #expect(jsonObjects(changed).compactMap { $0?["subject"] as? String } == ["b-2"])
        let (_, subject, _) = try await events(fixture, ["--subject", "b-2"])
        #expect(jsonObjects(subject).compactMap { $0?["type"] as? String } == ["bulk.created", "bulk.changed"])
        let (_, text, _) = try await events(fixture, ["--format", "text", "--type", "changed"])
        #expect(text.contains("b-2") && text.contains("PENDING → FINISHED"))
        await fixture.stop()
    }

    @Test func followPrintsEventsCommittedLater() async throws {
        let fixture = try await journaled()
        let follower = try ChildProcess(
            BulkWatchBinary.path, ["events", "--state", fixture.statePath, "--follow", "--since", "4"],
            directory: fixture.directory)
        fixture.simulator.upsert(bulkId: "b-9", status: "PENDING")
        _ = try await runBulkWatch(
            fixture.arguments(["--once"]), environment: fixture.environment, directory: fixture.directory)
        let seen = await ChildProcess.eventually(timeout: .seconds(30)) { follower.stdout.contains("\"b-9\"") }
        #expect(seen)
        follower.signal(SIGKILL)
        _ = await follower.waitForExit(timeout: .seconds(10))
        await fixture.stop()
    }

    @Test func aMissingStateFileIsAConfigurationError() async throws {
        let directory = try makeTemporaryDirectory("events")
        let result = try await runBulkWatch(["events", "--state", directory + "/nope.db"], directory: directory)
        #expect(result.status == 78)
        #expect(result.stderr.contains("nope.db"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/nope.db"))
    }
}
