import Foundation
import Logging
import TestSupport
import Testing

@testable import BulkWatch

#if canImport(Glibc)
    import Glibc
#endif

/// Writes an executable script into `directory` and returns its path.
private func script(_ directory: String, _ name: String, _ text: String) throws -> String {
    let path = directory + "/" + name
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    chmod(path, 0o755)
    return path
}

private func lines(_ path: String) -> [String] {
    nonEmptyLines((try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
}

/// `exec:` sinks against real child programs (a shell script and a Python one), through the real dispatcher.
@Suite("exec sink")
struct ExecSinkTests {
    @Test func eachBatchArrivesOnStdinInOrderWithItsVariables() async throws {
        let fixture = try WebhookJournalFixture()
        let events = try await fixture.add(5)
        let out = fixture.directory + "/out.txt"
        // `cat` returns only at end of input: a stdin left open would hang it (and time the test out).
        let program = try script(
            fixture.directory, "record.sh",
            """
            #!/bin/sh
            echo "batch $BULKWATCH_COUNT $BULKWATCH_FIRST_SEQUENCE..$BULKWATCH_LAST_SEQUENCE $BULKWATCH_SINK $1" >> \(out)
            cat >> \(out)
            echo "stderr line from the program" >&2
            """)
        let sink = try ExecSink(program: program, arguments: ["first-arg"], batchSize: 2, policy: quickPolicy)
        #expect(sink.name == "exec:\(program)")
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 5 })
        let written = lines(out)
        #expect(
            written.filter { $0.hasPrefix("batch ") } == [
                "batch 2 1..2 exec:\(program) first-arg", "batch 2 3..4 exec:\(program) first-arg",
                "batch 1 5..5 exec:\(program) first-arg",
            ])
        #expect(written.filter { !$0.hasPrefix("batch ") } == events.map { String(decoding: $0.body, as: UTF8.self) })
    }

    @Test func exit75IsRetriedAndThenDelivered() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(1)
        let counter = fixture.directory + "/runs"
        let program = try script(
            fixture.directory, "flaky.sh",
            """
            #!/bin/sh
            cat > /dev/null
            echo run >> \(counter)
            [ "$(wc -l < \(counter))" -ge 2 ] && exit 0
            exit 75
            """)
        let sink = try ExecSink(program: program, policy: quickPolicy)
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 1 })
        #expect(lines(counter).count == 2)
        #expect(try await fixture.journal.deadLetters().isEmpty)
    }

    @Test func aProgramPastItsTimeoutIsStoppedAndRetried() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(1)
        let counter = fixture.directory + "/runs"
        let program = try script(
            fixture.directory, "slow.py",
            """
            #!/usr/bin/env python3
            import sys, time
            sys.stdin.read()
            with open("\(counter)", "a") as f:
                f.write("run\\n")
            with open("\(counter)") as f:
                if len(f.readlines()) == 1:
                    time.sleep(300)
            """)
        // Generous enough for a Python start on a loaded machine; only the first run sleeps past it.
        let sink = try ExecSink(program: program, timeout: .seconds(4), policy: quickPolicy)
        let started = ContinuousClock.now
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 1 })
        // The first run sleeps five minutes: finishing well before that means its timeout stopped it.
        #expect(ContinuousClock.now - started < .seconds(120), "the first run was not stopped at its timeout")
        #expect(lines(counter).count == 2)
    }

    @Test func anyOtherExitIsRejectedAndDeadLetteredAfterTheAttempts() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(2)
        let counter = fixture.directory + "/runs"
        let program = try script(
            fixture.directory, "refuse.sh",
            """
            #!/bin/sh
            cat > /dev/null
            echo run >> \(counter)
            [ "$BULKWATCH_FIRST_SEQUENCE" = "1" ] && exit 2
            exit 0
            """)
        let sink = try ExecSink(program: program, policy: quickPolicy)
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 2 })
        let letters = try await fixture.journal.deadLetters(sink: sink.name)
        #expect(letters.map(\.sequence) == [1])
        #expect(letters.first?.reason.contains("exited 2") == true)
        #expect(letters.first?.attempts == quickPolicy.rejectAttempts)
        #expect(lines(counter).count == quickPolicy.rejectAttempts + 1, "event 2 after event 1, in order")
    }

    @Test func theEnvironmentHoldsOnlyWhatIsNamed() async throws {
        let fixture = try WebhookJournalFixture()
        try await fixture.add(1)
        setenv("EXEC_SINK_TEST_SECRET", "must-not-leak", 1)
        setenv("EXEC_SINK_TEST_PASSED", "passed-on", 1)
        let out = fixture.directory + "/env.txt"
        let program = try script(
            fixture.directory, "env.sh",
            """
            #!/bin/sh
            cat > /dev/null
            env > \(out)
            """)
        let sink = try ExecSink(
            program: program, passEnvironment: ["EXEC_SINK_TEST_PASSED", "LITERAL=value"], policy: quickPolicy)
        #expect(try await dispatch(fixture.journal, [sink]) { try await fixture.journal.cursor(sink: sink.name) == 1 })
        let environment = lines(out)
        #expect(!environment.contains { $0.contains("must-not-leak") })
        #expect(environment.contains("EXEC_SINK_TEST_PASSED=passed-on"))
        #expect(environment.contains("LITERAL=value"))
        #expect(environment.contains("BULKWATCH_COUNT=1"))
    }

    @Test func aProgramThatIsNotExecutableFailsAtStart() throws {
        let directory = try makeTemporaryDirectory("exec")
        let path = directory + "/plain.txt"
        try "not a program".write(toFile: path, atomically: true, encoding: .utf8)
        let error = #expect(throws: SinkIOError.self) { try ExecSink(program: path) }
        #expect(error?.description.contains("not an executable") == true)
        #expect(throws: SinkIOError.self) { try ExecSink(program: "relative/notify") }
    }
}
