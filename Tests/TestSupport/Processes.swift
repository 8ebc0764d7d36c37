import Foundation

#if canImport(Glibc)
    import Glibc
#endif

package struct ProcessFailure: Error, CustomStringConvertible {
    package var description: String
}

/// Runs a program to completion, feeding `input` on stdin; returns stdout. Throws on non-zero exit.
@discardableResult
package func runProcess(_ path: String, _ arguments: [String], input: [UInt8] = []) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let stdin = Pipe()
    let stdout = Pipe()
    let stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    stdin.fileHandleForWriting.write(Data(input))
    try stdin.fileHandleForWriting.close()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    let errors = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ProcessFailure(
            description: "\(path) exited \(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))")
    }
    return Array(output)
}

/// A fresh directory under the system temp dir, owned by one test.
package func makeTemporaryDirectory(_ label: String = "bulkwatch-test") throws -> String {
    let path = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A TCP port that was free a moment ago (bind to 0, read it, close). For child processes that
/// cannot report the port they bound; the tiny race is acceptable in tests.
package func reserveFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard ok else { throw ProcessFailure(description: "could not reserve a port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
package func waitUntilListening(port: Int, timeout: Duration = .seconds(10)) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        close(fd)
        if connected { return true }
        usleep(50_000)
    }
    return false
}

/// `openssl s_server -www` with a freshly generated self-signed certificate for 127.0.0.1: a real
/// TLS peer whose certificate no system CA vouches for.
package final class SelfSignedTLSServer: @unchecked Sendable {
    package let url: String
    package let certificatePath: String
    private let process: Process

    private init(url: String, certificatePath: String, process: Process) {
        self.url = url
        self.certificatePath = certificatePath
        self.process = process
    }

    package static func start() throws -> SelfSignedTLSServer {
        let directory = try makeTemporaryDirectory("tls")
        let certificate = directory + "/cert.pem"
        let key = directory + "/key.pem"
        try runProcess(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ])
        let port = try reserveFreePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_server", "-accept", "\(port)", "-cert", certificate, "-key", key, "-www", "-quiet"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = Pipe()
        try process.run()
        guard waitUntilListening(port: port) else {
            process.terminate()
            throw ProcessFailure(description: "openssl s_server did not start")
        }
        return SelfSignedTLSServer(url: "https://127.0.0.1:\(port)/", certificatePath: certificate, process: process)
    }

    /// SIGKILL, not SIGTERM: children of the test runner inherit a blocked SIGTERM.
    package func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
