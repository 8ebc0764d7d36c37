import BulkWatch
import Foundation
import TestSupport
import Testing

/// Writes `text` to `name` in `directory` with `mode`; returns the path.
@discardableResult
private func write(_ text: String, _ name: String, in directory: String, mode: Int = 0o600) throws -> String {
    let path = directory + "/" + name
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    chmod(path, mode_t(mode))
    return path
}

private let twoTargets = """
    defaults:
      interval: 1m
      sinks: [stdout]
    targets:
      - name: a
        endpoint: https://a.example.com/activityid/v1/user/bulk
        token-url: https://auth.example.com/oauth2/token
        client-id: app-a
        client-secret: env:A_SECRET
        interval: 20s
      - name: b
        endpoint: https://b.example.com/activityid/v1/user/bulk
        token-url: https://auth.example.com/oauth2/token
        client-id: app-b
        client-secret: file:b.secret
        sinks: [stdout, file:b.jsonl]
    """

@Suite("resolving flags, environment and file into a runtime configuration")
struct ResolutionTests {
    @Test func precedenceIsFlagsThenTargetThenEnvironmentThenDefaults() throws {
        let directory = try makeTemporaryDirectory("config")
        let config = try write(twoTargets, "bulkwatch.yaml", in: directory)
        try write("b-secret\n", "b.secret", in: directory)
        let environment = ["A_SECRET": "a-secret", "BULKWATCH_INTERVAL": "45s", "BULKWATCH_ACTIVE_INTERVAL": "2s"]
        let fileOnly = try ConfigurationResolver(configPath: config, environment: environment).resolve()
        let a = fileOnly.targets[0], b = fileOnly.targets[1]
        #expect(a.target.interval == .seconds(20), "the target's own value beats the environment")
        #expect(b.target.interval == .seconds(45), "the environment beats the file's defaults")
        #expect(b.target.activeInterval == .seconds(2))
        #expect(
            a.tokenSource
                == .clientCredentials(
                    ClientCredentials(
                        tokenURL: "https://auth.example.com/oauth2/token", clientID: "app-a",
                        clientSecret: Secret("a-secret"))))
        #expect(
            b.tokenSource
                == .clientCredentials(
                    ClientCredentials(
                        tokenURL: "https://auth.example.com/oauth2/token", clientID: "app-b",
                        clientSecret: Secret("b-secret"))))
        #expect(b.sinks == [.stdout(.text), .file(path: directory + "/b.jsonl")])

        var flags = TargetSettings()
        flags.interval = .seconds(5)
        let withFlag = try ConfigurationResolver(configPath: config, flagTarget: flags, environment: environment)
            .resolve()
        #expect(withFlag.targets.map(\.target.interval) == [.seconds(5), .seconds(5)], "a flag beats everything")
        // Built-in defaults fill the rest.
        #expect(withFlag.statePath == "./bulkwatch.db")
        #expect(withFlag.targets[0].target.terminalStatuses.contains("FINISHED_WITH_ERRORS"))
    }

    @Test func sinksSharedByTargetsAreOneSinkWithATargetFilter() throws {
        let directory = try makeTemporaryDirectory("config")
        let config = try write(twoTargets, "bulkwatch.yaml", in: directory)
        try write("b-secret", "b.secret", in: directory)
        let resolved = try ConfigurationResolver(configPath: config, environment: ["A_SECRET": "x"]).resolve()
        let plans = try resolved.sinkPlans()
        #expect(
            plans == [
                SinkPlan(spec: .stdout(.text), targets: ["a", "b"]),
                SinkPlan(spec: .file(path: directory + "/b.jsonl"), targets: ["b"]),
            ])
    }

    @Test func secretProblemsNameTheReferenceNeverTheValue() throws {
        let directory = try makeTemporaryDirectory("config")
        let config = try write(twoTargets, "bulkwatch.yaml", in: directory)
        func message(_ environment: [String: String]) -> String? {
            do {
                _ = try ConfigurationResolver(configPath: config, environment: environment).resolve()
                return nil
            } catch {
                return error.description
            }
        }
        #expect(message([:]) == "target a: env:A_SECRET: the environment variable A_SECRET is not set")
        try write("b-secret-value", "b.secret", in: directory, mode: 0o644)
        let loose = try #require(message(["A_SECRET": "x"]))
        #expect(
            loose.hasPrefix(
                "target b: file:\(directory)/b.secret: \(directory)/b.secret is readable by group or others"))
        #expect(!loose.contains("b-secret-value"))
    }

    @Test func systemdCredentialsAreReadFromTheCredentialsDirectory() throws {
        let directory = try makeTemporaryDirectory("config")
        let credentials = try makeTemporaryDirectory("credentials")
        try write("from-systemd", "client-secret", in: credentials, mode: 0o400)
        try write("whsec_" + Data("k".utf8).base64EncodedString(), "webhook-secret", in: credentials, mode: 0o400)
        let config = try write(
            """
            targets:
              - name: a
                endpoint: https://a.example.com/activityid/v1/user/bulk
                token-url: https://auth.example.com/oauth2/token
                client-id: app-a
                sinks: [webhook:https://hooks.example.com/x]
              - name: b
                endpoint: https://b.example.com/activityid/v1/user/bulk
                token-url: https://auth.example.com/oauth2/token
                client-id: app-b
                client-secret: credential:client-secret
            """, "bulkwatch.yaml", in: directory)
        let resolved = try ConfigurationResolver(
            configPath: config, environment: ["CREDENTIALS_DIRECTORY": credentials]
        ).resolve()
        for plan in resolved.targets {
            guard case .clientCredentials(let credentials) = plan.tokenSource else {
                Issue.record("expected client credentials")
                continue
            }
            #expect(credentials.clientSecret.revealed == "from-systemd")
        }
        #expect(resolved.webhook.secrets.count == 1, "the conventional webhook-secret credential is found")
        // Without the directory, the reference says what is missing.
        #expect(throws: RuntimeConfigurationError.self) {
            try ConfigurationResolver(configPath: config, environment: [:]).resolve()
        }
    }

    @Test func environmentValuesAreValidatedWithTheirVariableName() throws {
        let directory = try makeTemporaryDirectory("config")
        let config = try write(twoTargets, "bulkwatch.yaml", in: directory)
        do {
            _ = try ConfigurationResolver(configPath: config, environment: ["BULKWATCH_INTERVAL": "often"]).resolve()
            Issue.record("expected an error")
        } catch {
            #expect(error.description.hasPrefix("BULKWATCH_INTERVAL: invalid duration 'often'"))
        }
    }

    @Test func conflictingSinkDefinitionsAreRejected() throws {
        let directory = try makeTemporaryDirectory("config")
        let config = try write(
            """
            webhook-secret: env:WH
            targets:
              - name: a
                endpoint: https://a.example.com/x
                client-id: a
                sinks: [webhook:https://hooks.example.com/x?batch=10]
              - name: b
                endpoint: https://b.example.com/x
                client-id: b
                sinks: [webhook:https://hooks.example.com/x]
            """, "bulkwatch.yaml", in: directory)
        do {
            _ = try ConfigurationResolver(
                configPath: config,
                environment: ["BULKWATCH_TOKEN": "t", "WH": "whsec_" + Data("k".utf8).base64EncodedString()]
            ).resolve()
            Issue.record("expected an error")
        } catch {
            #expect(
                error.description
                    == "sink webhook:https://hooks.example.com/x is configured differently for two targets (batch, filter or format)"
            )
        }
    }
}

@Suite("DruID oauthconf.xml")
struct OAuthConfTests {
    @Test(arguments: [
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <oauthconf>
          <client_id>app-1</client_id>
          <client_secret>s3cret</client_secret>
          <token_endpoint>https://auth.example.com/oauth2/token</token_endpoint>
        </oauthconf>
        """,
        """
        <oauthconf clientId="app-1" clientSecret="s3cret" tokenUrl="https://auth.example.com/oauth2/token"/>
        """,
        """
        <oauth-config version="1.4">
          <credentials><clientid>app-1</clientid><clientsecret>s3cret</clientsecret></credentials>
          <endpoints>
            <url id="authorization_endpoint">https://auth.example.com/oauth2/authorize</url>
            <url id="token_endpoint">https://auth.example.com/oauth2/token</url>
          </endpoints>
        </oauth-config>
        """,
    ])
    func acceptedShapes(_ xml: String) throws {
        let conf = try OAuthConf.parse(Data(xml.utf8), path: "oauthconf.xml")
        #expect(conf.clientID == "app-1")
        #expect(conf.clientSecret.revealed == "s3cret")
        #expect(conf.tokenURL == "https://auth.example.com/oauth2/token")
    }

    @Test func missingPartsAndBrokenXMLAreClearErrors() {
        #expect(throws: SettingError.self) {
            try OAuthConf.parse(Data("<oauthconf><client_id>a</client_id></oauthconf>".utf8), path: "o.xml")
        }
        do {
            _ = try OAuthConf.parse(Data("<oauthconf <client_id>a".utf8), path: "o.xml")
            Issue.record("expected an error")
        } catch {
            #expect(error.message.hasPrefix("oauthconf o.xml: not valid XML"))
        }
    }

    @Test func theFileSuppliesCredentialsToATargetAndMustBePrivate() throws {
        let directory = try makeTemporaryDirectory("oauthconf")
        let xml = try write(
            "<oauthconf><client_id>app-1</client_id><client_secret>s3cret</client_secret>"
                + "<token_endpoint>https://auth.example.com/oauth2/token</token_endpoint></oauthconf>",
            "oauthconf.xml", in: directory)
        var flags = TargetSettings()
        flags.endpoint = "https://api.example.com/activityid/v1/user/bulk"
        flags.oauthconf = xml
        let resolved = try ConfigurationResolver(configPath: nil, flagTarget: flags, environment: [:]).resolve()
        #expect(
            resolved.targets[0].tokenSource
                == .clientCredentials(
                    ClientCredentials(
                        tokenURL: "https://auth.example.com/oauth2/token", clientID: "app-1",
                        clientSecret: Secret("s3cret"))))
        chmod(xml, 0o644)
        #expect(throws: RuntimeConfigurationError.self) {
            try ConfigurationResolver(configPath: nil, flagTarget: flags, environment: [:]).resolve()
        }
    }
}
