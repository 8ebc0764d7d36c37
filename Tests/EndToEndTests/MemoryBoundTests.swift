import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Peak resident memory (`VmHWM`, kB) of a running process, from `/proc`.
private func peakResidentBytes(_ pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
    return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
}

/// `count` zero bytes compressed by `python3`'s zlib: gzip (wbits 31) or zlib-wrapped deflate (wbits 15),
/// the two encodings libcurl decodes for `Accept-Encoding`.
private func bomb(megabytes: Int, gzip: Bool) throws -> [UInt8] {
    let script = """
        import sys, zlib
        c = zlib.compressobj(9, zlib.DEFLATED, \(gzip ? 31 : 15))
        chunk = b'\\0' * (1 << 20)
        out = sys.stdout.buffer
        for _ in range(\(megabytes)):
            out.write(c.compress(chunk))
        out.write(c.flush())
        """
    return try runProcess("/usr/bin/env", ["python3", "-c", script])
}

/// A body that decompresses far past the size limit must cost at most about 1.25 times the limit
/// in memory (issue 11): the transfer is cut as soon as the decoded size passes the limit, and the
/// buffer never grows past it. Measured on the real binary, whose peak RSS the kernel keeps.
@Suite("issue 11: bounded memory for any answer", .serialized)
struct MemoryBoundTests {
    /// Made once per encoding: compressing 600 MiB costs seconds of CPU.
    static let gzipBomb = Result { try bomb(megabytes: 600, gzip: true) }
    static let deflateBomb = Result { try bomb(megabytes: 600, gzip: false) }

    /// Runs `bulkwatch run` against a server answering `list`, waits for the first poll's outcome
    /// (`marker` in the log), and returns the process's peak RSS and its log.
    private func peak(
        list: @escaping @Sendable () -> ScriptedReply, extra: [String], marker: String
    ) async throws -> (bytes: Int, log: String) {
        let druid = try ScriptedDruID(list: list)
        let arguments =
            [
                "run", "--endpoint", druid.bulkURL, "--token-url", druid.tokenURL, "--client-id", "app",
                "--state", druid.statePath, "--interval", "1h", "--sink", "file:" + druid.directory + "/e.jsonl",
                "--log-level", "debug",
            ] + extra
        let child = try ChildProcess(
            BulkWatchBinary.path, arguments, environment: druid.environment, directory: druid.directory)
        let seen = await ChildProcess.eventually(timeout: .seconds(120)) { child.stderr.contains(marker) }
        let peak = peakResidentBytes(child.pid)
        child.signal(SIGTERM)
        _ = await child.waitForExit(timeout: .seconds(20))
        try #require(seen, "no '\(marker)' in: \(child.stderr)")
        return (try #require(peak), child.stderr)
    }

    private func baseline() async throws -> Int {
        try await peak(
            list: { .json(200, #"{"content":[{"bulkId":"b-1"}]}"#) }, extra: [], marker: "poll ok"
        ).bytes
    }

    @Test(arguments: [(true, [String]()), (false, [String]()), (true, ["--max-body-size", "32MiB"])])
    func aCompressionBombCostsAtMostAQuarterMoreThanTheLimit(gzip: Bool, extra: [String]) async throws {
        let limit = extra.isEmpty ? 64 << 20 : 32 << 20
        let body = try gzip ? Self.gzipBomb.get() : Self.deflateBomb.get()
        #expect(body.count < 2 << 20, "a bomb: \(body.count) bytes on the wire")
        let idle = try await baseline()
        let measured = try await peak(
            list: {
                .respond(
                    status: 200,
                    headers: [("Content-Type", "application/json"), ("Content-Encoding", gzip ? "gzip" : "deflate")],
                    body: body)
            }, extra: extra, marker: "poll failed")
        #expect(measured.log.contains("response too large"), "log: \(measured.log)")
        let extraBytes = measured.bytes - idle
        print(
            "bomb \(gzip ? "gzip" : "deflate") limit \(limit >> 20) MiB: peak \(measured.bytes >> 20) MiB, "
                + "baseline \(idle >> 20) MiB, extra \(extraBytes >> 20) MiB")
        #expect(extraBytes <= limit + limit / 4, "peak \(measured.bytes >> 20) MiB over a \(idle >> 20) MiB baseline")
    }
}
