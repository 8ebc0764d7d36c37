#if canImport(Glibc)
    import Glibc
#endif

/// Unmaps the pages of code and read-only data that start-up touched and the poll loop never runs again.
///
/// An idle `bulkwatch run` held ~48 MB resident, ~41 MB of it file-backed pages of the binary and its
/// libraries, but touched only ~8–10 MB in any ten seconds of idle polling (`/proc/PID/clear_refs`, then the
/// `Referenced:` lines of `smaps`). The rest is argument parsing, configuration, migrations, the first
/// poll's encoder and what the kernel's fault-around mapped beside them: resident because it ran once,
/// not because it is used. This drops those pages from the process's page tables; whatever the loop still
/// runs comes back on its next touch as a minor fault from the page cache, where the pages stay as
/// ordinary clean cache that the kernel reclaims first when memory runs short.
///
/// `MADV_DONTNEED` discards a private mapping's copied-on-write pages, so it is given only to mappings
/// that can hold none: private, not writable, and with `Anonymous: 0 kB` in `smaps` (code, read-only
/// data; never relocated read-only data, `.data`, SQLite's shared memory or anything writable). Their
/// pages are then the file's own, and unmapping them loses nothing. `MADV_PAGEOUT` would reclaim the
/// pages from the cache too, but the kernel honours it for file pages only when the process could open
/// the file for writing: as a daemon's unprivileged user, for a binary owned by root, it does nothing.
package enum StartupPages {
    /// What a release did to the process's file-backed resident memory (`RssFile` of `/proc/self/status`).
    package struct Release: Sendable, Equatable {
        /// Mappings unmapped.
        package var mappings: Int
        /// `RssFile` before and after, in bytes; nil where `/proc` could not be read.
        package var residentBefore: Int?
        package var residentAfter: Int?
    }

    /// Unmaps every mapping ``codeMappings()`` selects (only those inside `bounds` when given: tests release
    /// their own mappings without slowing the test process down). Costs one read of `/proc/self/smaps` (~200
    /// mappings for the release binary, a few milliseconds) and one `madvise` per mapping; the pages the caller
    /// still uses are faulted back afterwards.
    @discardableResult
    package static func release(within bounds: Range<UInt>? = nil) -> Release {
        #if os(Linux)
            let before = residentFileBytes()
            var advised = 0
            for range in codeMappings()
            where bounds.map({ $0.lowerBound <= range.start && range.end <= $0.upperBound }) ?? true {
                guard let start = UnsafeMutableRawPointer(bitPattern: range.start) else { continue }
                if madvise(start, Int(range.end - range.start), MADV_DONTNEED) == 0 { advised += 1 }
            }
            return Release(mappings: advised, residentBefore: before, residentAfter: residentFileBytes())
        #else
            return Release(mappings: 0, residentBefore: nil, residentAfter: nil)
        #endif
    }

    /// The address ranges of `/proc/self/smaps` that map a file (an inode) privately, without write permission,
    /// and hold no anonymous (copied-on-write) page: the only mappings whose pages can be dropped and read
    /// back from the file unchanged.
    package static func codeMappings() -> [(start: UInt, end: UInt)] {
        guard let smaps = readProcFile("/proc/self/smaps") else { return [] }
        var ranges: [(start: UInt, end: UInt)] = []
        var candidate: (start: UInt, end: UInt)?
        for line in smaps.split(separator: UInt8(ascii: "\n")) {
            if line.starts(with: "Anonymous:".utf8) {
                let kilobytes = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
                    .dropFirst().first.flatMap { UInt(ascii: $0, radix: 10) }
                if let range = candidate, kilobytes == 0 { ranges.append(range) }
                candidate = nil
                continue
            }
            // A mapping's header: "start-end perms offset dev inode path"; other lines are "Key: value".
            let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count >= 5, let dash = fields[0].firstIndex(of: UInt8(ascii: "-")),
                let start = UInt(ascii: fields[0][..<dash], radix: 16),
                let end = UInt(ascii: fields[0][(dash + 1)...], radix: 16)
            else { continue }
            candidate = nil
            let perms = Array(fields[1])
            guard perms.count == 4, perms[1] != UInt8(ascii: "w"), perms[3] == UInt8(ascii: "p"),
                let inode = UInt(ascii: fields[4], radix: 10), inode != 0, end > start
            else { continue }
            candidate = (start, end)
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
