import BulkWatchSimulator
import Foundation
import Logging
import Testing

@Suite struct LifecycleTests {
    @Test func reportsBoundPortAndURLs() async throws {
        try await withSimulator { simulator in
            #expect(simulator.port > 0)
            #expect(simulator.baseURL == "http://127.0.0.1:\(simulator.port)")
            #expect(simulator.bulkURL == simulator.baseURL + "/activityid/v1/user/bulk")
            #expect(simulator.tokenURL == simulator.baseURL + "/oauth2/token")
        }
    }

    @Test func manySimulatorsStartAndStopInOneProcess() async throws {
        var logger = Logger(label: "simulator-test")
        logger.logLevel = .warning
        var ports: [Int] = []
        for _ in 0..<4 {
            let pair = [
                DruIDSimulator(options: .manual(), logger: logger), DruIDSimulator(options: .manual(), logger: logger),
            ]
            for simulator in pair { try await simulator.start() }
            #expect(pair[0].port != pair[1].port)
            for simulator in pair {
                #expect(try await fetchBulk(simulator, token: try await fetchToken(simulator)).status == 200)
                ports.append(simulator.port)
            }
            for simulator in pair { await simulator.stop() }
        }
        #expect(ports.allSatisfy { $0 > 0 })
    }

    @Test func stopClosesTheListenerAndIsIdempotent() async throws {
        var logger = Logger(label: "simulator-test")
        logger.logLevel = .warning
        let simulator = DruIDSimulator(options: .manual(), logger: logger)
        await simulator.stop()  // before start: nothing to do
        try await simulator.start()
        let url = simulator.bulkURL
        #expect(try await curlExitCode(["-s", "--max-time", "5", url]) == 0)
        await simulator.stop()
        await simulator.stop()
        // 7: could not connect.
        #expect(try await curlExitCode(["-s", "--max-time", "5", url]) == 7)
    }

    @Test func startFailsWhenPortIsTaken() async throws {
        try await withSimulator { first in
            var logger = Logger(label: "simulator-test")
            logger.logLevel = .critical
            let second = DruIDSimulator(options: .manual(), logger: logger)
            await #expect(throws: (any Error).self) {
                try await second.start(port: first.port)
            }
            await second.stop()
        }
    }

    @Test func stopWaitsForRequestsInProgress() async throws {
        var logger = Logger(label: "simulator-test")
        logger.logLevel = .warning
        let simulator = DruIDSimulator(options: .manual(), logger: logger)
        try await simulator.start()
        let token = try await fetchToken(simulator)
        simulator.faults.latency = 0.5
        async let slow = fetchBulk(simulator, token: token)
        try await Task.sleep(for: .milliseconds(200))
        await simulator.stop()
        #expect(try await slow.status == 200)
    }
}
