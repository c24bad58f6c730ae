// The magazine layer's part of an object cache: its magazine id (the index of its
// slot in every thread's slot array), the depot, and the counts the fast path
// keeps.  It wraps the slab layer's part (first field) and is itself the first
// field of the object cache (Caches/CacheCore.swift), so the three share one
// address; `MagazineCache.checkLayout` says so at set-up.
//
// The id table: magazine id → cache, for a thread that exits and hands its
// magazines back (ThreadRegistry) — a lookup in this layer, not in the cache
// registry above it.

import CSlabguardShim
import Glibc

struct MagazineCache {
    var slabLayer = SlabCache()           // first: a MagazineCache's address is its SlabCache's
    var id: Int32 = -1                    // magazine slot index, -1: no magazines

    // Depot (depotLock).
    var depotMutex = pthread_mutex_t()
    var fullMagazines: UnsafeMutablePointer<Magazine>? = nil
    var emptyMagazines: UnsafeMutablePointer<Magazine>? = nil
    var fullMagazineCount = 0
    var emptyMagazineCount = 0
    var magazineCapacity = 0
    var depotFullLimit = 4
    var slowAllocations = 0               // allocations that did not come from a thread's magazine
    var slowFrees = 0
    var retiredAllocations: UInt64 = 0    // fast-path counts folded in from exited threads
    var retiredFrees: UInt64 = 0

    /// The layering's one address rule: each layer's part at offset 0 of the one above.
    static func checkLayout() -> Bool { isFirstField(\MagazineCache.slabLayer) }
}

extension UnsafeMutablePointer where Pointee == MagazineCache {
    @inline(__always) var slabs: UnsafeMutablePointer<SlabCache> {
        UnsafeMutableRawPointer(self).assumingMemoryBound(to: SlabCache.self)
    }

    @inline(__always) var depotLock: RawLock {
        RawLock(field(\.depotMutex))
    }

    /// Gives the cache magazine id `id` (≥ 0), or none (-1): recorded in the id table and
    /// in the page map's mark of its slabs (id + 1), which free's fast path reads.
    func assignMagazineId(_ id: Int) {
        let table = MagazineIds.table
        if pointee.id >= 0 { table[Int(pointee.id)] = nil }
        pointee.id = Int32(id)
        if id >= 0 {
            table[id] = self
            pointee.slabLayer.pageMark = UInt16(id + 1)
        } else {
            // Slabs with buffers still out must not send their frees to the id's next owner.
            let lock = slabs.slabLock
            lock.lock()
            slabs.clearPageMarks()
            lock.unlock()
        }
    }
}

/// Magazine id → cache (SG_MAX_CACHES entries, mapped at set-up).
enum MagazineIds {
    @inline(__always) static var table: UnsafeMutablePointer<UnsafeMutablePointer<MagazineCache>?> {
        ThreadRegistry.shared.pointee.cachesById.unsafelyUnwrapped
    }

    static func setUp() -> Bool {
        guard let raw = Platform.map(Int(SG_MAX_CACHES) * MemoryLayout<UnsafeMutableRawPointer>.stride) else { return false }
        ThreadRegistry.shared.pointee.cachesById = raw.bindMemory(to: UnsafeMutablePointer<MagazineCache>?.self,
                                                                  capacity: Int(SG_MAX_CACHES))
        return true
    }

    /// The cache with magazine id `id`, or nil.
    @inline(__always) static func cache(id: Int) -> UnsafeMutablePointer<MagazineCache>? {
        guard let t = ThreadRegistry.shared.pointee.cachesById else { return nil }
        return t[id]
    }

    /// A free id: `fixed` when it is free (the default heap's size classes take 0…72), else
    /// the first free one from `firstFree`; -1 when none (the cache then has no magazines).
    static func claim(fixed: Int, firstFree: Int) -> Int {
        let t = table
        if fixed >= 0 { return t[fixed] == nil ? fixed : -1 }
        for id in firstFree..<Int(SG_MAX_CACHES) where t[id] == nil { return id }
        return -1
    }
}
