// The C API (slabguard.h), exported from the dynamic library.  Thin: every
// function forwards to SlabguardCore's entry points.

import CSlabguardShim
import Glibc
import SlabguardCore

@_cdecl("sg_alloc")
public func sg_alloc(_ size: Int) -> UnsafeMutableRawPointer? { Allocator.malloc(size) }

@_cdecl("sg_zalloc")
public func sg_zalloc(_ size: Int) -> UnsafeMutableRawPointer? { Allocator.zalloc(size) }

@_cdecl("sg_free")
public func sg_free(_ buffer: UnsafeMutableRawPointer?, _ size: Int) { Allocator.free(buffer, size: size) }

@_cdecl("sg_realloc")
public func sg_realloc(_ buffer: UnsafeMutableRawPointer?, _ oldSize: Int, _ newSize: Int) -> UnsafeMutableRawPointer? {
    Allocator.realloc(buffer, newSize)
}

@_cdecl("sg_cache_create")
public func sg_cache_create(_ name: UnsafePointer<CChar>?, _ size: Int, _ alignment: Int,
                            _ constructor: (@convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Int32)?,
                            _ destructor: (@convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Void)?,
                            _ argument: UnsafeMutableRawPointer?) -> OpaquePointer? {
    let defaultName: StaticString = "sg_cache"
    let cacheName = name ?? UnsafeRawPointer(defaultName.utf8Start).assumingMemoryBound(to: CChar.self)
    guard let handle = CacheHandle.create(name: cacheName, size: size, alignment: alignment,
                                          constructor: constructor, destructor: destructor, argument: argument)
    else {
        // Bad arguments (CacheOps.create's limits) are EINVAL; anything else is out of memory.
        let badAlignment = alignment < 0 || alignment > 4096 || (alignment & (alignment &- 1)) != 0
        Allocator.setErrno(size <= 0 || size > 1 << 30 || badAlignment ? EINVAL : ENOMEM)
        return nil
    }
    return OpaquePointer(handle.raw)
}

@_cdecl("sg_cache_alloc")
public func sg_cache_alloc(_ cache: OpaquePointer?) -> UnsafeMutableRawPointer? {
    guard let cache else { return nil }
    let p = CacheHandle(raw: UnsafeMutableRawPointer(cache)).allocate()
    if p == nil { Allocator.setErrno(ENOMEM) }
    return p
}

@_cdecl("sg_cache_free")
public func sg_cache_free(_ cache: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?) {
    guard let cache, let buffer else { return }
    CacheHandle(raw: UnsafeMutableRawPointer(cache)).free(buffer)
}

@_cdecl("sg_cache_destroy")
public func sg_cache_destroy(_ cache: OpaquePointer?) -> Int {
    guard let cache else { return 0 }
    return CacheHandle(raw: UnsafeMutableRawPointer(cache)).destroy().outstandingBuffers
}

@_cdecl("sg_cache_reap")
public func sg_cache_reap(_ cache: OpaquePointer?) {
    guard let cache else { return }
    CacheHandle(raw: UnsafeMutableRawPointer(cache)).reap()
}

@_cdecl("sg_stats_print")
public func sg_stats_print(_ fd: Int32) { StatisticsTable.print(to: fd) }

@_cdecl("sg_verify")
public func sg_verify() -> Int { DebugControl.verifyHeap() }

@_cdecl("sg_find_leaks")
public func sg_find_leaks() -> Int { DebugControl.findLeaks() }

// MARK: - Tags (design §9)

@_cdecl("sg_tag_create")
public func sg_tag_create(_ name: UnsafePointer<CChar>?) -> OpaquePointer? {
    OpaquePointer(bitPattern: TagAPI.create(name: name))
}

@_cdecl("sg_tag_alloc")
public func sg_tag_alloc(_ tag: OpaquePointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    TagAPI.allocate(UInt(bitPattern: tag), size, zero: false)
}

@_cdecl("sg_tag_zalloc")
public func sg_tag_zalloc(_ tag: OpaquePointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    TagAPI.allocate(UInt(bitPattern: tag), size, zero: true)
}

@_cdecl("sg_tag_free")
public func sg_tag_free(_ tag: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ size: Int) {
    TagAPI.free(UInt(bitPattern: tag), buffer, size)
}

@_cdecl("sg_tag_check")
public func sg_tag_check(_ tag: OpaquePointer?) -> Int { TagAPI.check(UInt(bitPattern: tag)) }

@_cdecl("sg_tag_destroy")
public func sg_tag_destroy(_ tag: OpaquePointer?) -> Int { TagAPI.destroy(UInt(bitPattern: tag)) }
