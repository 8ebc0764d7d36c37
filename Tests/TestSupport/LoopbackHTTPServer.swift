import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A request as the loopback server read it off the socket.
package struct RecordedRequest: Sendable {
    package var method: String
    package var path: String
    /// Header lines in arrival order, names as sent.
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]
    /// Which accepted connection carried it (0-based), to observe connection reuse.
    package var connectionIndex: Int

    package func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// What the server does with one request.
package enum ScriptedReply: Sendable {
    /// A normal response; `Content-Length` is added from the body.
    case respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = [])
    /// Waits, then responds.
    case delayed(seconds: Double, status: Int, body: [UInt8])
    /// Sends headers announcing `announcedLength` bytes, sends `body`, then closes the connection.
    case truncated(announcedLength: Int, body: [UInt8])
    /// Reads the request and never answers (until the server stops).
    case neverAnswer
    /// Sends the raw bytes as the whole response, then closes.
    case raw([UInt8])

    package static func json(_ status: Int, _ text: String, headers: [(String, String)] = []) -> ScriptedReply {
        .respond(status: status, headers: [("Content-Type", "application/json")] + headers, body: Array(text.utf8))
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 built on raw sockets, for tests that need a peer which
/// misbehaves on purpose (stalls, truncates, never answers) and counts its connections, things a
/// production HTTP framework is designed not to do. Each connection gets its own thread.
package final class LoopbackHTTPServer: Sendable {
    package typealias Handler = @Sendable (RecordedRequest) -> ScriptedReply

    package let port: Int
    private let listener: Int32
    private let handler: Handler
    private let state = Mutex(State())

    private struct State {
        var requests: [RecordedRequest] = []
        var connections = 0
        var openSockets: Set<Int32> = []
        var stopped = false
    }

    package var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Binds 127.0.0.1:`port` (0: a free port), so a test can bring a stopped server back on the same port.
    package init(port: Int = 0, handler: @escaping Handler) throws {
        self.handler = handler
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.listener = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Every request received so far, in order.
    package var requests: [RecordedRequest] { state.withLock { $0.requests } }
    /// Connections accepted so far.
    package var connectionCount: Int { state.withLock { $0.connections } }

    /// Stops accepting and ends every open connection. Idempotent.
    ///
    /// Only `shutdown(2)` here: the accept thread and each connection thread close their own
    /// descriptors once they notice. Closing from this thread could close a number the kernel has
    /// already handed to someone else (another test's event loop), a classic double-close bug.
    package func stop() {
        let sockets = state.withLock { s -> Set<Int32>? in
            guard !s.stopped else { return nil }
            s.stopped = true
            return s.openSockets
        }
        guard let sockets else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    deinit { stop() }

    private func acceptLoop() {
        defer { close(listener) }
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let index = state.withLock { s -> Int? in
                guard !s.stopped else { return nil }
                s.openSockets.insert(client)
                defer { s.connections += 1 }
                return s.connections
            }
            guard let index else {
                close(client)
                return
            }
            let thread = Thread { [self] in
                serve(client, connectionIndex: index)
                state.withLock { _ = $0.openSockets.remove(client) }
                close(client)
            }
            thread.start()
        }
    }

    private func serve(_ socket: Int32, connectionIndex: Int) {
        var buffer: [UInt8] = []
        while true {
            guard let request = readRequest(socket, buffer: &buffer, connectionIndex: connectionIndex) else { return }
            state.withLock { $0.requests.append(request) }
            switch handler(request) {
            case .respond(let status, let headers, let body):
                guard send(socket, head(status, headers, length: body.count) + body) else { return }
            case .delayed(let seconds, let status, let body):
                Thread.sleep(forTimeInterval: seconds)
                guard send(socket, head(status, [], length: body.count) + body) else { return }
            case .truncated(let announced, let body):
                _ = send(socket, head(200, [("Content-Type", "application/json")], length: announced) + body)
                return
            case .neverAnswer:
                var byte: UInt8 = 0
                while recv(socket, &byte, 1, 0) > 0 {}
                return
            case .raw(let bytes):
                _ = send(socket, bytes)
                return
            }
        }
    }

    private func head(_ status: Int, _ headers: [(String, String)], length: Int) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(status < 400 ? "OK" : "Error")\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "Content-Length: \(length)\r\n\r\n"
        return Array(text.utf8)
    }

    private func send(_ socket: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    private func readRequest(_ socket: Int32, buffer: inout [UInt8], connectionIndex: Int) -> RecordedRequest? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headerEnd: Int?
        while headerEnd == nil {
            headerEnd = buffer.firstRange(of: separator)?.lowerBound
            if headerEnd == nil, !fill(socket, &buffer) { return nil }
        }
        let headText = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return nil }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append(
                (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = headers.first { $0.name.lowercased() == "content-length" }.flatMap { Int($0.value) } ?? 0
        let bodyStart = headerEnd! + separator.count
        while buffer.count < bodyStart + length {
            if !fill(socket, &buffer) { return nil }
        }
        let body = Array(buffer[bodyStart..<(bodyStart + length)])
        buffer.removeFirst(bodyStart + length)
        return RecordedRequest(
            method: String(requestLine[0]), path: String(requestLine[1]), headers: headers, body: body,
            connectionIndex: connectionIndex)
    }

    private func fill(_ socket: Int32, _ buffer: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        let count = recv(socket, &chunk, chunk.count, 0)
        guard count > 0 else { return false }
        buffer.append(contentsOf: chunk[..<count])
        return true
    }
}
