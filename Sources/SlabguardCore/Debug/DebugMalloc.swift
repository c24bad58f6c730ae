// The malloc family in debug mode (default heap): routes requests to guarded
// spans (`guards`, `sample=N`: GuardedAllocator.swift) or to checked cache
// buffers, and handles large spans with a leading tag page, a redzone to
// the end of the last page, and retirement after free (pages made
// inaccessible and kept out of reuse for a while, so a stale access faults and
// a second free is recognised).

import CSlabguardShim
import Glibc

extension DebugAllocator {
    static func malloc(_ size: Int, zero: Bool) -> UnsafeMutableRawPointer? {
        if GuardedAllocator.wanted(),
           let p = GuardedAllocator.allocate(size, alignment: GuardedAllocator.naturalAlignment(size), zero: zero) {
            return p
        }
        let heap = SizeClassHeap.defaultHeap
        if size <= SizeClasses.maxSize {
            return allocate(heap.pointee.caches![SizeClasses.index(size)]!, size: size, zero: zero)
        }
        return allocateLarge(size, alignment: pageSize, zero: zero)
    }

    static func aligned(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
        if alignment <= pageSize && GuardedAllocator.wanted(),
           let p = GuardedAllocator.allocate(size, alignment: max(alignment, GuardedAllocator.naturalAlignment(size)), zero: false) {
            return p
        }
        // The 8-byte class is only 8-aligned; every larger class is 16-aligned.
        if alignment <= 8 { return malloc(size, zero: false) }
        if alignment == 16 && size <= SizeClasses.maxSize {
            return allocate(SizeClassHeap.defaultHeap.pointee.caches![SizeClasses.index(max(size, 9))]!, size: size, zero: false)
        }
        let (needed, overflow) = size.addingReportingOverflow(alignment - 16)
        if alignment <= pageSize && !overflow && needed <= SizeClasses.maxSize {
            return allocate(SizeClassHeap.defaultHeap.pointee.caches![SizeClasses.index(needed)]!,
                            size: size, alignment: alignment, zero: false)
        }
        return allocateLarge(size, alignment: max(alignment, pageSize), zero: false)
    }

    /// free(3) / sized free of a default-heap or object-cache pointer in debug mode.
    static func free(_ p: UnsafeMutableRawPointer, expectedSize: Int?) {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard let owner = arena.pointee.owner(of: p) else {
            if expectedSize == nil && sg_free_foreign(p) != 0 { return }   // glibc's own buffer, to glibc's free
            return DebugReport.invalidFree(p, expectedSize: expectedSize)
        }
        if owner.load(as: UInt32.self) == OwnerKind.slab.rawValue {
            let slab = owner.assumingMemoryBound(to: Slab.self)
            if slab.objectCache.pointee.debugFlags != 0 {
                return free(p, slab: slab, expectedSize: expectedSize)
            }
            return CacheOps.free(slab.objectCache, p)
        }
        freeLarge(owner.assumingMemoryBound(to: LargeSpan.self), p, expectedSize: expectedSize)
    }

    static func realloc(_ p: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer? {
        guard let oldSize = liveSize(p) else {
            free(p, expectedSize: nil)   // reports the problem
            return nil
        }
        // Always move: a stale pointer to the old buffer then hits freed, poisoned memory.
        guard let q = malloc(size, zero: false) else { return nil }
        memcpy(q, p, min(size, oldSize))
        free(p, expectedSize: nil)
        return q
    }

    /// The requested size of a live buffer at exactly `p`, or nil.
    static func liveSize(_ p: UnsafeRawPointer) -> Int? {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard let owner = arena.pointee.owner(of: p) else { return nil }
        if owner.load(as: UInt32.self) == OwnerKind.slab.rawValue {
            let cache = owner.assumingMemoryBound(to: Slab.self).objectCache
            if cache.pointee.debugFlags == 0 {
                guard let chunk = owner.assumingMemoryBound(to: Slab.self).pointee.chunk(containing: p) else { return nil }
                return p == UnsafeRawPointer(chunk) ? cache.pointee.bufferSize : nil
            }
        }
        return liveTag(of: p, owner: owner)?.size
    }

    /// The tag of the live debug buffer that starts at `p`, with its requested size, or nil.
    static func liveTag(of p: UnsafeRawPointer) -> (tag: BufferTag, size: Int)? {
        guard let owner = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: p) else { return nil }
        return liveTag(of: p, owner: owner)
    }

    /// `liveTag(of:)` with the page's owner (a slab or a large span) already looked up.
    private static func liveTag(of p: UnsafeRawPointer, owner: UnsafeMutableRawPointer) -> (tag: BufferTag, size: Int)? {
        if owner.load(as: UInt32.self) == OwnerKind.slab.rawValue {
            guard let found = DebugChunk.holding(p, in: owner.assumingMemoryBound(to: Slab.self)) else { return nil }
            let tag = found.tag
            let state = tag.state
            return state.isAllocated && p == UnsafeRawPointer(found.chunk + state.offset) ? (tag, state.size) : nil
        }
        let span = owner.assumingMemoryBound(to: LargeSpan.self)
        let tag = BufferTag(base: span.pointee.base)
        guard span.pointee.base + span.pointee.userOffset == p, tag.state.isAllocated else { return nil }
        return (tag, span.pointee.requestedSize)
    }

    // MARK: - Large spans

    static func allocateLarge(_ size: Int, alignment: Int, zero: Bool) -> UnsafeMutableRawPointer? {
        HeapVerifier.countOperation()
        let heap = SizeClassHeap.defaultHeap
        let flags = DebugFlags(rawValue: heap.pointee.debugFlags)
        let layout = TagLayout(flags: flags)
        let userOffset = roundUp(layout.totalBytes, alignment)
        guard size <= Int.max / 2 - userOffset else { return nil }
        guard let user = heap.allocateLarge(userOffset + max(size, 1), alignment: alignment, zero: zero, userOffset: userOffset) else { return nil }
        let base = user - userOffset
        let span = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: base)!.assumingMemoryBound(to: LargeSpan.self)
        span.pointee.requestedSize = size
        let tag = BufferTag(base: base)
        tag.redzoneWord = Pattern.redzone
        let library: UInt16
        if let entry = tag.auditEntry(0, layout: layout) {
            library = LibraryTags.value(capturedFrames: entry.recordCurrentStack(skip: 2))
        } else {
            library = LibraryTags.valueOfCaller(skip: 2)
        }
        if let entry = tag.auditEntry(1, layout: layout) { entry.clear() }
        tag.owner = UInt64(library) << 32
        let end = base + (span.pointee.pages << pageShift)
        Pattern.fill(user + size, end - (user + size), Pattern.redzone)
        // The tag's tail guard and any alignment pad before the buffer: an underflow lands there.
        Pattern.fill(base + layout.tailGuardOffset, user - (base + layout.tailGuardOffset), Pattern.redzone)
        if !zero && flags.contains(.uninit) { Pattern.fill(user, size, Pattern.uninitialized) }
        tag.state = .allocated(offset: 0, size: 0)
        LibraryTags.chargeLibrary(library, bytes: size)
        if let entry = tag.auditEntry(0, layout: layout) { StackDepot.charge(entry.stackId, bytes: size) }
        return user
    }

    /// Checks and frees a large or guarded span's buffer at `p`.
    static func freeLarge(_ span: UnsafeMutablePointer<LargeSpan>, _ p: UnsafeMutableRawPointer, expectedSize: Int?) {
        let guarded = span.pointee.guarded
        if !guarded { HeapVerifier.countOperation() }
        let base = span.pointee.base
        let tag = BufferTag(base: base)
        let user = base + span.pointee.userOffset
        let size = span.pointee.requestedSize
        let layout = TagLayout.of(span)
        if tag.state.isFree {
            if p == user { return DebugReport.duplicateFreeLarge(span: span, tag: tag, layout: layout) }
            return DebugReport.invalidFree(p, expectedSize: expectedSize)
        }
        if p != user {
            if p > user && p < user + max(size, 1) {   // into the buffer: name it
                return DebugReport.badFreeAddressLarge(span: span, tag: tag, layout: layout, given: p)
            }
            return DebugReport.invalidFree(p, expectedSize: expectedSize)
        }
        // Allocated by a C++ new (a delete clears the kind before it gets here): a mismatch.
        if tag.owner & AllocationKinds.mask != 0, let buffer = AllocationKinds.live(at: p) { AllocationKinds.freedByMalloc(buffer) }
        if let expected = expectedSize, expected != size { DebugReport.badFreeSizeLarge(span: span, tag: tag, layout: layout, given: expected) }
        // The redzone runs to the end of the span — for a guarded span, to its guard page,
        // and the pad between its tag page(s) and the buffer holds the pattern too.
        let end = base + ((span.pointee.pages - (guarded ? 1 : 0)) << pageShift)
        let padStart = guarded ? base + (((layout.totalBytes + pageSize - 1) >> pageShift) << pageShift) : base + layout.tailGuardOffset
        if let bad = Pattern.firstMismatch(padStart, user - padStart, Pattern.redzone) ??
                     Pattern.firstMismatch(user + size, end - (user + size), Pattern.redzone) {
            DebugReport.redzoneLarge(span: span, tag: tag, layout: layout, at: bad)
        }
        LibraryTags.discharge(owner: tag.owner, bytes: size)
        if let entry = tag.auditEntry(0, layout: layout) { StackDepot.discharge(entry.stackId, bytes: size) }
        if let entry = tag.auditEntry(1, layout: layout) { entry.recordCurrentStack(skip: 2) }
        if let saved = tag.contents(layout: layout) { memcpy(saved, user, min(size, layout.contentsBytes)) }
        // Marked free under the large-span lock: the leak scan holds it while it reads every
        // span it found allocated, so no thread it could not stop (one that blocks the stop
        // signal) marks a span free under it; once marked, no scan reads it, so its pages
        // are released and made inaccessible after the lock is dropped (that takes
        // microseconds, and under sample=N two threads' frees queued behind it: futex
        // calls by the thousand).
        let largeLock = SizeClassHeap.defaultHeap.largeLock
        largeLock.lock()
        tag.state = .free(offset: 0, size: 0)
        largeLock.unlock()
        Retirement.closeData(span)
        if guarded { _ = sg_atomic_add_u64(&GuardState.shared.pointee.guardedLive, UInt64.max) }   // - 1
        Retirement.retire(span)
    }
}
