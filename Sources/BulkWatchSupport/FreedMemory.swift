#if canImport(Glibc)
    import Glibc
#endif

/// Gives the heap pages that freed blocks leave behind back to the kernel.
///
/// glibc keeps freed blocks in its arenas for reuse, and after a large poll (the events, strings and arrays
/// of a 1M-item listing) tens of MB of them stay resident between polls, on top of what the next poll
/// allocates anew. `malloc_trim` releases them; it costs well under a millisecond at 1k items and a few
/// at 1M, once per poll. It is looked up at run time because Swift's Glibc module does not export
/// `<malloc.h>`; elsewhere this does nothing.
package enum FreedMemory {
    /// Caps glibc's malloc arenas at `count` unless the environment already chose (`MALLOC_ARENA_MAX`).
    ///
    /// glibc gives each thread that allocates under contention an arena of its own, up to eight per core, and
    /// each keeps ~0.5–1.5 MB of touched heap resident for good. bulkwatch runs a handful of threads of which
    /// two at most run at once on a small machine; two arenas held an idle daemon ~0.7–1 MB smaller
    /// (BENCHMARKS.md, idle footprint), which the systemd and Docker examples used to set by hand. Call it
    /// first thing in `main`, before other threads allocate.
    package static func limitArenas(to count: Int32) {
        mallopt(-8, count, unlessSet: "MALLOC_ARENA_MAX")  // M_ARENA_MAX, <malloc.h>
    }

    /// Fixes glibc's mmap threshold at `bytes` unless the environment already chose (`MALLOC_MMAP_THRESHOLD_`).
    ///
    /// By default glibc raises the threshold to the size of each mmapped block it frees (up to 32 MiB), after
    /// which blocks of that size come from the heap, and the holes they leave there stay resident. In a daemon
    /// that frees a few blocks of 2–12 MB every poll (the listing's entries, the snapshot's arenas rewritten
    /// between polls) the steady 100k poll's peak over 40 polls was 86.4 MB with the default and 78.1 MB with
    /// the threshold fixed at 1 MiB (`bulkwatch-bench poll --sizes 100000 --runs 40`). Fixing it also fixes the
    /// trim threshold (glibc stops adjusting both). Call it first thing in `main`.
    package static func fixMmapThreshold(at bytes: Int32) {
        mallopt(-3, bytes, unlessSet: "MALLOC_MMAP_THRESHOLD_")  // M_MMAP_THRESHOLD, <malloc.h>
    }

    /// glibc's `mallopt(option, value)`, unless `variable` is set in the environment (the operator chose).
    private static func mallopt(_ option: Int32, _ value: Int32, unlessSet variable: String) {
        #if canImport(Glibc)
            guard getenv(variable) == nil, let symbol = dlsym(nil, "mallopt") else { return }
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            _ = unsafeBitCast(symbol, to: Mallopt.self)(option, value)
        #endif
    }

    package static func release() {
        #if canImport(Glibc)
            if let symbol = dlsym(nil, "malloc_trim") {
                typealias MallocTrim = @convention(c) (Int) -> Int32
                _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
            }
        #endif
    }
}
