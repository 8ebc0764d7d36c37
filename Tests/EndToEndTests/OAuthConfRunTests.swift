import BulkWatchSimulator
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// An `oauthconf.xml` in the shape DruID issues it (DESIGN.md §2; the vendor SDK's
/// `OAuthConfigFactory` reads the same elements), pointing at `simulator`. The user API comes first
/// on purpose: its `base-url` is the one a careless reader would take.
func vendorOAuthConf(simulator: DruIDSimulator, decoy: String, omit: String? = nil) -> String {
    let parts: [(String, String)] = [
        ("clientid", "<clientid>bulkwatch-demo</clientid>"),
        ("clientsecret", "<clientsecret>demo-secret</clientsecret>"),
        ("token_endpoint", "<url id=\"token_endpoint\">\(simulator.tokenURL)</url>"),
        ("api.activityid", "<api name=\"api.activityid\" base-url=\"\(simulator.baseURL)/activityid\"/>"),
    ]
    func part(_ name: String) -> String { name == omit ? "" : parts.first { $0.0 == name }!.1 }
    return """
        <?xml version="1.0" encoding="UTF-8"?>
        <oauth-config version="1.4">
          <credentials>
            \(part("clientid"))
            \(part("clientsecret"))
          </credentials>
          <data><name>bulkwatch test</name><brand key="test">Test</brand></data>
          <hosts><host id="oauth">\(decoy)</host></hosts>
          <redirections><url type="postLogin" default="true">\(decoy)/callback</url></redirections>
          <endpoints>
            <url id="authorization_endpoint">\(decoy)/oauth2/authorize</url>
            \(part("token_endpoint"))
            <url id="logout_endpoint">\(decoy)/oauth2/logout</url>
          </endpoints>
          <sections><section id="main" default="true"/></sections>
          <apis>
            <api name="api.user" base-url="\(decoy)/api">
              <url id="user">/user</url>
            </api>
            \(part("api.activityid"))
          </apis>
        </oauth-config>
        """
}

@Suite("issue 11: oauthconf.xml as DruID issues it")
struct OAuthConfRunTests {
    struct Fixture {
        let simulator = DruIDSimulator(options: .manual())
        let decoy: LoopbackHTTPServer
        let directory: String

        init() async throws {
            try await simulator.start()
            decoy = try LoopbackHTTPServer { _ in .json(200, #"{"access_token":"decoy"}"#) }
            directory = try makeTemporaryDirectory("oauthconf")
        }

        func writeConf(omit: String? = nil) throws -> String {
            let path = directory + "/oauthconf.xml"
            try Data(vendorOAuthConf(simulator: simulator, decoy: decoy.baseURL, omit: omit).utf8)
                .write(to: URL(fileURLWithPath: path))
            chmod(path, 0o600)
            return path
        }

        func stop() async {
            decoy.stop()
            await simulator.stop()
        }
    }

    @Test func theFileAloneIsEnoughToRun() async throws {
        let fixture = try await Fixture()
        fixture.simulator.upsert(bulkId: "b-1")
        let result = try await runBulkWatch(
            [
                "run", "--once", "--oauthconf", try fixture.writeConf(), "--state", fixture.directory + "/s.db",
                "--sink", "stdout:json",
            ], directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(jsonObjects(result.stdout).compactMap { $0?["subject"] as? String } == ["b-1"])
        #expect(fixture.decoy.requests.isEmpty, "a decoy URL was used: \(fixture.decoy.requests.map(\.path))")
        #expect(fixture.simulator.stats.bulkRequests == 1)
        #expect(!result.stderr.contains("demo-secret"))
        await fixture.stop()
    }

    @Test func checkWithTheFileAloneSucceeds() async throws {
        let fixture = try await Fixture()
        let result = try await runBulkWatch(
            ["check", "--oauthconf", try fixture.writeConf(), "--state", fixture.directory + "/s.db"],
            directory: fixture.directory)
        #expect(result.status == 0, "stdout: \(result.stdout) stderr: \(result.stderr)")
        #expect(result.stdout.contains("OK"))
        #expect(fixture.decoy.requests.isEmpty)
        await fixture.stop()
    }

    @Test func aYAMLTargetWithOnlyOAuthConfRuns() async throws {
        let fixture = try await Fixture()
        fixture.simulator.upsert(bulkId: "b-1")
        _ = try fixture.writeConf()
        let config = fixture.directory + "/bulkwatch.yaml"
        try Data(
            """
            state: \(fixture.directory)/s.db
            targets:
              - name: app
                oauthconf: oauthconf.xml
                sinks: [stdout:json]
            """.utf8
        ).write(to: URL(fileURLWithPath: config))
        let result = try await runBulkWatch(["run", "--once", "--config", config], directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(jsonObjects(result.stdout).compactMap { $0?["subject"] as? String } == ["b-1"])
        #expect(fixture.decoy.requests.isEmpty)
        await fixture.stop()
    }

    @Test func anExplicitEndpointWinsOverTheFile() async throws {
        let fixture = try await Fixture()
        // Accepts the token the file's token endpoint hands out, whatever it is.
        let other = try LoopbackHTTPServer { _ in .json(200, #"{"content":[{"bulkId":"from-explicit"}]}"#) }
        defer { other.stop() }
        fixture.simulator.upsert(bulkId: "from-file")
        let result = try await runBulkWatch(
            [
                "run", "--once", "--oauthconf", try fixture.writeConf(), "--endpoint", other.baseURL + "/bulk",
                "--state", fixture.directory + "/s.db", "--sink", "stdout:json",
            ], directory: fixture.directory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(jsonObjects(result.stdout).compactMap { $0?["subject"] as? String } == ["from-explicit"])
        #expect(fixture.simulator.stats.bulkRequests == 0)
        #expect(fixture.simulator.stats.tokenRequests == 1, "the file still supplies the credentials")
        await fixture.stop()
    }

    @Test(arguments: [
        ("clientid", "credentials/clientid"), ("clientsecret", "credentials/clientsecret"),
        ("token_endpoint", #"endpoints/url[@id="token_endpoint"]"#),
        ("api.activityid", #"apis/api[@name="api.activityid"]"#),
    ])
    func aMissingElementIsAConfigurationErrorNamingIt(omit: String, named: String) async throws {
        let fixture = try await Fixture()
        let result = try await runBulkWatch(
            [
                "run", "--once", "--oauthconf", try fixture.writeConf(omit: omit), "--state",
                fixture.directory + "/s.db",
            ],
            directory: fixture.directory)
        #expect(result.status == 78, "stderr: \(result.stderr)")
        #expect(nonEmptyLines(result.stderr).count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.contains(named), "stderr: \(result.stderr)")
        #expect(fixture.decoy.requests.isEmpty)
        #expect(fixture.simulator.stats.tokenRequests == 0)
        await fixture.stop()
    }
}
