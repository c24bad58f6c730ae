// The C++ allocation entry points: the Swift half of the global operator new/delete
// family that CSlabguardPreload exports (`_Znwm`, `_ZdlPv`, … — every form libstdc++
// exports: plain, nothrow, sized, aligned, aligned nothrow, aligned sized).  The C side
// passes the form as a kind (Debug/Checks/AllocationKinds.swift: 1 new, 2 new[],
// 3 aligned new, 4 aligned new[]; the deallocators by the same numbers) and handles
// failure: these return nil, and the export then calls the C++ runtime's own operator
// (new_handler loop, std::bad_alloc) — see preload.c.
//
// Fast mode: `Allocator.malloc`/`free` with a kind the fast paths never look at — new is
// malloc, delete is free.  Debug mode (and sample mode's guarded buffers): the kind is
// recorded in the buffer's tag by the slow path, and checked at release.

import CSlabguardShim
import Glibc

/// operator new / new[] (plain and nothrow): nil on failure, errno ENOMEM.
@_cdecl("sg_entry_cxx_new")
public func sg_entry_cxx_new(_ size: UInt, _ kind: UInt32) -> UnsafeMutableRawPointer? {
    if _slowPath(size > UInt(bitPattern: Int.max)) { return cxxOutOfMemory() }
    return Allocator.malloc(Int(bitPattern: size), kind: UInt8(truncatingIfNeeded: kind))
}

/// operator new / new[] with std::align_val_t: nil when the alignment is not a power of
/// two (libstdc++ throws bad_alloc for it, and the C side lets it) or memory is short.
@_cdecl("sg_entry_cxx_new_aligned")
public func sg_entry_cxx_new_aligned(_ size: UInt, _ alignment: UInt, _ kind: UInt32) -> UnsafeMutableRawPointer? {
    let limit = UInt(bitPattern: Int.max)
    if _slowPath(alignment == 0 || alignment & (alignment &- 1) != 0 || alignment > limit || size > limit) {
        return cxxOutOfMemory()
    }
    return Allocator.alignedAlloc(Int(bitPattern: alignment), Int(bitPattern: size), kind: UInt8(truncatingIfNeeded: kind))
}

/// operator delete / delete[] (plain, nothrow, aligned: `alignment` 0 when not aligned).
@_cdecl("sg_entry_cxx_delete")
public func sg_entry_cxx_delete(_ pointer: UnsafeMutableRawPointer?, _ alignment: UInt, _ kind: UInt32) {
    Allocator.free(pointer, kind: UInt8(truncatingIfNeeded: kind), alignment: alignment)
}

/// Sized operator delete / delete[] (C++14; aligned too): in debug mode a size other than
/// the allocation's is `bad free: free size != alloc size`.
@_cdecl("sg_entry_cxx_delete_sized")
public func sg_entry_cxx_delete_sized(_ pointer: UnsafeMutableRawPointer?, _ size: UInt, _ alignment: UInt, _ kind: UInt32) {
    Allocator.free(pointer, size: Int(bitPattern: size), kind: UInt8(truncatingIfNeeded: kind), alignment: alignment)
}

/// A buffer the C++ runtime's own operator new returned on the failure path (it called
/// malloc or aligned_alloc, slabguard's, after its new_handler made room): recorded as
/// allocated by `kind`, as if slabguard's operator had served it.
@_cdecl("sg_entry_cxx_mark")
public func sg_entry_cxx_mark(_ pointer: UnsafeMutableRawPointer?, _ kind: UInt32) {
    guard let p = pointer, sg_debug_flags() != 0 || Allocator.isSampled(p) else { return }
    AllocationKinds.mark(p, UInt8(truncatingIfNeeded: kind))
}

@inline(never)
private func cxxOutOfMemory() -> UnsafeMutableRawPointer? {
    Allocator.setErrno(ENOMEM)
    return nil
}
