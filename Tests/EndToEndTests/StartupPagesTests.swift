import BulkWatchSupport
import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `Rss:` of the mapping that starts at `address`, from `/proc/self/smaps`, in kB.
private func residentKilobytes(ofMappingAt address: UInt) throws -> Int {
    // Read to the end: a /proc file says its size is 0, and smaps runs to hundreds of kB.
    let handle = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps"))
    defer { try? handle.close() }
    let smaps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
    let start = String(address, radix: 16)
    var inMapping = false
    for line in smaps.split(separator: "\n") {
        if let dash = line.firstIndex(of: "-"), line[..<dash].allSatisfy(\.isHexDigit) {
            inMapping = line[..<dash].drop(while: { $0 == "0" }) == start[...]
        } else if inMapping, line.hasPrefix("Rss:") {
            return try #require(line.split(separator: " ").compactMap { Int($0) }.first)
        }
    }
    throw TestFailure("no mapping at \(start) in /proc/self/smaps")
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A file of `pages` distinct pages, written and synced (clean pages can be reclaimed at once).
private func makeFile(pages: Int) throws -> (path: String, bytes: [UInt8]) {
    let path = try makeTemporaryDirectory("startup-pages") + "/mapped"
    var bytes = [UInt8](repeating: 0, count: pages * 4096)
    for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 31 &+ index / 4096) }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let descriptor = open(path, O_RDONLY)
    defer { close(descriptor) }
    fsync(descriptor)
    return (path, bytes)
}

/// A private mapping of a whole file, unmapped when the test lets go of it.
private final class MappedFile {
    let start: UnsafeMutableRawPointer
    let length: Int
    var address: UInt { UInt(bitPattern: start) }
    var bounds: Range<UInt> { address..<address + UInt(length) }

    init(_ path: String, pages: Int, protection: Int32) throws {
        let descriptor = open(path, O_RDONLY)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        length = pages * 4096
        let mapping = try #require(mmap(nil, length, protection, MAP_PRIVATE, descriptor, 0))
        try #require(mapping != MAP_FAILED)
        start = mapping
    }

    deinit { munmap(start, length) }
}

/// The idle daemon gives back the pages only its start-up touched (issue 12, idle footprint): what
/// `StartupPages.release()` advises, that it reclaims them, that nothing it advises loses data, and that
/// the real daemon does it once after its first poll and keeps working afterwards.
@Suite("issue 12: start-up pages given back", .serialized)
struct StartupPagesTests {
    @Test func aReadOnlyFileMappingIsGivenBackAndReadsTheSameAfterwards() throws {
        let pages = 1_024
        let (path, bytes) = try makeFile(pages: pages)
        let file = try MappedFile(path, pages: pages, protection: PROT_READ)
        let view = file.start.assumingMemoryBound(to: UInt8.self)
        var firstBytes: [UInt8] = []
        for page in 0..<pages { firstBytes.append(view[page * 4096]) }
        #expect(firstBytes == stride(from: 0, to: bytes.count, by: 4096).map { bytes[$0] }, "every page touched")
        #expect(StartupPages.codeMappings().contains { $0.contains(file.address) })
        let before = try residentKilobytes(ofMappingAt: file.address)
        #expect(before >= pages * 4 * 9 / 10, "touched: \(before) kB of \(pages * 4)")

        let release = StartupPages.release(within: file.bounds)

        let after = try residentKilobytes(ofMappingAt: file.address)
        #expect(release.mappings > 0)
        #expect(after <= before / 4, "resident \(before) kB before, \(after) kB after")
        #expect(Array(UnsafeBufferPointer(start: view, count: bytes.count)) == bytes, "the pages read back the file")
    }

    /// The executable's cached pages are dropped after the release (how a fault maps them back depends on how
    /// they are cached): the same advice on a file of which this process maps, but never touched, every page.
    @Test func theCachedPagesOfAFileNobodyTouchesAreDropped() throws {
        let pages = 256
        let (path, _) = try makeFile(pages: pages)
        // Mapped but never touched: mincore reports the page cache's pages, not this process's.
        let probe = try MappedFile(path, pages: pages, protection: PROT_READ)
        func cachedPages() throws -> Int {
            var resident = [UInt8](repeating: 0, count: pages)
            try #require(mincore(probe.start, probe.length, &resident) == 0)
            return resident.reduce(0) { $0 + Int($1 & 1) }
        }
        let before = try cachedPages()
        #expect(before >= pages * 9 / 10, "written and synced: \(before) of \(pages) pages cached")

        #expect(StartupPages.dropCachedPages(ofFile: path))

        let after = try cachedPages()
        #expect(after <= pages / 10, "\(after) of \(pages) pages still cached")
        #expect(!StartupPages.dropCachedPages(ofFile: path + ".missing"))
    }

    /// Relocated read-only data: written once (copied on write), then made read-only, as the loader does with
    /// RELRO. Unmapping it would bring the file's bytes back in place of the written ones.
    @Test func aReadOnlyMappingWithCopiedOnWritePagesIsNeverUnmapped() throws {
        let relocated = try MappedFile(makeFile(pages: 16).path, pages: 16, protection: PROT_READ | PROT_WRITE)
        relocated.start.storeBytes(of: 0x5A, toByteOffset: 4096 * 3 + 7, as: UInt8.self)
        try #require(mprotect(relocated.start, 16 * 4096, PROT_READ) == 0)

        #expect(!StartupPages.codeMappings().contains { $0.contains(relocated.address) })
        #expect(StartupPages.release(within: relocated.bounds).mappings == 0)

        #expect(relocated.start.load(fromByteOffset: 4096 * 3 + 7, as: UInt8.self) == 0x5A)
    }

    @Test func writableAndAnonymousMappingsAreNeverAdvised() throws {
        let privateCopy = try MappedFile(makeFile(pages: 16).path, pages: 16, protection: PROT_READ | PROT_WRITE)
        let anonymous = try #require(mmap(nil, 16 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(anonymous != MAP_FAILED)
        defer { munmap(anonymous, 16 * 4096) }
        // A copy-on-write page of a file mapping holds data the file does not: it must survive the release.
        privateCopy.start.storeBytes(of: 0xA5, toByteOffset: 100, as: UInt8.self)

        let advised = StartupPages.codeMappings()
        #expect(StartupPages.release(within: privateCopy.bounds).mappings == 0)

        for address in [privateCopy.address, UInt(bitPattern: anonymous)] {
            #expect(!advised.contains { $0.contains(address) }, "advised \(address)")
        }
        #expect(privateCopy.start.load(fromByteOffset: 100, as: UInt8.self) == 0xA5)
    }

    /// The real daemon: after its first poll it says what it gave back (debug log), and the loop goes on
    /// polling and delivering with its code faulted back in.
    @Test func theDaemonGivesBackItsStartUpPagesOnceAndKeepsPolling() async throws {
        let items = Mutex(#"{"content":[{"bulkId":"b-1","status":"PROCESSING"}]}"#)
        let druid = try ScriptedDruID(list: { .json(200, items.withLock { $0 }) })
        let events = druid.directory + "/events.jsonl"
        let child = try ChildProcess(
            BulkWatchBinary.path,
            [
                "run", "--endpoint", druid.bulkURL, "--token-url", druid.tokenURL, "--client-id", "app",
                "--state", druid.statePath, "--interval", "1s", "--sink", "file:" + events, "--log-level", "debug",
            ],
            environment: druid.environment, directory: druid.directory)
        defer { child.signal(SIGKILL) }
        let released = await ChildProcess.eventually(timeout: .seconds(60)) {
            child.stderr.contains("start-up pages given back")
        }
        try #require(released, "no release in: \(child.stderr)")
        items.withLock { $0 = #"{"content":[{"bulkId":"b-1","status":"COMPLETED"}]}"# }
        let delivered = await ChildProcess.eventually(timeout: .seconds(60)) {
            ((try? String(contentsOfFile: events, encoding: .utf8)) ?? "").contains("COMPLETED")
        }
        child.signal(SIGTERM)
        let exit = await child.waitForExit(timeout: .seconds(20))
        #expect(delivered, "the change after the release was delivered: \(child.stderr)")
        #expect(exit == 0, "stderr: \(child.stderr)")
        let line = try #require(child.stderr.split(separator: "\n").first { $0.contains("start-up pages given back") })
        #expect(line.contains("MiB"), "\(line)")
        #expect(child.stderr.components(separatedBy: "start-up pages given back").count == 2, "once per process")
    }

    /// The pages are the process's, not a target's: with two targets, one release, after whichever first poll
    /// ends start-up, and both keep polling.
    @Test func twoTargetsGiveThePagesBackOnce() async throws {
        let druid = try ScriptedDruID()
        let config = try druid.write(
            """
            state: \(druid.statePath)
            defaults:
              interval: 1s
              token-url: \(druid.tokenURL)
              client-id: app
              sinks: [file:events.jsonl]
            targets:
              - name: a
                endpoint: \(druid.bulkURL)
              - name: b
                endpoint: \(druid.bulkURL)
            """, "bulkwatch.yaml")
        let child = try ChildProcess(
            BulkWatchBinary.path, ["run", "--config", config, "--log-level", "debug"], environment: druid.environment,
            directory: druid.directory)
        defer { child.signal(SIGKILL) }
        let bothPolledTwice = await ChildProcess.eventually(timeout: .seconds(60)) {
            let polls = child.stderr.split(separator: "\n").filter { $0.contains("poll ok") }
            return polls.filter { $0.contains("target=a") }.count >= 2
                && polls.filter { $0.contains("target=b") }.count >= 2
        }
        child.signal(SIGTERM)
        _ = await child.waitForExit(timeout: .seconds(20))
        #expect(bothPolledTwice, "stderr: \(child.stderr)")
        #expect(child.stderr.components(separatedBy: "start-up pages given back").count == 2, "\(child.stderr)")
    }
}
