// Inputs that trapped ConfigFile.parse, kept as literals (see Fuzz/README.md, target `config`).
import BulkWatch
import Testing

private func configFailure(_ text: String) -> String? {
    do {
        _ = try ConfigFile.parse(text, path: "bulkwatch.yaml")
        return nil
    } catch {
        return error.description
    }
}

@Suite struct ConfigFuzzRegressionTests {
    /// `1e300s` is a finite Double, but its nanoseconds are not an Int64: the conversion trapped.
    @Test(arguments: ["1e300s", "1e10d", "9223372037s", "3e8h"])
    func durationsBeyondInt64NanosecondsAreRefused(_ text: String) throws {
        #expect(Duration(parsing: text) == nil)
        let message = try #require(
            configFailure("targets:\n  - name: a\n    endpoint: http://h/\n    interval: \(text)\n"))
        #expect(message.contains("targets[0].interval: invalid duration"))
    }

    @Test func theLongestDurationStillParses() {
        #expect(Duration(parsing: "9223372036s") == .seconds(9_223_372_036))
        #expect(Duration(parsing: "7d") == .seconds(7 * 86_400))
    }

    /// `99999999999999GiB` overflowed the multiplication by the unit.
    @Test(arguments: ["99999999999999GiB", "9223372036854775807K", "10000000000GB"])
    func sizesBeyondIntAreRefused(_ text: String) throws {
        #expect(ByteSize.parse(text) == nil)
        let message = try #require(
            configFailure("targets:\n  - name: a\n    endpoint: http://h/\n    max-body-size: \(text)\n"))
        #expect(message.contains("targets[0].max-body-size: invalid size"))
    }

    @Test func theLargestSizeStillParses() {
        #expect(ByteSize.parse("8589934591GiB") == 8_589_934_591 << 30)
        #expect(ByteSize.parse("64MiB") == 64 << 20)
    }
}
