import BulkWatchSimulator
import Foundation
import Logging
import TestSupport
import Testing

@testable import BulkWatch

/// A watcher on a test clock against a manual simulator, owned by one test.
///
/// The clock only moves when the test advances it, so each check reads the delay the watcher chose
/// for its next wait (``TestClock/nextDelay``) instead of timing polls on the real clock.
private struct ScheduledWatcher {
    let simulator: DruIDSimulator
    let journal: SQLiteStore
    let transport = CurlTransport()
    let clock = TestClock()
    let watcher: Watcher
    let running: Task<Void, any Error>

    init(target: (String) -> WatchTarget, firstPollDelay: Duration = .zero, setUp: (DruIDSimulator) -> Void)
        async throws
    {
        simulator = DruIDSimulator(options: .manual())
        try await simulator.start()
        setUp(simulator)
        let directory = try makeTemporaryDirectory("schedule")
        journal = try SQLiteStore(path: directory + "/state.db")
        let logger = Logger(label: "test")
        let credentials = ClientCredentials(
            tokenURL: simulator.tokenURL, clientID: "bulkwatch-demo", clientSecret: Secret("demo-secret"))
        let tokens = TokenProvider(
            source: .clientCredentials(credentials), transport: transport, logger: logger, clock: clock)
        let client = BulkStatusClient(
            endpoint: BulkEndpoint(url: simulator.bulkURL), transport: transport, tokens: tokens, logger: logger)
        let watcher = try await Watcher(
            target: target(simulator.bulkURL), client: client, store: journal, logger: logger,
            firstPollDelay: firstPollDelay, tokens: tokens, clock: clock)
        self.watcher = watcher
        running = Task { try await watcher.run() }
    }

    var bulkRequests: Int { simulator.stats.bulkRequests }

    /// Waits until the watcher sleeps again, i.e. the poll the last advance started is committed.
    func nextWait() async throws -> Duration? {
        try await clock.waitForSleepers()
        return clock.nextDelay
    }

    func stop() async {
        running.cancel()
        _ = try? await running.value
        transport.shutdown()
        await simulator.stop()
    }
}

@Suite("Watcher schedule on a test clock", .timeLimit(.minutes(1)))
struct WatcherScheduleTests {
    @Test func ticksAreFixedRateAndTicksMissedWhileAPollOverranAreSkipped() async throws {
        let fixture = try await ScheduledWatcher(
            target: { WatchTarget(endpoint: BulkEndpoint(url: $0), interval: .seconds(5)) },
            setUp: { $0.upsert(bulkId: "b-1", status: "FINISHED") })
        #expect(try await fixture.nextWait() == .seconds(5))
        #expect(fixture.bulkRequests == 1)
        // The tick at 5 s is taken only at 17 s (a suspended process, a poll that overran): the next
        // poll is on the grid at 20 s, neither 5 s later (fixed delay) nor at once for the missed ticks.
        fixture.clock.advance(by: .seconds(17))
        #expect(try await fixture.nextWait() == .seconds(3))
        #expect(fixture.bulkRequests == 2)
        fixture.clock.advanceToNextDeadline()
        #expect(try await fixture.nextWait() == .seconds(5))
        #expect(fixture.bulkRequests == 3)
        #expect(fixture.clock.now == TestClock.Instant(offset: .seconds(20)))
        await fixture.stop()
    }

    @Test func adaptiveCadencePollsAtTheActiveIntervalOnlyWhileSomethingIsInProgress() async throws {
        let fixture = try await ScheduledWatcher(
            target: {
                WatchTarget(endpoint: BulkEndpoint(url: $0), interval: .seconds(3600), activeInterval: .seconds(5))
            },
            setUp: { $0.upsert(bulkId: "job-1", status: "PROCESSING") })
        // In progress: every 5 s although the idle interval is an hour.
        for poll in 1...3 {
            #expect(try await fixture.nextWait() == .seconds(5))
            #expect(fixture.bulkRequests == poll)
            fixture.clock.advanceToNextDeadline()
        }
        fixture.simulator.upsert(bulkId: "job-1", status: "FINISHED")
        // The poll at 15 s sees it finished: back to the hour, on a grid restarted at that poll.
        #expect(try await fixture.nextWait() == .seconds(3600))
        #expect(fixture.bulkRequests == 4)
        fixture.clock.advance(by: .seconds(3599))
        #expect(fixture.clock.sleeperCount == 1, "idle again: no poll before the hour is up")
        #expect(fixture.bulkRequests == 4)
        fixture.clock.advance(by: .seconds(1))
        #expect(try await fixture.nextWait() == .seconds(3600))
        #expect(fixture.bulkRequests == 5)
        #expect(try await fixture.journal.allEvents().map(\.kind) == [.created, .changed])
        await fixture.stop()
    }

    @Test func failedPollsBackOffWithinTheirCeilingThenPollingReturnsToTheGrid() async throws {
        let fixture = try await ScheduledWatcher(
            target: { WatchTarget(endpoint: BulkEndpoint(url: $0), interval: .seconds(8)) },
            setUp: { simulator in
                simulator.upsert(bulkId: "b-1")
                simulator.enqueue(.status(500), times: 3)
            })
        // Full jitter under 1 s, 2 s, 4 s: exponential from 1 s, below the cap (the 8 s interval).
        var waited = Duration.zero
        for (failures, ceiling) in [(1, Duration.seconds(1)), (2, .seconds(2)), (3, .seconds(4))] {
            let delay = try #require(try await fixture.nextWait())
            #expect(delay > .zero && delay <= ceiling, "retry \(failures) after \(delay)")
            #expect(fixture.bulkRequests == failures)
            waited += delay
            fixture.clock.advanceToNextDeadline()
        }
        // Recovered after at most 7 s: the next poll is the grid's 8 s tick, not 8 s after the recovery.
        #expect(try await fixture.nextWait() == .seconds(8) - waited)
        #expect(fixture.bulkRequests == 4)
        #expect(try await fixture.journal.allEvents().map(\.kind) == [.created])
        await fixture.stop()
    }

    @Test func theFirstPollWaitsForItsDelayAndTheGridStartsThere() async throws {
        let fixture = try await ScheduledWatcher(
            target: { WatchTarget(endpoint: BulkEndpoint(url: $0), interval: .seconds(5)) },
            firstPollDelay: .seconds(2),
            setUp: { $0.upsert(bulkId: "b-1") })
        #expect(try await fixture.nextWait() == .seconds(2))
        #expect(fixture.bulkRequests == 0)
        fixture.clock.advanceToNextDeadline()
        #expect(try await fixture.nextWait() == .seconds(5))
        #expect(fixture.bulkRequests == 1)
        await fixture.stop()
    }
}

@Suite("Health board on a test clock")
struct HealthBoardClockTests {
    @Test func aTargetIsUnhealthyOnlyAfterThreeIntervalsWithoutASuccessfulPoll() {
        let clock = TestClock()
        let board = HealthBoard(clock: clock)
        board.setTargets([(name: "eu", interval: .seconds(10))])
        #expect(board.health().healthy)
        #expect(board.readiness().reasons == ["target eu: no successful poll yet"])
        // Counted from start-up until the first success: exactly three intervals is still fine.
        clock.advance(by: .seconds(30))
        #expect(board.health().healthy)
        clock.advance(by: .milliseconds(1))
        #expect(board.health().reasons == ["target eu: no successful poll since start-up 30s ago (limit 30s)"])
        board.pollSucceeded(target: "eu")
        #expect(board.health().healthy)
        #expect(board.readiness().healthy)
        // Failures alone do not count until three intervals have passed since the last success.
        clock.advance(by: .seconds(25))
        board.pollFailed(target: "eu", reason: "HTTP 500")
        #expect(board.health().healthy)
        clock.advance(by: .seconds(6))
        #expect(board.health().reasons == ["target eu: last successful poll 31s ago (limit 30s): HTTP 500"])
        #expect(board.readiness().healthy, "ready stays ready: it only waits for the first success")
        board.pollSucceeded(target: "eu")
        #expect(board.health().healthy)
    }
}

/// `activeCount` drives the adaptive cadence and `bulkwatch_items_active`: every item whose status is missing
/// or not terminal counts, whatever order and whichever string instances the statuses arrive in.
@Suite("Active items for the adaptive cadence")
struct ActiveCountTests {
    @Test func countsItemsWithoutATerminalStatusInAnyOrder() throws {
        let target = WatchTarget(
            endpoint: BulkEndpoint(url: "http://127.0.0.1:1/bulk"), terminalStatuses: ["FINISHED", "FAILED"])
        func item(_ id: Int, _ status: String?) -> BulkItem {
            BulkItem(bulkId: "b-\(id)", status: status, rawJSON: Array(#"{"bulkId":"b-\#(id)"}"#.utf8)[...])
        }
        // Built at run time, so equal statuses are distinct string instances, unlike the decoder's.
        let spelled = { (text: String) in String(text.reversed().reversed()) }
        let statuses: [String?] = [
            "PENDING", "PENDING", spelled("FINISHED"), "FINISHED", nil, spelled("PENDING"), "FAILED", "RUNNING",
            "RUNNING", nil, "finished",
        ]
        let listing = BulkListing(items: statuses.enumerated().map { item($0.offset, $0.element) })
        #expect(target.activeCount(in: listing) == 8)
        #expect(target.activeCount(in: BulkListing(items: [])) == 0)
        #expect(target.activeCount(in: BulkListing(items: [item(1, "FAILED"), item(2, "FAILED")])) == 0)
    }

    /// A decoded listing reads statuses where they lie in the body, except items kept whole (an escaped
    /// field): a run of equal statuses must not be judged by the bytes of a kept-whole item, which live only
    /// while that item is read.
    @Test func countsADecodedListingWithItemsKeptWholeAmongThem() throws {
        let target = WatchTarget(
            endpoint: BulkEndpoint(url: "http://127.0.0.1:1/bulk"), terminalStatuses: ["FINISHED", "FAILED"])
        let objects = [
            #"{"bulkId":"a","status":"FINISHED"}"#, #"{"bulkId":"b","status":"FINISHED"}"#,
            #"{"bulkId":"c","status":"\u0046INISHED"}"#, #"{"bulkId":"d","status":"FINISHED"}"#,
            #"{"bulkId":"e","status":"RUNNING"}"#, #"{"bulkId":"\u0066","status":"RUNNING"}"#,
            #"{"bulkId":"g","status":"RUNNING"}"#, #"{"bulkId":"h"}"#, #"{"bulkId":"i","status":"FAILED"}"#,
            #"{"bulkId":"j","status":null}"#, #"{"bulkId":"k","status":"FAILED"}"#,
            // Equal lengths, other bytes: a run of one status must end at the next, however alike.
            #"{"bulkId":"l","status":"QUEUED"}"#, #"{"bulkId":"m","status":"FAILED"}"#,
        ]
        let listing = try BulkListDecoder.decode(Array(#"{"content":[\#(objects.joined(separator: ","))]}"#.utf8))
        #expect(
            listing.items.map(\.status) == [
                "FINISHED", "FINISHED", "FINISHED", "FINISHED", "RUNNING", "RUNNING", "RUNNING", nil, "FAILED", nil,
                "FAILED", "QUEUED", "FAILED",
            ])
        #expect(target.activeCount(in: listing) == 6)
        #expect(target.activeCount(in: BulkListing(items: listing.items)) == 6)
    }

    /// The decoder tallies items per distinct status as it goes, so counting asks about each status once; past
    /// a few dozen distinct statuses it stops tallying, and counting reads every item instead. Both agree.
    @Test func countsTheSameWithManyDistinctStatuses() throws {
        let target = WatchTarget(
            endpoint: BulkEndpoint(url: "http://127.0.0.1:1/bulk"), terminalStatuses: ["FINISHED", "FAILED"])
        for distinct in [3, 31, 32, 33, 80] {
            let statuses = (0..<(3 * distinct)).map { n in
                n % 3 == 0 ? "FINISHED" : n % 3 == 1 ? "S\(n % distinct)" : n % 2 == 0 ? "FAILED" : "S\(n)"
            }
            let objects = statuses.enumerated().map { #"{"bulkId":"b-\#($0.offset)","status":"\#($0.element)"}"# }
            let body = Array(#"{"content":[\#(objects.joined(separator: ","))]}"#.utf8)
            let listing = try BulkListDecoder.decode(body)
            let expected = statuses.filter { $0 != "FINISHED" && $0 != "FAILED" }.count
            #expect(target.activeCount(in: listing) == expected, "\(distinct) distinct statuses")
            #expect(target.activeCount(in: BulkListing(items: listing.items)) == expected)
        }
    }
}
