package import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The `bulkwatch` executable built next to the test bundle (`swift build --build-tests` builds it).
///
/// `BULKWATCH_TEST_BINARY` points the end-to-end tests at another build, e.g. the previous commit's
/// binary to show that a new test fails there before the fix.
package enum BulkWatchBinary {
    package static var path: String {
        if let chosen = ProcessInfo.processInfo.environment["BULKWATCH_TEST_BINARY"], !chosen.isEmpty {
            return chosen
        }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = directory.appendingPathComponent("bulkwatch").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return ".build/debug/bulkwatch"
    }
}

/// A child process whose stdout and stderr go to files, so a test can read them while it runs and
/// after it exits (pipes would block a chatty child once full).
package final class ChildProcess: @unchecked Sendable {
    package let process = Process()
    package let stdoutPath: String
    package let stderrPath: String

    package init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], directory: String
    ) throws {
        stdoutPath = directory + "/stdout-\(UUID().uuidString).txt"
        stderrPath = directory + "/stderr-\(UUID().uuidString).txt"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "BULKWATCH_TOKEN")
        env.removeValue(forKey: "BULKWATCH_CLIENT_SECRET")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    package var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    package var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    package var pid: Int32 { process.processIdentifier }

    package func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for exit up to `timeout`; returns the exit status, or nil if still running (then it is killed).
    @discardableResult
    package func waitForExit(timeout: Duration = .seconds(60)) async -> Int32? {
        await Self.waitForExit(process, timeout: timeout)
    }

    /// The same for any `Process` (one whose stdout a test holds on a pipe, say).
    @discardableResult
    package static func waitForExit(_ process: Process, timeout: Duration = .seconds(60)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Polls `condition` until true or `timeout`; a generous wait, never a timing assertion.
    package static func eventually(
        timeout: Duration = .seconds(60), _ condition: () throws -> Bool
    ) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return try condition()
    }

    /// The same for a condition that awaits (a store read).
    package static func eventually(
        timeout: Duration = .seconds(60), _ condition: () async throws -> Bool
    ) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
    }
}

/// Runs `bulkwatch` to completion with a deadline; returns (status, stdout, stderr).
package func runBulkWatch(
    _ arguments: [String], environment: [String: String] = [:], directory: String, timeout: Duration = .seconds(120)
) async throws -> (status: Int32?, stdout: String, stderr: String) {
    let child = try ChildProcess(BulkWatchBinary.path, arguments, environment: environment, directory: directory)
    let status = await child.waitForExit(timeout: timeout)
    return (status, child.stdout, child.stderr)
}

/// Non-empty lines of a text.
package func nonEmptyLines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
}

/// Parses each line as a JSON object; nil for a line that is not one.
package func jsonObjects(_ text: String) -> [[String: Any]?] {
    nonEmptyLines(text).map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}
