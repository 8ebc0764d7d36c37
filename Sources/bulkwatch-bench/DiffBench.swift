import BulkWatch
import BulkWatchSimulator

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `bulkwatch-bench diff [--sizes 1000,100000,1000000] [--runs N]`
///
/// Times ``SnapshotDiffer/apply(_:to:policy:isFirstRun:)`` on synthetic listings: the first poll
/// (every item created) and the steady poll (1 % changed, 1 % new, 1 % gone), and the same steady
/// poll through a naive `[String: TrackedItem]` differ in the same run, as a ratio. Every listing
/// is built with fresh strings and one shared body buffer, as the decoder produces them, so string
/// comparisons cannot take the identical-storage shortcut. Figures are printed, never asserted.
/// "steady cpu" is the same median in thread CPU time: on a busy machine the wall clock also
/// counts time the benchmark spent descheduled.
func diffBenchmark(arguments: [String]) async throws {
    var sizes = [1_000, 100_000, 1_000_000]
    var runs = 7
    var index = 0
    while index < arguments.count {
        let flag = arguments[index]
        let value = index + 1 < arguments.count ? arguments[index + 1] : ""
        switch flag {
        case "--sizes":
            let parsed = value.split(separator: ",").compactMap { Int($0.replacingUnderscores()) }
            guard !parsed.isEmpty, parsed.allSatisfy({ $0 > 0 }) else { throw DiffBenchError.usage }
            sizes = parsed
        case "--runs":
            guard let parsed = Int(value), parsed > 0 else { throw DiffBenchError.usage }
            runs = parsed
        default:
            throw DiffBenchError.usage
        }
        index += 2
    }

    print("diff: steady poll = 1 % changed, 1 % new, 1 % gone; expireAfter 2; median of \(runs)+ runs")
    print("shuffled = the same steady poll with the listing in a new random order each time")
    print("listings are JSON bodies (36-character ids) decoded by BulkListDecoder, as the watcher gets them;")
    print("rendering and decoding are outside the timings")
    print(
        pad("items", 10) + pad("first diff", 13) + pad("steady", 12) + pad("ns/item", 9)
            + pad("steady cpu", 12) + pad("shuffled", 12) + pad("ns/item", 9) + pad("naive dict", 13)
            + pad("ns/item", 9) + "naive/steady")
    for size in sizes {
        let row = measure(size: size, runs: size <= 10_000 ? max(runs, 101) : runs)
        func perItem(_ seconds: Double) -> String { formatFixed(seconds * 1e9 / Double(size), 1) }
        print(
            pad(String(size), 10) + pad(formatMillis(row.first), 13)
                + pad(formatMillis(row.steady), 12) + pad(perItem(row.steady), 9)
                + pad(formatMillis(row.steadyCPU), 12) + pad(formatMillis(row.shuffled), 12)
                + pad(perItem(row.shuffled), 9)
                + pad(formatMillis(row.naive), 13) + pad(perItem(row.naive), 9)
                + formatFixed(row.naive / row.steady, 1) + "x")
    }
}

enum DiffBenchError: Error, CustomStringConvertible {
    case usage
    case mismatch(String)

    var description: String {
        switch self {
        case .usage: return "usage: bulkwatch-bench diff [--sizes 1000,100000,1000000] [--runs N]"
        case .mismatch(let detail): return "compact and naive differs disagree: \(detail)"
        }
    }
}

private struct DiffBenchRow {
    var first: Double
    var steady: Double
    var steadyCPU: Double
    var shuffled: Double
    var naive: Double
}

private func measure(size: Int, runs: Int) -> DiffBenchRow {
    let policy = DetectionPolicy(expireAfter: 2, initial: .emit)
    var universe = SyntheticUpstream(size: size, seed: 0x5EED_0000 &+ UInt64(size))

    let firstListing = universe.listing()
    var snapshot = Snapshot()
    let firstStart = ContinuousClock.now
    let firstOutcome = SnapshotDiffer.apply(firstListing, to: &snapshot, policy: policy, isFirstRun: true)
    let first = seconds(ContinuousClock.now - firstStart)
    precondition(firstOutcome.changes.count == size)

    var naive = NaiveDiffer()
    _ = naive.apply(firstListing, policy: policy)

    var shuffledSnapshot = Snapshot()
    _ = SnapshotDiffer.apply(firstListing, to: &shuffledSnapshot, policy: policy, isFirstRun: true)
    var shuffler = SplitMix64(seed: 42)

    var steady: [Double] = []
    var steadyCPU: [Double] = []
    var shuffledTimes: [Double] = []
    var naiveTimes: [Double] = []
    for _ in 0..<runs {
        universe.step()
        let listing = universe.listing()
        var order = Array(0..<universe.count)
        order.shuffle(using: &shuffler)
        let shuffled = universe.listing(order: order)

        let cpuStart = threadCPUSeconds()
        let start = ContinuousClock.now
        let outcome = SnapshotDiffer.apply(listing, to: &snapshot, policy: policy, isFirstRun: false)
        steady.append(seconds(ContinuousClock.now - start))
        steadyCPU.append(threadCPUSeconds() - cpuStart)

        let shuffledStart = ContinuousClock.now
        _ = SnapshotDiffer.apply(shuffled, to: &shuffledSnapshot, policy: policy, isFirstRun: false)
        shuffledTimes.append(seconds(ContinuousClock.now - shuffledStart))

        let naiveStart = ContinuousClock.now
        let naiveEvents = naive.apply(listing, policy: policy)
        naiveTimes.append(seconds(ContinuousClock.now - naiveStart))

        precondition(
            outcome.changes.count == naiveEvents && snapshot.count == naive.count,
            "\(DiffBenchError.mismatch("\(outcome.changes.count) vs \(naiveEvents) events"))")
        // Freeing the listings is the decoder's cost, not either differ's: keep them out of the timings.
        withExtendedLifetime((listing, shuffled)) {}
    }
    return DiffBenchRow(
        first: first, steady: median(steady), steadyCPU: median(steadyCPU), shuffled: median(shuffledTimes),
        naive: median(naiveTimes))
}

/// An upstream that evolves by 1 % changes, 1 % arrivals and 1 % departures per poll.
private struct SyntheticUpstream {
    private var serials: [UInt64]
    private var versions: [UInt32]
    private var nextSerial: UInt64
    private var random: SplitMix64
    private static let statuses = ["QUEUED", "PROCESSING", "FINISHED", "FAILED"]

    init(size: Int, seed: UInt64) {
        serials = (0..<UInt64(size)).map { $0 }
        versions = [UInt32](repeating: 0, count: size)
        nextSerial = UInt64(size)
        random = SplitMix64(seed: seed)
    }

    mutating func step() {
        let churn = max(1, serials.count / 100)
        for _ in 0..<churn {
            versions[Int(random.next() % UInt64(serials.count))] += 1
        }
        var gone = [Bool](repeating: false, count: serials.count)
        var marked = 0
        while marked < churn {
            let victim = Int(random.next() % UInt64(serials.count))
            if !gone[victim] {
                gone[victim] = true
                marked += 1
            }
        }
        var kept = 0
        for i in serials.indices where !gone[i] {
            serials[kept] = serials[i]
            versions[kept] = versions[i]
            kept += 1
        }
        serials.removeLast(serials.count - kept)
        versions.removeLast(versions.count - kept)
        for _ in 0..<churn {
            serials.append(nextSerial)
            versions.append(0)
            nextSerial += 1
        }
    }

    var count: Int { serials.count }

    /// A fresh listing as the watcher gets one: a JSON body rendered in `order` (default: upstream order) and
    /// decoded by ``BulkListDecoder``, so each item is offsets into the body (``BulkListing``). The rendering
    /// and decoding are outside every timing.
    func listing(order: [Int]? = nil) -> BulkListing {
        var body = Array(#"{"content":["#.utf8)
        body.reserveCapacity(serials.count * 160 + 64)
        for (n, index) in (order ?? Array(serials.indices)).enumerated() {
            let serial = serials[index]
            let version = versions[index]
            if n > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: #"{"bulkId":""#.utf8)
            body.append(contentsOf: Self.uuid(serial).utf8)
            body.append(contentsOf: #"","status":""#.utf8)
            body.append(contentsOf: Self.statuses[Int(version) % Self.statuses.count].utf8)
            body.append(contentsOf: #"","createdOn":""#.utf8)
            body.append(contentsOf: Self.timestamp(millis: 1_764_000_000_000 + Int64(serial) * 7).utf8)
            body.append(contentsOf: #"","updatedOn":""#.utf8)
            body.append(
                contentsOf: Self.timestamp(millis: 1_764_000_000_000 + Int64(serial) * 7 + Int64(version) * 60_000).utf8
            )
            body.append(contentsOf: #""}"#.utf8)
        }
        body.append(contentsOf: "]}".utf8)
        do {
            return try BulkListDecoder.decode(body)
        } catch {
            preconditionFailure("the diff bench rendered an invalid body: \(error)")
        }
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// A 36-character UUID-shaped id (heap-allocated, like DruID's).
    private static func uuid(_ serial: UInt64) -> String {
        var mixed = serial &* 0x9E37_79B9_7F4A_7C15
        mixed ^= mixed >> 31
        let digits = String(serial, radix: 16)
        return String(unsafeUninitializedCapacity: 36) { buffer in
            let high = mixed
            for i in 0..<36 {
                buffer[i] = hex[Int((high >> UInt64((i * 4) % 64)) & 0xF)]
            }
            for i in [8, 13, 18, 23] { buffer[i] = UInt8(ascii: "-") }
            for (i, byte) in digits.utf8.reversed().enumerated() where i < 12 { buffer[35 - i] = byte }
            return 36
        }
    }

    /// RFC 3339 UTC with milliseconds, e.g. `2025-11-24T16:00:00.007Z`.
    private static func timestamp(millis: Int64) -> String {
        let days = millis / 86_400_000
        var rest = millis % 86_400_000
        let hour = rest / 3_600_000
        rest %= 3_600_000
        let minute = rest / 60_000
        rest %= 60_000
        let (year, month, day) = civil(days: days)
        return String(unsafeUninitializedCapacity: 24) { buffer in
            func put(_ value: Int64, _ width: Int, at start: Int) {
                var value = value
                for i in stride(from: start + width - 1, through: start, by: -1) {
                    buffer[i] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(year, 4, at: 0)
            buffer[4] = UInt8(ascii: "-")
            put(month, 2, at: 5)
            buffer[7] = UInt8(ascii: "-")
            put(day, 2, at: 8)
            buffer[10] = UInt8(ascii: "T")
            put(hour, 2, at: 11)
            buffer[13] = UInt8(ascii: ":")
            put(minute, 2, at: 14)
            buffer[16] = UInt8(ascii: ":")
            put(rest / 1_000, 2, at: 17)
            buffer[19] = UInt8(ascii: ".")
            put(rest % 1_000, 3, at: 20)
            buffer[23] = UInt8(ascii: "Z")
            return 24
        }
    }

    private static func civil(days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

/// The obvious differ: a `[String: TrackedItem]` plus a per-poll "seen" stamp. Same rules for
/// this workload (no stale reads, no duplicates, no mass removal), so its event count must match.
private struct NaiveDiffer {
    private struct Row {
        var tracked: TrackedItem
        var seenInPoll: Int
    }

    private var rows: [String: Row] = [:]
    private var poll = 0

    var count: Int { rows.count }

    /// Returns the number of events.
    mutating func apply(_ listing: BulkListing, policy: DetectionPolicy) -> Int {
        poll += 1
        var changes: [DetectedChange] = []
        var upserted: [TrackedItem] = []
        for item in listing.items {
            if var row = rows[item.bulkId] {
                guard row.seenInPoll != poll else { continue }
                row.seenInPoll = poll
                if row.tracked.item.status != item.status || row.tracked.item.updatedOn != item.updatedOn {
                    changes.append(
                        DetectedChange(
                            kind: .changed, item: item,
                            previous: PreviousState(
                                status: row.tracked.item.status, updatedOn: row.tracked.item.updatedOn)))
                    upserted.append(TrackedItem(item: item))
                } else if row.tracked.absentPolls != 0 {
                    upserted.append(TrackedItem(item: item))
                }
                row.tracked = TrackedItem(item: item)
                rows[item.bulkId] = row
            } else {
                rows[item.bulkId] = Row(tracked: TrackedItem(item: item), seenInPoll: poll)
                changes.append(DetectedChange(kind: .created, item: item))
                upserted.append(TrackedItem(item: item))
            }
        }
        var absent: [String] = []
        for (bulkId, row) in rows where row.seenInPoll != poll {
            absent.append(bulkId)
        }
        var expired: [String] = []
        for bulkId in absent {
            rows[bulkId]!.tracked.absentPolls += 1
            if rows[bulkId]!.tracked.absentPolls >= max(2, policy.expireAfter) {
                expired.append(bulkId)
            } else {
                upserted.append(rows[bulkId]!.tracked)
            }
        }
        expired.sort()
        for bulkId in expired {
            changes.append(DetectedChange(kind: .expired, item: rows.removeValue(forKey: bulkId)!.tracked.item))
        }
        return changes.count
    }
}

private func seconds(_ duration: Duration) -> Double {
    let (whole, attos) = duration.components
    return Double(whole) + Double(attos) / 1e18
}

/// CPU time of the calling thread.
private func threadCPUSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

private func formatMillis(_ seconds: Double) -> String {
    formatFixed(seconds * 1_000, seconds < 0.001 ? 3 : 2) + " ms"
}

private func formatFixed(_ value: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = Double(Int64(value * scale + (value < 0 ? -0.5 : 0.5))) / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let have = text.distance(from: dot, to: text.endIndex) - 1
        if have < decimals { text += String(repeating: "0", count: decimals - have) }
        if decimals == 0 { text.removeSubrange(dot...) }
    }
    return text
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

extension Substring {
    fileprivate func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}
