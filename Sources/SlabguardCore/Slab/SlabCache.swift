// The slab layer's half of an object cache (kmem_cache's slab layer): geometry,
// constructor/destructor, slab lists and their statistics.  The magazine layer
// wraps it (Magazine/MagazineCache.swift), the object cache wraps that
// (Caches/CacheCore.swift); each layer's functions see only its own part.
//
// A cache's buffers pass through three places: the slab layer (raw chunks in
// slabs, unconstructed), the depot and per-thread magazines (constructed,
// free), and the user (constructed, in use).  The constructor runs when a
// chunk leaves the slab layer and the destructor when it returns to it —
// never on the magazine fast path.
//
// Invariants: chunkSize is a multiple of the alignment and ≥ the link word;
// slabPages·pageSize ≥ buffersPerSlab·chunkSize; `buffersOut` counts chunks
// outside the slab layer.
//
// Locking: `slabLock` guards the slab lists and slab-layer statistics; it is
// taken after the cache's depot lock and before the arena's.  Constructors and
// destructors run with no lock held.

import CSlabguardShim
import Glibc

typealias BufferConstructor = @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Int32
typealias BufferDestructor = @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Void

/// The slab layer's part of an object cache: geometry, constructor and destructor,
/// slab lists and slab-layer statistics.  The magazine layer embeds it as its first
/// field (Magazine/MagazineCache.swift), the object cache embeds that in turn.
struct SlabCache {
    /// Written into the page map for every page of this cache's slabs (0: none): the
    /// layer above stores its magazine id + 1 there for free's fast path.
    var pageMark: UInt16 = 0
    var bufferSize = 0                    // size the user asked for
    var alignment = 8
    var chunkSize = 0                     // stride in a slab
    /// ⌈2^40 / chunkSize⌉, or 0: offset · it >> 40 is offset / chunkSize exactly when
    /// slab bytes · chunkSize < 2^40 (every size class; not 1 MiB chunks), Slab.index(of:).
    var chunkReciprocal: UInt64 = 0
    var tagOffset = 0                     // where the debug buffer tag starts in a chunk (== buffer size rounded)
    var linkOffset = 0                    // slab free-list link offset inside a free chunk
    var slabPages = 0
    var buffersPerSlab = 0
    var constructor: BufferConstructor? = nil
    var destructor: BufferDestructor? = nil
    var callbackArgument: UnsafeMutableRawPointer? = nil
    /// Debug caches: prepares a chunk the first time it is carved from a slab (fill
    /// pattern, free state), so every chunk outside the user's hands looks freed.  Called
    /// with this SlabCache's address and the chunk.
    var freshChunkHook: (@convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Void)? = nil
    /// Called with a slab about to be destroyed (slab lock held): the layer above gives
    /// back the slab's sidecar.
    var slabRetireHook: (@convention(c) (UnsafeMutableRawPointer) -> Void)? = nil

    // Slab lists and statistics (slabLock).
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
}

extension UnsafeMutablePointer where Pointee == SlabCache {
    @inline(__always) var slabLock: RawLock { RawLock(field(\.slabMutex)) }

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
