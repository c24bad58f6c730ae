// Page arena tests.  Each test sets up its own private PageArena (a small
// reservation of its own), so every counter is exact no matter what the other
// tests, running in parallel on the process's heap, are doing.

import Glibc
import Testing
@testable import SlabguardCore
import Slabguard

/// A private arena of `bytes` of address space, torn down by `close()`.
final class TestArena {
    let arena: UnsafeMutablePointer<PageArena>

    init(bytes: Int = 1 << 30) {
        arena = .allocate(capacity: 1)
        arena.initialize(to: PageArena())
        let ok = arena.pointee.setUp(maxBytes: bytes, minBytes: bytes)
        precondition(ok, "cannot reserve a test arena")
    }

    func close() {
        arena.pointee.tearDown()
        arena.deinitialize(count: 1)
        arena.deallocate()
    }

    var statistics: ArenaStatistics { arena.pointee.statistics() }
    var base: UnsafeMutableRawPointer { arena.pointee.base! }

    func allocate(_ pages: Int, align: Int = 1) -> UnsafeMutableRawPointer? {
        var zeroed = false
        return arena.pointee.allocate(pages: pages, alignPages: align, zeroed: &zeroed)
    }

    func allocateReportingZeroed(_ pages: Int) -> (UnsafeMutableRawPointer?, Bool) {
        var zeroed = false
        let p = arena.pointee.allocate(pages: pages, zeroed: &zeroed)
        return (p, zeroed)
    }

    func free(_ p: UnsafeMutableRawPointer, _ pages: Int) { arena.pointee.free(p, pages: pages) }

    func grow(_ p: UnsafeMutableRawPointer, pages: Int, to newPages: Int) -> Bool {
        arena.pointee.grow(p, pages: pages, to: newPages)
    }

    /// The arena's invariants (boundary tags, bins, coalescing, counters).
    func expectConsistent(_ sourceLocation: SourceLocation = #_sourceLocation) {
        let problem = arena.pointee.verify()
        #expect(problem == nil, "\(problem.map { "\($0)" } ?? "")", sourceLocation: sourceLocation)
    }
}

private let page = 4096

@Suite(.timeLimit(.minutes(5))) struct ArenaTests {
    @Test func spansAreCarvedAdjacentAndCounted() throws {
        let t = TestArena()
        defer { t.close() }
        let (a, zeroedA) = t.allocateReportingZeroed(3)
        let b = try #require(t.allocate(5))
        let c = try #require(t.allocate(7))
        #expect(a == t.base)
        #expect(zeroedA, "fresh pages are known to be zero")
        #expect(b == t.base + 3 * page)
        #expect(c == t.base + 8 * page)
        var s = t.statistics
        #expect(s.carvedBytes == 15 * page)
        #expect(s.freeBytes == 0)
        #expect(s.spansInUse == 3)
        t.free(b, 5)
        s = t.statistics
        #expect(s.freeBytes == 5 * page)
        #expect(s.dirtyFreeBytes == 5 * page)
        #expect(s.spansInUse == 2)
        // A smaller request reuses the free span (first fit) before carving more.
        let (d, zeroedD) = t.allocateReportingZeroed(2)
        #expect(d == b)
        #expect(!zeroedD, "reused pages are dirty")
        #expect(t.statistics.carvedBytes == 15 * page)
        #expect(t.statistics.freeBytes == 3 * page)
        t.expectConsistent()
    }

    /// Frees A, B and C (adjacent) in every order: they must merge into one span of
    /// their total size, which a single allocation then gets back at A's address.
    @Test(arguments: [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    func freeSpansCoalesce(order: [Int]) throws {
        let t = TestArena()
        defer { t.close() }
        let sizes = [3, 4, 6]
        var spans: [UnsafeMutableRawPointer] = []
        for n in sizes { spans.append(try #require(t.allocate(n))) }
        let guardSpan = try #require(t.allocate(1))   // keeps the merged span off the top
        for i in order {
            t.free(spans[i], sizes[i])
            t.expectConsistent()
        }
        #expect(t.statistics.freeBytes == 13 * page)
        let merged = t.allocate(13)
        #expect(merged == spans[0])
        #expect(t.statistics.carvedBytes == 14 * page, "no new pages carved")
        #expect(t.statistics.freeBytes == 0)
        t.free(merged!, 13)
        t.free(guardSpan, 1)
        #expect(t.statistics.freeBytes == 14 * page)
        #expect(t.statistics.spansInUse == 0)
        t.expectConsistent()
    }

    @Test func ownerMapFollowsSpans() throws {
        let t = TestArena()
        defer { t.close() }
        let a = try #require(t.allocate(4))
        let marker = UnsafeMutableRawPointer(bitPattern: 0x1000)!
        t.arena.pointee.setOwner(a, pages: 4, marker)
        #expect(t.arena.pointee.owner(of: a) == marker)
        #expect(t.arena.pointee.owner(of: a + 4 * page - 1) == marker)
        #expect(t.arena.pointee.owner(of: a + 4 * page) == nil, "past the carved region")
        #expect(t.arena.pointee.owner(of: UnsafeRawPointer(bitPattern: 0x10000)!) == nil, "foreign memory")
        t.free(a, 4)
        #expect(t.arena.pointee.owner(of: a) == nil, "a free span has no owner")
        #expect(t.arena.pointee.owner(of: a + 2 * page) == nil)
    }

    @Test func alignedSpans() throws {
        let t = TestArena()
        defer { t.close() }
        _ = try #require(t.allocate(1))   // misaligns the top
        var live: [(UnsafeMutableRawPointer, Int)] = []
        for log in 0...10 {
            for pages in [1, 3, 17] {
                let align = 1 << log
                let p = try #require(t.allocate(pages, align: align))
                #expect(Int(bitPattern: p) % (align * page) == 0, "\(pages) pages aligned to \(align) pages")
                memset(p, 0x5A, pages * page)   // writable
                live.append((p, pages))
                t.expectConsistent()
            }
        }
        // No two spans overlap.
        let sorted = live.sorted { $0.0 < $1.0 }
        for i in 1..<sorted.count { #expect(sorted[i - 1].0 + sorted[i - 1].1 * page <= sorted[i].0) }
        // Head and tail pieces went back to the free bins: everything carved is either in use or free.
        let inUse = live.reduce(1) { $0 + $1.1 }
        let s = t.statistics
        #expect(s.carvedBytes == s.freeBytes + inUse * page)
        for (p, n) in live { t.free(p, n) }
        #expect(t.statistics.spansInUse == 1)
        t.expectConsistent()
    }

    @Test func growAndTrimInPlace() throws {
        let t = TestArena()
        defer { t.close() }
        let a = try #require(t.allocate(4))
        let b = try #require(t.allocate(6))
        let c = try #require(t.allocate(1))
        t.free(b, 6)
        // Grow into the free span after A, in two steps.
        #expect(t.grow(a, pages: 4, to: 7))
        #expect(t.statistics.freeBytes == 3 * page)
        t.expectConsistent()
        #expect(t.grow(a, pages: 7, to: 10))
        #expect(t.statistics.freeBytes == 0)
        // C is in use right after A now: no growth.
        #expect(!t.grow(a, pages: 10, to: 11))
        // Trim A back to 4 pages: the tail is free again, and reusable at A + 4 pages.
        t.arena.pointee.trim(a, pages: 10, keepPages: 4)
        #expect(t.statistics.freeBytes == 6 * page)
        t.expectConsistent()
        #expect(t.allocate(6) == b)
        // A span at the top of the carved region grows by carving more.
        let carved = t.statistics.carvedBytes
        #expect(t.grow(c, pages: 1, to: 9))
        #expect(t.statistics.carvedBytes == carved + 8 * page)
        t.expectConsistent()
        // Too little free space after the span: no growth, nothing changed.
        t.free(c, 9)
        let d = try #require(t.allocate(2))    // first 2 pages of C's old span
        t.free(b, 6)
        #expect(!t.grow(a, pages: 4, to: 11), "only 6 free pages follow A")
        #expect(t.statistics.freeBytes == (6 + 7) * page)
        _ = d
        t.expectConsistent()
    }

    /// Freed memory goes back to the OS: after releaseAll() nothing is dirty, and the
    /// pages (still mapped) read as zero, and are handed out as known-zero.
    @Test func releaseAllReturnsMemory() throws {
        let t = TestArena()
        defer { t.close() }
        let a = try #require(t.allocate(20))
        let fence = try #require(t.allocate(1))
        memset(a, 0xA5, 20 * page)
        t.free(a, 20)
        #expect(t.statistics.dirtyFreeBytes == 20 * page)
        let after = t.arena.pointee.releaseAll()
        #expect(after.dirtyFreeBytes == 0)
        #expect(after.releasedBytes >= 20 * page)
        let found = t.arena.pointee.freeSpan(containing: a)
        let span = try #require(found)
        #expect(!span.dirty)
        let bytes = a.assumingMemoryBound(to: UInt8.self)
        #expect((0..<(20 * page)).allSatisfy { bytes[$0] == 0 }, "released pages read as zero")
        let (again, zeroed) = t.allocateReportingZeroed(20)
        #expect(again == a)
        #expect(zeroed, "released pages are known to be zero")
        t.free(again!, 20)
        t.free(fence, 1)
        t.expectConsistent()
    }

    /// A small dirty span freed next to a clean free span many times its size is released on
    /// its own, and the merged span stays clean: the clean range is not made dirty, to be
    /// released whole again by the next purge (freeing a heap of guarded buffers one by one
    /// re-released the same growing range thousands of times: 1.5 ms per free).
    @Test func aSmallFreeBesideACleanSpanStaysClean() throws {
        let t = TestArena()
        defer { t.close() }
        let big = try #require(t.allocate(64))
        let small = try #require(t.allocate(4))
        let fence = try #require(t.allocate(1))
        t.free(big, 64)
        _ = t.arena.pointee.releaseAll()
        let released = t.statistics.releasedBytes
        memset(small, 0xA5, 4 * page)
        t.free(small, 4)
        let s = t.statistics
        #expect(s.dirtyFreeBytes == 0, "the merged span was made dirty")
        #expect(s.releasedBytes == released + 4 * page)
        let found = t.arena.pointee.freeSpan(containing: small)
        let span = try #require(found)
        #expect(span.pages >= 68 && !span.dirty)
        // A dirty neighbour of about its own size merges as before, dirty.
        let a = try #require(t.allocate(4)), b = try #require(t.allocate(4))
        t.free(a, 4)
        t.free(b, 4)
        #expect(t.statistics.dirtyFreeBytes >= 4 * page)
        t.free(fence, 1)
        t.expectConsistent()
    }

    /// Freeing past the dirty threshold purges without being asked.
    @Test func purgeThresholdReleasesDirtyPages() throws {
        let t = TestArena()
        defer { t.close() }
        t.arena.pointee.purgeThresholdPages = 16
        let a = try #require(t.allocate(64))
        let fence = try #require(t.allocate(1))
        memset(a, 0x3C, 64 * page)
        t.free(a, 64)
        let s = t.statistics
        #expect(s.dirtyFreeBytes <= 8 * page, "purged down to half the threshold")
        #expect(s.releasedBytes >= 56 * page)
        #expect(a.load(as: UInt64.self) == 0, "the released span reads as zero")
        _ = fence
        t.expectConsistent()
    }

    /// Spans of 128 pages and more live in power-of-two bins: a request must skip the
    /// spans in its bin that are too small.
    @Test func largeBinsFirstFit() throws {
        let t = TestArena()
        defer { t.close() }
        let small = try #require(t.allocate(200))
        _ = try #require(t.allocate(1))
        let big = try #require(t.allocate(300))
        _ = try #require(t.allocate(1))
        t.free(small, 200)
        t.free(big, 300)
        let carved = t.statistics.carvedBytes
        #expect(t.allocate(250) == big, "the 200-page span is too small")
        #expect(t.allocate(180) == small)
        #expect(t.statistics.carvedBytes == carved)
        t.expectConsistent()
    }

    @Test func exhaustionAndOverflowFail() throws {
        let t = TestArena(bytes: 1 << 30)
        defer { t.close() }
        let total = (1 << 30) / page
        #expect(t.allocate(total + 1) == nil)
        #expect(t.allocate(Int.max / 2) == nil)
        #expect(t.allocate(Int.max - 5, align: 1 << 20) == nil, "page count + alignment overflows")
        let all = try #require(t.allocate(total))
        #expect(t.allocate(1) == nil)
        t.free(all, total)
        #expect(t.allocate(1) == all)
        t.expectConsistent()
    }

    /// The process's own arena (set up in zeroed static storage, where property
    /// initializers never run): after large spans and slabs come and go, its bins,
    /// boundary tags and counters agree.
    @Test func processArenaStaysConsistent() throws {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        #expect(Heap.ensureReady())
        #expect(arena.pointee.purgeThresholdPages > 0)
        #expect(arena.pointee.spanPool.recordSize >= MemoryLayout<FreeSpan>.stride)
        var rng = SplitMix(seed: 7)
        var live: [(UnsafeMutableRawPointer, Int)] = []
        for _ in 0..<400 {
            if live.isEmpty || rng.next(3) != 0 {
                let size = SizeClasses.maxSize + 1 + rng.next(300_000)
                if let p = Allocator.malloc(size) { live.append((p, size)) }
            } else {
                let (p, size) = live.remove(at: rng.next(live.count))
                Allocator.free(p, size: size)
            }
        }
        let problem = arena.pointee.verify()
        #expect(problem == nil, "\(problem.map { "\($0)" } ?? "")")
        for (p, size) in live { Allocator.free(p, size: size) }
        let after = arena.pointee.verify()
        #expect(after == nil, "\(after.map { "\($0)" } ?? "")")
        // Counters read under the same lock as the release: nothing dirty is left.
        let released = arena.pointee.releaseAll()
        #expect(released.dirtyFreeBytes == 0)
        #expect(released.freeBytes > 0)
    }

    /// The process's arena checked over and over while three threads allocate, free,
    /// reallocate (trim and grow in place) and align large spans and slab buffers.
    @Test func processArenaStaysConsistentUnderConcurrentUse() throws {
        #expect(Heap.ensureReady())
        let stop = Flag()
        let workers = (0..<3).map { t in
            startThread {
                var rng = SplitMix(seed: UInt64(t) + 5)
                var live = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
                var sizes = [Int](repeating: 0, count: 64)
                while !stop.isSet {
                    let i = rng.next(64)
                    if let p = live[i] {
                        if rng.next(3) == 0 {
                            let n = SizeClasses.maxSize + 1 + rng.next(200_000)
                            if let q = realloc(p, oldSize: sizes[i], newSize: n) { live[i] = q; sizes[i] = n }
                        } else {
                            free(p, size: sizes[i])
                            live[i] = nil
                        }
                    } else {
                        let n = rng.next(2) == 0 ? 1 + rng.next(SizeClasses.maxSize) : SizeClasses.maxSize + 1 + rng.next(200_000)
                        live[i] = rng.next(4) == 0 ? alloc(n, alignment: 1 << rng.next(20)) : alloc(n)
                        sizes[i] = n
                    }
                }
                for i in 0..<64 { if let p = live[i] { free(p, size: sizes[i]) } }
            }
        }
        var problem: StaticString? = nil
        for _ in 0..<150 where problem == nil {
            problem = StateRegion.arena.bound(to: PageArena.self).pointee.verify()
            usleep(1000)
        }
        stop.set()
        workers.forEach(join)
        #expect(problem == nil, "\(problem.map { "\($0)" } ?? "")")
    }

    /// Random allocate/free/trim/grow against a model of the spans in use: no overlap,
    /// every counter agrees, the invariants hold after every step.
    @Test func randomOperationsKeepInvariants() throws {
        let t = TestArena()
        defer { t.close() }
        var rng = SplitMix(seed: 42)
        var live: [(p: UnsafeMutableRawPointer, pages: Int)] = []
        for step in 0..<3000 {
            let r = rng.next(100)
            if r < 45 || live.isEmpty {
                let pages = rng.next(8) == 0 ? 1 + rng.next(400) : 1 + rng.next(12)
                let align = rng.next(10) == 0 ? 1 << rng.next(5) : 1
                if let p = t.allocate(pages, align: align) {
                    #expect(Int(bitPattern: p) % (align * page) == 0)
                    p.storeBytes(of: UInt64(step), as: UInt64.self)
                    live.append((p, pages))
                }
            } else if r < 85 {
                let i = rng.next(live.count)
                let (p, n) = live.remove(at: i)
                t.free(p, n)
            } else if r < 93 {
                let i = rng.next(live.count)
                if live[i].pages > 1 {
                    let keep = 1 + rng.next(live[i].pages - 1)
                    t.arena.pointee.trim(live[i].p, pages: live[i].pages, keepPages: keep)
                    live[i].pages = keep
                }
            } else {
                let i = rng.next(live.count)
                let want = live[i].pages + 1 + rng.next(8)
                if t.grow(live[i].p, pages: live[i].pages, to: want) { live[i].pages = want }
            }
            if step % 50 == 0 {
                t.expectConsistent()
                let sorted = live.sorted { $0.p < $1.p }
                for j in sorted.indices.dropFirst() {
                    #expect(sorted[j - 1].p + sorted[j - 1].pages * page <= sorted[j].p, "spans overlap")
                }
                let inUse = live.reduce(0) { $0 + $1.pages }
                let s = t.statistics
                #expect(s.carvedBytes == s.freeBytes + inUse * page)
                #expect(s.spansInUse == live.count)
            }
            if step % 500 == 0 { t.arena.pointee.releaseAll() }
        }
        for (p, n) in live { t.free(p, n) }
        #expect(t.statistics.freeBytes == t.statistics.carvedBytes)
        t.expectConsistent()
    }
}
