// The malloc drop-in's Swift half: one `@_cdecl` entry point per libc
// allocation function.  CSlabguardPreload exports the libc names (malloc,
// free, …) and tail-calls these; the names are our own because Swift 6.3
// reserves the libc ones (design §6).  The C side declares them hidden, so
// the linker makes them local to libslabguard_rt.so and the calls are direct.
//
// Contract of each entry (what the C exports rely on):
// - sizes arrive as C `size_t` (UInt here) and are checked against Int.max
//   before they reach the core: the core's Int sizes must never be negative;
// - libc semantics are decided here, in one place: errno values, realloc(p, 0)
//   frees and returns NULL (as glibc does), malloc(0) is a unique pointer,
//   posix_memalign returns its error instead of setting errno (EINVAL for an
//   alignment that is not a power of two), aligned_alloc and memalign round
//   such an alignment up, as glibc 2.36 does;
// - nothing here allocates or touches the Swift runtime: these run before the
//   Swift runtime's own start-up when the library is preloaded, and may be
//   re-entered while the heap sets itself up (Heap.swift serves such calls).
//
// Fast mode and debug mode both go through `Allocator`: the debug-flag test
// lives there.  These entries live in the core, not in SlabguardRuntime with the
// rest of the C API, so that `Allocator.malloc`/`free` inline into them: a call
// across Swift modules is never inlined (no @inlinable here), and it cost one
// call and frame per malloc.  The C export tail-jumps here, so a fast malloc is
// export → this function, one frame.

import CSlabguardShim
import Glibc

/// The largest request size the core accepts (its sizes are Int).  Computed, not
/// stored: a global would need lazy initialization on the malloc path.
@inline(__always) private var maxRequest: UInt { UInt(bitPattern: Int.max) }
@inline(__always) private var entryPageSize: UInt { 4096 }

@_cdecl("sg_entry_malloc")
public func sg_entry_malloc(_ size: UInt) -> UnsafeMutableRawPointer? {
    // One size check on the hit path: a small size is below maxRequest too.
    guard size <= UInt(SG_SMALL_MAX) else { return mallocMiss(size) }
    return Allocator.mallocSmall(Int(bitPattern: size)) { mallocMiss(UInt(bitPattern: $0)) }
}

/// A malloc the hit path did not serve: too big to be a size, a large or debug
/// request, an empty magazine, a sample due.
@inline(never) func mallocMiss(_ size: UInt) -> UnsafeMutableRawPointer? {
    if _slowPath(size > maxRequest) { return failWithErrno(ENOMEM) }
    return Allocator.mallocSlow(Int(bitPattern: size))
}

@_cdecl("sg_entry_free")
public func sg_entry_free(_ pointer: UnsafeMutableRawPointer?) {
    Allocator.free(pointer)
}

@_cdecl("sg_entry_calloc")
public func sg_entry_calloc(_ count: UInt, _ size: UInt) -> UnsafeMutableRawPointer? {
    let (total, overflow) = count.multipliedReportingOverflow(by: size)
    if _slowPath(overflow || total > maxRequest) { return failWithErrno(ENOMEM) }
    return Allocator.calloc(1, Int(bitPattern: total))
}

/// glibc semantics: realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and
/// returns NULL; on failure the old block is left alone and NULL is returned.
@_cdecl("sg_entry_realloc")
public func sg_entry_realloc(_ pointer: UnsafeMutableRawPointer?, _ size: UInt) -> UnsafeMutableRawPointer? {
    if _slowPath(size > maxRequest) { return failWithErrno(ENOMEM) }
    if pointer != nil && size == 0 {
        Allocator.free(pointer)
        return nil
    }
    return Allocator.realloc(pointer, Int(bitPattern: size))
}

@_cdecl("sg_entry_reallocarray")
public func sg_entry_reallocarray(_ pointer: UnsafeMutableRawPointer?, _ count: UInt, _ size: UInt) -> UnsafeMutableRawPointer? {
    let (total, overflow) = count.multipliedReportingOverflow(by: size)
    if _slowPath(overflow) { return failWithErrno(ENOMEM) }
    return sg_entry_realloc(pointer, total)
}

/// posix_memalign: returns 0, EINVAL (alignment not a power of two multiple of
/// sizeof(void *)) or ENOMEM; never changes errno, and leaves *out alone on failure.
@_cdecl("sg_entry_posix_memalign")
public func sg_entry_posix_memalign(_ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ alignment: UInt, _ size: UInt) -> Int32 {
    guard let out else { return EINVAL }
    if alignment < UInt(MemoryLayout<UnsafeRawPointer>.size) || alignment & (alignment &- 1) != 0 { return EINVAL }
    if alignment > maxRequest || size > maxRequest { return ENOMEM }   // a valid alignment too big to serve, as glibc says
    let saved = errno
    guard let p = Allocator.alignedAlloc(Int(bitPattern: alignment), Int(bitPattern: size)) else {
        errno = saved
        return ENOMEM
    }
    out.pointee = p
    return 0
}

/// aligned_alloc and memalign, as glibc 2.36 does them (both one function there): an
/// alignment that is not a power of two is rounded up to the next one (0 and 1 mean
/// none); above SIZE_MAX/2+1 it is EINVAL; any size is accepted.
@_cdecl("sg_entry_aligned_alloc")
public func sg_entry_aligned_alloc(_ alignment: UInt, _ size: UInt) -> UnsafeMutableRawPointer? {
    if alignment > UInt.max / 2 + 1 { return failWithErrno(EINVAL) }
    var rounded = max(alignment, 1)
    if rounded & (rounded &- 1) != 0 { rounded = 1 << UInt(UInt.bitWidth - rounded.leadingZeroBitCount) }
    if rounded > maxRequest || size > maxRequest { return failWithErrno(ENOMEM) }
    return Allocator.alignedAlloc(Int(bitPattern: rounded), Int(bitPattern: size))
}

/// valloc: page-aligned.
@_cdecl("sg_entry_valloc")
public func sg_entry_valloc(_ size: UInt) -> UnsafeMutableRawPointer? {
    sg_entry_aligned_alloc(entryPageSize, size)
}

/// pvalloc: page-aligned, size rounded up to whole pages (pvalloc(0) is one page).
@_cdecl("sg_entry_pvalloc")
public func sg_entry_pvalloc(_ size: UInt) -> UnsafeMutableRawPointer? {
    let page = entryPageSize
    let (padded, overflow) = max(size, 1).addingReportingOverflow(page &- 1)
    if overflow { return failWithErrno(ENOMEM) }
    return sg_entry_aligned_alloc(page, padded & ~(page &- 1))
}

@_cdecl("sg_entry_malloc_usable_size")
public func sg_entry_malloc_usable_size(_ pointer: UnsafeMutableRawPointer?) -> UInt {
    UInt(bitPattern: Allocator.usableSize(pointer))
}

@inline(never)
private func failWithErrno(_ code: Int32) -> UnsafeMutableRawPointer? {
    errno = code
    return nil
}
