#if canImport(Glibc)
    import Glibc
#endif

/// Gives back to the kernel the pages of code and read-only data that start-up touched and the poll loop
/// never runs again.
///
/// An idle `bulkwatch run` held ~48 MB resident, ~41 MB of it file-backed pages of the binary and its
/// libraries, but touched only ~10 MB in any ten seconds of idle polling (`/proc/PID/clear_refs`, then the
/// `Referenced:` lines of `smaps`). The rest is argument parsing, configuration, migrations, the first
/// poll's encoder and everything the kernel's fault-around mapped beside them: resident because it ran
/// once, not because it is used. `madvise(MADV_PAGEOUT)` on the process's read-only file mappings
/// reclaims those pages now instead of whenever memory runs short; whatever the loop still runs comes
/// straight back on its next touch (a page fault, read from the page cache or the file).
///
/// Only non-writable file mappings are advised, and `MADV_PAGEOUT` never discards data: a page that another
/// process also maps, or that was copied on write (relocated read-only data), is left where it is. On a
/// kernel without `MADV_PAGEOUT` (before Linux 5.4) the call fails with `EINVAL` and nothing changes.
package enum StartupPages {
    /// What a release did to the process's file-backed resident memory (`RssFile` of `/proc/self/status`).
    package struct Release: Sendable, Equatable {
        /// Mappings advised.
        package var mappings: Int
        /// `RssFile` before and after, in bytes; nil where `/proc` could not be read.
        package var residentBefore: Int?
        package var residentAfter: Int?
    }

    /// `MADV_PAGEOUT` (Linux 5.4, `<asm-generic/mman-common.h>`); Swift's Glibc module may predate it.
    private static let pageOut: Int32 = 21

    /// Advises every read-only file mapping of this process to be paged out. Costs one read of
    /// `/proc/self/maps` and one `madvise` per mapping (~200 for the release binary): well under a millisecond
    /// of CPU; the pages the caller still uses are faulted back afterwards.
    @discardableResult
    package static func release() -> Release {
        #if os(Linux)
            let before = residentFileBytes()
            var advised = 0
            for range in readOnlyFileMappings() {
                guard let start = UnsafeMutableRawPointer(bitPattern: range.start) else { continue }
                if madvise(start, Int(range.end - range.start), pageOut) == 0 { advised += 1 }
            }
            return Release(mappings: advised, residentBefore: before, residentAfter: residentFileBytes())
        #else
            return Release(mappings: 0, residentBefore: nil, residentAfter: nil)
        #endif
    }

    /// The address ranges of `/proc/self/maps` that map a file (an inode) without write permission.
    package static func readOnlyFileMappings() -> [(start: UInt, end: UInt)] {
        guard let maps = readProcFile("/proc/self/maps") else { return [] }
        var ranges: [(start: UInt, end: UInt)] = []
        // "start-end perms offset dev inode path": fields split on spaces; the path may be absent.
        for line in maps.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count >= 5 else { continue }
            let perms = fields[1]
            guard perms.count >= 2, perms[perms.startIndex] == UInt8(ascii: "r"),
                perms[perms.startIndex + 1] != UInt8(ascii: "w"),
                let inode = UInt(ascii: fields[4], radix: 10), inode != 0
            else { continue }
            let bounds = fields[0].split(separator: UInt8(ascii: "-"))
            guard bounds.count == 2, let start = UInt(ascii: bounds[0], radix: 16),
                let end = UInt(ascii: bounds[1], radix: 16), end > start
            else { continue }
            ranges.append((start, end))
        }
        return ranges
    }

    /// `RssFile` of `/proc/self/status` in bytes.
    package static func residentFileBytes() -> Int? {
        guard let status = readProcFile("/proc/self/status") else { return nil }
        for line in status.split(separator: UInt8(ascii: "\n")) where line.starts(with: "RssFile:".utf8) {
            let digits = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true).dropFirst().first
            return digits.flatMap { UInt(ascii: $0, radix: 10) }.map { Int($0) * 1024 }
        }
        return nil
    }

    /// A whole `/proc` file. Their sizes are not known up front (`stat` says 0), so it reads until EOF.
    private static func readProcFile(_ path: String) -> [UInt8]? {
        #if canImport(Glibc)
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return nil }
            defer { close(descriptor) }
            var contents: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 16_384)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { return count == 0 ? contents : nil }
                contents.append(contentsOf: chunk[..<count])
            }
        #else
            return nil
        #endif
    }
}

extension UInt {
    /// Parses ASCII digits without building a `String`.
    fileprivate init?(ascii digits: ArraySlice<UInt8>, radix: UInt) {
        guard !digits.isEmpty else { return nil }
        var value: UInt = 0
        for byte in digits {
            let digit: UInt
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt(byte - UInt8(ascii: "a")) + 10
            default: return nil
            }
            guard digit < radix else { return nil }
            let (shifted, overflow) = value.multipliedReportingOverflow(by: radix)
            guard !overflow else { return nil }
            value = shifted + digit
        }
        self = value
    }
}
