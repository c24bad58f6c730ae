// Slab layer — kmem's slabs: a span of pages from the page arena carved into
// equal chunks of one cache.
//
// A chunk is the buffer (cache.bufferSize rounded to the cache alignment)
// followed, in debug caches, by a buffer tag (see Debug/).  Chunks are carved
// lazily (`carved` counts chunks ever handed out) so a new slab touches no
// memory; returned chunks go on the slab's free list, whose link word sits at
// `cache.linkOffset` inside the free chunk (offset 0 in plain caches, inside
// the tag in debug caches so the free pattern stays intact).
//
// Invariants: a slab is on exactly one of its cache's lists — partial (some
// chunks out, some free), full (all out) or empty (none out);
// `inUse` = chunks out of the slab layer (in magazines or with the user);
// every page of the slab maps to it in the arena's page map.
//
// Locking: everything here runs under the owning cache's slab lock.

import CSlabguardShim
import Glibc

enum SlabList: Int32 { case partial = 0, full = 1, empty = 2 }

/// The page-map owner header shared by slabs and large spans: its first word says which.
enum OwnerKind: UInt32 { case slab = 0x51AB, large = 0x1A76 }

struct Slab {
    var kind: UInt32 = OwnerKind.slab.rawValue
    var cache: UnsafeMutablePointer<SlabCache>
    var list: Int32 = SlabList.empty.rawValue
    var base: UnsafeMutableRawPointer
    var pages: Int
    var capacity: Int            // chunks in the slab
    var carved: Int = 0          // chunks carved so far
    var inUse: Int = 0           // chunks out of the slab layer
    var freeList: UnsafeMutableRawPointer? = nil
    /// Per-chunk side memory of the layer above (the debug layer's audit records), given
    /// back through the cache's `slabRetireHook` when the slab is destroyed.
    var sidecar: UnsafeMutableRawPointer? = nil
    var sidecarPages = 0
    var next: UnsafeMutablePointer<Slab>? = nil
    var previous: UnsafeMutablePointer<Slab>? = nil

    /// The chunk containing `p`, or nil when `p` is past the last chunk (slab tail).
    @inline(__always) func chunk(containing p: UnsafeRawPointer) -> UnsafeMutableRawPointer? {
        let index = index(of: p)
        if index >= capacity { return nil }
        return base + index * cache.pointee.chunkSize
    }

    /// The index of the chunk holding `p` (a slab address): a multiply by the cache's
    /// reciprocal where that is exact, else a divide.
    @inline(__always) func index(of p: UnsafeRawPointer) -> Int {
        let offset = UInt64(UInt(bitPattern: p - UnsafeRawPointer(base)))
        let reciprocal = cache.pointee.chunkReciprocal
        if reciprocal != 0 { return Int(truncatingIfNeeded: (offset &* reciprocal) >> 40) }
        return Int(offset / UInt64(cache.pointee.chunkSize))
    }

    /// Whether `chunk` has been carved and is currently on the slab's free list.
    func isOnFreeList(_ chunk: UnsafeRawPointer) -> Bool {
        let linkOffset = cache.pointee.linkOffset
        var p = freeList
        while let c = p {
            if UnsafeRawPointer(c) == chunk { return true }
            p = (c + linkOffset).load(as: UnsafeMutableRawPointer?.self)
        }
        return false
    }
}

/// Doubly linked slab lists of a cache (heads live in SlabCache).
extension UnsafeMutablePointer where Pointee == SlabCache {
    @inline(__always) func listHead(_ list: SlabList) -> UnsafeMutablePointer<UnsafeMutablePointer<Slab>?> {
        switch list {
        case .partial: return UnsafeMutableRawPointer(field(\.partialSlabs))
            .assumingMemoryBound(to: UnsafeMutablePointer<Slab>?.self)
        case .full: return UnsafeMutableRawPointer(field(\.fullSlabs))
            .assumingMemoryBound(to: UnsafeMutablePointer<Slab>?.self)
        case .empty: return UnsafeMutableRawPointer(field(\.emptySlabs))
            .assumingMemoryBound(to: UnsafeMutablePointer<Slab>?.self)
        }
    }

    func link(_ slab: UnsafeMutablePointer<Slab>, into list: SlabList) {
        let head = listHead(list)
        slab.pointee.list = list.rawValue
        slab.pointee.previous = nil
        slab.pointee.next = head.pointee
        if let h = head.pointee { h.pointee.previous = slab }
        head.pointee = slab
        if list == .empty { pointee.emptySlabCount += 1 }
    }

    func unlink(_ slab: UnsafeMutablePointer<Slab>) {
        let list = SlabList(rawValue: slab.pointee.list)!
        if let p = slab.pointee.previous { p.pointee.next = slab.pointee.next } else { listHead(list).pointee = slab.pointee.next }
        if let n = slab.pointee.next { n.pointee.previous = slab.pointee.previous }
        slab.pointee.next = nil
        slab.pointee.previous = nil
        if list == .empty { pointee.emptySlabCount -= 1 }
    }

    /// Moves a slab to the list its fill level says (lock held).
    func relist(_ slab: UnsafeMutablePointer<Slab>) {
        let want: SlabList = slab.pointee.inUse == 0 ? .empty
            : (slab.pointee.inUse == slab.pointee.capacity ? .full : .partial)
        if slab.pointee.list != want.rawValue {
            unlink(slab)
            link(slab, into: want)
        }
    }

    /// Creates a slab from the arena (lock held).  Nil when out of memory.
    func createSlab() -> UnsafeMutablePointer<Slab>? {
        let cache = pointee
        var zeroed = false
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard let record = SlabRecords.allocate() else { return nil }
        guard let base = arena.pointee.allocate(pages: cache.slabPages, zeroed: &zeroed) else {
            SlabRecords.free(record)
            return nil
        }
        let slab = record.bindMemory(to: Slab.self, capacity: 1)
        slab.initialize(to: Slab(cache: self, base: base, pages: cache.slabPages, capacity: cache.buffersPerSlab))
        arena.pointee.setOwner(base, pages: cache.slabPages, UnsafeMutableRawPointer(slab), mark: cache.pageMark)
        pointee.slabCount += 1
        pointee.buffersTotal += cache.buffersPerSlab
        link(slab, into: .empty)
        return slab
    }

    /// Clears the page-map mark of every slab (the layer above gave up what it meant:
    /// a destroyed cache's magazine id, which a newer cache may take).
    func clearPageMarks() {
        pointee.pageMark = 0
        for raw in Int32(0)...2 {
            var s = listHead(SlabList(rawValue: raw)!).pointee
            while let slab = s { clearPageMark(slab); s = slab.pointee.next }
        }
    }

    private func clearPageMark(_ slab: UnsafeMutablePointer<Slab>) {
        StateRegion.arena.bound(to: PageArena.self).pointee.setOwner(slab.pointee.base, pages: slab.pointee.pages,
                                                                     UnsafeMutableRawPointer(slab), mark: 0)
    }

    /// Returns an empty slab's pages to the arena (lock held).
    func destroySlab(_ slab: UnsafeMutablePointer<Slab>) {
        if let hook = pointee.slabRetireHook { hook(UnsafeMutableRawPointer(slab)) }
        unlink(slab)
        pointee.slabCount -= 1
        pointee.buffersTotal -= slab.pointee.capacity
        let arena = StateRegion.arena.bound(to: PageArena.self)
        arena.pointee.free(slab.pointee.base, pages: slab.pointee.pages)
        SlabRecords.free(UnsafeMutableRawPointer(slab))
    }

    /// Takes up to `count` raw (unconstructed) chunks out of the slab layer (lock held).
    func takeChunks(into out: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count: Int) -> Int {
        var taken = 0
        let linkOffset = pointee.linkOffset
        let chunkSize = pointee.chunkSize
        while taken < count {
            var slab = listHead(.partial).pointee
            if slab == nil { slab = listHead(.empty).pointee }
            if slab == nil { slab = createSlab() }
            guard let s = slab else { break }
            while taken < count && s.pointee.inUse < s.pointee.capacity {
                let chunk: UnsafeMutableRawPointer
                if let f = s.pointee.freeList {
                    chunk = f
                    s.pointee.freeList = (f + linkOffset).load(as: UnsafeMutableRawPointer?.self)
                } else {
                    chunk = s.pointee.base + s.pointee.carved * chunkSize
                    s.pointee.carved += 1
                    if let hook = pointee.freshChunkHook { hook(UnsafeMutableRawPointer(self), chunk) }
                }
                s.pointee.inUse += 1
                out[taken] = chunk
                taken += 1
            }
            relist(s)
        }
        pointee.buffersOut += taken
        return taken
    }

    /// Puts raw (destructed) chunks back into their slabs; reaps empty slabs beyond the
    /// cache's allowance (lock held).
    func returnChunks(_ chunks: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count: Int) {
        let linkOffset = pointee.linkOffset
        let arena = StateRegion.arena.bound(to: PageArena.self)
        for i in 0..<count {
            let chunk = chunks[i]!
            let slab = arena.pointee.owner(of: chunk)!.assumingMemoryBound(to: Slab.self)
            (chunk + linkOffset).storeBytes(of: slab.pointee.freeList, as: UnsafeMutableRawPointer?.self)
            slab.pointee.freeList = chunk
            slab.pointee.inUse -= 1
            relist(slab)
        }
        pointee.buffersOut -= count
        while pointee.emptySlabCount > pointee.emptySlabAllowance, let victim = listHead(.empty).pointee {
            destroySlab(victim)
        }
    }
}

/// Slab descriptors (out of line, outside the heap region).
enum SlabRecords {
    struct State {
        var pool = FixedPool(recordSize: MemoryLayout<Slab>.stride)
        var mutex = pthread_mutex_t()
    }
    @inline(__always) static var state: UnsafeMutablePointer<State> {
        StateRegion.slabRecords.bound(to: State.self)
    }
    static func allocate() -> UnsafeMutableRawPointer? {
        let s = state
        sg_mutex_lock(&s.pointee.mutex)
        if s.pointee.pool.recordSize == 0 { s.pointee.pool = FixedPool(recordSize: MemoryLayout<Slab>.stride) }
        let r = s.pointee.pool.allocate()
        sg_mutex_unlock(&s.pointee.mutex)
        return r
    }
    static func free(_ r: UnsafeMutableRawPointer) {
        let s = state
        sg_mutex_lock(&s.pointee.mutex)
        s.pointee.pool.free(r)
        sg_mutex_unlock(&s.pointee.mutex)
    }
}
