// The transport publishes a large 200 body while it arrives (ArrivingBody), for the decoder's reader. A reader
// here copies every byte it is shown, on a thread of its own, as the decoder's does; what it saw must be exactly
// the body, in order, and it must never be shown a non-200 body or left waiting after a failure.
import Foundation
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch

/// Reads an arriving body on a thread of its own once the transport says it is large, keeping a copy.
private final class CopyingReader: Sendable {
    private let reader = Mutex<JoinableThread?>(nil)
    private let starts = Mutex(0)
    private let copy = Mutex<[UInt8]>([])

    func body(threshold: Int = 1 << 20) -> ArrivingBody {
        ArrivingBody(threshold: threshold) { [self] body in
            starts.withLock { $0 += 1 }
            let thread = JoinableThread(name: "test-reader") { [self] in
                var seen = 0
                while let more = body.read(
                    after: seen, { base, count in Array(UnsafeBufferPointer(start: base + seen, count: count - seen)) })
                {
                    seen += more.count
                    copy.withLock { $0 += more }
                    usleep(100)  // slower than the transfer, so that it is still reading when the transfer ends
                }
                body.readerFinished()
            }
            reader.withLock { $0 = thread }
            return true
        }
    }

    /// How many times a reader was started.
    var started: Int { starts.withLock { $0 } }

    /// What the reader saw, once it has stopped (nothing when none was started).
    func seen() -> [UInt8] {
        reader.withLock { $0 }?.join()
        return copy.withLock { $0 }
    }
}

/// `count` bytes that differ from one position to the next, so that a byte out of place shows.
private func pattern(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
}

@Suite("A large body published while it arrives")
struct ArrivingBodyTests {
    let transport = CurlTransport()

    /// Announced by Content-Length (published from the first byte), or read until the connection closes
    /// (published once it has outgrown 1 MiB and moved to its large buffer).
    @Test(arguments: [true, false])
    func theReaderSeesExactlyTheBody(announced: Bool) async throws {
        let bytes = pattern(5 << 20)
        let server = try LoopbackHTTPServer { _ in
            announced
                ? .respond(status: 200, body: bytes)
                : .raw(Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".utf8) + bytes)
        }
        defer { server.stop() }
        try await expectSeenWhole(bytes, from: server)
    }

    @Test func aBodyBelowTheThresholdStartsNoReader() async throws {
        let server = try LoopbackHTTPServer { _ in .respond(status: 200, body: pattern(3 << 20)) }
        defer { server.stop() }
        let reader = CopyingReader()
        let response = try await transport.send(
            HTTPRequest(url: server.baseURL, maxResponseBytes: 64 << 20, arrivingBody: reader.body(threshold: 4 << 20)))
        #expect(response.body.count == 3 << 20)
        #expect(reader.started == 0)
    }

    /// Only a 200's body is the listing: an error page, however large, is never shown to the reader.
    @Test func aNonOKAnswerIsNotPublished() async throws {
        let server = try LoopbackHTTPServer { _ in .respond(status: 500, body: pattern(3 << 20)) }
        defer { server.stop() }
        let reader = CopyingReader()
        let response = try await transport.send(
            HTTPRequest(url: server.baseURL, maxResponseBytes: 64 << 20, arrivingBody: reader.body()))
        #expect(response.status == 500)
        #expect(reader.started == 0)
    }

    /// A transfer that fails midway ends the reader where the bytes stopped: it saw a prefix of what was sent,
    /// and it does not wait for more.
    @Test func aFailedTransferEndsTheReader() async throws {
        let bytes = pattern(3 << 20)
        let server = try LoopbackHTTPServer { _ in .truncated(announcedLength: 4 << 20, body: bytes) }
        defer { server.stop() }
        let reader = CopyingReader()
        await #expect(throws: TransportError.self) {
            _ = try await transport.send(
                HTTPRequest(url: server.baseURL, maxResponseBytes: 64 << 20, arrivingBody: reader.body()))
        }
        #expect(reader.started == 1)
        let seen = reader.seen()
        #expect(seen.count <= bytes.count)
        #expect(seen == Array(bytes[..<seen.count]))
    }

    /// A gzip body announces its compressed length; decompressed, it outgrows the buffer sized for it. The
    /// transport then withdraws the buffer (waiting for the reader to leave it), moves it, and publishes again:
    /// the reader still sees every byte, in order.
    @Test func aCompressedBodyThatOutgrowsItsAnnouncedLengthIsStillSeenWhole() async throws {
        let bytes = pattern(2 << 20) + [UInt8](repeating: 0x61, count: 6 << 20)
        let compressed = try gzip(bytes)
        #expect(compressed.count > 1 << 20 && compressed.count < bytes.count)
        let head = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: \(compressed.count)\r\n\r\n"
        let server = try LoopbackHTTPServer { _ in .raw(Array(head.utf8) + compressed) }
        defer { server.stop() }
        try await expectSeenWhole(bytes, from: server)
    }

    /// Fetches `server`'s answer with a reader: the response is `bytes`, one reader was started, and it saw
    /// exactly `bytes`.
    private func expectSeenWhole(
        _ bytes: [UInt8], from server: LoopbackHTTPServer, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let reader = CopyingReader()
        let response = try await transport.send(
            HTTPRequest(url: server.baseURL, maxResponseBytes: 64 << 20, arrivingBody: reader.body()))
        #expect(response.body == bytes, sourceLocation: sourceLocation)
        #expect(reader.started == 1, sourceLocation: sourceLocation)
        let seen = reader.seen()
        #expect(seen.count == bytes.count, sourceLocation: sourceLocation)
        #expect(seen == bytes, sourceLocation: sourceLocation)
    }

    /// `gzip -c`, a real one.
    private func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("arriving-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("body")
        try Data(bytes).write(to: input)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-k", "-1", input.path]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return [UInt8](try Data(contentsOf: input.appendingPathExtension("gz")))
    }
}
