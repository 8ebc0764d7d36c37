import BulkWatch
import Foundation
import TestSupport
import Testing

@Suite("sink specs: filters and formats as parameters and as YAML sink objects")
struct SinkSpecTests {
    @Test func webhookParametersLeaveTheURLAndTheName() throws {
        let spec = try SinkSpec.parse(
            "webhook:https://h.example.com/x?key=abc&types=changed&statuses=FAILED,FINISHED_WITH_ERRORS&batch=5"
                + "&format=slack&link=https%3A%2F%2Fc.example.com%2Fb%2F%7BbulkId%7D")
        #expect(spec.destination == .webhook(url: "https://h.example.com/x?key=abc", batch: 5))
        #expect(spec.name == "webhook:https://h.example.com/x?key=abc")
        #expect(spec.filter == SinkFilter(types: [.changed], statuses: ["FAILED", "FINISHED_WITH_ERRORS"]))
        #expect(spec.format == .chat(.slack))
        #expect(spec.link == "https://c.example.com/b/{bulkId}")
        // A change of filter or format keeps the sink's name, hence its cursor.
        #expect(try SinkSpec.parse("webhook:https://h.example.com/x?key=abc").name == spec.name)
    }

    @Test func fileAndStdoutTakeParametersAfterTheLastQuestionMark() throws {
        let file = try SinkSpec.parse("file:/var/log/bulk.jsonl?types=expired,target.failing&targets=eu")
        #expect(file.destination == .file(path: "/var/log/bulk.jsonl"))
        #expect(file.filter == SinkFilter(types: [.expired, .targetFailing], targets: ["eu"]))
        #expect(file.name == "file:/var/log/bulk.jsonl")
        let stdout = try SinkSpec.parse("stdout:json?types=bulk.changed&previous-statuses=RUNNING")
        #expect(stdout.destination == .stdout(.json))
        #expect(stdout.filter == SinkFilter(types: [.changed], previousStatuses: ["RUNNING"]))
        #expect(stdout.receivesOperationalByDefault)
        #expect(!file.receivesOperationalByDefault)
        // A path with a literal '?': not name=value pairs, or protected by a trailing '?'.
        #expect(try SinkSpec.parse("file:/tmp/what?.jsonl").destination == .file(path: "/tmp/what?.jsonl"))
        #expect(try SinkSpec.parse("file:/tmp/odd?a=b?").destination == .file(path: "/tmp/odd?a=b"))
        #expect(try SinkSpec.parse("file:/tmp/odd?a=b?").filter.isEmpty)
    }

    @Test func execSpecsTakeBatchArgsAndEnvOnTheLineAndInAnObject() throws {
        let line = try SinkSpec.parse(
            "exec:/usr/local/bin/page?batch=20&arg=--team&arg=identity&env=TOKEN&types=changed")
        #expect(
            line.destination
                == .exec(
                    program: "/usr/local/bin/page", batch: 20, arguments: ["--team", "identity"], environment: ["TOKEN"]
                ))
        #expect(line.name == "exec:/usr/local/bin/page")
        #expect(line.filter == SinkFilter(types: [.changed]))
        let object = try SinkSpec.parse(object: [
            ("sink", .scalar("exec:/usr/local/bin/page")), ("args", .list(["--team", "identity"])),
            ("env", .list(["TOKEN", "MODE=quiet"])), ("batch", .scalar("5")),
        ])
        #expect(
            object.destination
                == .exec(
                    program: "/usr/local/bin/page", batch: 5, arguments: ["--team", "identity"],
                    environment: ["TOKEN", "MODE=quiet"]))
        #expect(throws: SettingError.self) { try SinkSpec.parse("exec:page.sh") }
        #expect(throws: SettingError.self) { try SinkSpec.parse("exec:/bin/true?format=slack") }
    }

    @Test func badParametersAreRefusedWithTheReason() {
        func message(_ text: String) -> String? {
            do {
                _ = try SinkSpec.parse(text)
                return nil
            } catch {
                return error.message
            }
        }
        #expect(message("file:/x?typs=changed")?.contains("unknown sink parameter 'typs'") == true)
        #expect(message("file:/x?types=changd")?.hasPrefix("unknown event type 'changd'") == true)
        #expect(message("file:/x?format=slack") == "'format' applies to webhook sinks only")
        #expect(message("webhook:https://h/x?format=irc")?.hasPrefix("unknown format 'irc'") == true)
        #expect(message("webhook:https://h/x?batch=0") == "batch must be an integer from 1 to 10000")
        #expect(message("webhook:https://h/x?statuses=") == "statuses needs at least one value")
        #expect(message("carrier-pigeon") != nil)
    }

    @Test func yamlSinkObjectsSitBesideSpecStrings() throws {
        let text = """
            targets:
              - name: a
                endpoint: https://api.example.com/activityid/v1/user/bulk
                token-url: https://auth.example.com/oauth2/token
                client-id: app-a
                client-secret: env:A_SECRET
                sinks:
                  - stdout
                  - sink: "webhook:https://hooks.slack.com/services/T/B/X"
                    types: [changed, target.failing]
                    statuses: [FAILED, FINISHED_WITH_ERRORS]
                    format: slack
                    link: https://console.example.com/bulk/{bulkId}
                  - {sink: "webhook:https://h.example.com/t", template: templates/hook.json.mustache, batch: 10}
                  - {sink: "file:failures.jsonl", statuses: FAILED}
            """
        let file = try ConfigFile.parse(text, path: "/etc/bulkwatch/bulkwatch.yaml", directory: "/etc/bulkwatch")
        let sinks = try #require(file.targets[0].settings.sinks)
        #expect(sinks.count == 4)
        #expect(sinks[0] == .stdout(.text))
        #expect(sinks[1].name == "webhook:https://hooks.slack.com/services/T/B/X")
        #expect(
            sinks[1].filter
                == SinkFilter(types: [.changed, .targetFailing], statuses: ["FAILED", "FINISHED_WITH_ERRORS"]))
        #expect(sinks[1].format == .chat(.slack))
        #expect(sinks[1].link == "https://console.example.com/bulk/{bulkId}")
        #expect(sinks[2].format == .template(path: "/etc/bulkwatch/templates/hook.json.mustache"))
        #expect(sinks[2].destination == .webhook(url: "https://h.example.com/t", batch: 10))
        #expect(sinks[3].destination == .file(path: "/etc/bulkwatch/failures.jsonl"))
        #expect(sinks[3].filter == SinkFilter(statuses: ["FAILED"]))
    }

    @Test func aBadSinkObjectNamesItsLineAndIndex() {
        let text = """
            targets:
              - name: a
                endpoint: https://api.example.com/activityid/v1/user/bulk
                token-url: https://auth.example.com/oauth2/token
                client-id: app-a
                client-secret: env:A_SECRET
                sinks:
                  - stdout
                  - {sink: "file:/x", format: slack}
            """
        do {
            _ = try ConfigFile.parse(text, path: "bulkwatch.yaml")
            Issue.record("accepted a format on a file sink")
        } catch {
            #expect(
                error.description == "bulkwatch.yaml:9: targets[0].sinks[1]: 'format' applies to webhook sinks only")
        }
    }

    @Test func failingAfterIsATargetSettingFromEveryLayer() throws {
        var settings = try SettingLayer.apply(
            [("failing-after", .scalar("90s"))], setters: TargetSettings.keys, into: TargetSettings()
        ) { _, error in error }
        #expect(settings.failingAfter == .seconds(90))
        settings = try TargetSettings.fromEnvironment(["BULKWATCH_FAILING_AFTER": "2m"])
        #expect(settings.failingAfter == .seconds(120))
    }
}
