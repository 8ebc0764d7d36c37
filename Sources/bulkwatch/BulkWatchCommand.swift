import ArgumentParser
import BulkWatch
import Foundation

/// The `bulkwatch` command line (DESIGN.md §6).
///
/// Exit codes: 0 success, 64 usage error, 78 configuration error (both reported as one line on
/// stderr before any network call), 1 runtime failure.
@main
struct BulkWatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulkwatch",
        abstract: "Watch the DruID bulk-operation status endpoint and report what changed.",
        version: BulkWatchVersion.current,
        subcommands: [
            RunCommand.self, CheckCommand.self, DemoCommand.self, SimulateCommand.self, EventsCommand.self,
            DeliveriesCommand.self,
            RedeliverCommand.self, WebhookSecretCommand.self, VerifyCommand.self,
        ],
        defaultSubcommand: nil
    )

    /// Runs the parsed command, mapping configuration errors to exit 78 with one clean line.
    static func main() async {
        // First of all: a SIGHUP (`systemctl reload`, logrotate) that arrives while the configuration is
        // read and the state loaded must not kill the daemon with the default action. `run` traps it for
        // reloads once it is up; the long-running commands that do not reload restore the default.
        signal(SIGHUP, SIG_IGN)
        unblockShutdownSignals()
        FreedMemory.limitArenas(to: 2)
        FreedMemory.fixMmapThreshold(at: 1 << 20)
        // Messages below may quote upstream data (a DruID error field, a bulkId): control
        // characters are escaped like in text logs, so they cannot forge lines (issue 11).
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("bulkwatch: \(EscapingLogHandler.escape(error.message))\n".utf8))
            Foundation.exit(78)
        } catch let error as RuntimeFailure {
            FileHandle.standardError.write(Data("bulkwatch: \(EscapingLogHandler.escape(error.message))\n".utf8))
            Foundation.exit(1)
        } catch {
            let code = exitCode(for: error)
            guard code != .success else { exit(withError: error) }
            // Usage errors keep their layout (several lines); only control characters change.
            let lines = fullMessage(for: error).split(separator: "\n", omittingEmptySubsequences: false)
            let text = lines.map { EscapingLogHandler.escape(String($0)) }.joined(separator: "\n")
            FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
            Foundation.exit(code.rawValue)
        }
    }
}

/// A parent may start us with signals blocked (test runners and some supervisors do): then
/// SIGTERM would never reach the graceful-shutdown handler. Unblock the ones we handle.
private func unblockShutdownSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, signal) }
    sigprocmask(SIG_UNBLOCK, &set, nil)
}

/// A problem with the configuration (missing secret, unreadable file): exit 78.
struct ConfigurationError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The job could not run (state database unusable, port taken): exit 1.
struct RuntimeFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
