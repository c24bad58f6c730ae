// Object-cache entry points for the front ends (kmem_cache_create/alloc/free/destroy).

import CSlabguardShim
import Glibc

/// A handle on an object cache, shared by the Swift and C front ends.
package struct CacheHandle: @unchecked Sendable, Equatable {
    package let raw: UnsafeMutableRawPointer
    var core: UnsafeMutablePointer<CacheCore> { raw.assumingMemoryBound(to: CacheCore.self) }

    package init(raw: UnsafeMutableRawPointer) { self.raw = raw }
    init(core: UnsafeMutablePointer<CacheCore>) { self.raw = UnsafeMutableRawPointer(core) }

    package static func create(name: UnsafePointer<CChar>, size: Int, alignment: Int,
                               constructor: (@convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Int32)?,
                               destructor: (@convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Void)?,
                               argument: UnsafeMutableRawPointer?, debugFlags: UInt32 = 0) -> CacheHandle? {
        guard Allocator.ensureReady() else { return nil }
        guard let core = CacheOps.create(CacheOps.Options(
            name: name, bufferSize: size, alignment: alignment == 0 ? 8 : alignment,
            constructor: constructor, destructor: destructor, argument: argument,
            tagBytes: DebugControl.tagBytes(for: debugFlags), debugFlags: debugFlags)) else { return nil }
        return CacheHandle(core: core)
    }

    @inline(__always) package func allocate() -> UnsafeMutableRawPointer? {
        if core.pointee.debugFlags != 0 { return DebugAllocator.allocate(core, size: core.pointee.bufferSize, zero: false) }
        return CacheOps.allocate(core)
    }

    @inline(__always) package func free(_ buffer: UnsafeMutableRawPointer) {
        if core.pointee.debugFlags != 0 { return freeDebug(buffer) }
        CacheOps.free(core, buffer)
    }

    private func freeDebug(_ buffer: UnsafeMutableRawPointer) {
        guard let slab = CacheOps.owner(of: buffer), slab.objectCache == core else {
            return DebugReport.invalidFree(buffer, expectedSize: nil)
        }
        DebugAllocator.free(buffer, slab: slab, expectedSize: core.pointee.bufferSize)
    }

    package func destroy() -> CacheDestroyResult { CacheOps.destroy(core) }

    package var statistics: CacheStatistics { CacheOps.statistics(core) }

    package var bufferSize: Int { core.pointee.bufferSize }

    /// Releases the cache's empty slabs to the arena.
    package func reap() { Depot.drain(core.magazines); core.slabs.reap() }
}

package enum HeapStatistics {
    /// Statistics of every cache (size classes first come last: newest first in the registry).
    package static func allCaches() -> [CacheStatistics] {
        _ = Heap.ensureReady()
        var result: [CacheStatistics] = []
        CacheOps.forEachCache { result.append(CacheOps.statistics($0)) }
        return result
    }

    package static func arena() -> (reserved: Int, carved: Int, free: Int, dirtyFree: Int, released: Int) {
        let s = StateRegion.arena.bound(to: PageArena.self).pointee.statistics()
        return (s.reservedBytes, s.carvedBytes, s.freeBytes, s.dirtyFreeBytes, s.releasedBytes)
    }

    package static func largeAllocations() -> (count: Int, bytes: Int, failures: Int) {
        let heap = SizeClassHeap.defaultHeap
        let lock = heap.largeLock
        lock.lock()
        defer { lock.unlock() }
        return (heap.pointee.largeCount, heap.pointee.largeBytes, heap.pointee.largeFailures)
    }
}
