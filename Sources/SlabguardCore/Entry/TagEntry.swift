// Tag entry points for the front ends (slabguard.h's sg_tag_*, Swift's `Tag`): design §9.
// A handle is a plain word (Debug/Tags/TagTable.swift); every call checks it first, and
// a handle that is not a live tag is an `invalid tag` report (then abort, unless
// `noabort`, after which the call does nothing harmful: allocation returns nil, free
// still frees the buffer, check and destroy return 0).
//
// Buffers come from the default heap (sg_alloc's); in debug mode the tag's key goes into
// each buffer's owner word, so a check can list them, a free to the wrong tag is caught,
// and a plain free(3) of a tagged buffer still settles the tag's counters.  In fast mode
// the counters are kept here, by the sizes the caller gives.

import CSlabguardShim
import Glibc

package enum TagAPI {
    /// A new tag; 0 (with errno ENOMEM) when the table is full or there is no memory.
    package static func create(name: UnsafePointer<CChar>?) -> UInt {
        guard Allocator.ensureReady() else { return 0 }
        let fallback: StaticString = "sg_tag"
        guard let handle = TagTable.create(name: name ?? StackDebugSupport.cString(fallback)) else {
            Allocator.setErrno(ENOMEM)
            return 0
        }
        return handle
    }

    /// The live tag's slot, or nil after reporting the bad handle.
    private static func live(_ handle: UInt) -> Int? {
        let lookup = TagTable.lookup(handle: handle)
        if case .live(let index) = lookup { return index }
        TagCheck.reportInvalid(handle: handle, lookup: lookup)
        return nil
    }

    package static func allocate(_ handle: UInt, _ size: Int, zero: Bool) -> UnsafeMutableRawPointer? {
        guard Allocator.ensureReady(), let index = live(handle) else { return nil }
        guard let p = zero ? Allocator.zalloc(size) : Allocator.malloc(size) else { return nil }
        if sg_debug_flags() != 0, let live = DebugAllocator.liveTag(of: p) {
            live.tag.owner = live.tag.owner & ~UInt64(0xFFFF_FFFF) | UInt64(TagTable.key(of: index))
        }
        TagTable.charge(index, bytes: size)
        return p
    }

    package static func free(_ handle: UInt, _ pointer: UnsafeMutableRawPointer?, _ size: Int) {
        guard let p = pointer else { return }
        guard let index = live(handle) else { return Allocator.free(p, size: size) }
        if sg_debug_flags() != 0 {
            // The free path settles the counters of the buffer's own tag (its owner word).
            if let live = DebugAllocator.liveTag(of: p) {
                let key = LibraryTags.explicitKey(ofOwner: live.tag.owner)
                if key != TagTable.key(of: index) {
                    TagCheck.reportInvalid(.wrongTag(buffer: UInt(bitPattern: p), owner: TagTable.liveIndex(forKey: key)),
                                           name: TagTable.name(index))
                }
            }
            return Allocator.free(p, size: size)
        }
        TagTable.discharge(index, bytes: size)
        Allocator.free(p, size: size)
    }

    /// Reports what is outstanding in the tag; returns the number of buffers (0: clean).
    package static func check(_ handle: UInt) -> Int {
        guard let index = live(handle) else { return 0 }
        return TagCheck.run(index)
    }

    /// Checks, then retires the tag; returns the number of buffers outstanding.
    package static func destroy(_ handle: UInt) -> Int {
        guard let index = live(handle) else { return 0 }
        let outstanding = TagCheck.run(index)
        TagTable.retire(index)
        return outstanding
    }

    /// The tag's counters (Swift API, tests).
    package static func statistics(_ handle: UInt) -> (buffers: Int, bytes: Int, peak: Int, allocations: UInt64, frees: UInt64)? {
        guard case .live(let index) = TagTable.lookup(handle: handle) else { return nil }
        return TagTable.counters(index)
    }
}
