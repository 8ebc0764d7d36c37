import Foundation
import Synchronization

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
///
/// Once per process (``releaseOnce()``): the pages are the process's, not a target's, and every later
/// release would only unmap what the running loops fault straight back in.
package enum StartupPages {
    /// What a release did to the process's file-backed resident memory (`RssFile` of `/proc/self/status`).
    package struct Release: Sendable, Equatable {
        /// Mappings unmapped.
        package var mappings: Int
        /// `RssFile` before and after, in bytes; nil where `/proc` could not be read.
        package var residentBefore: Int?
        package var residentAfter: Int?
    }

    private static let released = Mutex(false)

    /// ``release(within:)`` of the whole process the first time it is called, nil every later time. The watchers
    /// call it after each successful poll, so the first poll of any target ends start-up.
    package static func releaseOnce() -> Release? {
        let first = released.withLock { released in
            defer { released = true }
            return !released
        }
        return first ? release() : nil
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
            where bounds.map({ $0.contains(range.lowerBound) && range.upperBound <= $0.upperBound }) ?? true {
                guard let start = UnsafeMutableRawPointer(bitPattern: range.lowerBound) else { continue }
                if madvise(start, Int(range.count), MADV_DONTNEED) == 0 { advised += 1 }
            }
            if bounds == nil { dropCachedPages(ofFile: "/proc/self/exe") }
            return Release(mappings: advised, residentBefore: before, residentAfter: residentFileBytes())
        #else
            return Release(mappings: 0, residentBefore: nil, residentAfter: nil)
        #endif
    }

    /// Asks the kernel to drop the file's clean pages from the page cache, except those a process maps
    /// (`POSIX_FADV_DONTNEED`); false when the file cannot be opened or the advice is refused.
    ///
    /// Why for the executable, after its pages were unmapped: how many pages a later touch maps back depends on
    /// how the page cache holds the file. A binary just installed (copied, linked) is cached as the writes left
    /// it, in large folios, and a fault maps a whole folio: the idle daemon's file-backed resident memory was
    /// ~19 MB with a freshly copied binary against ~16.5 MB with the same binary read back from disk
    /// (`bulkwatch-bench compare --sizes 1000 --idle-seconds 10`: 26.3 against 23.3 MB in all, the goal 25).
    /// Dropped, the pages the loop still runs are read back from disk once (a few MB) in small pieces.
    @discardableResult
    package static func dropCachedPages(ofFile path: String) -> Bool {
        #if os(Linux)
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return false }
            defer { close(descriptor) }
            return posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED) == 0
        #else
            return false
        #endif
    }

    /// The address ranges of `/proc/self/smaps` that map a file (an inode) privately, without write permission,
    /// and hold no anonymous (copied-on-write) page: the only mappings whose pages can be dropped and read
    /// back from the file unchanged.
    package static func codeMappings() -> [Range<UInt>] {
        guard let smaps = procFile("smaps") else { return [] }
        var ranges: [Range<UInt>] = []
        var candidate: Range<UInt>?
        for line in smaps.split(separator: "\n") {
            // A mapping's header is "start-end perms offset dev inode path"; its details follow as "Key: value kB".
            let fields = line.split(separator: " ", maxSplits: 5)
            if fields.first == "Anonymous:" {
                if let range = candidate, fields.count > 1, fields[1] == "0" { ranges.append(range) }
                candidate = nil
            } else if fields.count >= 5, case let bounds = fields[0].split(separator: "-"), bounds.count == 2,
                let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), start < end
            {
                let perms = Array(fields[1])
                let privateReadOnly = perms.count == 4 && perms[1] != "w" && perms[3] == "p"
                candidate = privateReadOnly && fields[4] != "0" ? start..<end : nil
            }
        }
        return ranges
    }

    /// `RssFile` of `/proc/self/status` in bytes.
    package static func residentFileBytes() -> Int? {
        guard let status = procFile("status") else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("RssFile:") }
        return line.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }.map { $0 * 1024 }
    }

    /// A whole `/proc/self` file, read to its end: `/proc` files say their size is 0, and a reader that trusts
    /// the size (as `String(contentsOfFile:)` may) gets a truncated `smaps`.
    private static func procFile(_ name: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/" + name) else { return nil }
        defer { try? handle.close() }
        return (try? handle.readToEnd()).map { String(decoding: $0, as: UTF8.self) }
    }
}
