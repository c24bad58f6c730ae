// A chunk of a debug cache found from any address inside it: the one lookup (the page's
// owner, a slab of a cache with debug flags, the chunk holding the address) that the
// free and realloc paths, the allocation-kind checks, the crash explainer and the
// watchpoints' trap all start from.  Reads only, takes no lock: also from a signal handler.

struct DebugChunk {
    let cache: UnsafeMutablePointer<CacheCore>
    let chunk: UnsafeMutableRawPointer

    var tag: BufferTag { BufferTag(base: chunk + cache.pointee.tagOffset) }

    /// The chunk of `slab` holding `p`, when `slab` belongs to a debug cache.
    @inline(__always) static func holding(_ p: UnsafeRawPointer, in slab: UnsafeMutablePointer<Slab>) -> DebugChunk? {
        let cache = slab.objectCache
        guard cache.pointee.debugFlags != 0, let chunk = slab.pointee.chunk(containing: p) else { return nil }
        return DebugChunk(cache: cache, chunk: chunk)
    }

    /// The debug chunk holding `p`, or nil (no owner, a large span, a cache without checks).
    static func holding(_ p: UnsafeRawPointer) -> DebugChunk? {
        guard let owner = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: p),
              owner.load(as: UInt32.self) == OwnerKind.slab.rawValue else { return nil }
        return holding(p, in: owner.assumingMemoryBound(to: Slab.self))
    }
}
