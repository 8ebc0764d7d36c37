import Foundation
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchDelivery

#if canImport(Glibc)
    import Glibc
#endif

@Suite("file sink")
struct FileSinkTests {
    @Test func appendsEachEventAsOneJSONLine() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path)
        try await sink.deliver(SampleEvent.batch(1...3))
        try await sink.deliver(SampleEvent.batch(4...4))
        await sink.close()

        let bytes = try contents(path)
        #expect(bytes == SampleEvent.lines(SampleEvent.batch(1...4)))
        #expect(try sequences(path) == [1, 2, 3, 4])
        for line in try lines(path) {
            let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
            #expect(object?["specversion"] as? String == "1.0")
        }
        #expect(sink.name == "file:\(path)")
    }

    /// A batch goes out in writes of whole lines from a buffer kept between batches (FileLog.pieceBytes): lines
    /// across piece boundaries, and a line longer than a piece, land exactly as handed, and the next batch
    /// continues the file.
    @Test func writesABatchOfManyPiecesAndALineLongerThanAPieceExactly() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path)
        var batch = SampleEvent.batch(1...3_000)
        let long = String(repeating: "x", count: FileLog.pieceBytes + 1_000)
        batch[1_500] = SampleEvent.make(1_501, .created, extra: #","note":"\#(long)""#)
        let total = batch.reduce(0) { $0 + $1.body.count + 1 }
        #expect(total > 3 * FileLog.pieceBytes)
        try await sink.deliver(batch)
        try await sink.deliver(SampleEvent.batch(3_001...3_002))
        await sink.close()
        #expect(try contents(path) == SampleEvent.lines(batch + SampleEvent.batch(3_001...3_002)))
        #expect(try await FileSink(path: path).lastDelivered()?.sequence == 3_002)
    }

    @Test func createsTheFileReadableOnlyByItsOwner() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path)
        try await sink.deliver(SampleEvent.batch(1...1))
        var info = stat()
        try #require(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    @Test func rotatesBeforeABatchWouldOverflowAndKeepsTheNewestFiles() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let maxBytes: Int64 = 2000
        let sink = try FileSink(path: path, maxBytes: maxBytes, keep: 3)
        var batchStarts: Set<Int64> = []
        var next: Int64 = 1
        var size: Int64 = 1
        while next <= 60 {
            let last = min(next + size - 1, 60)
            try await sink.deliver(SampleEvent.batch(next...last))
            batchStarts.insert(next)
            next = last + 1
            size = size % 4 + 1
        }

        #expect(FileManager.default.fileExists(atPath: path + ".3"))
        #expect(!FileManager.default.fileExists(atPath: path + ".4"))
        var all: [Int64] = []
        for file in [path + ".3", path + ".2", path + ".1", path] {
            let bytes = try contents(file)
            #expect(Int64(bytes.count) <= maxBytes, "\(file) is \(bytes.count) bytes")
            #expect(bytes.last == UInt8(ascii: "\n"))
            let inFile = try sequences(file)
            // Each file begins where a batch begins: no batch was split across two files.
            #expect(batchStarts.contains(try #require(inFile.first)))
            all += inFile
        }
        #expect(all == Array(all.first!...60))
        #expect(all.count > 12)
    }

    @Test func writesABatchLargerThanTheLimitWholeIntoAFreshFile() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path, maxBytes: 1000, keep: 2)
        try await sink.deliver(SampleEvent.batch(1...1))
        try await sink.deliver(SampleEvent.batch(2...11))
        #expect(try sequences(path + ".1") == [1])
        #expect(try sequences(path) == Array(2...11))
        try await sink.deliver(SampleEvent.batch(12...12))
        #expect(try sequences(path + ".2") == [1])
        #expect(try sequences(path + ".1") == Array(2...11))
        #expect(try sequences(path) == [12])
    }

    @Test func repairsATornLastLineAndResumesAfterTheLastCompleteEvent() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        // The last complete event carries an upstream field also named "sequence": only the top level counts.
        let complete = SampleEvent.batch(1...2) + [SampleEvent.make(3, extra: #","sequence":"999""#)]
        let first = try FileSink(path: path)
        try await first.deliver(complete)
        await first.close()
        // A crash in the middle of the next batch's write: half a line, no newline.
        let torn = SampleEvent.make(4).body
        try append(path, Array(torn[..<(torn.count / 2)]))

        let restarted = try FileSink(path: path)
        #expect(try await restarted.lastDelivered()?.sequence == 3)
        #expect(try contents(path) == SampleEvent.lines(complete))
        try await restarted.deliver(SampleEvent.batch(4...5))
        #expect(try sequences(path) == [1, 2, 3, 4, 5])
    }

    @Test func reportsNothingDeliveredForAMissingOrEmptyFile() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let missing = try FileSink(path: directory + "/new.jsonl")
        #expect(try await missing.lastDelivered() == nil)
        #expect(FileManager.default.fileExists(atPath: directory + "/new.jsonl"))

        try Data().write(to: URL(fileURLWithPath: directory + "/empty.jsonl"))
        let empty = try FileSink(path: directory + "/empty.jsonl")
        #expect(try await empty.lastDelivered() == nil)

        try Data("\n\n".utf8).write(to: URL(fileURLWithPath: directory + "/blank.jsonl"))
        let blank = try FileSink(path: directory + "/blank.jsonl")
        #expect(try await blank.lastDelivered() == nil)
    }

    @Test func resumesFromTheRotatedFileWhenTheCurrentOneHoldsNoEvent() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        // A crash right after a rotation: PATH.1 full, PATH not yet (or just) created.
        try Data(SampleEvent.lines(SampleEvent.batch(1...7))).write(to: URL(fileURLWithPath: path + ".1"))
        let sink = try FileSink(path: path)
        #expect(try await sink.lastDelivered() == DeliveredMark(sequence: 7, body: SampleEvent.make(7).body))
        try await sink.deliver(SampleEvent.batch(8...9))
        #expect(try sequences(path) == [8, 9])
    }

    /// The dispatcher decides what is new (by the journal's identity and the cursor); the sink writes what it
    /// is handed, so a rewound cursor re-writes and a new journal's low sequences are appended.
    @Test func writesEveryEventItIsHandedEvenWithLowerSequences() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path)
        try await sink.deliver(SampleEvent.batch(1...3))
        try await sink.deliver(SampleEvent.batch(2...3))
        #expect(try sequences(path) == [1, 2, 3, 2, 3])
        #expect(try await sink.lastDelivered()?.sequence == 3)
    }

    @Test func refusesAFileThatIsNotABulkwatchLogWithoutTouchingIt() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for content in [
            "ssh-ed25519 AAAAC3Nza not an event", "line one\nline two\n", "{\"a\":1}\n{\"sequence\":\"4\"}\n",
        ] {
            let path = directory + "/foreign-\(content.count).txt"
            try Data(content.utf8).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: SinkIOError.self) { try FileSink(path: path) }
            #expect(error?.code == .unrecognisedContent)
            #expect(try contents(path) == Array(content.utf8))
        }
    }

    @Test func refusesASymbolicLinkDanglingOrNot() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let target = directory + "/target.jsonl"
        try Data().write(to: URL(fileURLWithPath: target))
        #expect(symlink(target, directory + "/link.jsonl") == 0)
        #expect(symlink(directory + "/nowhere.jsonl", directory + "/dangling.jsonl") == 0)
        for link in ["/link.jsonl", "/dangling.jsonl"] {
            let error = #expect(throws: SinkIOError.self) { try FileSink(path: directory + link) }
            #expect(error?.code == .invalidOption)
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/nowhere.jsonl"))
    }

    @Test func reopensByPathAfterAnExternalRename() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path)
        try await sink.deliver(SampleEvent.batch(1...2))
        // logrotate moves the file, then signals the daemon; a batch may land in between.
        try FileManager.default.moveItem(atPath: path, toPath: path + "-20261128")
        try await sink.deliver(SampleEvent.batch(3...3))
        try await sink.reopen()
        try await sink.deliver(SampleEvent.batch(4...5))

        #expect(try sequences(path + "-20261128") == [1, 2, 3])
        #expect(try sequences(path) == [4, 5])
        var info = stat()
        try #require(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(try await sink.lastDelivered()?.sequence == 5)
    }

    @Test func reopenWithoutAnyRenameKeepsAppending() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path)
        try await sink.deliver(SampleEvent.batch(1...2))
        try await sink.reopen()
        try await sink.deliver(SampleEvent.batch(3...3))
        #expect(try sequences(path) == [1, 2, 3])
    }

    @Test func missingDirectoryFailsAtStartWithOneClearLine() throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/no-such-dir/events.jsonl"
        let error = #expect(throws: SinkIOError.self) { try FileSink(path: path) }
        #expect(error?.code == .missingDirectory)
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains("\n") == false)
    }

    @Test(.enabled(if: getuid() != 0, "root bypasses file permissions"))
    func unwritableDirectoryFailsAtStartWithPermissionDenied() throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer {
            chmod(directory, 0o700)
            try? FileManager.default.removeItem(atPath: directory)
        }
        chmod(directory, 0o500)
        let error = #expect(throws: SinkIOError.self) { try FileSink(path: directory + "/events.jsonl") }
        #expect(error?.code == .permissionDenied)
        #expect(error?.description.contains(directory) == true)
    }

    @Test func rejectsADirectoryAndLimitsOutOfRange() throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let isDirectory = #expect(throws: SinkIOError.self) { try FileSink(path: directory) }
        #expect(isDirectory?.description.contains("is a directory") == true)
        let zeroSize = #expect(throws: SinkIOError.self) { try FileSink(path: directory + "/x", maxBytes: 0) }
        #expect(zeroSize?.code == .invalidOption)
        let negativeKeep = #expect(throws: SinkIOError.self) { try FileSink(path: directory + "/x", keep: -1) }
        #expect(negativeKeep?.code == .invalidOption)
    }

    @Test func refusesToAppendToAFileThatIsNotAnEventLog() throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/notes.txt"
        try Data("shopping list\nmilk\n".utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: SinkIOError.self) { try FileSink(path: path) }
        #expect(error?.code == .unrecognisedContent)
        #expect(try contents(path) == Array("shopping list\nmilk\n".utf8))
    }

    @Test func deliveringAfterCloseThrows() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sink = try FileSink(path: directory + "/events.jsonl")
        await sink.close()
        let error = await #expect(throws: SinkIOError.self) { try await sink.deliver(SampleEvent.batch(1...1)) }
        #expect(error?.code == .closed)
    }

    @Test(.enabled(if: TinyFilesystem.available, "needs root to mount a small tmpfs"))
    func fullDiskThrowsAndLeavesNoTornLine() async throws {
        let mountPoint = try TinyFilesystem.mount(kilobytes: 64)
        defer { TinyFilesystem.unmount(mountPoint) }
        let path = mountPoint + "/events.jsonl"
        let sink = try FileSink(path: path)
        var delivered: Int64 = 0
        var failure: SinkIOError?
        while failure == nil, delivered < 10_000 {
            do {
                try await sink.deliver(SampleEvent.batch((delivered + 1)...(delivered + 7)))
                delivered += 7
            } catch let error as SinkIOError {
                failure = error
            }
        }
        #expect(failure?.code == .noSpace)
        #expect(failure?.description.contains(path) == true)
        // Retrying on a still-full disk fails the same way and still leaves whole lines only.
        await #expect(throws: SinkIOError.self) {
            try await sink.deliver(SampleEvent.batch((delivered + 1)...(delivered + 7)))
        }
        #expect(try contents(path).last == UInt8(ascii: "\n"))
        #expect(try sequences(path) == Array(1...delivered))
        await sink.close()
        let restarted = try FileSink(path: path)
        #expect(try await restarted.lastDelivered()?.sequence == delivered)
    }

    /// A batch of several pieces that fills the disk in its second or a later write is rolled back whole: the
    /// file keeps only the batches before it, and a smaller batch goes in afterwards.
    @Test(.enabled(if: TinyFilesystem.available, "needs root to mount a small tmpfs"))
    func fullDiskInALaterPieceRollsTheWholeBatchBack() async throws {
        let mountPoint = try TinyFilesystem.mount(kilobytes: 640)
        defer { TinyFilesystem.unmount(mountPoint) }
        let path = mountPoint + "/events.jsonl"
        let sink = try FileSink(path: path)
        try await sink.deliver(SampleEvent.batch(1...10))
        let before = try contents(path)
        // ~1 MB of lines: the first two pieces (256 KiB each) fit, a later one does not.
        let batch = SampleEvent.batch(11...3_000)
        #expect(batch.reduce(0) { $0 + $1.body.count + 1 } > 2 * FileLog.pieceBytes + 640 * 1024)
        let error = await #expect(throws: SinkIOError.self) { try await sink.deliver(batch) }
        #expect(error?.code == .noSpace)
        #expect(error?.description.contains("rolled back") == true)
        #expect(try contents(path) == before)
        try await sink.deliver(SampleEvent.batch(11...20))
        #expect(try sequences(path) == Array(1...20))
        await sink.close()
    }

    /// `tail -F` follows the file by name across rotations. It can only follow a file it gets to see before
    /// that file is rotated away (inherent to `tail`), so the writer waits for each batch to show up: what is
    /// under test is that rename-and-reopen loses and repeats nothing, not how fast `tail` polls.
    @Test func tailFollowsTheLogAcrossRotationsWithoutLossOrRepetition() async throws {
        let directory = try makeTemporaryDirectory("file-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/events.jsonl"
        let sink = try FileSink(path: path, maxBytes: 4000, keep: 2)
        let tail = try TailFollower(path: path)
        defer { tail.stop() }

        let total: Int64 = 150
        var next: Int64 = 1
        var size: Int64 = 1
        while next <= total {
            let last = min(next + size - 1, total)
            try await sink.deliver(SampleEvent.batch(next...last))
            next = last + 1
            size = size % 7 + 1
            let arrived = await tail.waitForLines(Int(last), deadline: .seconds(90))
            try #require(arrived, "tail -F stopped at \(tail.lines().count) of \(last) lines")
        }
        #expect(FileManager.default.fileExists(atPath: path + ".2"))
        let expected = SampleEvent.batch(1...total).map { String(decoding: $0.body, as: UTF8.self) }
        #expect(tail.lines() == expected)
    }
}

// MARK: - Helpers

private func contents(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

private func lines(_ path: String) throws -> [[UInt8]] {
    try contents(path).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast().map(Array.init)
}

/// The top-level `sequence` of every line; fails the parse if any line is not a complete JSON object.
private func sequences(_ path: String) throws -> [Int64] {
    try lines(path).map { line in
        let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
        return Int64(try #require(object?["sequence"] as? String))!
    }
}

private func append(_ path: String, _ bytes: [UInt8]) throws {
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try handle.seekToEnd()
    try handle.write(contentsOf: bytes)
    try handle.close()
}

/// `/usr/bin/tail -F -n +1 PATH` as a child process, its output collected line by line by a reader thread.
final class TailFollower: Sendable {
    private let process: Process
    private let output = Collected()

    init(path: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/tail")
        process.arguments = ["-F", "-n", "+1", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let output = self.output
        let reader = pipe.fileHandleForReading
        Thread {
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                output.append(chunk)
            }
        }.start()
    }

    func lines() -> [String] {
        let bytes = output.snapshot
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// Waits until at least `count` complete lines arrived, or `deadline` passed.
    func waitForLines(_ count: Int, deadline: Duration) async -> Bool {
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end {
            let complete = output.snapshot.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
            if complete >= count { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    /// SIGKILL, not `terminate()`: a child spawned from a dispatch worker thread inherits its blocked SIGTERM.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// A tmpfs of a few kilobytes, for filling a disk for real. Needs root (CI and the dev machines run as root).
enum TinyFilesystem {
    static let available: Bool = {
        guard getuid() == 0, let probe = try? mount(kilobytes: 16) else { return false }
        unmount(probe)
        return true
    }()

    static func mount(kilobytes: Int) throws -> String {
        let mountPoint = try makeTemporaryDirectory("tiny-fs")
        try runProcess("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=\(kilobytes)k,mode=0700", "tmpfs", mountPoint])
        return mountPoint
    }

    static func unmount(_ mountPoint: String) {
        _ = try? runProcess("/usr/bin/umount", ["-l", mountPoint])
        try? FileManager.default.removeItem(atPath: mountPoint)
    }
}
