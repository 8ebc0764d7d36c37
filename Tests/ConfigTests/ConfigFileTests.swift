import BulkWatch
import Foundation
import TestSupport
import Testing

private let minimal = """
    targets:
      - name: a
        endpoint: https://api.example.com/activityid/v1/user/bulk
        token-url: https://auth.example.com/oauth2/token
        client-id: app-a
        client-secret: env:A_SECRET
    """

/// Parses `text`, expecting failure; returns the one-line message.
private func failure(_ text: String) -> String? {
    do {
        _ = try ConfigFile.parse(text, path: "bulkwatch.yaml")
        return nil
    } catch {
        return error.description
    }
}

@Suite("configuration file parsing")
struct ConfigFileTests {
    @Test func minimalFileParses() throws {
        let file = try ConfigFile.parse(minimal, path: "x.yaml")
        #expect(file.targets.map(\.name) == ["a"])
        #expect(file.targets[0].settings.clientSecret == .environment("A_SECRET"))
        #expect(file.targets[0].line == 2)
    }

    @Test func everyKeyOfTheAnnotatedShapeParses() throws {
        let text = """
            state: /var/lib/bulkwatch/state.db
            listen: 127.0.0.1:9464
            log-level: debug
            log-format: json
            file-max-size: 10MiB
            file-keep: 3
            webhook-secret: credential:webhook-secret
            webhook-timeout: 5s
            webhook-backoff-base: 2s
            webhook-backoff-cap: 1m
            webhook-max-age: 12h
            defaults:
              interval: 1m
              active-interval: 5s
              terminal-statuses: [FINISHED, FAILED]
              timeout: 20s
              max-body-size: 64MiB
              expire-after: 3
              initial: skip
              retain: 3d
              token-auth: basic
              accept-language: es-ES
              sinks:
                - stdout:json
                - file:events.jsonl
            targets:
              - name: shop.eu
                endpoint: https://eu.example.com/activityid/v1/user/bulk
                oauthconf: oauthconf.xml
              - name: shop-us
                endpoint: https://us.example.com/activityid/v1/user/bulk
                token-url: https://auth.example.com/oauth2/token
                client-id: us
                client-secret: file:secrets/us
                interval: 10s
                sinks: [webhook:https://hooks.example.com/bulk?batch=50]
            """
        let file = try ConfigFile.parse(text, path: "/etc/bulkwatch/bulkwatch.yaml", directory: "/etc/bulkwatch")
        #expect(file.global.listen == ListenAddress(host: "127.0.0.1", port: 9464))
        #expect(file.global.logFormat == .json)
        #expect(file.global.fileMaxSize == 10 << 20)
        #expect(file.global.webhookSecret == .credential("webhook-secret"))
        #expect(file.defaults.interval == .seconds(60))
        #expect(file.defaults.activeInterval == .seconds(5))
        #expect(file.defaults.terminalStatuses == ["FINISHED", "FAILED"])
        #expect(file.defaults.initial == .skip)
        #expect(file.defaults.tokenAuth == .httpBasic)
        // Relative paths are anchored at the file's directory.
        #expect(file.defaults.sinks == [.stdout(.json), .file(path: "/etc/bulkwatch/events.jsonl")])
        #expect(file.targets[0].settings.oauthconf == "/etc/bulkwatch/oauthconf.xml")
        #expect(file.targets[1].settings.clientSecret == .file("/etc/bulkwatch/secrets/us"))
        #expect(file.targets[1].settings.sinks == [.webhook(url: "https://hooks.example.com/bulk", batch: 50)])
    }

    @Test func unknownKeyNamesFileLineKeyAndSuggestion() {
        let message = failure(minimal + "\n    intervl: 30s")
        #expect(message == "bulkwatch.yaml:7: targets[0].intervl: unknown key (did you mean 'interval'?)")
        let topLevel = failure("sate: x.db\n" + minimal)
        #expect(topLevel == "bulkwatch.yaml:1: sate: unknown key (did you mean 'state'?)")
    }

    @Test func invalidValuesNameLineAndKey() {
        #expect(
            failure(minimal + "\n    interval: soon")
                == "bulkwatch.yaml:7: targets[0].interval: invalid duration 'soon': use e.g. 300ms, 30s, 5m, 1h, 7d")
        #expect(
            failure(minimal + "\n    expire-after: 1")?.hasPrefix(
                "bulkwatch.yaml:7: targets[0].expire-after: must be an integer of at least 2") == true)
        #expect(
            failure("listen: nowhere\n" + minimal)?.hasPrefix("bulkwatch.yaml:1: listen: invalid listen address")
                == true)
        #expect(
            failure(minimal + "\n    sinks: [carrier-pigeon]")?.hasPrefix(
                "bulkwatch.yaml:7: targets[0].sinks: invalid sink 'carrier-pigeon'") == true)
        #expect(
            failure(minimal.replacingOccurrences(of: "https://api", with: "ftp://api"))?.hasPrefix(
                "bulkwatch.yaml:3: targets[0].endpoint: invalid URL") == true)
    }

    @Test func anInlineSecretIsRefusedWithoutBeingEchoed() throws {
        let text = minimal.replacingOccurrences(of: "env:A_SECRET", with: "hunter2-very-secret")
        let message = try #require(failure(text))
        #expect(message.hasPrefix("bulkwatch.yaml:6: targets[0].client-secret: must be a reference"))
        #expect(!message.contains("hunter2"))
    }

    @Test func structuralMistakesAreLocated() {
        #expect(failure("targets: []") == "bulkwatch.yaml: targets: at least one target is required")
        #expect(failure("") == "bulkwatch.yaml: the file is empty; it needs a 'targets:' list")
        #expect(
            failure(minimal + "\n  - name: a\n    endpoint: https://x.example.com/")
                == "bulkwatch.yaml:7: targets[1].name: target 'a' is defined twice")
        #expect(
            failure(minimal + "\n    client-id: again") == "bulkwatch.yaml:5: 'client-id' given twice in this mapping")
        #expect(
            failure("targets:\n  - endpoint: https://x.example.com/") == "bulkwatch.yaml:2: targets[0]: missing 'name'")
        #expect(
            failure("targets:\n  - name: has space\n    endpoint: https://x.example.com/")?
                .hasPrefix("bulkwatch.yaml:2: targets[0].name: must be letters") == true)
        // Broken YAML still has a line number.
        let broken = failure("targets:\n  - name: a\n    endpoint: [unclosed\n")
        #expect(broken?.hasPrefix("bulkwatch.yaml:4: not valid YAML") == true, "\(broken ?? "")")
    }

    @Test func aMissingFileIsOneClearLine() {
        do {
            _ = try ConfigFile.load(path: "/nonexistent/bulkwatch.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "/nonexistent/bulkwatch.yaml: no such file")
        }
    }
}

@Suite("the shipped examples stay valid")
struct ExampleConfigTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples").path

    @Test(arguments: ["bulkwatch.yaml", "bulkwatch-simulator.yaml"])
    func exampleParses(_ name: String) throws {
        let file = try ConfigFile.load(path: Self.examples + "/" + name)
        #expect(!file.targets.isEmpty)
    }

    @Test func exampleOAuthConfParses() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.examples + "/oauthconf.xml"))
        let conf = try OAuthConf.parse(data, path: "oauthconf.xml")
        #expect(conf.clientID == "bulkwatch-example")
        #expect(conf.tokenURL == "https://auth.example.com/oauth2/token")
        #expect(conf.bulkEndpoint == "https://api.example.com/activityid/v1/user/bulk")
    }
}
