// Magazines and the depot — the lock-free fast path over the slab layer
// (Bonwick & Adams, "Magazines and Vmem", 2001), with per-thread magazines in
// place of per-CPU ones.
//
// Each thread has, per cache, a slot (sg_magazine_slot, in C TLS) with a
// `loaded` and a `previous` magazine.  The slot mirrors the loaded magazine's
// rounds pointer, count and capacity, so allocation is: load the slot, test
// count, pop a round; free is: test count < capacity, push.  No lock, no
// atomic.  A miss swaps loaded and previous when that helps, and otherwise
// exchanges a whole magazine with the cache's depot under the depot lock (a
// full one for an empty one on allocation, and the reverse on free).  When the
// depot has no full magazine, an empty one is filled straight from the slab
// layer in one batch.  The depot keeps at most `depotFullLimit` full
// magazines; past that, magazines are flushed to the slab layer, which reaps
// empty slabs back to the arena.
//
// Invariants: a round in any magazine is a constructed free buffer; in the
// slot, 0 ≤ count ≤ capacity, and capacity == 0 means "no magazine loaded"
// (a zeroed slot — the state of every new thread — misses both ways); while a
// magazine is loaded its own `count` field is stale and the slot's is right.
//
// Locking: the slot belongs to its thread alone.  Other threads touch it only
// when the owner cannot be using that cache: when the cache is destroyed (using
// a cache while destroying it is a caller bug) and in a forked child for
// threads that no longer exist.  Depot lists are guarded by the cache's depot
// lock; magazine records by the magazine pool lock.

import CSlabguardShim
import Glibc

struct Magazine {
    var next: UnsafeMutablePointer<Magazine>?
    var count: Int
    var capacity: Int
    var pool: Int

    static let headerBytes = 32
}

extension UnsafeMutablePointer where Pointee == Magazine {
    @inline(__always) var rounds: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (UnsafeMutableRawPointer(self) + Magazine.headerBytes).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
}

/// Magazine records in four sizes, outside the heap region.
enum MagazinePool {
    static let capacities = (12, 28, 60, 124)   // records of 128, 256, 512, 1024 bytes

    struct State {
        var mutex = pthread_mutex_t()
        var pools = (FixedPool(recordSize: 128), FixedPool(recordSize: 256), FixedPool(recordSize: 512), FixedPool(recordSize: 1024))
        var magazinesInUse = 0
    }

    @inline(__always) static var state: UnsafeMutablePointer<State> {
        StateRegion.magazinePool.bound(to: State.self)
    }

    static var lock: RawLock { RawLock(UnsafeMutableRawPointer(state).assumingMemoryBound(to: pthread_mutex_t.self)) }

    /// The magazine capacity for buffers of `chunkSize` bytes: more rounds for small buffers.
    static func capacity(forChunkSize chunkSize: Int) -> Int {
        if chunkSize <= 256 { return capacities.3 }
        if chunkSize <= 1024 { return capacities.2 }
        if chunkSize <= 8192 { return capacities.1 }
        return capacities.0
    }

    static func allocate(capacity: Int) -> UnsafeMutablePointer<Magazine>? {
        let s = state
        lock.lock()
        defer { lock.unlock() }
        if s.pointee.pools.0.recordSize != 128 {
            s.pointee.pools = (FixedPool(recordSize: 128), FixedPool(recordSize: 256), FixedPool(recordSize: 512), FixedPool(recordSize: 1024))
        }
        let record: UnsafeMutableRawPointer?
        let pool: Int
        switch capacity {
        case capacities.0: record = s.pointee.pools.0.allocate(); pool = 0
        case capacities.1: record = s.pointee.pools.1.allocate(); pool = 1
        case capacities.2: record = s.pointee.pools.2.allocate(); pool = 2
        default: record = s.pointee.pools.3.allocate(); pool = 3
        }
        guard let r = record else { return nil }
        s.pointee.magazinesInUse += 1
        let m = r.bindMemory(to: Magazine.self, capacity: 1)
        m.initialize(to: Magazine(next: nil, count: 0, capacity: capacity, pool: pool))
        return m
    }

    static func free(_ m: UnsafeMutablePointer<Magazine>) {
        let s = state
        lock.lock()
        s.pointee.magazinesInUse -= 1
        let r = UnsafeMutableRawPointer(m)
        switch m.pointee.pool {
        case 0: s.pointee.pools.0.free(r)
        case 1: s.pointee.pools.1.free(r)
        case 2: s.pointee.pools.2.free(r)
        default: s.pointee.pools.3.free(r)
        }
        lock.unlock()
    }
}

// MARK: - Slot helpers

extension UnsafeMutablePointer where Pointee == sg_magazine_slot {
    /// Writes the slot's mirrored count back to the loaded magazine.
    @inline(__always) func syncLoaded() {
        if let loaded = pointee.loaded { loaded.assumingMemoryBound(to: Magazine.self).pointee.count = Int(pointee.count) }
    }

    /// Makes `m` the loaded magazine (nil: none).
    @inline(__always) func load(_ m: UnsafeMutablePointer<Magazine>?) {
        if let m {
            pointee.loaded = UnsafeMutableRawPointer(m)
            pointee.rounds = UnsafeMutableRawPointer(m.rounds).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
            pointee.count = Int32(m.pointee.count)
            pointee.capacity = Int32(m.pointee.capacity)
        } else {
            pointee.loaded = nil
            pointee.rounds = nil
            pointee.count = 0
            pointee.capacity = 0
        }
    }

    @inline(__always) var loadedMagazine: UnsafeMutablePointer<Magazine>? {
        pointee.loaded.map { $0.assumingMemoryBound(to: Magazine.self) }
    }

    @inline(__always) var previousMagazine: UnsafeMutablePointer<Magazine>? {
        pointee.previous.map { $0.assumingMemoryBound(to: Magazine.self) }
    }

    /// Swaps loaded and previous.
    @inline(__always) func swapMagazines() {
        syncLoaded()
        let old = loadedMagazine
        load(previousMagazine)
        pointee.previous = old.map { UnsafeMutableRawPointer($0) }
    }
}
