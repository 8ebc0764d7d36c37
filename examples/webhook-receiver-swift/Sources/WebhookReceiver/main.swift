// A minimal bulkwatch webhook receiver: one connection at a time over POSIX sockets, HTTP/1.1
// keep-alive with Content-Length bodies (what bulkwatch sends), Standard Webhooks verification
// with swift-crypto, one printed line per event.
import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#endif

let secrets = (ProcessInfo.processInfo.environment["BULKWATCH_WEBHOOK_SECRET"] ?? "").split(separator: " ")
let keys: [SymmetricKey] = secrets.compactMap { secret in
    guard secret.hasPrefix("whsec_"), let data = Data(base64Encoded: String(secret.dropFirst(6))) else { return nil }
    return SymmetricKey(data: data)
}
guard !keys.isEmpty else {
    FileHandle.standardError.write(Data("set BULKWATCH_WEBHOOK_SECRET (bulkwatch webhook-secret makes one)\n".utf8))
    exit(78)
}
let tolerance: Int64 = 5 * 60

/// True when one `v1,` entry of `signature` is HMAC-SHA256(key, "id.timestamp.body") for one of our keys
/// and the timestamp is within five minutes (replay protection).
@MainActor func verify(id: String, timestamp: String, signature: String, body: [UInt8]) -> Bool {
    guard let seconds = Int64(timestamp), abs(Int64(Date().timeIntervalSince1970) - seconds) <= tolerance else {
        return false
    }
    let message = Array("\(id).\(timestamp).".utf8) + body
    let offered = signature.split(separator: " ").compactMap { entry -> Data? in
        entry.hasPrefix("v1,") ? Data(base64Encoded: String(entry.dropFirst(3))) : nil
    }
    return keys.contains { key in
        offered.contains { HMAC<SHA256>.isValidAuthenticationCode($0, authenticating: message, using: key) }
    }
}

@MainActor func handle(headers: [String: String], body: [UInt8]) -> Int {
    guard
        verify(
            id: headers["webhook-id"] ?? "", timestamp: headers["webhook-timestamp"] ?? "",
            signature: headers["webhook-signature"] ?? "", body: body)
    else {
        print("rejected: bad signature")
        return 401
    }
    let parsed = try? JSONSerialization.jsonObject(with: Data(body))
    let events = (parsed as? [[String: Any]]) ?? [(parsed as? [String: Any]) ?? [:]]
    for event in events {
        let data = event["data"] as? [String: Any]
        print("\(event["sequence"] ?? "?")\t\(event["type"] ?? "?")\t\(event["subject"] ?? "?")\t\(data?["status"] ?? "")")
    }
    fflush(nil)
    return 204
}

@MainActor func serve(_ client: Int32) {
    var buffer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    let separator = Array("\r\n\r\n".utf8)
    while true {
        var headerEnd = buffer.firstRange(of: separator)
        while headerEnd == nil {
            let count = recv(client, &chunk, chunk.count, 0)
            guard count > 0 else { return }
            buffer += chunk[..<count]
            headerEnd = buffer.firstRange(of: separator)
        }
        let lines = String(decoding: buffer[..<headerEnd!.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = headerEnd!.upperBound
        while buffer.count < bodyStart + length {
            let count = recv(client, &chunk, chunk.count, 0)
            guard count > 0 else { return }
            buffer += chunk[..<count]
        }
        let status = handle(headers: headers, body: Array(buffer[bodyStart..<(bodyStart + length)]))
        buffer.removeFirst(bodyStart + length)
        let reply = Array("HTTP/1.1 \(status) \(status == 204 ? "No Content" : "Unauthorized")\r\nContent-Length: 0\r\n\r\n".utf8)
        guard send(client, reply, reply.count, Int32(MSG_NOSIGNAL)) == reply.count else { return }
    }
}

let port = UInt16(CommandLine.arguments.dropFirst().first ?? "8787") ?? 8787
let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
var yes: Int32 = 1
setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
var address = sockaddr_in()
address.sin_family = sa_family_t(AF_INET)
address.sin_port = port.bigEndian
address.sin_addr.s_addr = inet_addr("127.0.0.1")
let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
}
guard bound == 0, listen(listener, 16) == 0 else {
    FileHandle.standardError.write(Data("cannot listen on 127.0.0.1:\(port)\n".utf8))
    exit(1)
}
FileHandle.standardError.write(Data("listening on http://127.0.0.1:\(port)/\n".utf8))
while true {
    let client = accept(listener, nil, nil)
    guard client >= 0 else { continue }
    serve(client)
    close(client)
}
