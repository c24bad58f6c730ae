// Cache lifecycle and the per-cache allocate/free entry points used by the
// front ends: create (geometry, id, magazines), destroy (collect magazines
// from every thread, drain the depot, report outstanding buffers), statistics.
//
// Fast path (`CacheOps.allocate/free`): the calling thread's slot for the cache,
// one count test, one pop or push.  Everything else is Depot's slow path.

import CSlabguardShim
import Glibc

/// What a destroy found.
public struct CacheDestroyResult: Sendable, Equatable {
    /// Buffers the user never freed: destroying such a cache is a leak, reported instead of hidden.
    public var outstandingBuffers: Int
}

enum CacheOps {
    struct Options {
        var name: UnsafePointer<CChar>
        var bufferSize: Int
        var alignment: Int
        var constructor: BufferConstructor?
        var destructor: BufferDestructor?
        var argument: UnsafeMutableRawPointer?
        var tagBytes: Int = 0
        var debugFlags: UInt32 = 0
        /// Magazine id to use (size-class caches of the default heap), or -1 for any free id.
        var fixedId: Int = -1
    }

    /// Creates a cache; nil on bad arguments or out of memory.
    static func create(_ o: Options) -> UnsafeMutablePointer<CacheCore>? {
        guard o.bufferSize > 0, o.bufferSize <= 1 << 30, isPowerOfTwo(o.alignment), o.alignment <= pageSize else { return nil }
        guard Heap.ensureReady() else { return nil }
        // A debug cache needs the debug layer's tag layout (installed with it).
        guard o.tagBytes == 0 || HeapLifecycle.shared.pointee.tagLinkOffset > 0 else { return nil }
        let registry = CacheRegistry.shared
        let lock = CacheRegistry.lock
        lock.lock()
        defer { lock.unlock() }
        guard let raw = registry.pointee.pool.allocate() else { return nil }
        let cache = raw.bindMemory(to: CacheCore.self, capacity: 1)
        cache.initialize(to: CacheCore())
        let g = CacheGeometry(bufferSize: o.bufferSize, alignment: max(o.alignment, 8), tagBytes: o.tagBytes)
        let slabs = cache.slabs
        slabs.pointee.bufferSize = o.bufferSize
        slabs.pointee.alignment = max(o.alignment, 8)
        slabs.pointee.chunkSize = g.chunkSize
        if UInt64(g.slabPages << pageShift) * UInt64(g.chunkSize) < 1 << 40 {
            slabs.pointee.chunkReciprocal = ((1 << 40) + UInt64(g.chunkSize) - 1) / UInt64(g.chunkSize)
        }
        slabs.pointee.tagOffset = g.tagOffset
        slabs.pointee.slabPages = g.slabPages
        slabs.pointee.buffersPerSlab = g.buffersPerSlab
        slabs.pointee.callbackArgument = o.argument
        cache.pointee.debugFlags = o.debugFlags
        if o.tagBytes > 0 {
            // Debug cache: constructors run per allocation in the debug layer; the slab
            // free-list link lives in the tag so the free pattern stays whole.
            cache.pointee.debugConstructor = o.constructor
            cache.pointee.debugDestructor = o.destructor
            slabs.pointee.linkOffset = g.tagOffset + HeapLifecycle.shared.pointee.tagLinkOffset
            slabs.pointee.freshChunkHook = HeapLifecycle.shared.pointee.freshChunkHook
            slabs.pointee.slabRetireHook = HeapLifecycle.shared.pointee.slabRetireHook
        } else {
            slabs.pointee.constructor = o.constructor
            slabs.pointee.destructor = o.destructor
        }
        cache.magazines.pointee.magazineCapacity = MagazinePool.capacity(forChunkSize: g.chunkSize)
        // Copy the name (truncated) into the record.
        let name = UnsafeMutableRawPointer(mutating: cache.namePointer).assumingMemoryBound(to: CChar.self)
        var i = 0
        while i < CacheCore.nameCapacity - 1 && o.name[i] != 0 { name[i] = o.name[i]; i += 1 }
        name[i] = 0
        cache.magazines.assignMagazineId(MagazineIds.claim(fixed: o.fixedId, firstFree: SizeClasses.count))
        cache.pointee.nextCache = registry.pointee.first
        if let f = registry.pointee.first { f.pointee.previousCache = cache }
        registry.pointee.first = cache
        registry.pointee.count += 1
        return cache
    }

    /// Destroys a cache: collects its magazines from every thread, drains the depot,
    /// and returns its slabs to the arena.  Buffers still out are reported in the
    /// result and their slabs are kept (never reused), so stale pointers stay valid memory.
    ///
    /// The cache leaves the registry and gives up its magazine id first (under the
    /// registry lock, once every thread's magazines are collected); the depot is drained
    /// after, with no lock held, because draining runs destructors, which may call the
    /// allocator (even create caches).  A cache with
    /// buffers outstanding keeps its record with id -1, and its slabs' page-map marks are cleared,
    /// so a buffer freed after the destroy goes straight back to its slab — never into
    /// the magazines of a newer cache that took the same id.
    static func destroy(_ cache: UnsafeMutablePointer<CacheCore>) -> CacheDestroyResult {
        if let hook = HeapLifecycle.shared.pointee.cacheDestroyHook { hook(UnsafeMutableRawPointer(cache)) }
        let lock = CacheRegistry.lock
        lock.lock()
        ThreadRegistry.lock.lock()
        ThreadRegistry.flushEverywhere(cache.magazines)
        ThreadRegistry.lock.unlock()
        let registry = CacheRegistry.shared
        cache.magazines.assignMagazineId(-1)
        if let p = cache.pointee.previousCache { p.pointee.nextCache = cache.pointee.nextCache } else { registry.pointee.first = cache.pointee.nextCache }
        if let n = cache.pointee.nextCache { n.pointee.previousCache = cache.pointee.previousCache }
        registry.pointee.count -= 1
        lock.unlock()
        Depot.drain(cache.magazines)
        let slabs = cache.slabs
        let slab = slabs.slabLock
        slab.lock()
        let outstanding = cache.pointee.buffersOut
        while let victim = slabs.listHead(.empty).pointee { slabs.destroySlab(victim) }
        slab.unlock()
        if outstanding == 0 {
            lock.lock()
            registry.pointee.pool.free(UnsafeMutableRawPointer(cache))
            lock.unlock()
        }
        return CacheDestroyResult(outstandingBuffers: outstanding)
    }

    /// Fast path of kmem_cache_alloc: a pop from the thread's loaded magazine.
    @inline(__always) static func allocate(_ cache: UnsafeMutablePointer<CacheCore>) -> UnsafeMutableRawPointer? {
        let id = Int(cache.pointee.id)
        if id >= 0 {
            let slot = sg_thread_slots() + id
            let n = slot.pointee.count
            if n > 0 {
                slot.pointee.count = n &- 1
                slot.pointee.allocations &+= 1
                return slot.pointee.rounds[Int(n &- 1)]
            }
        }
        return Depot.allocate(cache.magazines)
    }

    /// Fast path of kmem_cache_free: a push onto the thread's loaded magazine.
    @inline(__always) static func free(_ cache: UnsafeMutablePointer<CacheCore>, _ buffer: UnsafeMutableRawPointer) {
        let id = Int(cache.pointee.id)
        if id >= 0 {
            let slot = sg_thread_slots() + id
            let n = slot.pointee.count
            if n < slot.pointee.capacity {
                slot.pointee.rounds[Int(n)] = buffer
                slot.pointee.count = n &+ 1
                slot.pointee.frees &+= 1
                return
            }
        }
        Depot.free(cache.magazines, buffer)
    }

    /// The cache owning `p` when `p` is inside one of its slabs.
    @inline(__always) static func owner(of p: UnsafeRawPointer) -> UnsafeMutablePointer<Slab>? {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard arena.pointee.base != nil, let owner = arena.pointee.owner(of: p) else { return nil }
        guard owner.load(as: UInt32.self) == OwnerKind.slab.rawValue else { return nil }
        return owner.assumingMemoryBound(to: Slab.self)
    }

    /// kmastat-style statistics.
    static func statistics(_ cache: UnsafeMutablePointer<CacheCore>) -> CacheStatistics {
        let v = statisticsValues(cache)
        return CacheStatistics(
            name: String(cString: cache.namePointer), bufferSize: v.bufferSize, buffersInUse: v.buffersInUse,
            buffersTotal: v.buffersTotal, memoryInUse: v.memoryInUse, allocations: v.allocations,
            failures: v.failures, slabs: cache.pointee.slabCount)
    }

    /// Every cache, for statistics and heap walks (registry lock taken).
    static func forEachCache(_ body: (UnsafeMutablePointer<CacheCore>) -> Void) {
        CacheRegistry.lock.lock()
        var c = CacheRegistry.shared.pointee.first
        while let cache = c { body(cache); c = cache.pointee.nextCache }
        CacheRegistry.lock.unlock()
    }
}
