package import Logging
import Synchronization

/// Collects every rendered log line (message plus metadata) so tests can check what a component logs,
/// e.g. that no secret ever appears.
package final class LogCapture: Sendable {
    private let captured = Mutex<[String]>([])

    package init() {}

    package var lines: [String] { captured.withLock { $0 } }

    func append(_ line: String) { captured.withLock { $0.append(line) } }

    /// A logger at `trace` level writing into this capture.
    package func logger(label: String = "test") -> Logger {
        Logger(label: label) { _ in CapturingLogHandler(capture: self) }
    }
}

struct CapturingLogHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let error = event.error.map { " error=\($0)" } ?? ""
        capture.append(
            "\(event.level) \(event.message) \(all.map { "\($0)=\($1)" }.sorted().joined(separator: " "))\(error)")
    }
}
