import BulkWatchSimulator
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Two simulators (two DruID applications), a temp directory and a config file naming both.
private struct TwoTargets {
    let a: DruIDSimulator
    let b: DruIDSimulator
    let directory: String
    var configPath: String { directory + "/bulkwatch.yaml" }
    var statePath: String { directory + "/state.db" }
    let environment = ["A_SECRET": "demo-secret", "B_SECRET": "demo-secret"]

    init() async throws {
        a = DruIDSimulator(options: .manual())
        b = DruIDSimulator(options: .manual(seed: 7))
        try await a.start()
        try await b.start()
        directory = try makeTemporaryDirectory("operate")
    }

    func target(_ name: String, _ simulator: DruIDSimulator, interval: String = "100ms", extra: String = "") -> String {
        """
          - name: \(name)
            endpoint: \(simulator.bulkURL)
            token-url: \(simulator.tokenURL)
            client-id: bulkwatch-demo
            client-secret: env:\(name.uppercased())_SECRET
            interval: \(interval)
            sinks: [file:\(name).jsonl, file:all.jsonl]
        \(extra)
        """
    }

    func writeConfig(_ targets: [String], header: String = "") throws {
        let text = "state: state.db\n\(header)targets:\n" + targets.joined(separator: "\n") + "\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: configPath))
    }

    func events(_ file: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: directory + "/" + file, encoding: .utf8)) ?? ""
        return jsonObjects(text).compactMap { $0 }
    }

    func subjects(_ file: String) -> [String] { events(file).compactMap { $0["subject"] as? String } }

    func stop() async {
        await a.stop()
        await b.stop()
    }
}

private func bulkRequests(_ simulator: DruIDSimulator) -> Int { simulator.stats.bulkRequests }

@Suite("operating many targets: config file, reload, metrics, health, adaptive polling")
struct OperateTests {
    @Test func twoTargetsFromOneFileHaveIndependentEventsAndState() async throws {
        let fixture = try await TwoTargets()
        fixture.a.upsert(bulkId: "a-1")
        fixture.a.upsert(bulkId: "a-2")
        fixture.b.upsert(bulkId: "b-1")
        try fixture.writeConfig([fixture.target("a", fixture.a), fixture.target("b", fixture.b)])
        let child = try ChildProcess(
            BulkWatchBinary.path, ["run", "--config", fixture.configPath], environment: fixture.environment,
            directory: fixture.directory)
        #expect(await ChildProcess.eventually { fixture.events("all.jsonl").count == 3 }, "stderr: \(child.stderr)")
        fixture.b.upsert(bulkId: "b-1", status: "FINISHED")
        #expect(await ChildProcess.eventually { fixture.events("b.jsonl").count == 2 })
        child.signal(SIGTERM)
        #expect(await child.waitForExit() == 0)

        #expect(fixture.subjects("a.jsonl").sorted() == ["a-1", "a-2"], "a's sink gets a's events only")
        #expect(fixture.subjects("b.jsonl") == ["b-1", "b-1"])
        #expect(fixture.events("b.jsonl").map { $0["type"] as? String } == ["bulk.created", "bulk.changed"])
        #expect(fixture.events("a.jsonl").allSatisfy { $0["source"] as? String == fixture.a.bulkURL })
        #expect(fixture.events("b.jsonl").allSatisfy { $0["source"] as? String == fixture.b.bulkURL })
        #expect(fixture.events("all.jsonl").count == 4, "a sink shared by both targets gets both, once each")
        // Each target keeps its own snapshot: a second run sees nothing new on either.
        let again = try await runBulkWatch(
            ["run", "--config", fixture.configPath, "--once"], environment: fixture.environment,
            directory: fixture.directory)
        #expect(again.status == 0, "stderr: \(again.stderr)")
        #expect(fixture.events("all.jsonl").count == 4)
        await fixture.stop()
    }

    @Test func sighupReloadAddsChangesRemovesAndRejectsAnInvalidFile() async throws {
        let fixture = try await TwoTargets()
        fixture.a.upsert(bulkId: "a-1")
        fixture.b.upsert(bulkId: "b-1")
        try fixture.writeConfig([fixture.target("a", fixture.a)])
        let child = try ChildProcess(
            BulkWatchBinary.path, ["run", "--config", fixture.configPath], environment: fixture.environment,
            directory: fixture.directory)
        #expect(await ChildProcess.eventually { fixture.subjects("a.jsonl") == ["a-1"] }, "stderr: \(child.stderr)")

        // Add b, change a's interval.
        try fixture.writeConfig([fixture.target("a", fixture.a, interval: "150ms"), fixture.target("b", fixture.b)])
        child.signal(SIGHUP)
        #expect(await ChildProcess.eventually { child.stderr.contains("target b added") }, "stderr: \(child.stderr)")
        #expect(child.stderr.contains("target a stopped for its new settings"))
        #expect(await ChildProcess.eventually { fixture.subjects("b.jsonl") == ["b-1"] })
        fixture.a.upsert(bulkId: "a-2")
        #expect(await ChildProcess.eventually { fixture.subjects("a.jsonl") == ["a-1", "a-2"] })

        // An invalid file is rejected; the running configuration keeps working.
        try Data("targets:\n  - name: a\n    intervl: 1s\n".utf8).write(to: URL(fileURLWithPath: fixture.configPath))
        child.signal(SIGHUP)
        #expect(await ChildProcess.eventually { child.stderr.contains("new configuration rejected") })
        #expect(child.stderr.contains("bulkwatch.yaml:3: targets[0].intervl: unknown key"))
        fixture.a.upsert(bulkId: "a-3")
        fixture.b.upsert(bulkId: "b-2")
        #expect(
            await ChildProcess.eventually {
                fixture.subjects("a.jsonl").count == 3 && fixture.subjects("b.jsonl").count == 2
            })

        // Remove a: its polling stops, b goes on.
        try fixture.writeConfig([fixture.target("b", fixture.b)])
        child.signal(SIGHUP)
        #expect(await ChildProcess.eventually { child.stderr.contains("target a removed") })
        let requestsAfterRemoval = bulkRequests(fixture.a)
        fixture.b.upsert(bulkId: "b-3")
        #expect(await ChildProcess.eventually { fixture.subjects("b.jsonl").count == 3 })
        try await Task.sleep(for: .milliseconds(600))
        #expect(bulkRequests(fixture.a) <= requestsAfterRemoval + 1, "at most a poll already in flight")
        #expect(child.process.isRunning)
        child.signal(SIGTERM)
        #expect(await child.waitForExit() == 0)

        // Nothing lost, nothing doubled across the reloads.
        #expect(fixture.subjects("a.jsonl") == ["a-1", "a-2", "a-3"])
        #expect(fixture.subjects("b.jsonl") == ["b-1", "b-2", "b-3"])
        let ids = fixture.events("all.jsonl").compactMap { $0["id"] as? String }
        #expect(ids.count == 6 && Set(ids).count == 6)
        await fixture.stop()
    }

    @Test func metricsCountWhatHappened() async throws {
        let fixture = try await TwoTargets()
        for index in 1...3 { fixture.a.upsert(bulkId: "a-\(index)", status: "FINISHED") }
        // One failed poll first; then one good one; then nothing until the idle interval (1h).
        fixture.a.enqueue(.status(500))
        let port = try reserveFreePort()
        try fixture.writeConfig([fixture.target("a", fixture.a, interval: "1h")], header: "listen: 127.0.0.1:\(port)\n")
        let child = try ChildProcess(
            BulkWatchBinary.path, ["run", "--config", fixture.configPath], environment: fixture.environment,
            directory: fixture.directory)
        #expect(await ChildProcess.eventually { fixture.events("a.jsonl").count == 3 }, "stderr: \(child.stderr)")
        var metrics: PrometheusText?
        #expect(
            await ChildProcess.eventually {
                guard let (status, body) = try? httpGet("http://127.0.0.1:\(port)/metrics"), status == 200,
                    let parsed = try? PrometheusText(parsing: body),
                    parsed.value("bulkwatch_sink_delivered_total", ["sink": "file:\(fixture.directory)/all.jsonl"]) == 3
                else { return false }
                metrics = parsed
                return true
            }, "stderr: \(child.stderr)")
        let parsed = try #require(metrics)
        let target = ["target": "a"]
        #expect(parsed.types["bulkwatch_polls_total"] == "counter")
        #expect(parsed.types["bulkwatch_poll_duration_seconds"] == "histogram")
        #expect(parsed.value("bulkwatch_polls_total", ["target": "a", "outcome": "http_500"]) == 1)
        #expect(parsed.value("bulkwatch_polls_total", ["target": "a", "outcome": "ok"]) == 1)
        #expect(
            Int(parsed.value("bulkwatch_polls_total", ["target": "a", "outcome": "ok"]) ?? 0)
                + Int(parsed.value("bulkwatch_polls_total", ["target": "a", "outcome": "http_500"]) ?? 0)
                == bulkRequests(fixture.a), "every request the simulator saw is counted once")
        #expect(parsed.value("bulkwatch_poll_duration_seconds_count", target) == 1)
        #expect(parsed.value("bulkwatch_events_total", ["target": "a", "type": "created"]) == 3)
        #expect(parsed.value("bulkwatch_items_tracked", target) == 3)
        #expect(parsed.value("bulkwatch_items_active", target) == 0)
        #expect(parsed.value("bulkwatch_token_refreshes_total", target) == Double(fixture.a.stats.tokensIssued))
        #expect(parsed.value("bulkwatch_sink_lag_events", ["sink": "file:\(fixture.directory)/a.jsonl"]) == 0)
        #expect(parsed.value("bulkwatch_sink_dead_letters_total", ["sink": "file:\(fixture.directory)/a.jsonl"]) == 0)
        #expect(parsed.value("bulkwatch_sink_stopped", ["sink": "file:\(fixture.directory)/a.jsonl"]) == 0)
        let (status, ready) = try httpGet("http://127.0.0.1:\(port)/readyz")
        #expect(status == 200 && ready.contains("\"status\":\"ok\""))
        child.signal(SIGTERM)
        #expect(await child.waitForExit() == 0)
        await fixture.stop()
    }

    @Test func healthzTurns503WhenUpstreamStopsAndRecoversWhenItReturns() async throws {
        let simulatorPort = try reserveFreePort()
        let simulator = DruIDSimulator(options: .manual())
        try await simulator.start(port: simulatorPort)
        simulator.upsert(bulkId: "h-1", status: "FINISHED")
        let directory = try makeTemporaryDirectory("health")
        let port = try reserveFreePort()
        let child = try ChildProcess(
            BulkWatchBinary.path,
            [
                "run", "--endpoint", simulator.bulkURL, "--token-url", simulator.tokenURL, "--client-id",
                "bulkwatch-demo", "--interval", "200ms", "--state", directory + "/s.db", "--sink",
                "file:" + directory + "/e.jsonl", "--listen", "\(port)",
            ], environment: ["BULKWATCH_CLIENT_SECRET": "demo-secret"], directory: directory)
        func health() -> (Int, String)? { try? httpGet("http://127.0.0.1:\(port)/healthz") }
        #expect(await ChildProcess.eventually { health()?.0 == 200 }, "stderr: \(child.stderr)")
        await simulator.stop()
        var unhealthy: String?
        #expect(
            await ChildProcess.eventually {
                guard let (status, body) = health(), status == 503 else { return false }
                unhealthy = body
                return true
            })
        let body = try #require(unhealthy)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        #expect(object["status"] as? String == "unhealthy")
        let reasons = object["reasons"] as? [String] ?? []
        #expect(reasons.count == 1 && reasons[0].hasPrefix("target default: last successful poll"), "\(reasons)")
        try await simulator.start(port: simulatorPort)
        #expect(await ChildProcess.eventually { health()?.0 == 200 }, "stderr: \(child.stderr)")
        child.signal(SIGTERM)
        #expect(await child.waitForExit() == 0)
        await simulator.stop()
    }

    @Test func adaptiveCadencePollsFastOnlyWhileSomethingIsInProgress() async throws {
        let fixture = try await TwoTargets()
        fixture.a.upsert(bulkId: "job-1", status: "PROCESSING")
        try fixture.writeConfig(
            [fixture.target("a", fixture.a, interval: "1h", extra: "    active-interval: 100ms")])
        let child = try ChildProcess(
            BulkWatchBinary.path, ["run", "--config", fixture.configPath], environment: fixture.environment,
            directory: fixture.directory)
        // In progress: many polls although the idle interval is an hour.
        #expect(await ChildProcess.eventually { bulkRequests(fixture.a) >= 5 }, "stderr: \(child.stderr)")
        fixture.a.upsert(bulkId: "job-1", status: "FINISHED")
        #expect(await ChildProcess.eventually { fixture.events("a.jsonl").count == 2 })
        #expect(
            await ChildProcess.eventually { child.stderr.contains("polling every 3600s: 0 operation(s) in progress") })
        let settled = bulkRequests(fixture.a)
        try await Task.sleep(for: .seconds(1))
        #expect(bulkRequests(fixture.a) == settled, "idle again: no poll before the hour is up")
        // A new operation starts: the next poll is an hour away, so this one is seen only then —
        // unless the operator reloads; SIGHUP restarts nothing here (same settings), by design.
        let bulkTimes = fixture.a.requestLog.filter { $0.path.hasPrefix("/activityid") }.map(\.time)
        let gaps = zip(bulkTimes.dropFirst(), bulkTimes).map { $0.timeIntervalSince($1) }
        #expect(gaps.allSatisfy { $0 < 30 }, "every poll so far came at the active cadence")
        child.signal(SIGTERM)
        #expect(await child.waitForExit() == 0)
        await fixture.stop()
    }

    @Test func jsonLogsAreOneObjectPerLineAndCarryNoSecret() async throws {
        let fixture = try await TwoTargets()
        fixture.a.upsert(bulkId: "a-1")
        fixture.a.enqueue(.status(500))
        try fixture.writeConfig([fixture.target("a", fixture.a)], header: "log-format: json\n")
        let child = try ChildProcess(
            BulkWatchBinary.path, ["run", "--config", fixture.configPath, "--log-level", "debug"],
            environment: fixture.environment, directory: fixture.directory)
        #expect(await ChildProcess.eventually { fixture.events("a.jsonl").count == 1 }, "stderr: \(child.stderr)")
        child.signal(SIGTERM)
        #expect(await child.waitForExit() == 0)
        let lines = nonEmptyLines(child.stderr)
        let objects = jsonObjects(child.stderr)
        #expect(!lines.isEmpty && objects.allSatisfy { $0 != nil }, "every stderr line is a JSON object")
        #expect(objects.allSatisfy { $0?["level"] is String && $0?["message"] is String && $0?["time"] is String })
        #expect(
            objects.contains {
                ($0?["message"] as? String)?.hasPrefix("poll failed: server error (500)") == true
                    && $0?["target"] as? String == "a" && $0?["level"] as? String == "warning"
            })
        #expect(!child.stderr.contains("demo-secret"))
        await fixture.stop()
    }

    @Test func checkReportsEachTargetAndExitsNonZeroWhenOneFails() async throws {
        let fixture = try await TwoTargets()
        fixture.a.upsert(bulkId: "a-1", status: "PROCESSING")
        try fixture.writeConfig([fixture.target("a", fixture.a), fixture.target("b", fixture.b)])
        var environment = fixture.environment
        let good = try await runBulkWatch(
            ["check", "--config", fixture.configPath], environment: environment, directory: fixture.directory)
        #expect(good.status == 0, "stderr: \(good.stderr)")
        #expect(good.stdout.contains("OK    a  1 operation(s), 1 in progress"))
        #expect(good.stdout.contains("OK    b  0 operation(s)"))
        environment["B_SECRET"] = "wrong-secret"
        let bad = try await runBulkWatch(
            ["check", "--config", fixture.configPath], environment: environment, directory: fixture.directory)
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("OK    a"))
        #expect(bad.stdout.contains("FAIL  b  token: token request failed, HTTP 400"))
        #expect(bad.stderr.contains("1 of 2 target(s) failed the check"))
        #expect(!(bad.stdout + bad.stderr).contains("wrong-secret"))
        // The state is not created by a check.
        #expect(!FileManager.default.fileExists(atPath: fixture.statePath))
        await fixture.stop()
    }

    @Test func anInvalidFileExits78WithFileLineAndKeyBeforeAnyRequest() async throws {
        let fixture = try await TwoTargets()
        try fixture.writeConfig([fixture.target("a", fixture.a, interval: "fortnightly")])
        for command in ["run", "check"] {
            let result = try await runBulkWatch(
                [command, "--config", fixture.configPath], environment: fixture.environment,
                directory: fixture.directory)
            #expect(result.status == 78)
            #expect(
                nonEmptyLines(result.stderr) == [
                    "bulkwatch: \(fixture.configPath):8: targets[0].interval: invalid duration 'fortnightly': use e.g. 300ms, 30s, 5m, 1h, 7d"
                ])
        }
        #expect(fixture.a.requestLog.isEmpty)
        await fixture.stop()
    }

    @Test func oauthconfSuppliesTheCredentials() async throws {
        let fixture = try await TwoTargets()
        fixture.a.upsert(bulkId: "a-1")
        let xml = fixture.directory + "/oauthconf.xml"
        try Data(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <oauthconf>
              <client_id>bulkwatch-demo</client_id>
              <client_secret>demo-secret</client_secret>
              <token_endpoint>\(fixture.a.tokenURL)</token_endpoint>
            </oauthconf>
            """.utf8
        ).write(to: URL(fileURLWithPath: xml))
        chmod(xml, 0o600)
        let result = try await runBulkWatch(
            [
                "run", "--once", "--endpoint", fixture.a.bulkURL, "--oauthconf", xml, "--state", fixture.statePath,
                "--sink", "stdout:json",
            ], directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(jsonObjects(result.stdout).compactMap { $0?["subject"] as? String } == ["a-1"])
        #expect(!result.stderr.contains("demo-secret"))
        await fixture.stop()
    }
}
