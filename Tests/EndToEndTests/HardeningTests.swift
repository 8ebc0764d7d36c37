import BulkWatch
import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A DruID stand-in on a raw loopback server: its token and list answers are whatever a test
/// scripts, including the hostile ones a real DruID (or a man in the middle) could send.
final class ScriptedDruID: Sendable {
    let server: LoopbackHTTPServer
    let directory: String

    init(
        token: @escaping @Sendable () -> ScriptedReply = { .json(200, #"{"access_token":"tok-1","expires_in":900}"#) },
        list: @escaping @Sendable () -> ScriptedReply = { .json(200, #"{"content":[{"bulkId":"b-1"}]}"#) }
    ) throws {
        server = try LoopbackHTTPServer { request in
            request.path.hasPrefix("/oauth2/token") ? token() : list()
        }
        directory = try makeTemporaryDirectory("hardening")
    }

    var tokenURL: String { server.baseURL + "/oauth2/token" }
    var bulkURL: String { server.baseURL + "/activityid/v1/user/bulk" }
    var statePath: String { directory + "/state.db" }
    var tokenRequests: [RecordedRequest] { server.requests.filter { $0.path.hasPrefix("/oauth2/token") } }
    var listRequests: [RecordedRequest] { server.requests.filter { !$0.path.hasPrefix("/oauth2/token") } }
    let environment = ["BULKWATCH_CLIENT_SECRET": "s3cret-value"]

    func arguments(_ extra: [String] = []) -> [String] {
        ["run", "--once", "--endpoint", bulkURL, "--token-url", tokenURL, "--client-id", "app", "--state", statePath]
            + extra
    }

    func write(_ text: String, _ name: String, mode: mode_t = 0o600) throws -> String {
        let path = directory + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
        return path
    }

    func run(_ arguments: [String], environment extra: [String: String] = [:]) async throws
        -> (status: Int32?, stdout: String, stderr: String)
    {
        try await runBulkWatch(
            arguments, environment: environment.merging(extra) { $1 }, directory: directory, timeout: .seconds(60))
    }

    deinit { server.stop() }
}

@Suite("issue 11: no header injection")
struct HeaderInjectionTests {
    @Test func aTokenWithCRLFIsATokenFailureAndIsNeverSent() async throws {
        let druid = try ScriptedDruID(token: {
            .json(200, #"{"access_token":"tok\r\nX-Injected: yes","expires_in":900}"#)
        })
        let result = try await druid.run(druid.arguments())
        #expect(result.status == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("token failure"), "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("X-Injected"), "the token is not logged")
        #expect(druid.listRequests.isEmpty, "the API saw \(druid.listRequests.map(\.headers))")
    }

    @Test(arguments: ["tok en", "tok\"x", "tok,x", "tok\u{7f}"])
    func aTokenOutsideB64TokenCharactersIsRefused(_ token: String) async throws {
        let escaped = String(
            decoding: try JSONSerialization.data(withJSONObject: ["access_token": token]), as: UTF8.self)
        let druid = try ScriptedDruID(token: { .json(200, escaped) })
        let result = try await druid.run(druid.arguments())
        #expect(result.status == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("token failure"))
        #expect(druid.listRequests.isEmpty)
    }

    @Test func aB64TokenIsSentAsIs() async throws {
        let druid = try ScriptedDruID(token: { .json(200, #"{"access_token":"aZ09-._~+/==","expires_in":900}"#) })
        let result = try await druid.run(druid.arguments())
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(druid.listRequests.first?.header("Authorization") == "Bearer aZ09-._~+/==")
    }

    @Test func aFixedTokenWithCRLFIsAConfigurationError() async throws {
        let druid = try ScriptedDruID()
        let result = try await druid.run(
            ["run", "--once", "--endpoint", druid.bulkURL, "--state", druid.statePath],
            environment: ["BULKWATCH_TOKEN": "tok\r\nX-Injected: yes"])
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("X-Injected"))
        #expect(druid.server.requests.isEmpty)
    }

    @Test func acceptLanguageWithCRLFFromAFlagIsAConfigurationError() async throws {
        let druid = try ScriptedDruID()
        let result = try await druid.run(druid.arguments(["--accept-language", "fr\r\nX-Injected: yes"]))
        #expect(result.status == 78)
        #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("accept-language"))
        #expect(druid.server.requests.isEmpty)
    }

    @Test func acceptLanguageWithCRLFFromTheEnvironmentIsAConfigurationError() async throws {
        let druid = try ScriptedDruID()
        let result = try await druid.run(
            druid.arguments(), environment: ["BULKWATCH_ACCEPT_LANGUAGE": "fr\nX-Injected: yes"])
        #expect(result.status == 78)
        #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("accept-language"))
        #expect(druid.server.requests.isEmpty)
    }

    @Test func acceptLanguageWithCRLFFromTheFileIsAConfigurationError() async throws {
        let druid = try ScriptedDruID()
        let config = try druid.write(
            """
            state: \(druid.statePath)
            targets:
              - name: a
                endpoint: \(druid.bulkURL)
                token-url: \(druid.tokenURL)
                client-id: app
                accept-language: "fr\\r\\nX-Injected: yes"
            """, "bulkwatch.yaml")
        let result = try await druid.run(["run", "--once", "--config", config])
        #expect(result.status == 78)
        #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("accept-language"))
        #expect(druid.server.requests.isEmpty)
    }
}

@Suite("issue 11: no credentials in URLs")
struct CredentialsInURLTests {
    @Test(arguments: ["--endpoint", "--token-url"])
    func userinfoInAnUpstreamURLIsAConfigurationError(_ flag: String) async throws {
        let druid = try ScriptedDruID()
        var arguments = druid.arguments()
        let index = try #require(arguments.firstIndex(of: flag))
        arguments[index + 1] = arguments[index + 1].replacingOccurrences(of: "http://", with: "http://user:pw@")
        let result = try await druid.run(arguments)
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("user name or password"))
        #expect(!result.stderr.contains("pw@"), "the password is not echoed")
        #expect(druid.server.requests.isEmpty)
    }

    @Test func userinfoInTheFileIsAConfigurationError() async throws {
        let druid = try ScriptedDruID()
        let config = try druid.write(
            """
            state: \(druid.statePath)
            targets:
              - name: a
                endpoint: \(druid.bulkURL.replacingOccurrences(of: "http://", with: "http://u:pw@"))
                token-url: \(druid.tokenURL)
                client-id: app
            """, "bulkwatch.yaml")
        let result = try await druid.run(["run", "--once", "--config", config])
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("target a"))
        #expect(druid.server.requests.isEmpty)
    }

    @Test func webhookURLsAreRedactedInLogsMetricsAndDeliveries() async throws {
        let druid = try ScriptedDruID()
        let receiver = try LoopbackHTTPServer { _ in .respond(status: 500) }
        defer { receiver.stop() }
        let hook = "http://hookuser:hunter2@127.0.0.1:\(receiver.port)/hook?token=sekrit42&batch=1"
        let secret = "whsec_" + Data(Array("redaction test key, 32 bytes ok".utf8)).base64EncodedString()
        // A reserved port can be taken by a parallel test before the child binds it: then try another one.
        var port = 0
        var bound: ChildProcess?
        for _ in 1...3 {
            port = try reserveFreePort()
            let arguments = [
                "run", "--endpoint", druid.bulkURL, "--token-url", druid.tokenURL, "--client-id", "app",
                "--state", druid.statePath, "--interval", "1h", "--sink", "webhook:" + hook, "--listen", "\(port)",
                "--webhook-backoff-base", "50ms", "--webhook-backoff-cap", "100ms",
            ]
            let started = try ChildProcess(
                BulkWatchBinary.path, arguments,
                environment: druid.environment.merging(["BULKWATCH_WEBHOOK_SECRET": secret]) { $1 },
                directory: druid.directory)
            let listening = await ChildProcess.eventually(timeout: .seconds(20)) {
                waitUntilListening(port: port, timeout: .milliseconds(50)) || !started.process.isRunning
            }
            if listening, started.process.isRunning {
                bound = started
                break
            }
            _ = await started.waitForExit(timeout: .seconds(5))
        }
        let child = try #require(bound, "the watcher could not bind a metrics port in three tries")
        #expect(await ChildProcess.eventually { receiver.requests.count >= 3 }, "stderr: \(child.stderr)")
        #expect(receiver.requests.first?.header("Authorization") != nil, "curl still sends the userinfo as Basic")
        let metrics = try httpGet("http://127.0.0.1:\(port)/metrics").body
        child.signal(SIGTERM)
        _ = await child.waitForExit(timeout: .seconds(20))
        let deliveries = try await druid.run(["deliveries", "--state", druid.statePath, "--format", "json"])
        let deliveriesText = try await druid.run(["deliveries", "--state", druid.statePath])
        for (place, text) in [
            ("log", child.stderr), ("metrics", metrics), ("deliveries", deliveries.stdout),
            ("deliveries text", deliveriesText.stdout),
        ] {
            #expect(!text.contains("hunter2"), "\(place): \(text)")
            #expect(!text.contains("sekrit42"), "\(place): \(text)")
            #expect(!text.contains("hookuser"), "\(place): \(text)")
        }
        #expect(child.stderr.contains("127.0.0.1:\(receiver.port)/hook"), "the host and path stay visible")
        #expect(metrics.contains("token=<redacted>"), "metrics: \(metrics)")
    }
}

@Suite("issue 11: no log injection")
struct LogInjectionTests {
    @Test func controlCharactersFromUpstreamAreEscapedInTextLogs() async throws {
        let druid = try ScriptedDruID(list: {
            .respond(
                status: 400, headers: [("Content-Type", "application/json")],
                body: Array(#"{"error":"bad"#.utf8) + [0x0d, 0x1b] + Array(#"[2Jreq","type":"T"#.utf8) + [0x0d]
                    + Array(#"FAKE","message":"m"#.utf8) + [0x08] + Array(#"x"}"#.utf8))
        })
        let result = try await druid.run(druid.arguments())
        #expect(result.status == 1)
        #expect(result.stderr.contains("poll failed"))
        #expect(!result.stderr.utf8.contains(0x1b), "stderr: \(result.stderr.debugDescription)")
        #expect(!result.stderr.utf8.contains(0x0d), "stderr: \(result.stderr.debugDescription)")
        #expect(!result.stderr.utf8.contains(0x08), "stderr: \(result.stderr.debugDescription)")
        #expect(result.stderr.contains(#"\u{1B}"#) || result.stderr.contains(#"\e"#) || result.stderr.contains("\\x1b"))
    }

    @Test func aBulkIdWithANewlineCannotForgeALogLine() async throws {
        let druid = try ScriptedDruID(list: {
            .json(
                200,
                #"{"content":[{"bulkId":"dup\n2026-12-01T00:00:00+0000 critical bulkwatch : FORGED","updatedOn":"1"},"#
                    + #"{"bulkId":"dup\n2026-12-01T00:00:00+0000 critical bulkwatch : FORGED","updatedOn":"2"}]}"#)
        })
        let result = try await druid.run(druid.arguments(["--sink", "file:" + druid.directory + "/e.jsonl"]))
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("duplicate bulkId"), "stderr: \(result.stderr)")
        #expect(!nonEmptyLines(result.stderr).contains { $0.hasPrefix("2026-12-01T00:00:00+0000 critical") })
        #expect(result.stderr.contains(#"dup\n2026"#))
    }
}

@Suite("issue 11: secret files")
struct SecretFileTests {
    private func runWithSecretFile(_ druid: ScriptedDruID, _ path: String) async throws
        -> (status: Int32?, stdout: String, stderr: String)
    {
        try await runBulkWatch(
            druid.arguments(["--client-secret-file", path]), directory: druid.directory, timeout: .seconds(60))
    }

    @Test func aSymlinkedSecretFileIsRefused() async throws {
        let druid = try ScriptedDruID()
        let target = try druid.write("private-key-material", "id_key")
        let link = druid.directory + "/secret"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let result = try await runWithSecretFile(druid, link)
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("symbolic link"), "stderr: \(result.stderr)")
        #expect(druid.server.requests.isEmpty, "the target's content was POSTed")
    }

    @Test func aSecretFileOwnedBySomeoneElseIsRefused() async throws {
        try #require(geteuid() == 0, "needs root to chown to nobody")
        let druid = try ScriptedDruID()
        let path = try druid.write("s3cret-value", "secret")
        #expect(chown(path, 65534, 65534) == 0)
        let result = try await runWithSecretFile(druid, path)
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("owned by"), "stderr: \(result.stderr)")
        #expect(druid.server.requests.isEmpty)
    }

    @Test func aGroupReadableSecretFileIsRefused() async throws {
        let druid = try ScriptedDruID()
        let path = try druid.write("s3cret-value", "secret", mode: 0o640)
        let result = try await runWithSecretFile(druid, path)
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("readable by group or others"))
        #expect(druid.server.requests.isEmpty)
    }

    @Test func aPrivateRegularFileIsRead() async throws {
        let druid = try ScriptedDruID()
        let path = try druid.write("s3cret-value\n", "secret")
        let result = try await runWithSecretFile(druid, path)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let form = String(decoding: try #require(druid.tokenRequests.first).body, as: UTF8.self)
        #expect(form.contains("client_secret=s3cret-value"))
    }

    @Test func symlinkedWebhookSecretFileReferenceAndOAuthConfAreRefused() async throws {
        let druid = try ScriptedDruID()
        let target = try druid.write(
            "whsec_" + Data(Array("symlink test key, 32 bytes long!".utf8)).base64EncodedString(), "real")
        let link = druid.directory + "/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let webhook = try await druid.run(
            druid.arguments(["--sink", "webhook:http://127.0.0.1:9/hook", "--webhook-secret-file", link]))
        #expect(webhook.status == 78, "stderr: \(webhook.stderr)")
        #expect(webhook.stderr.contains("symbolic link"))
        let config = try druid.write(
            """
            state: \(druid.statePath)
            targets:
              - name: a
                endpoint: \(druid.bulkURL)
                token-url: \(druid.tokenURL)
                client-id: app
                client-secret: file:link
            """, "bulkwatch.yaml")
        let reference = try await runBulkWatch(
            ["run", "--once", "--config", config], directory: druid.directory, timeout: .seconds(60))
        #expect(reference.status == 78, "stderr: \(reference.stderr)")
        #expect(reference.stderr.contains("symbolic link"))
        let oauthconf = try await druid.run(druid.arguments(["--oauthconf", link]))
        #expect(oauthconf.status == 78, "stderr: \(oauthconf.stderr)")
        #expect(oauthconf.stderr.contains("symbolic link"))
        #expect(druid.server.requests.isEmpty)
    }
}

@Suite("issue 11: the state file")
struct StateFileHardeningTests {
    private func sqlite(_ path: String, _ script: String) throws -> String {
        let python = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n" + script
        return String(decoding: try runProcess("/usr/bin/env", ["python3", "-c", python, path]), as: UTF8.self)
    }

    @Test func aForeignSQLiteDatabaseIsRefusedAndLeftAlone() async throws {
        let druid = try ScriptedDruID()
        let path = druid.directory + "/other.db"
        _ = try sqlite(path, "c.execute('CREATE TABLE users (name TEXT)')\nc.commit()")
        chmod(path, 0o600)
        let result = try await druid.run(
            druid.arguments().map { $0 == druid.statePath ? path : $0 })
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("not a bulkwatch state"), "stderr: \(result.stderr)")
        let after = try sqlite(
            path,
            "print(sorted(r[0] for r in c.execute(\"select name from sqlite_master where type='table'\")))\n"
                + "print(c.execute('pragma journal_mode').fetchone()[0])")
        #expect(after == "['users']\ndelete\n")
        #expect(druid.server.requests.isEmpty)
    }

    @Test func anEmptyFileAndBulkwatchsOwnStateAreAccepted() async throws {
        let druid = try ScriptedDruID()
        _ = try druid.write("", "state.db")
        let first = try await druid.run(druid.arguments())
        #expect(first.status == 0, "stderr: \(first.stderr)")
        let second = try await druid.run(druid.arguments())
        #expect(second.status == 0, "stderr: \(second.stderr)")
    }

    @Test func aBulkwatchStateLockedByAnotherWriterIsWaitedForNotRefused() async throws {
        let druid = try ScriptedDruID()
        let first = try await druid.run(druid.arguments())
        #expect(first.status == 0, "stderr: \(first.stderr)")
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let marker = druid.directory + "/locked"
        holder.arguments = [
            "python3", "-c",
            // An exclusive-mode connection keeps its lock, so readers get SQLITE_BUSY until it closes.
            "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None)\n"
                + "c.execute('PRAGMA locking_mode=EXCLUSIVE')\nc.execute('BEGIN EXCLUSIVE')\nc.execute('COMMIT')\n"
                + "open(sys.argv[2],'w').close()\ntime.sleep(2)\nc.close()",
            druid.statePath, marker,
        ]
        try holder.run()
        #expect(await ChildProcess.eventually(timeout: .seconds(20)) { FileManager.default.fileExists(atPath: marker) })
        let second = try await druid.run(druid.arguments())
        holder.waitUntilExit()
        #expect(second.status == 0, "stderr: \(second.stderr)")
        #expect(!second.stderr.contains("not a bulkwatch state"))
    }

    @Test func aStateFileReadableByOthersIsWarnedAboutAndMadePrivate() async throws {
        let druid = try ScriptedDruID()
        let first = try await druid.run(druid.arguments())
        #expect(first.status == 0, "stderr: \(first.stderr)")
        chmod(druid.statePath, 0o644)
        let second = try await druid.run(druid.arguments())
        #expect(second.status == 0, "stderr: \(second.stderr)")
        #expect(second.stderr.contains("readable by group or others"), "stderr: \(second.stderr)")
        var info = stat()
        #expect(stat(druid.statePath, &info) == 0 && info.st_mode & 0o777 == 0o600)
    }
}

@Suite("issue 11: transport warnings")
struct PlainHTTPWarningTests {
    @Test func plainHTTPToANonLoopbackHostIsWarnedAboutOnce() async throws {
        let druid = try ScriptedDruID()
        // 0.0.0.0 is not a loopback address by name, yet connecting to it fails at once locally.
        let arguments = druid.arguments().map { $0 == druid.bulkURL ? "http://0.0.0.0:9/activityid/v1/user/bulk" : $0 }
        let result = try await druid.run(arguments + ["--timeout", "5s"])
        let warnings = nonEmptyLines(result.stderr).filter { $0.contains("plain http") }
        #expect(warnings.count == 1, "stderr: \(result.stderr)")
        #expect(warnings.first?.contains("http://0.0.0.0:9") == true)
    }

    @Test func loopbackHTTPIsNotWarnedAbout() async throws {
        let druid = try ScriptedDruID()
        let result = try await druid.run(druid.arguments())
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("plain http"))
    }
}
