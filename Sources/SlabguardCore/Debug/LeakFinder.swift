// Leak finder — `leaks`: at exit (or on request) reports buffers that are
// still allocated AND unreachable, grouped by allocation stack, largest first
// (like ::findleaks and LeakSanitizer).
//
// Reachability is conservative: every aligned word of every writable mapping
// of the process (globals, stacks, TLS, other allocators' memory — read from
// /proc/self/maps), minus the ranges slabguard mapped for itself (heap region,
// metadata: subtracted from each line, since the kernel merges neighbouring
// mappings into one line), is a root; any word pointing into a live buffer (interior
// pointers count) marks it, and marked buffers are scanned in turn.  Buffers
// never marked are leaks.  Being conservative means a leak can be missed (a
// stale word that looks like a pointer) but a reachable buffer is never
// reported, so real programs that keep memory until exit get no false report.
//
// Memory: candidate and work arrays are mapped for the scan and unmapped after;
// nothing is allocated through the heap.  Other threads keep running (at exit
// there usually are none); the scan takes no allocator lock while reading.

import CSlabguardShim
import Glibc

enum LeakFinder {
    /// A live buffer: user start, size, its tag (nil for large spans), marked flag in bit 0 of `flags`.
    struct Candidate {
        var start: UInt
        var size: UInt
        var tag: UnsafeMutableRawPointer?
        var cache: UnsafeMutablePointer<CacheCore>?
        var marked: Bool
        var group: Int32
        var largeTag: UnsafeMutableRawPointer? = nil
    }

    /// Finds and reports leaks; returns the number of leaked buffers.
    @discardableResult
    static func run() -> Int {
        let maxCandidates = countLive() + 1024
        let bytes = roundUp(maxCandidates * MemoryLayout<Candidate>.stride, pageSize)
        guard let raw = Platform.map(bytes) else { return 0 }
        defer { Platform.unmap(raw, bytes) }
        let candidates = raw.bindMemory(to: Candidate.self, capacity: maxCandidates)
        let count = collect(into: candidates, capacity: maxCandidates)
        guard count > 0 else { return 0 }
        sort(candidates, count)
        let workBytes = roundUp(count * 8, pageSize)
        guard let workRaw = Platform.map(workBytes) else { return 0 }
        defer { Platform.unmap(workRaw, workBytes) }
        let work = workRaw.bindMemory(to: Int.self, capacity: count)
        var workCount = 0
        scanRoots(candidates, count, work, &workCount)
        while workCount > 0 {
            workCount -= 1
            let c = candidates[work[workCount]]
            scanRange(c.start, c.start + c.size, candidates, count, work, &workCount)
        }
        return DebugReport.leaks(candidates, count)
    }

    // MARK: - Candidates

    private static func countLive() -> Int {
        var n = 0
        CacheOps.forEachCache { cache in
            if cache.pointee.debugFlags != 0 { n += cache.pointee.buffersOut }
        }
        n += SizeClassHeap.defaultHeap.pointee.largeCount
        return n
    }

    private static func collect(into out: UnsafeMutablePointer<Candidate>, capacity: Int) -> Int {
        var n = 0
        CacheOps.forEachCache { cache in
            guard cache.pointee.debugFlags != 0 else { return }
            let lock = cache.slabLock
            lock.lock()
            for list in Int32(0)...Int32(1) {   // partial and full slabs hold live buffers
                var slab = cache.listHead(SlabList(rawValue: list)!).pointee
                while let s = slab {
                    for i in 0..<s.pointee.carved where n < capacity {
                        let chunk = s.pointee.base + i * cache.pointee.chunkSize
                        let tag = chunk + cache.pointee.tagOffset
                        let state = BufferTag(base: tag).state
                        if state.isAllocated {
                            out[n] = Candidate(start: UInt(bitPattern: chunk) + UInt(state.offset), size: UInt(state.size),
                                               tag: tag, cache: cache, marked: false, group: -1)
                            n += 1
                        }
                    }
                    slab = s.pointee.next
                }
            }
            lock.unlock()
        }
        let heap = SizeClassHeap.defaultHeap
        let lock = heap.largeLock
        lock.lock()
        let debugLarge = heap.pointee.debugFlags != 0
        var span = heap.pointee.largeSpans
        while let s = span, n < capacity {
            // Debug spans carry a tag page: skip retired (freed) ones.
            if !debugLarge || BufferTag(base: s.pointee.base).state.isAllocated {
                out[n] = Candidate(start: UInt(bitPattern: s.pointee.base + s.pointee.userOffset), size: UInt(s.pointee.requestedSize),
                                   tag: nil, cache: nil, marked: false, group: -1,
                                   largeTag: debugLarge ? s.pointee.base : nil)
                n += 1
            }
            span = s.pointee.next
        }
        lock.unlock()
        return n
    }

    /// Heap sort by start address (no allocation, O(n log n)).
    private static func sort(_ a: UnsafeMutablePointer<Candidate>, _ n: Int) {
        func siftDown(_ start: Int, _ end: Int) {
            var root = start
            while 2 * root + 1 < end {
                var child = 2 * root + 1
                if child + 1 < end && a[child].start < a[child + 1].start { child += 1 }
                if a[root].start >= a[child].start { return }
                let t = a[root]; a[root] = a[child]; a[child] = t
                root = child
            }
        }
        var i = n / 2 - 1
        while i >= 0 { siftDown(i, n); i -= 1 }
        var end = n - 1
        while end > 0 {
            let t = a[0]; a[0] = a[end]; a[end] = t
            siftDown(0, end)
            end -= 1
        }
    }

    /// The candidate containing address `v`, if any (binary search).
    @inline(__always) private static func find(_ v: UInt, _ a: UnsafeMutablePointer<Candidate>, _ n: Int) -> Int? {
        var lo = 0, hi = n
        while lo < hi {
            let mid = (lo + hi) >> 1
            if a[mid].start <= v { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let c = a[lo - 1]
        return v < c.start + max(c.size, 1) ? lo - 1 : nil
    }

    private static func scanRange(_ from: UInt, _ to: UInt, _ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                                  _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int) {
        let low = a[0].start, high = a[n - 1].start + a[n - 1].size
        var p = (from + 7) & ~7
        while p + 8 <= to {
            let v = UnsafePointer<UInt>(bitPattern: p)!.pointee
            if v >= low && v < high, let i = find(v, a, n), !a[i].marked {
                a[i].marked = true
                work[workCount] = i
                workCount += 1
            }
            p += 8
        }
    }

    // MARK: - Roots

    /// Every writable, readable mapping outside the heap region and slabguard's metadata.
    private static func scanRoots(_ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                                  _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int) {
        let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bufferBytes = 1 << 20
        guard let buffer = Platform.map(bufferBytes)?.assumingMemoryBound(to: UInt8.self) else { return }
        defer { Platform.unmap(UnsafeMutableRawPointer(buffer), bufferBytes) }
        // Read the whole file first: scanning while reading would see maps change.
        var length = 0
        while length < bufferBytes - 1 {
            let r = read(fd, buffer + length, bufferBytes - 1 - length)
            if r <= 0 { break }
            length += r
        }
        // slabguard's own ranges (heap region, metadata, stack tables, ELF views, this
        // scan's arrays), sorted.  Linux merges neighbouring anonymous mappings into one
        // maps line, so a line may hold the program's memory next to ours: each line is
        // scanned minus these ranges, never kept or dropped whole.
        let rangeBytes = roundUp(MetadataMappings.capacity * 16, pageSize)
        guard let rangesRaw = Platform.map(rangeBytes) else { return }
        defer { Platform.unmap(rangesRaw, rangeBytes) }
        let own = rangesRaw.bindMemory(to: UInt.self, capacity: 2 * MetadataMappings.capacity)
        let ownCount = MetadataMappings.snapshot(into: own, capacity: MetadataMappings.capacity)
        var line = 0
        while line < length {
            var end = line
            while end < length && buffer[end] != 10 { end += 1 }
            var i = line
            let from = parseHex(buffer, &i); i += 1
            let to = parseHex(buffer, &i); i += 1
            let readable = buffer[i] == UInt8(ascii: "r"), writable = buffer[i + 1] == UInt8(ascii: "w")
            if readable && writable && !isSpecial(buffer, line, end) {
                scanExcluding(from, to, own, ownCount, a, n, work, &workCount)
            }
            line = end + 1
        }
    }

    /// Scans [from, to) except the parts inside the sorted ranges `own[0..<count]`.
    static func scanExcluding(_ from: UInt, _ to: UInt, _ own: UnsafeMutablePointer<UInt>, _ count: Int,
                              _ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                              _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int) {
        var cursor = from
        for r in 0..<count where cursor < to {
            let start = own[2 * r], end = own[2 * r + 1]
            if end <= cursor { continue }
            if start >= to { break }
            if start > cursor { scanRange(cursor, start, a, n, work, &workCount) }
            cursor = max(cursor, end)
        }
        if cursor < to { scanRange(cursor, to, a, n, work, &workCount) }
    }

    /// [vvar], [vsyscall] and similar cannot be read safely.
    private static func isSpecial(_ b: UnsafeMutablePointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        var i = start
        while i + 4 < end {
            if b[i] == UInt8(ascii: "[") && b[i + 1] == UInt8(ascii: "v") { return true }
            i += 1
        }
        return false
    }

    private static func parseHex(_ b: UnsafeMutablePointer<UInt8>, _ i: inout Int) -> UInt {
        var v: UInt = 0
        while true {
            let c = b[i]
            let d: UInt
            if c >= 48 && c <= 57 { d = UInt(c - 48) } else if c >= 97 && c <= 102 { d = UInt(c - 87) } else { return v }
            v = v << 4 | d
            i += 1
        }
    }
}
