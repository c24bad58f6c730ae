// The depot: magazine exchange on a thread's magazine miss, and the paths for
// threads without magazines (not yet registered, exiting, or caches beyond
// SG_MAX_CACHES).  See Magazine.swift for the design and invariants.

import CSlabguardShim
import Glibc

enum Depot {
    /// Allocation miss: the thread's loaded magazine for `cache` is empty (or absent).
    static func allocate(_ cache: UnsafeMutablePointer<MagazineCache>) -> UnsafeMutableRawPointer? {
        guard let slot = ThreadRegistry.slot(for: cache) else { return allocateDirect(cache) }
        if slot.pointee.count > 0 { return pop(slot) }
        if let previous = slot.previousMagazine, previous.pointee.count > 0 {
            slot.swapMagazines()
            return pop(slot)
        }
        slot.syncLoaded()
        // Exchange with the depot: our empty previous goes in, a full magazine comes out.
        let depot = cache.depotLock
        depot.lock()
        if let full = cache.pointee.fullMagazines {
            cache.pointee.fullMagazines = full.pointee.next
            cache.pointee.fullMagazineCount -= 1
            if let previous = slot.previousMagazine {
                previous.pointee.next = cache.pointee.emptyMagazines
                cache.pointee.emptyMagazines = previous
                cache.pointee.emptyMagazineCount += 1
            }
            depot.unlock()
            slot.pointee.previous = slot.pointee.loaded
            slot.load(full)
            return pop(slot)
        }
        // No full magazine: fill the loaded one (or a new one) from the slab layer.
        var magazine = slot.loadedMagazine
        if magazine == nil, let empty = cache.pointee.emptyMagazines {
            cache.pointee.emptyMagazines = empty.pointee.next
            cache.pointee.emptyMagazineCount -= 1
            magazine = empty
        }
        depot.unlock()
        if magazine == nil { magazine = MagazinePool.allocate(capacity: cache.pointee.magazineCapacity) }
        guard let m = magazine else { return allocateDirect(cache) }
        let filled = cache.slabs.allocateFromSlabs(into: m.rounds, count: m.pointee.capacity)
        m.pointee.count = filled
        slot.load(m)
        if filled == 0 { return nil }
        return pop(slot)
    }

    /// Free miss: the thread's loaded magazine for `cache` is full (or absent).
    static func free(_ cache: UnsafeMutablePointer<MagazineCache>, _ buffer: UnsafeMutableRawPointer) {
        guard let slot = ThreadRegistry.slot(for: cache) else { return freeDirect(cache, buffer) }
        if slot.pointee.count < slot.pointee.capacity { return push(slot, buffer) }
        if let previous = slot.previousMagazine, previous.pointee.count == 0 {
            slot.swapMagazines()
            return push(slot, buffer)
        }
        slot.syncLoaded()
        // Exchange with the depot: our full previous goes in, an empty magazine comes out.
        let depot = cache.depotLock
        var flush: UnsafeMutablePointer<Magazine>? = nil
        depot.lock()
        if let previous = slot.previousMagazine {
            previous.pointee.next = cache.pointee.fullMagazines
            cache.pointee.fullMagazines = previous
            cache.pointee.fullMagazineCount += 1
            slot.pointee.previous = nil
            if cache.pointee.fullMagazineCount > cache.pointee.depotFullLimit {
                flush = cache.pointee.fullMagazines
                cache.pointee.fullMagazines = flush!.pointee.next
                cache.pointee.fullMagazineCount -= 1
            }
        }
        var empty = cache.pointee.emptyMagazines
        if let e = empty {
            cache.pointee.emptyMagazines = e.pointee.next
            cache.pointee.emptyMagazineCount -= 1
        }
        depot.unlock()
        if let f = flush {
            // Working set exceeded: give a magazine's worth back to the slab layer and reuse it.
            cache.slabs.freeToSlabs(f.rounds, count: f.pointee.count)
            f.pointee.count = 0
            if empty == nil { empty = f } else { MagazinePool.free(f) }
        }
        if empty == nil { empty = MagazinePool.allocate(capacity: cache.pointee.magazineCapacity) }
        guard let e = empty else { return freeDirect(cache, buffer) }
        slot.pointee.previous = slot.pointee.loaded
        slot.load(e)
        push(slot, buffer)
    }

    @inline(__always) static func pop(_ slot: UnsafeMutablePointer<sg_magazine_slot>) -> UnsafeMutableRawPointer? {
        let n = slot.pointee.count &- 1
        slot.pointee.count = n
        slot.pointee.allocations &+= 1
        return slot.pointee.rounds[Int(n)]
    }

    @inline(__always) static func push(_ slot: UnsafeMutablePointer<sg_magazine_slot>, _ buffer: UnsafeMutableRawPointer) {
        let n = slot.pointee.count
        slot.pointee.rounds[Int(n)] = buffer
        slot.pointee.count = n &+ 1
        slot.pointee.frees &+= 1
    }

    static func allocateDirect(_ cache: UnsafeMutablePointer<MagazineCache>) -> UnsafeMutableRawPointer? {
        var buffer: UnsafeMutableRawPointer? = nil
        let n = cache.slabs.allocateFromSlabs(into: &buffer, count: 1)
        if n == 1 {
            let lock = cache.slabs.slabLock
            lock.lock(); cache.pointee.slowAllocations += 1; lock.unlock()
        }
        return n == 1 ? buffer : nil
    }

    static func freeDirect(_ cache: UnsafeMutablePointer<MagazineCache>, _ buffer: UnsafeMutableRawPointer) {
        var b: UnsafeMutableRawPointer? = buffer
        cache.slabs.freeToSlabs(&b, count: 1)
        let lock = cache.slabs.slabLock
        lock.lock(); cache.pointee.slowFrees += 1; lock.unlock()
    }

    /// Hands a thread's magazines for `cache` to the depot and empties the slot
    /// (thread exit, cache destroy, fork child).  Counters are folded into the cache.
    static func flush(_ slot: UnsafeMutablePointer<sg_magazine_slot>, of cache: UnsafeMutablePointer<MagazineCache>) {
        slot.syncLoaded()
        let loaded = slot.loadedMagazine, previous = slot.previousMagazine
        let depot = cache.depotLock
        depot.lock()
        if let m = loaded { stash(m, in: cache) }
        // loaded == previous only in a forked child whose parent thread was caught between
        // the two stores of an exchange: stash that magazine once.
        if let m = previous, m != loaded { stash(m, in: cache) }
        cache.pointee.retiredAllocations &+= slot.pointee.allocations
        cache.pointee.retiredFrees &+= slot.pointee.frees
        depot.unlock()
        slot.load(nil)
        slot.pointee.previous = nil
        slot.pointee.allocations = 0
        slot.pointee.frees = 0
    }

    /// Puts a magazine on the depot's full or empty list (depot lock held).
    private static func stash(_ m: UnsafeMutablePointer<Magazine>, in cache: UnsafeMutablePointer<MagazineCache>) {
        if m.pointee.count > 0 {
            m.pointee.next = cache.pointee.fullMagazines
            cache.pointee.fullMagazines = m
            cache.pointee.fullMagazineCount += 1
        } else {
            m.pointee.next = cache.pointee.emptyMagazines
            cache.pointee.emptyMagazines = m
            cache.pointee.emptyMagazineCount += 1
        }
    }

    /// Returns the calling thread's magazines and every magazine in the depot to the
    /// slab layer (cache destroy, reap).  Other threads' magazines are theirs alone and
    /// stay loaded (destroy collects them first with ThreadRegistry.flushEverywhere).
    static func drain(_ cache: UnsafeMutablePointer<MagazineCache>) {
        let id = Int(cache.pointee.id)
        if id >= 0 && sg_thread_state() == UInt32(SG_THREAD_LIVE) {
            let own = sg_thread_slots() + id
            if own.pointee.loaded != nil || own.pointee.previous != nil { flush(own, of: cache) }
        }
        let depot = cache.depotLock
        depot.lock()
        var full = cache.pointee.fullMagazines
        var empty = cache.pointee.emptyMagazines
        cache.pointee.fullMagazines = nil
        cache.pointee.emptyMagazines = nil
        cache.pointee.fullMagazineCount = 0
        cache.pointee.emptyMagazineCount = 0
        depot.unlock()
        while let m = full {
            full = m.pointee.next
            cache.slabs.freeToSlabs(m.rounds, count: m.pointee.count)
            MagazinePool.free(m)
        }
        while let m = empty {
            empty = m.pointee.next
            MagazinePool.free(m)
        }
    }

    /// Rounds sitting in the depot (for statistics).
    static func roundsInDepot(_ cache: UnsafeMutablePointer<MagazineCache>) -> Int {
        let depot = cache.depotLock
        depot.lock()
        var n = 0
        var m = cache.pointee.fullMagazines
        while let x = m { n += x.pointee.count; m = x.pointee.next }
        depot.unlock()
        return n
    }
}
