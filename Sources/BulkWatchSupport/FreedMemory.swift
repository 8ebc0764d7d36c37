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
    package static func release() {
        #if canImport(Glibc)
            if let symbol = dlsym(nil, "malloc_trim") {
                typealias MallocTrim = @convention(c) (Int) -> Int32
                _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
            }
        #endif
    }
}
