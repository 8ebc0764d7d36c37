#if canImport(Glibc)
    import Glibc
#endif

/// Asks the kernel to back a large, freshly reserved buffer with transparent huge pages.
///
/// A poll's body is one buffer of up to a few hundred MB, written once, front to back, as the bytes arrive;
/// the transport keeps the last one for the next poll, but the first, and any that outgrows it, is new. With 4 KiB pages that
/// is one page fault per 4 KiB: ~30,000 faults, each zeroing its page, for a 120 MB body, a sizeable part
/// of the transfer's time. Where transparent huge pages are enabled for regions that ask for them
/// (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`, the common default, or `always`), one fault
/// maps 2 MiB instead. Only the 2 MiB-aligned interior of the buffer is advised, so nothing outside it
/// changes; the resident size grows by at most one huge page past the bytes written. Where the kernel has
/// no such pages (or this is not Linux) the call does nothing and costs one system call.
package enum HugePages {
    /// Buffers smaller than this are left alone: a few huge pages would gain little.
    package static let minimumBytes = 8 << 20

    private static let hugePageBytes = 2 << 20

    /// Advises `byteCount` bytes from `base` (a buffer not yet written, or only partly) for huge pages, when they
    /// are at least `minimum`.
    package static func advise(_ base: UnsafeMutableRawPointer, byteCount: Int, minimum: Int = minimumBytes) {
        #if os(Linux)
            guard byteCount >= minimum else { return }
            let start = (UInt(bitPattern: base) + UInt(hugePageBytes - 1)) & ~UInt(hugePageBytes - 1)
            let end = (UInt(bitPattern: base) + UInt(byteCount)) & ~UInt(hugePageBytes - 1)
            guard end > start, let aligned = UnsafeMutableRawPointer(bitPattern: start) else { return }
            _ = madvise(aligned, Int(end - start), 14)  // MADV_HUGEPAGE, <sys/mman.h>
        #endif
    }

    /// Advises the spare capacity of `array` (reserved but not yet written) for huge pages, when it is at least
    /// `minimum` bytes.
    package static func adviseCapacity<Element: BitwiseCopyable>(
        of array: inout [Element], minimum: Int = minimumBytes
    ) {
        let stride = MemoryLayout<Element>.stride
        let spare = (array.capacity - array.count) * stride
        guard spare >= minimum else { return }
        let written = array.count
        array.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            advise(UnsafeMutableRawPointer(base + written), byteCount: spare, minimum: minimum)
        }
    }
}
