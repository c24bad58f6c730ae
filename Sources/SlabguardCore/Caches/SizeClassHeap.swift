// Size-class heap — kmem_alloc: a table of 73 caches (SizeClasses) for requests
// up to 32 KiB, and page-arena spans for anything bigger.  malloc, sg_alloc and
// the Swift `alloc` run on the process's default heap; tests and the debug
// layer can create more heaps with their own cache flags.
//
// Large allocations: a span from the arena (aligned as asked), with a
// LargeSpan record as its page-map owner; freeing returns the span.  realloc
// stays in place when the size class allows (same class, or a shrink that
// keeps at least half), and for large spans by trimming the tail or growing
// into the free span after it.
//
// Aligned requests (power of two > 16): up to a page, round the size up to a
// multiple of the alignment — every class that is a multiple of the alignment
// has buffers aligned to it in fast caches; debug caches (whose chunks carry a
// tag) and larger alignments use aligned arena spans.
//
// Locking: caches and the arena lock for themselves; large-span records are
// guarded by `largeMutex`.

import CSlabguardShim
import Glibc

struct LargeSpan {
    var kind: UInt32 = OwnerKind.large.rawValue
    var heap: UnsafeMutablePointer<SizeClassHeap>
    var base: UnsafeMutableRawPointer
    var pages: Int
    var requestedSize: Int
    var userOffset = 0                      // debug spans: the buffer starts after a tag page
    var retiredNext: UnsafeMutablePointer<LargeSpan>? = nil   // debug: retired-span FIFO link
    var guarded = false                     // debug: a guard-page span (tag page, data, guard page)
    var ownMapping = false                  // debug: its data pages are a kernel mapping of their own
    /// debug: the buffer's audit record (Debug/Buffer/AuditRecord.swift), out of line.
    var debugRecord: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
    var next: UnsafeMutablePointer<LargeSpan>? = nil
    var previous: UnsafeMutablePointer<LargeSpan>? = nil
}

struct SizeClassHeap {
    var caches: UnsafeMutablePointer<UnsafeMutablePointer<CacheCore>?>? = nil
    var debugFlags: UInt32 = 0
    var tagBytes = 0
    var largeMutex = pthread_mutex_t()
    var largePool = FixedPool(recordSize: MemoryLayout<LargeSpan>.stride)
    var largeSpans: UnsafeMutablePointer<LargeSpan>? = nil
    var largeCount = 0
    var largeBytes = 0
    var largeAllocations: UInt64 = 0
    var largeFailures = 0

    @inline(__always) static var defaultHeap: UnsafeMutablePointer<SizeClassHeap> { StateRegion.defaultHeap.bound(to: SizeClassHeap.self) }
}

extension UnsafeMutablePointer where Pointee == SizeClassHeap {
    var largeLock: RawLock { RawLock(field(\.largeMutex)) }

    /// Creates the heap's caches (`fixedIds`: the default heap's caches take ids 0…72).
    func setUp(debugFlags: UInt32, tagBytes: Int, fixedIds: Bool, namePrefix: StaticString) -> Bool {
        guard let table = Platform.map(SizeClasses.count * 8) else { return false }
        pointee.caches = table.bindMemory(to: UnsafeMutablePointer<CacheCore>?.self, capacity: SizeClasses.count)
        pointee.debugFlags = debugFlags
        pointee.tagBytes = tagBytes
        pointee.largePool = FixedPool(recordSize: MemoryLayout<LargeSpan>.stride)
        var name = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        for c in 0..<SizeClasses.count {
            let size = SizeClasses.size(ofClass: c)
            withUnsafeMutableBytes(of: &name) { buf in
                let out = buf.baseAddress!.assumingMemoryBound(to: CChar.self)
                var n = 0
                let prefix = namePrefix.utf8Start
                for i in 0..<namePrefix.utf8CodeUnitCount where n < 20 { out[n] = CChar(prefix[i]); n += 1 }
                n += formatDecimal(size, into: out + n)
                out[n] = 0
            }
            let cache = withUnsafeBytes(of: &name) { buf in
                CacheOps.create(CacheOps.Options(
                    name: buf.baseAddress!.assumingMemoryBound(to: CChar.self), bufferSize: size,
                    alignment: tagBytes == 0 ? SizeClasses.alignment(ofClass: c) : (c == 0 ? 8 : 16),
                    constructor: nil, destructor: nil, argument: nil,
                    tagBytes: tagBytes, debugFlags: debugFlags, fixedId: fixedIds ? c : -1))
            }
            guard let cache else { return false }
            pointee.caches![c] = cache
        }
        return true
    }

    // MARK: - Allocation

    /// kmem_alloc: a buffer of at least `size` bytes, or nil (out of memory).
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        if size <= SizeClasses.maxSize {
            return CacheOps.allocate(pointee.caches![SizeClasses.index(size)]!)
        }
        return allocateLarge(size, alignment: pageSize, zero: false)
    }

    /// A buffer of `size` bytes aligned to `alignment` (a power of two), or nil.
    func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if alignment <= 8 { return allocate(size) }
        // Class 0 (8 bytes) is only 8-aligned: a 16-aligned request of ≤ 8 bytes takes class 1.
        if alignment == 16 { return allocate(size <= 8 ? 16 : size) }
        if alignment <= pageSize && pointee.tagBytes == 0 {
            let rounded = roundUp(max(size, 1), alignment)
            if rounded <= SizeClasses.maxSize && rounded >= size {
                let c = SizeClasses.index(rounded)
                if SizeClasses.size(ofClass: c) % alignment == 0 { return CacheOps.allocate(pointee.caches![c]!) }
            }
        }
        return allocateLarge(size, alignment: max(alignment, pageSize), zero: false)
    }

    /// A zero-filled buffer (kmem_zalloc / calloc).
    func zeroAllocate(_ size: Int) -> UnsafeMutableRawPointer? {
        if size <= SizeClasses.maxSize {
            guard let p = allocate(size) else { return nil }
            memset(p, 0, size)
            return p
        }
        return allocateLarge(size, alignment: pageSize, zero: true)
    }

    /// A large span for `size` bytes (including `userOffset` leading bytes, for the debug
    /// layer's tag page); returns the user pointer base + userOffset.
    func allocateLarge(_ size: Int, alignment: Int, zero: Bool, userOffset: Int = 0) -> UnsafeMutableRawPointer? {
        guard size <= Int.max - 2 * pageSize, Heap.ensureReady() else { return nil }
        let pages = max(1, (size + pageSize - 1) >> pageShift)
        let arena = StateRegion.arena.bound(to: PageArena.self)
        var zeroed = false
        let lock = largeLock
        lock.lock()
        let record = pointee.largePool.allocate()
        lock.unlock()
        guard let record else { return nil }
        var fresh = arena.pointee.allocate(pages: pages, alignPages: alignment >> pageShift, zeroed: &zeroed)
        // Out of address space (ulimit -v): what the debug layer keeps out of reuse is freed
        // memory the program may have again — never while this thread holds a lock.
        if fresh == nil, sg_held_lock_count() == 0, let reclaim = HeapLifecycle.shared.pointee.reclaimHook, reclaim() {
            fresh = arena.pointee.allocate(pages: pages, alignPages: alignment >> pageShift, zeroed: &zeroed)
        }
        guard let base = fresh else {
            lock.lock()
            pointee.largePool.free(record)
            pointee.largeFailures += 1
            lock.unlock()
            return nil
        }
        let span = record.bindMemory(to: LargeSpan.self, capacity: 1)
        span.initialize(to: LargeSpan(heap: self, base: base, pages: pages, requestedSize: size, userOffset: userOffset))
        // Boundary pages (and the user's first page) only: interior pointers of a large
        // span are not valid frees.
        arena.pointee.setOwner(base, pages: 1, record)
        arena.pointee.setOwner(base + ((pages - 1) << pageShift), pages: 1, record)
        if userOffset >= pageSize { arena.pointee.setOwner(base + (userOffset & ~(pageSize - 1)), pages: 1, record) }
        lock.lock()
        span.pointee.next = pointee.largeSpans
        if let f = pointee.largeSpans { f.pointee.previous = span }
        pointee.largeSpans = span
        pointee.largeCount += 1
        pointee.largeBytes += pages << pageShift
        pointee.largeAllocations &+= 1
        lock.unlock()
        if zero && !zeroed { memset(base, 0, size) }
        return base + userOffset
    }

    // MARK: - Free

    /// free(): finds the owner through the page map.  Returns false when `p` is not
    /// a buffer start of this allocator (the caller reports an invalid free).
    @inline(__always) func free(_ p: UnsafeMutableRawPointer) -> Bool {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard let owner = arena.pointee.owner(of: p) else { return false }
        let header = owner.load(as: UInt64.self)
        if UInt32(truncatingIfNeeded: header) == OwnerKind.slab.rawValue {
            CacheOps.free(owner.assumingMemoryBound(to: Slab.self).objectCache, p)
            return true
        }
        return freeLarge(owner.assumingMemoryBound(to: LargeSpan.self), p)
    }

    func freeLarge(_ span: UnsafeMutablePointer<LargeSpan>, _ p: UnsafeMutableRawPointer) -> Bool {
        guard span.pointee.base + span.pointee.userOffset == p else { return false }
        let userOffset = span.pointee.userOffset
        let lock = largeLock
        let pages = span.pointee.pages
        lock.lock()
        if let prev = span.pointee.previous { prev.pointee.next = span.pointee.next } else { span.pointee.heap.pointee.largeSpans = span.pointee.next }
        if let n = span.pointee.next { n.pointee.previous = span.pointee.previous }
        pointee.largeCount -= 1
        pointee.largeBytes -= pages << pageShift
        lock.unlock()
        let arena = StateRegion.arena.bound(to: PageArena.self)
        let base = span.pointee.base
        if userOffset >= pageSize { arena.pointee.setOwner(base + (userOffset & ~(pageSize - 1)), pages: 1, nil) }
        arena.pointee.free(base, pages: pages, boundaryOnly: true)   // clears the page map under the arena lock
        lock.lock()
        pointee.largePool.free(UnsafeMutableRawPointer(span))
        lock.unlock()
        return true
    }

    // MARK: - Sizes and realloc

    /// Usable bytes of the buffer at `p` (its class size, or the span's bytes); nil if `p` is not ours.
    func usableSize(_ p: UnsafeRawPointer) -> Int? {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard let owner = arena.pointee.owner(of: p) else { return nil }
        if owner.load(as: UInt32.self) == OwnerKind.slab.rawValue {
            let slab = owner.assumingMemoryBound(to: Slab.self)
            guard let chunk = slab.pointee.chunk(containing: p) else { return nil }
            return slab.objectCache.pointee.tagOffset - (p - UnsafeRawPointer(chunk))
        }
        let span = owner.assumingMemoryBound(to: LargeSpan.self)
        return span.pointee.base == p ? span.pointee.pages << pageShift : nil
    }

    /// realloc semantics: nil `p` allocates; returns nil (old buffer untouched) on failure.
    /// `invalid` is set when `p` is not a buffer of this allocator.
    func reallocate(_ p: UnsafeMutableRawPointer, to size: Int, invalid: inout Bool) -> UnsafeMutableRawPointer? {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard let owner = arena.pointee.owner(of: p) else { invalid = true; return nil }
        let oldUsable: Int
        if owner.load(as: UInt32.self) == OwnerKind.slab.rawValue {
            let cache = owner.assumingMemoryBound(to: Slab.self).objectCache
            oldUsable = cache.pointee.bufferSize
            // Fits and wastes at most about half (8 classes = one doubling): keep it.  A
            // tiny request is no exception — realloc(p32k, 4) must not keep 32 KiB.
            if size <= oldUsable && (size > SizeClasses.maxSize / 2 || SizeClasses.index(size) >= SizeClasses.index(oldUsable) - 8) {
                return p
            }
        } else {
            let span = owner.assumingMemoryBound(to: LargeSpan.self)
            guard span.pointee.base == p else { invalid = true; return nil }
            let pages = span.pointee.pages
            oldUsable = pages << pageShift
            if size > SizeClasses.maxSize {
                let newPages = (size + pageSize - 1) >> pageShift
                if newPages <= pages && newPages * 2 >= pages {
                    if newPages < pages { resizeLarge(span, to: newPages) }
                    span.pointee.requestedSize = size
                    return p
                }
                if newPages > pages && arena.pointee.grow(p, pages: pages, to: newPages) {
                    arena.pointee.setOwner(p + ((pages - 1) << pageShift), pages: 1, pages == 1 ? UnsafeMutableRawPointer(span) : nil)
                    arena.pointee.setOwner(p + ((newPages - 1) << pageShift), pages: 1, UnsafeMutableRawPointer(span))
                    adjustLargeBytes(span, newPages: newPages)
                    span.pointee.requestedSize = size
                    return p
                }
            }
        }
        guard let q = allocate(size) else { return nil }
        memcpy(q, p, min(size, oldUsable))
        _ = free(p)
        return q
    }

    private func resizeLarge(_ span: UnsafeMutablePointer<LargeSpan>, to newPages: Int) {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        let base = span.pointee.base, pages = span.pointee.pages
        arena.pointee.setOwner(base + ((pages - 1) << pageShift), pages: 1, nil)
        arena.pointee.trim(base, pages: pages, keepPages: newPages)
        arena.pointee.setOwner(base + ((newPages - 1) << pageShift), pages: 1, UnsafeMutableRawPointer(span))
        adjustLargeBytes(span, newPages: newPages)
    }

    private func adjustLargeBytes(_ span: UnsafeMutablePointer<LargeSpan>, newPages: Int) {
        let lock = largeLock
        lock.lock()
        pointee.largeBytes += (newPages - span.pointee.pages) << pageShift
        span.pointee.pages = newPages
        lock.unlock()
    }
}

/// Writes `value` in decimal at `out` (no terminator); returns the digit count.
func formatDecimal(_ value: Int, into out: UnsafeMutablePointer<CChar>) -> Int {
    var v = value, digits = 0
    repeat { digits += 1; v /= 10 } while v > 0
    v = value
    for i in stride(from: digits - 1, through: 0, by: -1) { out[i] = CChar(48 + v % 10); v /= 10 }
    return digits
}
