// `bulkwatch-bench decode`: how fast BulkListDecoder turns a bulk-status body into a BulkListing,
// next to Foundation's JSONDecoder on the same bytes in the same process. Figures are printed, never
// asserted: CI machines are too noisy for timing thresholds.
import BulkWatch
import BulkWatchSimulator
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Entry point for `bulkwatch-bench decode [--sizes 1000,100000,1000000] [--runs 7]`.
func decodeBenchmark(arguments: [String]) async throws {
    let options = try DecodeBenchOptions(arguments: arguments)
    let memory = PeakResidentMemory()
    print("decode: BulkListDecoder vs Foundation JSONDecoder, median of \(options.runs) runs after 1 warm-up")
    print("memory: \(memory.explanation)")
    print("load average before: \(decodeBenchLoadAverage())")
    print("")
    let columns: [(String, Int)] = [
        ("items", 8), ("body", 9), ("decoder", 9), ("cpu", 9), ("MB/s", 5), ("peak Δ", 8),
        ("JSONDecoder", 11), ("cpu", 10), ("MB/s", 5), ("peak Δ", 8), ("speed-up", 8),
    ]
    let header = columns.map { pad($0.0, $0.1) }.joined(separator: "  ")
    print(header)
    print(String(repeating: "-", count: header.count))

    for size in options.sizes {
        let body = DecodeBenchBody.make(items: size)
        let data = Data(body)

        memory.reset()
        var decodedCount = 0
        let ours = try medianTimes(runs: options.runs) {
            let listing = try BulkListDecoder.decode(body)
            decodedCount = listing.count
            return listing
        }
        let oursPeak = memory.peakAboveReset()
        guard decodedCount == size else { throw DecodeBenchError("decoder returned \(decodedCount) of \(size) items") }

        memory.reset()
        let foundation = try medianTimes(runs: options.runs) {
            try JSONDecoder().decode(FoundationBulkBody.self, from: data)
        }
        let foundationPeak = memory.peakAboveReset()

        let megabytes = Double(body.count) / 1_000_000
        let cells = [
            "\(size)", bytes(body.count), milliseconds(ours.wall), milliseconds(ours.cpu),
            String(format: "%.0f", megabytes / ours.wall), bytes(oursPeak),
            milliseconds(foundation.wall), milliseconds(foundation.cpu),
            String(format: "%.0f", megabytes / foundation.wall), bytes(foundationPeak),
            String(format: "%.1fx", foundation.wall / ours.wall),
        ]
        print(zip(cells, columns).map { pad($0, $1.1) }.joined(separator: "  "))
    }
    print("")
    print("load average after: \(decodeBenchLoadAverage())")
    print("decoder = BulkListDecoder.decode (keeps rawJSON slices); JSONDecoder = a plain Codable model of the")
    print("four fields (no raw bytes kept). Times are medians of wall time (MB/s uses them) and of this")
    print("thread's CPU time (less sensitive to other processes on a shared machine). peak Δ = VmHWM minus")
    print("the RSS when that measurement started.")

    // Fetch + decode over loopback (curl transport against the simulator) goes here; to be added
    // by the transport work, reusing DecodeBenchBody and medianSeconds(runs:_:).
}

/// Command-line options of the decode suite.
struct DecodeBenchOptions {
    var sizes = [1_000, 100_000, 1_000_000]
    var runs = 7

    init(arguments: [String]) throws {
        var remaining = arguments[...]
        while let flag = remaining.popFirst() {
            guard let value = remaining.popFirst() else { throw DecodeBenchError("\(flag) needs a value") }
            switch flag {
            case "--sizes":
                let sizes = value.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) > 0 }) else {
                    throw DecodeBenchError("--sizes wants positive integers separated by commas")
                }
                self.sizes = sizes.compactMap { $0 }
            case "--runs":
                guard let runs = Int(value), runs > 0 else { throw DecodeBenchError("--runs wants a positive integer") }
                self.runs = runs
            default:
                throw DecodeBenchError("unknown option \(flag); usage: decode [--sizes 1000,100000] [--runs 7]")
            }
        }
    }
}

struct DecodeBenchError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

/// The Foundation side of the comparison: what a straightforward Codable client would write.
struct FoundationBulkItem: Decodable {
    var bulkId: String?
    var status: String?
    var createdOn: String?
    var updatedOn: String?
}

struct FoundationBulkResult: Decodable {
    var status: Int?
    var message: String?
}

struct FoundationBulkBody: Decodable {
    var content: [FoundationBulkItem]
    var result: FoundationBulkResult?
}

/// Realistic bodies: ~150 bytes per item, UUID ids, a skewed mix of statuses, ISO timestamps with
/// milliseconds. Seeded, so every run and every machine decodes the same bytes.
enum DecodeBenchBody {
    static func make(items: Int, seed: UInt64 = 0x5EED) -> [UInt8] {
        let statuses = [
            "COMPLETED", "COMPLETED", "COMPLETED", "IN_PROGRESS", "PENDING", "FAILED", "PARTIALLY_COMPLETED",
        ]
        var random = SplitMix64(seed: seed)
        var body: [UInt8] = []
        body.reserveCapacity(items * 152 + 64)
        body.append(contentsOf: #"{"content":["#.utf8)
        let base: Int64 = 1_795_860_963  // 2026-11-28T10:16:03Z
        for index in 0..<items {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            let created = base - Int64(random.next() % 2_592_000)
            let updated = created + Int64(random.next() % 86_400)
            body.append(contentsOf: #"{"bulkId":""#.utf8)
            appendUUID(&body, random.next(), random.next())
            body.append(contentsOf: #"","status":""#.utf8)
            body.append(contentsOf: statuses[Int(random.next() % UInt64(statuses.count))].utf8)
            body.append(contentsOf: #"","createdOn":""#.utf8)
            appendISO(&body, seconds: created, millis: Int(random.next() % 1_000))
            body.append(contentsOf: #"","updatedOn":""#.utf8)
            appendISO(&body, seconds: updated, millis: Int(random.next() % 1_000))
            body.append(contentsOf: #""}"#.utf8)
        }
        body.append(contentsOf: #"],"result":{"status":200,"message":"Success"}}"#.utf8)
        return body
    }

    private static func appendUUID(_ body: inout [UInt8], _ high: UInt64, _ low: UInt64) {
        let hex = Array("0123456789abcdef".utf8)
        let bits = [high, low]
        for nibble in 0..<32 {
            if nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20 { body.append(UInt8(ascii: "-")) }
            let word = bits[nibble / 16]
            body.append(hex[Int((word >> UInt64(60 - (nibble % 16) * 4)) & 0xF)])
        }
    }

    private static func appendISO(_ body: inout [UInt8], seconds: Int64, millis: Int) {
        let days = Int(seconds / 86_400)
        let secondOfDay = Int(seconds % 86_400)
        // Civil-from-days (H. Hinnant), valid for dates after 1970.
        let shifted = days + 719_468
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                body.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
        }
        digits(year, 4)
        body.append(UInt8(ascii: "-"))
        digits(month, 2)
        body.append(UInt8(ascii: "-"))
        digits(day, 2)
        body.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3_600, 2)
        body.append(UInt8(ascii: ":"))
        digits(secondOfDay / 60 % 60, 2)
        body.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2)
        body.append(UInt8(ascii: "."))
        digits(millis, 3)
        body.append(UInt8(ascii: "Z"))
    }
}

/// Median wall time and median thread CPU time, in seconds, of `runs` calls after one warm-up. The
/// result of each call is released after the clocks stop, so deallocation is not counted.
func medianTimes<Result>(runs: Int, _ work: () throws -> Result) throws -> (wall: Double, cpu: Double) {
    _ = try work()
    var walls: [Double] = []
    var cpus: [Double] = []
    let clock = ContinuousClock()
    for _ in 0..<runs {
        let cpuStart = decodeBenchThreadCPUSeconds()
        let start = clock.now
        let result = try work()
        let elapsed = clock.now - start
        let cpu = decodeBenchThreadCPUSeconds() - cpuStart
        withExtendedLifetime(result) {}
        walls.append(elapsed.seconds)
        cpus.append(cpu)
    }
    walls.sort()
    cpus.sort()
    return (walls[walls.count / 2], cpus[cpus.count / 2])
}

/// Median wall time in seconds of `runs` calls after one warm-up (see ``medianTimes(runs:_:)``).
func medianSeconds<Result>(runs: Int, _ work: () throws -> Result) throws -> Double {
    try medianTimes(runs: runs, work).wall
}

/// CPU time consumed by the calling thread (0 where the clock is unavailable).
private func decodeBenchThreadCPUSeconds() -> Double {
    #if canImport(Glibc)
        var time = timespec()
        guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time) == 0 else { return 0 }
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    #else
        return 0
    #endif
}

/// The 1-, 5- and 15-minute load averages, so a reader can tell a quiet run from a contended one.
private func decodeBenchLoadAverage() -> String {
    guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "unknown" }
    return text.split(separator: " ").prefix(3).joined(separator: " ")
}

/// Peak resident memory on Linux. Writing "5" to /proc/self/clear_refs resets VmHWM to the current
/// RSS (after `malloc_trim`), so each measurement reports its own peak above what was resident when it
/// started; where that is refused (or not on Linux) the peak is the process's lifetime high-water
/// mark and only grows, which the printed explanation says.
final class PeakResidentMemory {
    private(set) var canReset: Bool
    private var startRSS = 0

    init() {
        canReset = FileManager.default.isWritableFile(atPath: "/proc/self/clear_refs")
    }

    var explanation: String {
        canReset
            ? "VmHWM reset through /proc/self/clear_refs before each measurement; peak Δ = VmHWM − VmRSS at reset"
            : "clear_refs not writable: peak Δ = lifetime VmHWM − VmRSS at start of the measurement (an upper bound)"
    }

    func reset() {
        // Give freed heap back to the kernel first, or memory cached by malloc from an earlier
        // measurement hides what this one needs. (glibc only; looked up so other libcs still link.)
        #if canImport(Glibc)
            if let symbol = dlsym(nil, "malloc_trim") {
                typealias MallocTrim = @convention(c) (Int) -> Int32
                _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
            }
        #endif
        if canReset {
            do {
                try Data("5".utf8).write(to: URL(fileURLWithPath: "/proc/self/clear_refs"))
            } catch {
                canReset = false
            }
        }
        startRSS = Self.status("VmRSS") ?? 0
    }

    func peakAboveReset() -> Int {
        max(0, (Self.status("VmHWM") ?? 0) - startRSS)
    }

    /// A `kB` line of /proc/self/status, in bytes.
    private static func status(_ key: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            let fields = line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            let number = fields.first.flatMap { Int($0) }
            return number.map { $0 * 1_024 }
        }
        return nil
    }
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

private func milliseconds(_ seconds: Double) -> String {
    String(format: "%.2f ms", seconds * 1_000)
}

private func bytes(_ count: Int) -> String {
    if count >= 1_000_000 { return String(format: "%.1f MB", Double(count) / 1_000_000) }
    if count >= 1_000 { return String(format: "%.1f kB", Double(count) / 1_000) }
    return "\(count) B"
}
