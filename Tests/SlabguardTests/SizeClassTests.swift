// Size-class allocator tests (kmem_alloc on the default heap): the class table,
// every class and a sweep of sizes written end to end with neighbours checked,
// huge sizes, every alignment up to 4 MiB, realloc, zalloc on reused memory, and
// out-of-memory / overflow failures.  Only buffers the test allocates itself are
// checked, so other tests using the heap at the same time cannot disturb them.

import Glibc
import Testing
import CSlabguardShim
@testable import SlabguardCore
import Slabguard

/// Allocates `count` buffers of `size`, fills each whole usable area with its own
/// byte, then checks that every buffer still holds its own pattern (no overlap, no
/// write reaching a neighbour) and frees them.
private func fillAndCheck(size: Int, count: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    var buffers: [(UnsafeMutableRawPointer, Int)] = []
    for i in 0..<count {
        guard let p = alloc(size) else {
            Issue.record("alloc(\(size)) failed", sourceLocation: sourceLocation)
            return
        }
        let usable = usableSize(p)
        #expect(usable >= size, "usableSize \(usable) < \(size)", sourceLocation: sourceLocation)
        if size > 128 && size <= SizeClasses.maxSize {
            #expect((usable - size) * 8 <= size, "class waste above 12.5% for \(size)", sourceLocation: sourceLocation)
        }
        if size >= 16 { #expect(Int(bitPattern: p) % 16 == 0, "alloc(\(size)) not 16-aligned", sourceLocation: sourceLocation) }
        stamp(p, usable, seed: UInt8(truncatingIfNeeded: i &* 37 &+ size))
        buffers.append((p, usable))
    }
    for (i, (p, usable)) in buffers.enumerated() {
        #expect(isStamped(p, usable, seed: UInt8(truncatingIfNeeded: i &* 37 &+ size)),
                "buffer \(i) of size \(size) was overwritten", sourceLocation: sourceLocation)
    }
    for (p, _) in buffers { free(p, size: size) }
}

@Suite(.timeLimit(.minutes(5))) struct SizeClassTests {
    @Test func classTable() {
        #expect(SizeClasses.count == 73)
        #expect(SizeClasses.size(ofClass: 0) == 8)
        #expect(SizeClasses.size(ofClass: SizeClasses.count - 1) == SizeClasses.maxSize)
        for c in 0..<SizeClasses.count {
            let size = SizeClasses.size(ofClass: c)
            #expect(SizeClasses.index(size) == c)
            if c > 0 {
                #expect(size > SizeClasses.size(ofClass: c - 1))
                #expect(size % 16 == 0, "class \(c) (\(size) B) is a multiple of 16")
                #expect(SizeClasses.index(SizeClasses.size(ofClass: c - 1) + 1) == c)
            }
            let a = SizeClasses.alignment(ofClass: c)
            #expect(isPowerOfTwo(a) && size % a == 0 && a <= 4096)
        }
        // Every request maps to the smallest class that fits, wasting ≤ 1/8 above 128 B;
        // the fast path's table (the shim's constant) agrees with the formula everywhere.
        #expect(Int(SG_SMALL_MAX) == SizeClasses.maxSize)
        for size in 0...SizeClasses.maxSize {
            let c = SizeClasses.index(size)
            #expect(Int(sg_size_class(size)) == c, "the table's class of \(size)")
            let classSize = SizeClasses.size(ofClass: c)
            #expect(classSize >= size)
            if c > 0 { #expect(SizeClasses.size(ofClass: c - 1) < size) }
            if size > 128 { #expect((classSize - size) * 8 <= size, "\(size) → \(classSize)") }
        }
    }

    /// Every class through the heap: usable size is exactly the class size, the buffer
    /// comes from the class's cache, and buffers side by side keep their patterns.
    @Test func everySizeClass() throws {
        for c in 0..<SizeClasses.count {
            let size = SizeClasses.size(ofClass: c)
            let p = try #require(alloc(size))
            #expect(usableSize(p) == size)
            let slab = try #require(CacheOps.owner(of: p))
            #expect(slab.objectCache == SizeClassHeap.defaultHeap.pointee.caches![c])
            #expect(Int(bitPattern: p) % SizeClasses.alignment(ofClass: c) == 0)
            free(p, size: size)
            fillAndCheck(size: size, count: 8)
        }
    }

    @Test(arguments: 0..<4)
    func sizeSweep(part: Int) {
        // Every size up to 1 KiB, then steps of 7 bytes up to 32 KiB, and each class boundary ± 1.
        var sizes = Array(1...1024) + Array(stride(from: 1025, through: SizeClasses.maxSize, by: 7))
        for c in 0..<SizeClasses.count {
            let s = SizeClasses.size(ofClass: c)
            sizes += [s - 1, s, s + 1].filter { $0 >= 1 }
        }
        for (i, size) in sizes.enumerated() where i % 4 == part {
            fillAndCheck(size: size, count: 3)
        }
    }

    @Test(arguments: [SizeClasses.maxSize + 1, 40_000, 65_536, 100_000, 1 << 20, (1 << 20) + 1, 10 << 20, 64 << 20])
    func hugeSizes(size: Int) throws {
        let p = try #require(alloc(size))
        #expect(Int(bitPattern: p) % 4096 == 0, "large buffers start on a page")
        #expect(CacheOps.owner(of: p) == nil, "not a slab buffer")
        #expect(usableSize(p) == (size + 4095) / 4096 * 4096)
        free(p, size: size)
        fillAndCheck(size: size, count: 3)
    }

    /// Every power-of-two alignment, below and above the page size, for small, class-sized
    /// and large requests: aligned, writable (neighbours intact) and freeable.
    @Test(arguments: 0...22)
    func alignedAllocations(log: Int) throws {
        let alignment = 1 << log
        var live: [(UnsafeMutableRawPointer, Int)] = []
        for size in [0, 1, 8, 24, 100, 1000, 4096, 5000, 40_000] {
            for _ in 0..<3 {
                let p = try #require(alloc(size, alignment: alignment), "alloc(\(size), alignment: \(alignment))")
                #expect(Int(bitPattern: p) % alignment == 0, "alloc(\(size), alignment: \(alignment)) = \(p)")
                #expect(usableSize(p) >= size)
                stamp(p, size, seed: UInt8(truncatingIfNeeded: live.count &+ log))
                live.append((p, size))
            }
        }
        for (i, (p, size)) in live.enumerated() {
            #expect(isStamped(p, size, seed: UInt8(truncatingIfNeeded: i &+ log)), "aligned buffer \(i) overwritten")
        }
        for (p, size) in live { free(p, size: size) }
    }

    @Test func reallocPreservesContentsAcrossClassesAndLarge() throws {
        // Grow through classes, into large spans, and back down.
        let steps = [20, 100, 1000, 5000, SizeClasses.maxSize, 40_000, 1 << 20, 3 << 20, 50_000, 3000, 200, 10, 1]
        var p = try #require(realloc(nil, oldSize: 0, newSize: 7))
        stamp(p, 7, seed: 0x42)
        var size = 7
        for (i, newSize) in steps.enumerated() {
            let q = try #require(realloc(p, oldSize: size, newSize: newSize))
            #expect(usableSize(q) >= newSize)
            #expect(isStamped(q, min(size, newSize), seed: UInt8(0x42 + i)), "realloc \(size) → \(newSize) lost data")
            stamp(q, newSize, seed: UInt8(0x43 + i))
            p = q
            size = newSize
        }
        free(p, size: size)
    }

    @Test func reallocStaysInPlaceWhenTheClassAllows() throws {
        let p = try #require(alloc(100))           // class 112
        #expect(realloc(p, oldSize: 100, newSize: 110) == p)
        #expect(realloc(p, oldSize: 110, newSize: 97) == p)
        let moved = try #require(realloc(p, oldSize: 97, newSize: 113))
        #expect(moved != p)
        free(moved, size: 113)
        // A big shrink moves to a smaller class (at most about half of a buffer is kept idle).
        for (from, to) in [(SizeClasses.maxSize, 4), (SizeClasses.maxSize, 100), (4096, 8), (1024, 300), (300, 100)] {
            let big = try #require(alloc(from))
            stamp(big, from, seed: 0x31)
            let small = try #require(realloc(big, oldSize: from, newSize: to))
            #expect(usableSize(small) <= max(2 * to, 16), "realloc \(from) → \(to) kept \(usableSize(small)) bytes")
            #expect(isStamped(small, to, seed: 0x31))
            free(small, size: to)
        }
        // A large span shrinks in place by trimming its tail.
        let big = try #require(alloc(100 * 4096))
        stamp(big, 100 * 4096, seed: 9)
        let trimmed = try #require(realloc(big, oldSize: 100 * 4096, newSize: 60 * 4096 + 1))
        #expect(trimmed == big)
        #expect(usableSize(trimmed) == 61 * 4096)
        #expect(isStamped(trimmed, 60 * 4096 + 1, seed: 9))
        free(trimmed, size: 60 * 4096 + 1)
    }

    /// A large span grows in place into the free pages after it.  To have free pages
    /// right after a span, shrink it first (the tail is trimmed off in place), then grow
    /// it back.  Other tests share the arena and may take those pages in between, so a
    /// few attempts must include one where the span grew in place.
    @Test func largeReallocGrowsInPlace() throws {
        var grewInPlace = 0
        for attempt in 0..<20 {
            let a = try #require(alloc(128 * 4096))
            stamp(a, 128 * 4096, seed: UInt8(attempt))
            let shrunk = try #require(realloc(a, oldSize: 128 * 4096, newSize: 64 * 4096))
            #expect(shrunk == a, "halving a large span trims it in place")
            let c = try #require(realloc(shrunk, oldSize: 64 * 4096, newSize: 100 * 4096))
            #expect(isStamped(c, 64 * 4096, seed: UInt8(attempt)))
            if c == a {
                grewInPlace += 1
                #expect(usableSize(c) == 100 * 4096)
                memset(c, 0x6B, 100 * 4096)        // the grown part is writable
            }
            free(c, size: 100 * 4096)
            if grewInPlace >= 3 { break }
        }
        #expect(grewInPlace > 0)
    }

    @Test(arguments: [1, 16, 100, 1000, 4000, SizeClasses.maxSize, 40_000, 1 << 20])
    func zallocZeroesReusedMemory(size: Int) throws {
        var reused = 0
        for _ in 0..<20 {
            let p = try #require(alloc(size))
            memset(p, 0xFF, usableSize(p))
            free(p, size: size)
            let q = try #require(zalloc(size))
            if q == p { reused += 1 }
            #expect(isStamped(q, size, seed: 0), "zalloc(\(size)) returned dirty memory")
            free(q, size: size)
        }
        if size <= SizeClasses.maxSize { #expect(reused > 0, "the magazine hands the freed buffer back") }
        let c = try #require(Allocator.calloc(3, size))
        #expect(isStamped(c, 3 * size, seed: 0))
        free(c, size: 3 * size)
    }

    @Test func outOfMemoryAndOverflowReturnNil() throws {
        func expectENOMEM(_ p: UnsafeMutableRawPointer?, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(p == nil, "\(what) returned memory", sourceLocation: sourceLocation)
            #expect(errno == ENOMEM, "\(what): errno \(errno)", sourceLocation: sourceLocation)
            errno = 0
        }
        errno = 0
        expectENOMEM(alloc(Int.max), "alloc(Int.max)")
        expectENOMEM(alloc(1 << 50), "alloc(1 << 50)")
        expectENOMEM(alloc(-1), "alloc(-1)")
        expectENOMEM(alloc(Int.min), "alloc(Int.min)")
        expectENOMEM(zalloc(Int.max), "zalloc(Int.max)")
        expectENOMEM(zalloc(1 << 50), "zalloc(1 << 50)")
        expectENOMEM(Allocator.calloc(Int.max, 2), "calloc(Int.max, 2)")
        expectENOMEM(Allocator.calloc(2, Int.max / 2 + 1), "calloc(2, Int.max/2 + 1)")
        expectENOMEM(Allocator.calloc(1 << 32, 1 << 32), "calloc(2^32, 2^32)")
        expectENOMEM(Allocator.calloc(-1, 8), "calloc(-1, 8)")
        expectENOMEM(alloc(Int.max - 100, alignment: 64), "alloc(Int.max - 100, alignment: 64)")
        expectENOMEM(alloc(16, alignment: 1 << 50), "alloc(16, alignment: 2^50)")
        #expect(alloc(16, alignment: 3) == nil, "an alignment that is not a power of two")
        #expect(alloc(16, alignment: 0) == nil)
        #expect(alloc(16, alignment: -16) == nil)
        // A failed realloc leaves the old buffer alone.
        let p = try #require(alloc(300))
        stamp(p, 300, seed: 0x5C)
        expectENOMEM(realloc(p, oldSize: 300, newSize: Int.max), "realloc(p, Int.max)")
        expectENOMEM(realloc(p, oldSize: 300, newSize: 1 << 50), "realloc(p, 1 << 50)")
        #expect(isStamped(p, 300, seed: 0x5C))
        free(p, size: 300)
        // The heap still works afterwards.
        fillAndCheck(size: 1 << 16, count: 2)
    }

    @Test func zeroSizedAllocationsAreUniqueAndFreeable() throws {
        var seen: [UnsafeMutableRawPointer] = []
        for _ in 0..<100 { seen.append(try #require(alloc(0))) }
        #expect(Set(seen).count == 100)
        for p in seen { #expect(usableSize(p) >= 1); free(p, size: 0) }
        let z = try #require(zalloc(0))
        free(z, size: 0)
    }

    @Test func usableSizeOfForeignPointersIsZero() throws {
        var local = 0
        withUnsafeMutablePointer(to: &local) { #expect(usableSize(UnsafeRawPointer($0)) == 0) }
        let system = Glibc.malloc(64)
        let foreign = try #require(system)
        #expect(usableSize(foreign) == 0)
        Glibc.free(foreign)
    }
}
