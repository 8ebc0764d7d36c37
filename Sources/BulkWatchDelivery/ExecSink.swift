package import BulkWatchStore
import BulkWatchSupport
import Dispatch
import Foundation
package import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The `exec:PROGRAM` sink: runs an operator's program once per batch, with the batch on its stdin as
/// CloudEvents JSON lines (the same bytes a file sink writes), the way urlwatch's shell reporter and
/// Huginn's shell agent let people plug in a script.
///
/// Contract with the program:
/// - It is run directly (no shell), with the configured arguments, in the watcher's working directory.
/// - Its environment is built from nothing: `PATH`, `HOME`, `LANG` when set, the variables named in
///   the configuration (and only those: the watcher's secrets never leak into a child by accident),
///   and `BULKWATCH_SINK`, `BULKWATCH_COUNT`, `BULKWATCH_FIRST_SEQUENCE`, `BULKWATCH_LAST_SEQUENCE`.
/// - Exit 0: delivered. Exit 75 (`EX_TEMPFAIL`), death by a signal, or running past the timeout
///   (then SIGTERM, and SIGKILL two seconds later): retried with the delivery policy's backoff. Any
///   other status: the batch is rejected (a few attempts, then dead-lettered).
/// - Its stderr goes to the log, one line per line, under the sink's name; its stdout is discarded.
/// - A batch may be handed again after a crash or a failure: the program must tolerate repeats
///   (each event carries its stable `id`).
package final class ExecSink: EventSink {
    /// `exec:PROGRAM`, as configured without the sink parameters, so changing `batch=` keeps the cursor.
    package let name: String
    package let program: String
    package let arguments: [String]
    package let preferredBatchSize: Int
    package let deliveryPolicy: DeliveryPolicy
    package let timeout: Duration
    private let environment: [String: String]
    private let logger: Logger

    /// - Parameters:
    ///   - passEnvironment: names of the watcher's variables the program may see, or `NAME=value` pairs.
    package init(
        program: String, arguments: [String] = [], passEnvironment: [String] = [], batchSize: Int = 1,
        timeout: Duration = Defaults.execTimeout, policy: DeliveryPolicy = .webhook,
        logger: Logger = Logger(label: "bulkwatch.exec")
    ) throws {
        guard program.hasPrefix("/") else {
            throw SinkIOError(
                .invalidOption, path: program, message: "exec sink \(program): give the program's absolute path")
        }
        guard access(program, X_OK) == 0 else {
            throw SinkIOError(
                .invalidOption, path: program, errno: errno,
                message: "exec sink \(program): not an executable file (\(String(cString: strerror(errno))))")
        }
        self.name = "exec:\(program)"
        self.program = program
        self.arguments = arguments
        self.preferredBatchSize = max(1, batchSize)
        self.deliveryPolicy = policy
        self.timeout = timeout
        self.logger = logger
        var environment: [String: String] = [:]
        let inherited = ProcessInfo.processInfo.environment
        environment["PATH"] = inherited["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for name in ["HOME", "LANG", "TZ"] { environment[name] = inherited[name] }
        for entry in passEnvironment {
            if let equals = entry.firstIndex(of: "=") {
                environment[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
            } else {
                environment[entry] = inherited[entry]
            }
        }
        self.environment = environment
    }

    package func deliver(_ events: [JournalEvent]) async throws {
        guard let first = events.first, let last = events.last else { return }
        var input: [UInt8] = []
        input.reserveCapacity(events.reduce(0) { $0 + $1.body.count + 1 })
        for event in events {
            input += event.body
            input.append(UInt8(ascii: "\n"))
        }
        var environment = self.environment
        environment["BULKWATCH_SINK"] = name
        environment["BULKWATCH_COUNT"] = String(events.count)
        environment["BULKWATCH_FIRST_SEQUENCE"] = String(first.sequence)
        environment["BULKWATCH_LAST_SEQUENCE"] = String(last.sequence)
        let outcome = try await run(input: input, environment: environment)
        switch outcome {
        case .exited(0):
            return
        case .exited(75):
            throw DeliveryFailure(.retry(retryAfter: nil), reason: "\(program) exited 75 (temporary failure)")
        case .exited(let status):
            throw DeliveryFailure(.reject, reason: "\(program) exited \(status)")
        case .signalled(let signal):
            throw DeliveryFailure(.retry(retryAfter: nil), reason: "\(program) was killed by signal \(signal)")
        case .timedOut:
            throw DeliveryFailure(
                .retry(retryAfter: nil), reason: "\(program) ran past \(timeout.shortDescription) and was stopped")
        }
    }

    private enum Outcome {
        case exited(Int32)
        case signalled(Int32)
        case timedOut
    }

    /// Starts the program, feeds it `input`, relays its stderr, and waits for it (at most the timeout).
    private func run(input: [UInt8], environment: [String: String]) async throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.environment = environment
        let stdin = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            throw DeliveryFailure(.retry(retryAfter: nil), reason: "cannot start \(program): \(error)")
        }
        let relay = StderrRelay(logger: logger, sink: name)
        let reading = stderr.fileHandleForReading
        let timeout = self.timeout
        return await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let lines = DispatchQueue(label: "bulkwatch.exec.stderr")
                let group = DispatchGroup()
                group.enter()
                lines.async {
                    while true {
                        let chunk = reading.availableData
                        if chunk.isEmpty { break }
                        relay.feed(Array(chunk))
                    }
                    relay.flush()
                    group.leave()
                }
                // The program may stop reading (or exit) before taking all of its input: a broken pipe here
                // is its business, the exit status says what happened.
                let writer = stdin.fileHandleForWriting
                _ = input.withUnsafeBytes { bytes in
                    var written = 0
                    while written < bytes.count {
                        let result = write(writer.fileDescriptor, bytes.baseAddress! + written, bytes.count - written)
                        if result > 0 {
                            written += result
                        } else if result < 0, errno == EINTR {
                            continue
                        } else {
                            break
                        }
                    }
                    return written
                }
                try? writer.close()
                let seconds = timeout.seconds
                var timedOut = false
                if finished.wait(timeout: .now() + seconds) == .timedOut {
                    timedOut = true
                    kill(process.processIdentifier, SIGTERM)
                    if finished.wait(timeout: .now() + 2) == .timedOut {
                        kill(process.processIdentifier, SIGKILL)
                        finished.wait()
                    }
                }
                group.wait()
                if timedOut {
                    continuation.resume(returning: .timedOut)
                } else if process.terminationReason == .uncaughtSignal {
                    continuation.resume(returning: .signalled(process.terminationStatus))
                } else {
                    continuation.resume(returning: .exited(process.terminationStatus))
                }
            }
        }
    }
}

/// Splits a child's stderr into lines and logs each under the sink's name, control characters escaped.
private final class StderrRelay: Sendable {
    private let logger: Logger
    private let sink: String
    private let pending = Mutex<[UInt8]>([])

    init(logger: Logger, sink: String) {
        self.logger = logger
        self.sink = sink
    }

    func feed(_ bytes: [UInt8]) {
        let lines = pending.withLock { buffer -> [[UInt8]] in
            buffer += bytes
            var lines: [[UInt8]] = []
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(Array(buffer[..<newline]))
                buffer.removeSubrange(...newline)
            }
            return lines
        }
        for line in lines { log(line) }
    }

    func flush() {
        let rest = pending.withLock { buffer -> [UInt8] in
            defer { buffer = [] }
            return buffer
        }
        if !rest.isEmpty { log(rest) }
    }

    private func log(_ line: [UInt8]) {
        let text = String(decoding: line, as: UTF8.self).unicodeScalars.map { scalar -> String in
            scalar.value < 0x20 || scalar.value == 0x7F ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
        }.joined()
        var logger = self.logger
        logger[metadataKey: "sink"] = "\(sink)"
        logger.warning("\(text)")
    }
}
