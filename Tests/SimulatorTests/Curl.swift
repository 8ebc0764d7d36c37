import BulkWatchSimulator
import Foundation
import Logging

/// An HTTP exchange made with a `/usr/bin/curl` child process: real bytes over loopback, no URLSession.
struct CurlResponse: Sendable {
    var status: Int
    /// Header names lowercased; the last value wins.
    var headers: [String: String]
    var body: Data

    var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as a JSON object, or nil when it is not one.
    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
    }

    /// `content` of a bulk body, or nil when the body is not a well-formed list.
    var items: [[String: Any]]? { json?["content"] as? [[String: Any]] }
}

struct CurlFailure: Error, CustomStringConvertible {
    var exitCode: Int32
    var description: String { "curl exited with \(exitCode)" }
}

/// Runs curl without blocking a cooperative thread (the simulator's handlers need those threads to answer).
func curlExitCode(_ arguments: [String]) async throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        process.terminationHandler = { _ in continuation.resume() }
        do {
            try process.run()
        } catch {
            continuation.resume(throwing: error)
        }
    }
    return process.terminationStatus
}

func curl(
    _ url: String,
    method: String = "GET",
    headers: [String] = [],
    form: String? = nil,
    basicAuth: String? = nil
) async throws -> CurlResponse {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("simtest-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: output) }
    var arguments = ["-s", "-i", "--max-time", "30", "-o", output.path, "-X", method]
    for header in headers { arguments += ["-H", header] }
    if let form { arguments += ["--data-raw", form] }
    if let basicAuth { arguments += ["-u", basicAuth] }
    arguments.append(url)
    let exitCode = try await curlExitCode(arguments)
    guard exitCode == 0 else { throw CurlFailure(exitCode: exitCode) }
    return parseResponse(try Data(contentsOf: output))
}

private func parseResponse(_ raw: Data) -> CurlResponse {
    let separator = Data("\r\n\r\n".utf8)
    let split = raw.range(of: separator)
    let head = String(decoding: raw[..<(split?.lowerBound ?? raw.endIndex)], as: UTF8.self)
    let body = split.map { raw[$0.upperBound...] } ?? Data()
    var lines = head.components(separatedBy: "\r\n")
    let statusLine = lines.removeFirst().split(separator: " ")
    var headers: [String: String] = [:]
    for line in lines {
        guard let colon = line.firstIndex(of: ":") else { continue }
        let name = line[..<colon].lowercased()
        headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return CurlResponse(status: statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0, headers: headers, body: Data(body))
}

/// Runs `body` against a simulator of its own on an ephemeral port, and stops it whatever happens.
func withSimulator(
    _ options: SimulatorOptions = .manual(),
    _ body: (DruIDSimulator) async throws -> Void
) async throws {
    var logger = Logger(label: "simulator-test")
    logger.logLevel = .warning
    let simulator = DruIDSimulator(options: options, logger: logger)
    try await simulator.start()
    do {
        try await body(simulator)
    } catch {
        await simulator.stop()
        throw error
    }
    await simulator.stop()
}

/// A fresh access token from the simulator's token endpoint, with the default demo credentials.
func fetchToken(_ simulator: DruIDSimulator) async throws -> String {
    let response = try await curl(
        simulator.tokenURL, method: "POST",
        form: "grant_type=client_credentials&client_id=bulkwatch-demo&client_secret=demo-secret")
    guard let token = response.json?["access_token"] as? String else { throw CurlFailure(exitCode: -1) }
    return token
}

/// GET the bulk endpoint with `token` and the headers bulkwatch sends.
func fetchBulk(_ simulator: DruIDSimulator, token: String?) async throws -> CurlResponse {
    var headers = ["Content-Type: application/json", "Accept: application/json"]
    if let token { headers.append("Authorization: Bearer \(token)") }
    return try await curl(simulator.bulkURL, headers: headers)
}
