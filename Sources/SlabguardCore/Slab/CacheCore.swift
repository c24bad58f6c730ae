// Object caches — kmem_cache for slabguard: the slab layer's per-cache state,
// its geometry, constructor/destructor hooks, statistics and the registry of
// all caches.
//
// A cache hands out buffers of one size.  Its buffers pass through three
// places: the slab layer (raw chunks in slabs, unconstructed), the depot and
// per-thread magazines (constructed, free), and the user (constructed, in use).
// The constructor runs when a chunk leaves the slab layer and the destructor
// when it returns to it — never on the magazine fast path.
//
// Invariants: chunkSize is a multiple of the alignment and ≥ the link word;
// slabPages·pageSize ≥ buffersPerSlab·chunkSize; `buffersOut` counts chunks
// outside the slab layer; a cache's id, when < SG_MAX_CACHES, is the index of
// its magazine slot in every thread's slot array.
//
// Locking: `slabLock` guards the slab lists and slab-layer statistics;
// `depotLock` guards the depot (Magazine/Depot.swift).  Lock order: registry →
// depot → slab → arena.  Constructors and destructors run with no lock held.

import CSlabguardShim
import Glibc

typealias BufferConstructor = @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Int32
typealias BufferDestructor = @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Void

struct CacheCore {
    static let nameCapacity = 64

    var id: Int32 = -1                    // magazine slot index, -1: no magazines
    var debugFlags: UInt32 = 0            // the debug layer's per-cache flags (0: fast)
    var name: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    var bufferSize = 0                    // size the user asked for
    var alignment = 8
    var chunkSize = 0                     // stride in a slab
    var tagOffset = 0                     // where the debug buffer tag starts in a chunk (== buffer size rounded)
    var linkOffset = 0                    // slab free-list link offset inside a free chunk
    var slabPages = 0
    var buffersPerSlab = 0
    var constructor: BufferConstructor? = nil
    var destructor: BufferDestructor? = nil
    var callbackArgument: UnsafeMutableRawPointer? = nil
    /// Debug caches: the user's constructor/destructor, run by the debug layer on every
    /// allocation/free (the slab layer's `constructor`/`destructor` stay nil).
    var debugConstructor: BufferConstructor? = nil
    var debugDestructor: BufferDestructor? = nil
    /// Debug caches: prepares a chunk the first time it is carved from a slab (fill
    /// pattern, free state), so every chunk outside the user's hands looks freed.
    var freshChunkHook: (@convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Void)? = nil

    // Slab layer (slabLock).
    var slabMutex = pthread_mutex_t()
    var partialSlabs: UnsafeMutablePointer<Slab>? = nil
    var fullSlabs: UnsafeMutablePointer<Slab>? = nil
    var emptySlabs: UnsafeMutablePointer<Slab>? = nil
    var emptySlabCount = 0
    var emptySlabAllowance = 1
    var slabCount = 0
    var buffersTotal = 0
    var buffersOut = 0
    var constructorFailures = 0
    var allocationFailures = 0
    var slowAllocations = 0               // allocations that did not come from a thread's magazine
    var slowFrees = 0
    var retiredAllocations: UInt64 = 0    // fast-path counts folded in from exited threads
    var retiredFrees: UInt64 = 0

    // Depot (depotLock).
    var depotMutex = pthread_mutex_t()
    var fullMagazines: UnsafeMutablePointer<Magazine>? = nil
    var emptyMagazines: UnsafeMutablePointer<Magazine>? = nil
    var fullMagazineCount = 0
    var emptyMagazineCount = 0
    var magazineCapacity = 0
    var depotFullLimit = 4

    // Registry links.
    var nextCache: UnsafeMutablePointer<CacheCore>? = nil
    var previousCache: UnsafeMutablePointer<CacheCore>? = nil
}

/// Statistics of one cache, like ::kmastat.
public struct CacheStatistics: Sendable, Equatable {
    public var name: String
    public var bufferSize: Int
    public var buffersInUse: Int
    public var buffersTotal: Int
    public var memoryInUse: Int           // bytes of slabs
    public var allocations: UInt64
    public var failures: Int
    public var slabs: Int
}

extension UnsafeMutablePointer where Pointee == CacheCore {
    @inline(__always) var slabLock: RawLock { RawLock(UnsafeMutableRawPointer(self).advanced(by: MemoryLayout<CacheCore>.offset(of: \.slabMutex)!).assumingMemoryBound(to: pthread_mutex_t.self)) }
    @inline(__always) var depotLock: RawLock { RawLock(UnsafeMutableRawPointer(self).advanced(by: MemoryLayout<CacheCore>.offset(of: \.depotMutex)!).assumingMemoryBound(to: pthread_mutex_t.self)) }

    /// The cache name as a NUL-terminated C string.
    var namePointer: UnsafePointer<CChar> {
        UnsafeRawPointer(self).advanced(by: MemoryLayout<CacheCore>.offset(of: \.name)!).assumingMemoryBound(to: CChar.self)
    }

    /// Takes chunks out of the slab layer and constructs them (no lock held on entry).
    /// Returns how many constructed buffers were written to `out`.
    func allocateFromSlabs(into out: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count: Int) -> Int {
        let lock = slabLock
        lock.lock()
        var taken = takeChunks(into: out, count: count)
        if taken == 0 { pointee.allocationFailures += 1 }
        lock.unlock()
        guard let ctor = pointee.constructor else { return taken }
        let argument = pointee.callbackArgument
        for i in 0..<taken where ctor(out[i]!, argument) != 0 {
            // Constructor failed: give back this and the remaining raw chunks.
            lock.lock()
            returnChunks(out + i, count: taken - i)
            pointee.constructorFailures += 1
            pointee.allocationFailures += 1
            lock.unlock()
            taken = i
            break
        }
        return taken
    }

    /// Destructs buffers and returns their chunks to the slab layer (no lock held on entry).
    func freeToSlabs(_ buffers: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count: Int) {
        guard count > 0 else { return }
        if let dtor = pointee.destructor {
            let argument = pointee.callbackArgument
            for i in 0..<count { dtor(buffers[i]!, argument) }
        }
        let lock = slabLock
        lock.lock()
        returnChunks(buffers, count: count)
        lock.unlock()
    }

    /// Releases every empty slab to the arena (kmem_cache_reap).
    func reap() {
        let lock = slabLock
        lock.lock()
        while let victim = listHead(.empty).pointee { destroySlab(victim) }
        lock.unlock()
    }
}

/// The set of all caches, for statistics, heap-wide walks and id allocation.
struct CacheRegistry {
    var mutex = pthread_mutex_t()
    var first: UnsafeMutablePointer<CacheCore>? = nil
    var count = 0
    var pool = FixedPool(recordSize: MemoryLayout<CacheCore>.stride)
    var byId: UnsafeMutablePointer<UnsafeMutablePointer<CacheCore>?>? = nil   // SG_MAX_CACHES entries

    @inline(__always) static var shared: UnsafeMutablePointer<CacheRegistry> { GlobalSlice.caches.bound(to: CacheRegistry.self) }
    static var lock: RawLock { RawLock(UnsafeMutableRawPointer(shared).assumingMemoryBound(to: pthread_mutex_t.self)) }

    /// Cache by magazine id (nil if none).
    @inline(__always) static func cache(id: Int) -> UnsafeMutablePointer<CacheCore>? {
        guard let table = shared.pointee.byId else { return nil }
        return table[id]
    }
}

/// Geometry of a cache: chunk size, slab size and buffers per slab, with bounded slab waste.
struct CacheGeometry {
    var chunkSize: Int
    var tagOffset: Int
    var slabPages: Int
    var buffersPerSlab: Int

    /// `tagBytes` is the debug buffer tag appended to each buffer (0 in fast caches).
    init(bufferSize: Int, alignment: Int, tagBytes: Int) {
        let body = roundUp(max(bufferSize, 8), alignment)
        tagOffset = body
        chunkSize = roundUp(body + tagBytes, alignment)
        // Smallest slab of at least 16 pages (or 8 chunks) wasting at most 1/8 at its tail.
        var pages = max(16, (8 * chunkSize + pageSize - 1) >> pageShift)
        while true {
            let bytes = pages << pageShift
            if (bytes % chunkSize) * 8 <= bytes || pages >= 64 { break }
            pages += 1
        }
        slabPages = pages
        buffersPerSlab = (pages << pageShift) / chunkSize
    }
}
