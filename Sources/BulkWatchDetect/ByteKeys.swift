import BulkWatchSupport

/// `bulkId`s as UTF-8 bytes: hashing, equality and order that do not depend on Unicode
/// normalisation and cost a few nanoseconds for a 36-byte id.
package enum ByteKeys {
    /// Calls `body` with `text`'s UTF-8 bytes: in place for a native string, from a contiguous copy otherwise.
    @inline(__always)
    package static func withBytes<R>(_ text: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let result = text.utf8.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        var copy = text
        copy.makeContiguousUTF8()
        return copy.utf8.withContiguousStorageIfAvailable { body(UnsafeRawBufferPointer($0)) }!
    }

    package static func hash(_ text: String) -> UInt64 { withBytes(text) { hash($0) } }

    /// A fast 64-bit mix of the bytes (not keyed: ids come from the configured upstream).
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(bytes.count)
        var offset = 0
        let count = bytes.count
        while offset + 8 <= count {
            let word = bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            h = (h ^ word) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 29
            offset += 8
        }
        if offset < count {
            var word: UInt64 = 0
            var shift: UInt64 = 0
            while offset < count {
                word |= UInt64(bytes[offset]) << shift
                shift += 8
                offset += 1
            }
            h = (h ^ word) &* 0x94D0_49BB_1331_11EB
        }
        h ^= h >> 31
        h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 32
        return h
    }

    static func equal(_ lhs: String, _ rhs: String) -> Bool {
        guard lhs.utf8.count == rhs.utf8.count else { return false }
        return withBytes(lhs) { left in withBytes(rhs) { right in equal(left, right) } }
    }

    /// Whether the first `right.count` bytes of `left` are `right` (callers check lengths).
    @inline(__always)
    static func equal(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
        let count = right.count
        guard left.count >= count else { return false }
        var offset = 0
        while offset + 8 <= count {
            if left.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                != right.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            {
                return false
            }
            offset += 8
        }
        while offset < count {
            if left[offset] != right[offset] { return false }
            offset += 1
        }
        return true
    }

    /// -1, 0 or 1 by lexicographic UTF-8 byte order.
    static func compare(_ lhs: String, _ rhs: String) -> Int {
        withBytes(lhs) { left in
            withBytes(rhs) { right in
                let shared = min(left.count, right.count)
                for offset in 0..<shared where left[offset] != right[offset] {
                    return left[offset] < right[offset] ? -1 : 1
                }
                return left.count < right.count ? -1 : (left.count > right.count ? 1 : 0)
            }
        }
    }

    static func less(_ lhs: String, _ rhs: String) -> Bool { compare(lhs, rhs) < 0 }

    /// The first 8 UTF-8 bytes of `text` as a big-endian number, zero-padded: of two texts whose prefixes differ,
    /// the one with the smaller prefix comes first in ``less(_:_:)``'s order (equal prefixes decide nothing).
    static func orderPrefix(_ text: String) -> UInt64 {
        withBytes(text) { bytes in
            var prefix: UInt64 = 0
            for offset in 0..<8 {
                prefix = prefix << 8 | UInt64(offset < bytes.count ? bytes[offset] : 0)
            }
            return prefix
        }
    }
}
