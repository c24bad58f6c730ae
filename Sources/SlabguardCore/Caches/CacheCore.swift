// Object caches — kmem_cache for slabguard: one record per cache, made of the
// slab layer's part (Slab/SlabCache.swift) inside the magazine layer's part
// (Magazine/MagazineCache.swift), plus what only this layer and the ones above
// know: the name, the debug flags and the user's constructor/destructor of a
// debug cache, and the links of the registry of all caches.
//
// The three parts share one address (each lower part is the first field of the
// one above; checked at set-up by `CacheCore.checkLayout`), so a slab's cache
// pointer, a magazine id's cache and the object cache convert by a cast.
//
// The forwarding properties below let the upper layers read the lower parts'
// fields by name; the lower layers never see this type.

import CSlabguardShim
import Glibc

struct CacheCore {
    static let nameCapacity = 64

    var magazineLayer = MagazineCache()   // first: a CacheCore's address is its MagazineCache's
    var debugFlags: UInt32 = 0            // the debug layer's per-cache flags (0: fast)
    var name: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    /// Debug caches: the user's constructor/destructor, run by the debug layer on every
    /// allocation/free (the slab layer's `constructor`/`destructor` stay nil).
    var debugConstructor: BufferConstructor? = nil
    var debugDestructor: BufferDestructor? = nil

    // Registry links.
    var nextCache: UnsafeMutablePointer<CacheCore>? = nil
    var previousCache: UnsafeMutablePointer<CacheCore>? = nil

    static func checkLayout() -> Bool {
        isFirstField(\CacheCore.magazineLayer) && MagazineCache.checkLayout()
    }

    // The lower layers' fields, by name.
    var id: Int32 { magazineLayer.id }
    var bufferSize: Int { magazineLayer.slabLayer.bufferSize }
    var chunkSize: Int { magazineLayer.slabLayer.chunkSize }
    var tagOffset: Int { magazineLayer.slabLayer.tagOffset }
    var callbackArgument: UnsafeMutableRawPointer? { magazineLayer.slabLayer.callbackArgument }
    var buffersOut: Int { magazineLayer.slabLayer.buffersOut }
    var buffersTotal: Int { magazineLayer.slabLayer.buffersTotal }
    var slabCount: Int { magazineLayer.slabLayer.slabCount }
    var slabPages: Int { magazineLayer.slabLayer.slabPages }
    var allocationFailures: Int { magazineLayer.slabLayer.allocationFailures }
    var slowAllocations: Int { magazineLayer.slowAllocations }
    var retiredAllocations: UInt64 { magazineLayer.retiredAllocations }
}

extension UnsafeMutablePointer where Pointee == CacheCore {
    @inline(__always) var magazines: UnsafeMutablePointer<MagazineCache> {
        UnsafeMutableRawPointer(self).assumingMemoryBound(to: MagazineCache.self)
    }

    @inline(__always) var slabs: UnsafeMutablePointer<SlabCache> {
        UnsafeMutableRawPointer(self).assumingMemoryBound(to: SlabCache.self)
    }

    @inline(__always) var slabLock: RawLock { slabs.slabLock }
    @inline(__always) var depotLock: RawLock { magazines.depotLock }

    /// The cache name as a NUL-terminated C string.
    var namePointer: UnsafePointer<CChar> {
        UnsafeRawPointer(field(\.name)).assumingMemoryBound(to: CChar.self)
    }
}

extension UnsafeMutablePointer where Pointee == Slab {
    /// The object cache this slab belongs to.
    @inline(__always) var objectCache: UnsafeMutablePointer<CacheCore> {
        UnsafeMutableRawPointer(pointee.cache).assumingMemoryBound(to: CacheCore.self)
    }
}

extension UnsafeMutablePointer where Pointee == SlabCache {
    /// The object cache whose slab layer this is.
    @inline(__always) var objectCache: UnsafeMutablePointer<CacheCore> {
        UnsafeMutableRawPointer(self).assumingMemoryBound(to: CacheCore.self)
    }
}

/// The set of all caches, for statistics and heap-wide walks.
struct CacheRegistry {
    var mutex = pthread_mutex_t()
    var first: UnsafeMutablePointer<CacheCore>? = nil
    var count = 0
    var pool = FixedPool(recordSize: MemoryLayout<CacheCore>.stride)

    @inline(__always) static var shared: UnsafeMutablePointer<CacheRegistry> { StateRegion.cacheRegistry.bound(to: CacheRegistry.self) }
    static var lock: RawLock { RawLock(UnsafeMutableRawPointer(shared).assumingMemoryBound(to: pthread_mutex_t.self)) }
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

