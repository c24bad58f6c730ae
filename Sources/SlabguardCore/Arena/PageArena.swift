// Page arena — the vmem-like bottom of the heap.
//
// What it does: claims one large range of address space at start-up (the
// heap region, 1 TiB, MAP_NORESERVE so untouched pages cost nothing), mapping
// only its first 64 MiB and the rest in steps as the heap grows — under an
// address-space limit (`ulimit -v`) set-up still succeeds and the heap grows to
// the limit; the claim is placed far below the kernel's mmap area so nothing
// else lands where it grows — and hands out
// page-aligned spans of any page count from it; freed spans are coalesced with
// free neighbours and kept for reuse; dirty free pages beyond a threshold are
// given back to the OS with madvise(DONTNEED).  Large allocations (above the
// biggest size class) are spans straight from here.
//
// The page map: one word per page of the region.  For a page of a span in use
// it holds the owner's descriptor (the slab layer's Slab, or a large-span
// record), written by the owner through `setOwner`.  For a free span only its
// first and last pages hold the arena's FreeSpan record, tagged with the low
// bit (boundary tags, used to coalesce in O(1)).  Untouched pages read nil.
// The map is itself a MAP_NORESERVE reservation: 8 bytes per 4 KiB page, and
// only the parts covering used memory are ever touched.
//
// Invariants: free spans never touch each other (they are merged on free);
// every free span is in exactly one bin (exact bins for 1…127 pages, then one
// bin per power of two); `nonEmpty` has the bit of every non-empty bin set;
// a free span is `dirty` unless all its pages are known to be zero.
//
// Locking: one mutex (`lock`) held by every public operation except `owner(of:)`,
// which is a lock-free read of the page map (owners publish their entries before
// handing out buffers, and never clear them while buffers are live).

import CSlabguardShim
import Glibc

/// A free span record (arena-private).
struct FreeSpan {
    var start: UnsafeMutableRawPointer
    var pages: Int
    var dirty: Bool
    var bin: Int
    var next: UnsafeMutablePointer<FreeSpan>?
    var previous: UnsafeMutablePointer<FreeSpan>?
}

struct ArenaStatistics {
    var reservedBytes: Int
    var carvedBytes: Int
    var freeBytes: Int
    var dirtyFreeBytes: Int
    var releasedBytes: Int
    var spansInUse: Int
}

struct PageArena {
    static let exactBins = 128
    static let binCount = 128 + 40

    var mutex: UnsafeMutablePointer<pthread_mutex_t>? = nil
    var base: UnsafeMutableRawPointer? = nil
    var limit = 0                   // bytes of address space claimed for the region
    var mapped = 0                  // bytes of the claim mapped so far (top <= mapped <= limit)
    var top = 0                     // bytes carved from the region so far
    var pageMap: UnsafeMutablePointer<UnsafeMutableRawPointer?>? = nil
    var pageMapMapped = 0           // bytes of the page map mapped (covers `mapped`)
    var bins: UnsafeMutablePointer<UnsafeMutablePointer<FreeSpan>?>? = nil
    var nonEmpty: UnsafeMutablePointer<UInt64>? = nil   // binCount bits
    var spanPool = FixedPool(recordSize: MemoryLayout<FreeSpan>.stride, keepingSpare: true)
    var freePages = 0
    var dirtyPages = 0
    var releasedPages = 0
    var spansInUse = 0
    /// Dirty free pages kept before purging (at least this many, more for big heaps).
    var purgeThresholdPages = 2048

    var lockHandle: RawLock { RawLock(mutex!) }

    /// The first part of the claim mapped at set-up; the rest is mapped as the heap grows.
    static let initialMappedBytes = 64 << 20
    /// The most one growth step maps ahead of need.
    static let growthStepBytes = 1 << 30

    /// Claims `maxBytes` of address space for the region and its page map, mapping only
    /// a first part of each: the rest is mapped in steps as the heap grows (`extend`), so
    /// that under an address-space limit (`ulimit -v`) set-up never fails and the heap
    /// can grow up to the limit, as glibc's does.  The claim is placed at a random
    /// address far below the kernel's mmap area (which grows down from near the top of
    /// the address space), so nothing else is mapped where the region grows.  `minBytes`
    /// is the smallest claim accepted when no far placement is possible.
    mutating func setUp(maxBytes: Int = 1 << 40, minBytes: Int = 1 << 30) -> Bool {
        // The state lives in zeroed static storage, where property initializers never ran:
        // without this the pool's record size is 0 and its bump allocator hands out one
        // record over and over (two free spans sharing a record corrupt the bins), and
        // the purge threshold is 0.
        spanPool = FixedPool(recordSize: MemoryLayout<FreeSpan>.stride, keepingSpare: true)
        spanPool.prepare()
        if purgeThresholdPages == 0 { purgeThresholdPages = 2048 }
        let claim = roundUp(maxBytes, pageSize)
        let mapClaim = roundUp((claim >> pageShift) * MemoryLayout<UnsafeMutableRawPointer?>.stride, pageSize)
        let first = min(claim, PageArena.initialMappedBytes)
        let firstMap = roundUp((first >> pageShift) * MemoryLayout<UnsafeMutableRawPointer?>.stride, pageSize)
        // Region and page map side by side in one claim: [region | page map].
        for _ in 0..<15 {
            guard let hint = Platform.farAddress(claim + mapClaim) else { break }
            guard let region = Platform.reserve(at: hint, first) else { continue }
            guard let map = Platform.reserve(at: hint + claim, firstMap) else {
                Platform.unmap(region, first)
                continue
            }
            base = region
            limit = claim
            mapped = first
            pageMap = map.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: claim >> pageShift)
            pageMapMapped = firstMap
            break
        }
        if base == nil {
            // No far placement: a plain reservation wherever the kernel puts it, all mapped.
            var bytes = claim
            while bytes >= min(minBytes, claim) && base == nil {
                let mapBytes = roundUp((bytes >> pageShift) * MemoryLayout<UnsafeMutableRawPointer?>.stride, pageSize)
                if let region = Platform.reserve(bytes) {
                    if let map = Platform.reserve(mapBytes) {
                        base = region
                        limit = bytes
                        mapped = bytes
                        pageMap = map.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: bytes >> pageShift)
                        pageMapMapped = mapBytes
                    } else {
                        Platform.unmap(region, bytes)
                    }
                }
                bytes >>= 1
            }
        }
        guard base != nil, let meta = Platform.map(pageSize) else { return false }
        bins = meta.bindMemory(to: UnsafeMutablePointer<FreeSpan>?.self, capacity: PageArena.binCount)
        nonEmpty = (meta + PageArena.binCount * 8).bindMemory(to: UInt64.self, capacity: 4)
        mutex = (meta + 2048).bindMemory(to: pthread_mutex_t.self, capacity: 1)
        return true
    }

    /// Maps more of the claim so that `needed` bytes of it are mapped (lock held): a step
    /// ahead of need when the system allows it, else exactly what is needed.  False when
    /// even that cannot be mapped (the address-space limit is reached).
    private mutating func extend(to needed: Int) -> Bool {
        if needed <= mapped { return true }
        guard needed <= limit else { return false }
        let exact = roundUp(needed, pageSize)
        let ahead = min(limit, roundUp(max(needed, mapped + min(mapped, PageArena.growthStepBytes)), 2 << 20))
        if ahead > exact && mapClaim(upTo: ahead) { return true }
        return mapClaim(upTo: exact)
    }

    /// Maps the claim (region and its page map) up to `target` bytes of region.
    private mutating func mapClaim(upTo target: Int) -> Bool {
        guard let region = base, let map = pageMap else { return false }
        let mapTarget = roundUp((target >> pageShift) * MemoryLayout<UnsafeMutableRawPointer?>.stride, pageSize)
        if mapTarget > pageMapMapped {
            guard Platform.extend(UnsafeMutableRawPointer(map) + pageMapMapped, mapTarget - pageMapMapped) else { return false }
            pageMapMapped = mapTarget
        }
        guard Platform.extend(region + mapped, target - mapped) else { return false }
        mapped = target
        return true
    }

    // MARK: - Page map

    @inline(__always) func contains(_ p: UnsafeRawPointer) -> Bool {
        UInt(bitPattern: p - UnsafeRawPointer(base!)) < UInt(top)
    }

    @inline(__always) func pageIndex(_ p: UnsafeRawPointer) -> Int {
        (p - UnsafeRawPointer(base!)) >> pageShift
    }

    /// The owner descriptor of the page holding `p`, or nil (free, foreign or untouched).
    @inline(__always) func owner(of p: UnsafeRawPointer) -> UnsafeMutableRawPointer? {
        let entry = entryWord(of: p)
        if entry & 1 != 0 { return nil }
        return UnsafeMutableRawPointer(bitPattern: entry & PageArena.ownerMask)
    }

    /// The raw page-map word for `p` (0: none): the owner's address in the low 48 bits,
    /// the owner's 16-bit mark (`setOwner(_:pages:_:mark:)`) above it; the low bit set
    /// for a free span's boundary tag.  The free fast path reads a slab's cache id from
    /// the mark without loading the slab record.
    @inline(__always) func entryWord(of p: UnsafeRawPointer) -> UInt {
        // The optional pointer's bits (nil is 0): UInt(bitPattern:) would branch on nil.
        let offset = UInt(bitPattern: p) &- unsafeBitCast(base, to: UInt.self)
        if offset >= UInt(bitPattern: top) { return 0 }   // also true before set-up (top == 0)
        return UInt(bitPattern: pageMap.unsafelyUnwrapped[Int(offset >> UInt(pageShift))])
    }

    static let ownerMask: UInt = (1 << 48) - 1
    static let markShift: UInt = 48

    /// Records `owner` for `pages` pages starting at `start` (nil clears), with `mark`
    /// (16 bits, 0: none) in the word's top bits.
    func setOwner(_ start: UnsafeMutableRawPointer, pages: Int, _ owner: UnsafeMutableRawPointer?, mark: UInt16 = 0) {
        let first = pageIndex(start)
        let word = owner.map { UInt(bitPattern: $0) | UInt(mark) << PageArena.markShift } ?? 0
        precondition(word & 1 == 0 && (owner == nil || UInt(bitPattern: owner) <= PageArena.ownerMask))
        for i in first..<(first + pages) { pageMap![i] = UnsafeMutableRawPointer(bitPattern: word) }
    }

    // MARK: - Spans

    /// A span of `pages` pages aligned to `alignPages` pages (a power of two), or nil
    /// when the region is exhausted.  `zeroed` tells whether every byte is known zero.
    mutating func allocate(pages: Int, alignPages: Int = 1, zeroed: inout Bool) -> UnsafeMutableRawPointer? {
        precondition(pages > 0 && isPowerOfTwo(alignPages))
        let lock = lockHandle
        lock.lock()
        defer { lock.unlock() }
        if alignPages == 1 { return take(pages: pages, zeroed: &zeroed) }
        let (total, overflow) = pages.addingReportingOverflow(alignPages - 1)
        if overflow { return nil }
        guard let raw = take(pages: total, zeroed: &zeroed) else { return nil }
        let alignBytes = alignPages << pageShift
        let aligned = UnsafeMutableRawPointer(bitPattern: roundUp(Int(bitPattern: raw), alignBytes))!
        let head = (aligned - raw) >> pageShift
        let tail = total - head - pages
        if head > 0 { insertFree(raw, pages: head, dirty: !zeroed) }
        if tail > 0 { insertFree(aligned + (pages << pageShift), pages: tail, dirty: !zeroed) }
        return aligned
    }

    /// Returns a span to the arena; it is coalesced with free neighbours.  The owner's
    /// page-map entries are cleared: every page, or only the first and last when the
    /// owner mapped just those (`boundaryOnly`, large spans).
    mutating func free(_ start: UnsafeMutableRawPointer, pages: Int, boundaryOnly: Bool = false) {
        let lock = lockHandle
        lock.lock()
        if boundaryOnly {
            setOwner(start, pages: 1, nil)
            setOwner(start + ((pages - 1) << pageShift), pages: 1, nil)
        } else {
            setOwner(start, pages: pages, nil)
        }
        spansInUse -= 1
        insertFree(start, pages: pages, dirty: true)
        // Dirty free pages allowed: 8 MiB plus as many as are in use (glibc keeps about as
        // much: it trims only its top); past that, purged down to half of it.  With 8 MiB
        // + 1/8 purged to 4 MiB, a program freeing and allocating large buffers in turn
        // faulted every page in again: bench/c/shapes.c malloc-large took 2.9× glibc's time;
        // with half the pages in use, mimalloc-bench's malloc-large shape (20 buffers of
        // 5–25 MiB, each zeroed whole) still purged 127 times and took 1.7× glibc's time —
        // 0.89× now, peak RSS 1.16× glibc's.
        let allowance = purgeThresholdPages + (carvedPages - freePages)
        if dirtyPages > allowance { purge(target: allowance / 2) }
        lock.unlock()
    }

    /// Shrinks a span in use to its first `keepPages` pages, returning the tail.
    mutating func trim(_ start: UnsafeMutableRawPointer, pages: Int, keepPages: Int) {
        guard keepPages < pages else { return }
        let lock = lockHandle
        lock.lock()
        let tail = start + (keepPages << pageShift)
        setOwner(tail, pages: pages - keepPages, nil)
        insertFree(tail, pages: pages - keepPages, dirty: true)
        lock.unlock()
    }

    /// Extends a span in use by taking the free span right after it, when it is free and
    /// big enough; returns whether the span now has `newPages` pages.
    mutating func grow(_ start: UnsafeMutableRawPointer, pages: Int, to newPages: Int) -> Bool {
        let lock = lockHandle
        lock.lock()
        defer { lock.unlock() }
        let nextPage = start + (pages << pageShift)
        let needed = newPages - pages
        if contains(nextPage), let tagged = pageMap![pageIndex(nextPage)],
           UInt(bitPattern: tagged) & 1 != 0 {
            let span = untag(tagged)
            if span.pointee.pages >= needed {
                let remainderPages = span.pointee.pages - needed
                let dirty = span.pointee.dirty
                removeFree(span)
                if remainderPages > 0 { insertFree(nextPage + (needed << pageShift), pages: remainderPages, dirty: dirty) }
                return true
            }
            return false
        }
        // The span ends at the top of the carved region: carve more.
        if nextPage == base! + top, top + (needed << pageShift) <= limit, extend(to: top + (needed << pageShift)) {
            top += needed << pageShift
            return true
        }
        return false
    }

    /// Gives every dirty free page back to the OS (used by reaping and tests).
    /// Returns the statistics taken under the same lock, right after the release.
    @discardableResult
    mutating func releaseAll() -> ArenaStatistics {
        let lock = lockHandle
        lock.lock()
        purge(target: 0)
        let after = statistics()
        lock.unlock()
        return after
    }

    /// Unmaps a private arena's region, page map and bins (tests; the span records'
    /// pool is not returned).  The arena must not be used afterwards.
    mutating func tearDown() {
        guard let region = base else { return }
        Platform.unmap(region, mapped)
        Platform.unmap(UnsafeMutableRawPointer(pageMap!), pageMapMapped)
        Platform.unmap(UnsafeMutableRawPointer(bins!), pageSize)
        base = nil
        limit = 0
        mapped = 0
        pageMapMapped = 0
        top = 0
    }

    func statistics() -> ArenaStatistics {
        ArenaStatistics(reservedBytes: limit, carvedBytes: top, freeBytes: freePages << pageShift,
                        dirtyFreeBytes: dirtyPages << pageShift, releasedBytes: releasedPages << pageShift,
                        spansInUse: spansInUse)
    }

    var carvedPages: Int { top >> pageShift }

    // MARK: - Internals (lock held)

    private mutating func take(pages: Int, zeroed: inout Bool) -> UnsafeMutableRawPointer? {
        if let span = findFree(pages: pages) {
            let start = span.pointee.start
            let remainder = span.pointee.pages - pages
            let dirty = span.pointee.dirty
            removeFree(span)
            if remainder > 0 { insertFree(start + (pages << pageShift), pages: remainder, dirty: dirty) }
            zeroed = !dirty
            spansInUse += 1
            return start
        }
        let bytes = pages << pageShift
        guard pages <= limit >> pageShift, top <= limit - bytes, extend(to: top + bytes) else { return nil }
        let start = base! + top
        top += bytes
        zeroed = true
        spansInUse += 1
        return start
    }

    @inline(__always) private func untag(_ entry: UnsafeMutableRawPointer) -> UnsafeMutablePointer<FreeSpan> {
        UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: entry) & ~1)!.assumingMemoryBound(to: FreeSpan.self)
    }

    @inline(__always) private func tag(_ span: UnsafeMutablePointer<FreeSpan>) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: span) | 1)!
    }

    static func bin(for pages: Int) -> Int {
        if pages < exactBins { return pages - 1 }
        let log = Int.bitWidth - 1 - pages.leadingZeroBitCount   // ≥ 7
        return min(exactBins - 1 + (log - 6), binCount - 1)
    }

    private mutating func findFree(pages: Int) -> UnsafeMutablePointer<FreeSpan>? {
        // Exact or larger bins: the first span in a bin below `exactBins` fits; in the
        // power-of-two bins, search the list for one that fits (first fit).
        var b = PageArena.bin(for: pages)
        while b < PageArena.binCount {
            let word = nonEmpty![b >> 6] >> UInt64(b & 63)
            if word == 0 { b = (b | 63) + 1; continue }
            b += word.trailingZeroBitCount
            var span = bins![b]
            while let s = span {
                if s.pointee.pages >= pages { return s }
                span = s.pointee.next
            }
            b += 1
        }
        return nil
    }

    private mutating func insertFree(_ start: UnsafeMutableRawPointer, pages: Int, dirty: Bool) {
        var start = start, pages = pages, dirty = dirty
        // A dirty span next to a clean free span many times its size is released now, on
        // its own (one small madvise), rather than merged into one dirty span that the next
        // purge releases whole again: freeing a heap piece by piece (guards: one span per
        // buffer, thousands of mappings) re-released the same growing clean range over and
        // over — 1.5 ms per free with 20,000 guarded buffers.
        if dirty && cleanNeighbourDwarfs(start, pages) {
            Platform.release(start, pages << pageShift)
            dirty = false
            releasedPages += pages
        }
        // Coalesce with the free span before and after (boundary tags).
        if start > base!, let before = pageMap![pageIndex(start) - 1], UInt(bitPattern: before) & 1 != 0 {
            let span = untag(before)
            start = span.pointee.start
            pages += span.pointee.pages
            dirty = dirty || span.pointee.dirty
            removeFree(span)
        }
        let after = start + (pages << pageShift)
        if after < base! + top, let next = pageMap![pageIndex(after)], UInt(bitPattern: next) & 1 != 0 {
            let span = untag(next)
            pages += span.pointee.pages
            dirty = dirty || span.pointee.dirty
            removeFree(span)
        }
        guard let record = spanPool.allocate() else { return }  // leaks the span's pages rather than crash
        let span = record.bindMemory(to: FreeSpan.self, capacity: 1)
        let b = PageArena.bin(for: pages)
        span.initialize(to: FreeSpan(start: start, pages: pages, dirty: dirty, bin: b, next: bins![b], previous: nil))
        if let head = bins![b] { head.pointee.previous = span }
        bins![b] = span
        nonEmpty![b >> 6] |= 1 << UInt64(b & 63)
        let first = pageIndex(start)
        pageMap![first] = tag(span)
        pageMap![first + pages - 1] = tag(span)
        freePages += pages
        if dirty { dirtyPages += pages }
    }

    /// Whether a clean free span of at least 8 times `pages` borders [start, start + pages).
    private func cleanNeighbourDwarfs(_ start: UnsafeMutableRawPointer, _ pages: Int) -> Bool {
        if start > base!, let before = pageMap![pageIndex(start) - 1], UInt(bitPattern: before) & 1 != 0 {
            let span = untag(before)
            if !span.pointee.dirty && span.pointee.pages >= 8 * pages { return true }
        }
        let after = start + (pages << pageShift)
        if after < base! + top, let next = pageMap![pageIndex(after)], UInt(bitPattern: next) & 1 != 0 {
            let span = untag(next)
            if !span.pointee.dirty && span.pointee.pages >= 8 * pages { return true }
        }
        return false
    }

    private mutating func removeFree(_ span: UnsafeMutablePointer<FreeSpan>) {
        let s = span.pointee
        if let p = s.previous { p.pointee.next = s.next } else { bins![s.bin] = s.next }
        if let n = s.next { n.pointee.previous = s.previous }
        if bins![s.bin] == nil { nonEmpty![s.bin >> 6] &= ~(1 << UInt64(s.bin & 63)) }
        let first = pageIndex(s.start)
        pageMap![first] = nil
        pageMap![first + s.pages - 1] = nil
        freePages -= s.pages
        if s.dirty { dirtyPages -= s.pages }
        spanPool.free(UnsafeMutableRawPointer(span))
    }

    /// Releases dirty free spans, biggest bins first, until at most `target` dirty pages remain.
    private mutating func purge(target: Int? = nil) {
        let goal = target ?? purgeThresholdPages / 2
        var b = PageArena.binCount - 1
        while b >= 0 && dirtyPages > goal {
            var span = bins![b]
            while let s = span, dirtyPages > goal {
                if s.pointee.dirty {
                    Platform.release(s.pointee.start, s.pointee.pages << pageShift)
                    s.pointee.dirty = false
                    dirtyPages -= s.pointee.pages
                    releasedPages += s.pointee.pages
                }
                span = s.pointee.next
            }
            b -= 1
        }
    }
}

// MARK: - Verification (tests, heap checks)

extension PageArena {
    /// Checks the arena's invariants under its lock; returns nil when they hold, or a
    /// static description of the first one broken.  `mutating` only so that it reads the
    /// arena in place: a non-mutating method would get a copy of the struct taken before
    /// the lock, with counters that other threads may have changed since.
    mutating func verify() -> StaticString? {
        let lock = lockHandle
        lock.lock()
        defer { lock.unlock() }
        var free = 0, dirty = 0
        for b in 0..<PageArena.binCount {
            let bit = (nonEmpty![b >> 6] >> UInt64(b & 63)) & 1
            if (bins![b] == nil) != (bit == 0) { return "nonEmpty bit disagrees with its bin" }
            var previous: UnsafeMutablePointer<FreeSpan>? = nil
            var span = bins![b]
            while let s = span {
                let f = s.pointee
                if f.previous != previous { return "broken back link in a bin" }
                if f.bin != b || PageArena.bin(for: f.pages) != b { return "free span in the wrong bin" }
                if f.pages <= 0 || !contains(f.start) || !contains(f.start + ((f.pages << pageShift) - 1)) {
                    return "free span outside the carved region"
                }
                let first = pageIndex(f.start), last = first + f.pages - 1
                let tagged = UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: s) | 1)
                if pageMap![first] != tagged || pageMap![last] != tagged { return "free span boundary tag missing" }
                if first > 0, let before = pageMap![first - 1], UInt(bitPattern: before) & 1 != 0 {
                    return "two free spans touch (not coalesced)"
                }
                if last + 1 < carvedPages, let after = pageMap![last + 1], UInt(bitPattern: after) & 1 != 0 {
                    return "two free spans touch (not coalesced)"
                }
                free += f.pages
                if f.dirty { dirty += f.pages }
                previous = s
                span = f.next
            }
        }
        if free != freePages { return "free page count disagrees with the bins" }
        if dirty != dirtyPages { return "dirty page count disagrees with the bins" }
        return nil
    }

    /// The free span containing `p` as (start, pages, dirty), or nil when `p` is in use
    /// (a linear walk of the bins, lock taken: tests only; `mutating` as verify() is).
    mutating func freeSpan(containing p: UnsafeRawPointer) -> (start: UnsafeMutableRawPointer, pages: Int, dirty: Bool)? {
        let lock = lockHandle
        lock.lock()
        defer { lock.unlock() }
        for b in 0..<PageArena.binCount {
            var span = bins![b]
            while let s = span {
                let start = UnsafeRawPointer(s.pointee.start)
                if p >= start && p < start + (s.pointee.pages << pageShift) {
                    return (s.pointee.start, s.pointee.pages, s.pointee.dirty)
                }
                span = s.pointee.next
            }
        }
        return nil
    }
}
