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

    /// On a fresh mapping of its own: inside the test process malloc may hand out reused heap memory, already
    /// backed by small pages, where the daemon (mmap threshold fixed at 1 MiB) always gets a fresh mapping.
    @Test(.enabled(if: available, "transparent huge pages are off on this kernel"))
    func anAdvisedFreshBufferIsBackedByHugePagesOnceWritten() throws {
        let size = 16 << 20
        let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        let base = try #require(mapping == MAP_FAILED ? nil : mapping)
        defer { munmap(base, size) }
        // As the listing does: the buffer's first bytes are not on a 2 MiB boundary.
        let start = base + 48
        HugePages.advise(start, byteCount: size - 48, minimum: 4 << 20)
        start.initializeMemory(as: UInt8.self, repeating: 7, count: size - 48)
        // The middle of the buffer: the advice splits the mapping, and only its 2 MiB-aligned interior has it.
        let middle = UInt(bitPattern: start) + UInt(size / 2)
        let hugeKilobytes = try #require(Self.anonHugeKilobytes(ofMappingHolding: middle))
        // 16 MiB written: all of the interior (12 MiB at least) in huge pages.
        #expect(hugeKilobytes >= 12 * 1024)
    }

    @Test func aBufferBelowTheMinimumIsNotAdvised() throws {
        let size = 8 << 20
        let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        let base = try #require(mapping == MAP_FAILED ? nil : mapping)
        defer { munmap(base, size) }
        HugePages.advise(base, byteCount: size, minimum: 16 << 20)
        base.initializeMemory(as: UInt8.self, repeating: 7, count: size)
        let flags = try #require(Self.field("VmFlags:", ofMappingHolding: UInt(bitPattern: base) + UInt(size / 2)))
        #expect(!flags.split(separator: " ").contains("hg"))  // `hg`: advised MADV_HUGEPAGE
    }

    /// `AnonHugePages` (kB) of the mapping in /proc/self/smaps that holds `address`.
    private static func anonHugeKilobytes(ofMappingHolding address: UInt) -> Int? {
        field("AnonHugePages:", ofMappingHolding: address).flatMap { Int($0.split(separator: " ").first ?? "") }
    }

    /// The rest of the line that starts with `name` in the mapping of /proc/self/smaps that holds `address`.
    private static func field(_ name: String, ofMappingHolding address: UInt) -> String? {
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
            if inside, fields.first.map(String.init) == name { return fields.dropFirst().joined(separator: " ") }
        }
        return nil
    }
}
