// Allocation kinds — how a debug buffer was allocated, so that its release can be
// checked against it (design §4: `alloc-dealloc mismatch: buffer allocated by
// ALLOCATOR, freed by DEALLOCATOR`).  C++ programs under the drop-in reach slabguard
// through `operator new`/`new[]` and their aligned forms (CSlabguardPreload/preload.c,
// Entry/CxxEntry.swift) as well as through malloc; a buffer must go back through the
// matching deallocator.
//
// Where the kind is kept: bits 48–50 of the buffer tag's owner word (BufferTag.owner;
// bits 0–47 and 63 are the tags', Tags/TagTable.swift), in every mode with a buffer
// tag — the debug caches' chunks, the debug large spans and the guarded spans
// (`guards`, and the sampled buffers of `sample=`).  0 is the malloc family, so every
// allocation path that writes the owner word (`tag.owner = library << 32`) records
// malloc; the C++ entry points mark their buffer after it is allocated (`mark`).
// Fast mode records nothing and checks nothing.
//
// Where the check is: a C++ delete asks `release` before the free path runs (it
// reports a mismatch, recognises delete's pointer past new[]'s array cookie, and
// clears the kind: the buffer is then freed as any other); free(3) and the rest of the
// malloc family's releases (realloc, sg_free) find a non-zero kind in the tag the
// debug free paths hold (`freedByMalloc`).

import CSlabguardShim
import Glibc

enum AllocationKinds {
    static var shift: UInt64 { AllocationKind.ownerShift }
    static var mask: UInt64 { AllocationKind.ownerMask }

    /// The live buffer (debug cache chunk, debug large span or guarded span) that starts
    /// at `p`, or nil.  Only for pointers of a tagged heap: debug mode, or a sampled buffer.
    static func live(at p: UnsafeRawPointer) -> LiveBuffer? {
        guard let owner = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: p) else { return nil }
        if owner.load(as: UInt32.self) == OwnerKind.slab.rawValue {
            guard let found = DebugChunk.holding(p, in: owner.assumingMemoryBound(to: Slab.self)) else { return nil }
            let (cache, chunk, tag) = (found.cache, found.chunk, found.tag)
            let state = tag.state
            guard state.isAllocated, p == UnsafeRawPointer(chunk + state.offset) else { return nil }
            return LiveBuffer(tag: tag, user: chunk + state.offset, size: state.size, name: cache.namePointer,
                              flags: cache.pointee.debugFlags, layout: TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags)))
        }
        let span = owner.assumingMemoryBound(to: LargeSpan.self)
        let tag = BufferTag(base: span.pointee.base)
        let user = span.pointee.base + span.pointee.userOffset
        guard UnsafeRawPointer(user) == p, tag.state.isAllocated else { return nil }
        return LiveBuffer(tag: tag, user: user, size: span.pointee.requestedSize, name: DebugReport.name(of: span),
                          flags: 0, layout: TagLayout.of(span))
    }

    /// Records that the buffer just allocated at `p` (debug mode, or a sampled buffer)
    /// came from `kind` (a C++ allocation; 0, malloc, is what the tag says already).
    static func mark(_ p: UnsafeMutableRawPointer, _ kind: UInt8) {
        guard kind != 0, let buffer = live(at: p) else { return }
        buffer.tag.owner = buffer.tag.owner & ~mask | UInt64(kind & 7) << shift
    }

    /// A C++ delete of `p` by deallocator `kind` (debug mode, or a sampled buffer), before
    /// the free path runs: reports a mismatch with the buffer's allocator, and returns the
    /// pointer to free — the buffer's start, also for `delete` given the objects of a
    /// `new[]` past its array cookie — and whether a sized delete's size is still to be
    /// checked (not after a mismatch: the sizes of two different forms differ anyway).
    /// A pointer that is no live buffer's start is left to the free path, which reports it.
    static func release(_ p: UnsafeMutableRawPointer, by kind: UInt8, alignment: UInt) -> (pointer: UnsafeMutableRawPointer, checkSize: Bool) {
        let freedBy = AllocationKind(rawValue: kind & 7) ?? .new
        if let buffer = live(at: p) {
            let allocatedBy = buffer.kind
            buffer.tag.owner &= ~mask   // freed as the malloc family's from here on
            guard allocatedBy != freedBy else { return (p, true) }
            DebugReport.mismatch(buffer, allocatedBy: allocatedBy, freedBy: freedBy, given: p)
            return (p, false)
        }
        // `delete` where `delete[]` was due, on objects with a destructor: new[] put the
        // element count (8 bytes, or the alignment when larger) before them, and the
        // pointer deleted is past it.
        guard freedBy == .new || freedBy == .alignedNew else { return (p, true) }
        let cookie = max(UInt(8), freedBy == .alignedNew ? alignment : 0)
        guard UInt(bitPattern: p) > cookie, let buffer = live(at: p - Int(cookie)),
              buffer.kind == .newArray || buffer.kind == .alignedNewArray else { return (p, true) }
        let allocatedBy = buffer.kind
        buffer.tag.owner &= ~mask
        DebugReport.mismatch(buffer, allocatedBy: allocatedBy, freedBy: freedBy, given: p)
        return (buffer.user, false)
    }

    /// free(3) (or realloc, sg_free) releasing `buffer`, whose tag says a C++ allocator
    /// made it (the debug free paths call this only when the kind bits are set).
    @inline(never) static func freedByMalloc(_ buffer: LiveBuffer) {
        guard buffer.kind != .malloc else { return }
        DebugReport.mismatch(buffer, allocatedBy: buffer.kind, freedBy: .malloc, given: buffer.user)
    }
}
