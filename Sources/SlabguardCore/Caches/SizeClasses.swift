// Size classes — kmem_alloc's table of caches, computed rather than looked up.
//
// Classes: 8 bytes; 16…128 in steps of 16; then eight classes per power of two
// up to 32 KiB (144, 160, …, 256, 288, …, 32768).  So above 128 bytes a request
// wastes at most 1/8 of its class, and every class above 8 bytes is a multiple
// of 16 (malloc's alignment).  73 classes; ids 0…72 are also the magazine slot
// ids of the default heap's caches.

enum SizeClasses {
    static let count = 73
    static let maxSize = 32768

    /// The class index for a request of `size` bytes (0 ≤ size ≤ maxSize).
    @inline(__always) static func index(_ size: Int) -> Int {
        if size <= 128 { return size <= 8 ? 0 : (size &+ 15) >> 4 }
        let s = size &- 1
        let k = 63 &- s.leadingZeroBitCount          // 2^k ≤ s < 2^(k+1), k ≥ 7
        return 1 &+ (k &- 7) &* 8 &+ (s >> (k &- 3))  // (s >> (k-3)) is in 8…15
    }

    /// The buffer size of class `index`.
    @inline(__always) static func size(ofClass index: Int) -> Int {
        if index == 0 { return 8 }
        if index <= 8 { return index << 4 }
        let j = index - 9
        let k = 7 + j / 8
        return (1 << k) + ((j % 8) + 1) << (k - 3)
    }

    /// The natural alignment of class `index`'s buffers in a fast cache: the largest
    /// power of two dividing the size, capped at a page.
    static func alignment(ofClass index: Int) -> Int {
        let size = size(ofClass: index)
        return min(1 << size.trailingZeroBitCount, pageSize)
    }
}
