import Foundation
import Synchronization
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchDelivery

#if canImport(Glibc)
    import Glibc
#endif

/// Hand-built journal events with CloudEvents bodies shaped exactly like DESIGN.md §4.
enum SampleEvent {
    static let source = "https://api.example.com/activityid/v1/user/bulk"

    static func make(
        _ sequence: Int64, _ kind: DetectedChange.Kind = .created, subject: String? = nil, status: String = "PENDING",
        previous: (status: String, updatedOn: String)? = nil, extra: String = ""
    ) -> JournalEvent {
        let bulkId = subject ?? "b-\(sequence)"
        let id = "4f1c\(String(sequence, radix: 16))-0000-8000-8000-000000000000"
        let time = "2026-11-28T10:16:\(String(format: "%02d", sequence % 60)).512Z"
        let updatedOn = "2026-11-28T10:15:\(String(format: "%02d", sequence % 60)).000Z"
        let previousJSON = previous.map { #"{"status":"\#($0.status)","updatedOn":"\#($0.updatedOn)"}"# } ?? "null"
        let body =
            #"{"specversion":"1.0","id":"\#(id)","source":"\#(source)","type":"bulk.\#(kind.rawValue)","#
            + #""subject":\#(jsonString(bulkId)),"time":"\#(time)","datacontenttype":"application/json","#
            + #""sequence":"\#(sequence)","data":{"bulkId":\#(jsonString(bulkId)),"status":"\#(status)","#
            + #""createdOn":"2026-11-28T09:00:00.000Z","updatedOn":"\#(updatedOn)"\#(extra),"#
            + #""previous":\#(previousJSON)}}"#
        return JournalEvent(
            sequence: sequence, id: id, kind: kind, subject: bulkId, time: time, body: Array(body.utf8))
    }

    /// Events `range`, cycling through the three kinds.
    static func batch(_ range: ClosedRange<Int64>) -> [JournalEvent] {
        range.map { sequence in
            switch sequence % 3 {
            case 0: make(sequence, .changed, status: "FINISHED", previous: ("PROCESSING", "2026-11-28T10:00:00.000Z"))
            case 1: make(sequence, .created)
            default: make(sequence, .expired, status: "FINISHED")
            }
        }
    }

    static func jsonString(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    static func lines(_ events: [JournalEvent]) -> [UInt8] {
        events.flatMap { $0.body + [UInt8(ascii: "\n")] }
    }
}

/// A pseudo-terminal pair: a real TTY for the colour decision, without needing one attached to the tests.
final class PseudoTerminal {
    let leader: Int32
    let follower: Int32

    init() throws {
        // posix_openpt and friends are not visible through the Glibc module; these are their ioctls
        // (asm-generic numbering: x86_64 and arm64).
        let unlockRequest: UInt = 0x4004_5431  // TIOCSPTLCK
        let numberRequest: UInt = 0x8004_5430  // TIOCGPTN
        let leader = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        let follower =
            leader >= 0 && ioctl(leader, unlockRequest, &unlock) == 0 && ioctl(leader, numberRequest, &number) == 0
            ? open("/dev/pts/\(number)", O_RDWR | O_NOCTTY) : -1
        self.leader = leader
        self.follower = follower
        try #require(follower >= 0, "no pseudo-terminal available")
    }

    deinit {
        if follower >= 0 { close(follower) }
        if leader >= 0 { close(leader) }
    }
}

/// Bytes appended by a reader thread and read by the test.
final class Collected: Sendable {
    private let bytes = Mutex<[UInt8]>([])

    func append(_ chunk: some Sequence<UInt8>) {
        bytes.withLock { $0 += chunk }
    }

    var snapshot: [UInt8] { bytes.withLock { $0 } }
}

/// A pipe whose read end is drained by a dedicated thread, so writers never deadlock on a full pipe buffer.
final class DrainedPipe: Sendable {
    let writeEnd: Int32
    private let readEnd: Int32
    private let collected = Collected()
    private let finished = DispatchSemaphore(value: 0)

    init(nonBlockingWriteEnd: Bool = false) {
        var ends: [Int32] = [0, 0]
        // Close-on-exec: a child that another test spawns meanwhile must not inherit the write end, or the
        // drain never sees end-of-file and `finish()` blocks a cooperative thread for good (seen: both of
        // this machine's two pool threads stuck here while the exec-sink tests ran beside them).
        // (pipe2 is not imported; the window between the two calls is microseconds wide.)
        precondition(pipe(&ends) == 0)
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        readEnd = ends[0]
        writeEnd = ends[1]
        if nonBlockingWriteEnd {
            _ = fcntl(writeEnd, F_SETFL, fcntl(writeEnd, F_GETFL) | O_NONBLOCK)
        }
        let thread = Thread { [readEnd, collected, finished] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress!, $0.count) }
                if count < 0, errno == EINTR { continue }
                if count <= 0 { break }
                collected.append(buffer[..<count])
            }
            close(readEnd)
            finished.signal()
        }
        thread.start()
    }

    /// Closes the write end and returns everything that came through.
    func finish() -> [UInt8] {
        close(writeEnd)
        finished.wait()
        return collected.snapshot
    }
}

@Suite("stdout sink")
struct StdoutSinkTests {
    @Test func jsonFormatWritesEachBodyFollowedByANewline() async throws {
        let pipe = DrainedPipe()
        let sink = StdoutSink(format: .json, fileDescriptor: pipe.writeEnd)
        let first = SampleEvent.batch(1...3)
        let second = SampleEvent.batch(4...5)
        try await sink.deliver(first)
        try await sink.deliver(second)
        #expect(pipe.finish() == SampleEvent.lines(first + second))
        #expect(sink.name == "stdout:json")
    }

    @Test func textFormatDescribesCreatedChangedAndExpiredOnOneLineEach() async throws {
        let pipe = DrainedPipe()
        let sink = StdoutSink(format: .text, fileDescriptor: pipe.writeEnd)
        try await sink.deliver([
            SampleEvent.make(1, .created, subject: "b-1", status: "PENDING"),
            SampleEvent.make(
                3, .changed, subject: "b-123", status: "FINISHED",
                previous: ("PROCESSING", "2026-11-28T10:00:00.000Z")),
            SampleEvent.make(4, .expired, subject: "b-1", status: "FINISHED"),
        ])
        let text = String(decoding: pipe.finish(), as: UTF8.self)
        #expect(
            text == """
                2026-11-28T10:16:01.512Z  created  b-1  PENDING
                2026-11-28T10:16:03.512Z  changed  b-123  PROCESSING → FINISHED
                2026-11-28T10:16:04.512Z  expired  b-1  (last FINISHED)

                """)
        #expect(sink.name == "stdout")
    }

    @Test func changeOfUpdatedOnAloneSaysWhatMoved() async throws {
        let pipe = DrainedPipe()
        let sink = StdoutSink(format: .text, fileDescriptor: pipe.writeEnd)
        try await sink.deliver([
            SampleEvent.make(7, .changed, status: "PROCESSING", previous: ("PROCESSING", "2026-11-28T10:00:00.000Z"))
        ])
        let text = String(decoding: pipe.finish(), as: UTF8.self)
        #expect(text.hasSuffix("PROCESSING (updatedOn 2026-11-28T10:00:00.000Z → 2026-11-28T10:15:07.000Z)\n"))
    }

    @Test func writesNoANSICodesWhenOutputIsNotATerminal() async throws {
        let pipe = DrainedPipe()
        let sink = StdoutSink(format: .text, fileDescriptor: pipe.writeEnd)
        try await sink.deliver(SampleEvent.batch(1...6))
        let bytes = pipe.finish()
        #expect(!bytes.isEmpty)
        #expect(!bytes.contains(0x1B))
    }

    @Test func coloursOnlyATerminalWhoseUserDidNotOptOut() throws {
        let terminal = try PseudoTerminal()
        let follower = terminal.follower

        #expect(StdoutSink.shouldColour(fileDescriptor: follower, environment: ["TERM": "xterm-256color"]))
        #expect(!StdoutSink.shouldColour(fileDescriptor: follower, environment: ["NO_COLOR": "1"]))
        #expect(!StdoutSink.shouldColour(fileDescriptor: follower, environment: ["TERM": "dumb"]))
        #expect(StdoutSink.shouldColour(fileDescriptor: follower, environment: ["NO_COLOR": ""]))
        let pipe = DrainedPipe()
        #expect(!StdoutSink.shouldColour(fileDescriptor: pipe.writeEnd, environment: [:]))
        _ = pipe.finish()
    }

    @Test func colouredTextStillCarriesTheSameWords() async throws {
        let pipe = DrainedPipe()
        let sink = StdoutSink(format: .text, fileDescriptor: pipe.writeEnd, colour: true)
        try await sink.deliver([SampleEvent.make(1, .created, subject: "b-1", status: "PENDING")])
        let text = String(decoding: pipe.finish(), as: UTF8.self)
        #expect(text.contains("\u{1B}["))
        let plain = text.replacing(/\x{1B}\[[0-9;]*m/, with: "")
        #expect(plain == "2026-11-28T10:16:01.512Z  created  b-1  PENDING\n")
    }

    @Test func controlCharactersFromUpstreamCannotReachTheTerminal() async throws {
        let pipe = DrainedPipe()
        let sink = StdoutSink(format: .text, fileDescriptor: pipe.writeEnd)
        try await sink.deliver([SampleEvent.make(1, .created, subject: "b-\u{1B}[2J\nfake line", status: "OK")])
        let text = String(decoding: pipe.finish(), as: UTF8.self)
        #expect(!text.contains("\u{1B}"))
        #expect(text.split(separator: "\n").count == 1)
    }

    @Test func writesALargeBatchCompletelyThroughANonBlockingPipe() async throws {
        let pipe = DrainedPipe(nonBlockingWriteEnd: true)
        let sink = StdoutSink(format: .json, fileDescriptor: pipe.writeEnd)
        let events = SampleEvent.batch(1...3000)  // ~1 MB: many times the pipe buffer, so writes come back partial
        try await sink.deliver(events)
        #expect(pipe.finish() == SampleEvent.lines(events))
    }

    @Test func closedReaderThrowsABrokenPipeErrorInsteadOfCrashing() async throws {
        signal(SIGPIPE, SIG_IGN)  // as the daemon does process-wide
        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        close(ends[0])
        defer { close(ends[1]) }
        let sink = StdoutSink(format: .json, fileDescriptor: ends[1])
        let error = await #expect(throws: SinkIOError.self) {
            try await sink.deliver(SampleEvent.batch(1...2))
        }
        #expect(error?.code == .brokenPipe)
        #expect(error?.description.contains("EPIPE") == true)
    }

    @Test func writesToAnInjectedFile() async throws {
        let directory = try makeTemporaryDirectory("stdout-sink")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/out.txt"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        let sink = StdoutSink(format: .json, fileDescriptor: fd)
        let events = SampleEvent.batch(1...4)
        try await sink.deliver(events)
        close(fd)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == SampleEvent.lines(events))
    }
}
