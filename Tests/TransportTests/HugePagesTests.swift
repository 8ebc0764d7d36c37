// HugePages asks the kernel to back large, freshly reserved buffers (the body, a listing's entries) with 2 MiB pages:
// a 4 KiB page fault costs ~2 µs on this project's machine, and a 100k poll wrote ~600 of them into its listing's
// entries alone. What is checked here is that the advice takes: written after it, the buffer is backed by huge
// pages (`AnonHugePages` of its mapping in /proc/self/smaps).
import Foundation
import Testing

@testable import BulkWatchSupport

@Suite("huge pages for large fresh buffers")
struct HugePagesTests {
    /// Whether this kernel gives huge pages to regions that ask (`madvise`) or to all (`always`).
    static let available: Bool = {
        guard
            let mode = try? String(
                contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8)
        else { return false }
        return mode.contains("[madvise]") || mode.contains("[always]")
    }()

    @Test(.enabled(if: available, "transparent huge pages are off on this kernel"))
    func anAdvisedArrayIsBackedByHugePagesOnceWritten() throws {
        var array: [UInt64] = []
        array.reserveCapacity(2 << 20)  // 16 MiB
        HugePages.adviseCapacity(of: &array, minimum: 4 << 20)
        for value in 0..<UInt64(2 << 20) { array.append(value) }
        // The middle of the buffer: the advice splits the mapping, and only its 2 MiB-aligned interior has it.
        let middle = array.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) + (8 << 20) }
        let hugeKilobytes = try #require(Self.anonHugeKilobytes(ofMappingHolding: middle))
        // 16 MiB written: all of the interior (12 MiB at least) in huge pages.
        #expect(hugeKilobytes >= 12 * 1024)
        #expect(array[123_456] == 123_456)
    }

    /// `AnonHugePages` (kB) of the mapping in /proc/self/smaps that holds `address`.
    private static func anonHugeKilobytes(ofMappingHolding address: UInt) -> Int? {
        // Read to the end: `String(contentsOfFile:)` stops after the first 4 KiB of a /proc file.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/smaps"), let data = try? handle.readToEnd()
        else { return nil }
        let smaps = String(decoding: data, as: UTF8.self)
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= address && address < bounds[1]
                continue
            }
            if inside, fields.first == "AnonHugePages:", fields.count >= 2 { return Int(fields[1]) }
        }
        return nil
    }
}
