// Library tags — in debug mode every buffer is charged to the library that allocated it:
// the first frame of its allocation stack outside the runtime (libc, libstdc++, libgcc,
// the loader, the Swift runtime, slabguard), so strdup's buffer is its caller's and a
// plugin's std::string is the plugin's (design §9, and the `leak at unload` of §8 without
// needing `audit`).
//
// Inside malloc, so two lock-free caches in the tag table's mapping answer the common
// case with one load each:
//   caller cache   2048 words, direct-mapped by return address: pc << 16 | value, where
//                  value is the library tag's index + 1, `runtimeMark` (a runtime library:
//                  look at the next frame), `loaderMark` (ld.so: the same, and noted when
//                  it is frame 0) or 0 (no module: no tag);
//   library cache  256 words by link_map address: link_map << 16 | value, filled from
//                  glibc's lock-free _dl_find_object on a caller-cache miss.
// A word is written with one store, so a reader sees a whole entry or another whole
// entry.  Only a miss in both takes `tagMutex` (to find or create the tag by file name).
// Both caches are cleared when a library is unloaded (its addresses and its link_map
// may be reused by the next one).

import CSlabguardShim
import Glibc

enum LibraryTags {
    /// Cache values: a runtime library (look at the next frame); the loader, ld.so (too).
    static let runtimeMark: UInt16 = 0xFFFF
    static let loaderMark: UInt16 = 0xFFFE
    /// In a buffer's value: bits 0–12 the library tag's index + 1; `loaderFlag`: the
    /// allocation was made by the loader or a runtime for itself (frame 0 in ld.so, or no
    /// frame outside the runtime libraries and the loader: ld.so's records of the
    /// libraries, the Swift runtime's list of loaded images), which the stale-pointer
    /// check leaves out: bookkeeping of where a library was, not a pointer the program holds.
    static let indexMask: UInt16 = 0x1FFF
    static let loaderFlag: UInt16 = 0x4000
    static let captureDepth = 16

    /// The library tag value of the allocation whose stack is frames[0..<count] (frame 0:
    /// the caller of the allocator): index + 1 (0: none), with `loaderFlag`.
    static func value(frames: UnsafePointer<UInt>, count: Int) -> UInt16 {
        guard count > 0, let st = TagTable.state() else { return 0 }
        var flags: UInt16 = 0
        for i in 0..<count {
            let v = value(st, pc: frames[i])
            if v == loaderMark && i == 0 { flags = loaderFlag }
            if v != runtimeMark && v != loaderMark { return v | flags }
        }
        return loaderFlag   // no frame of the program's: the runtime's own
    }

    /// The library tag value of the current allocation, from a short stack of its own
    /// (when `audit` is off and no stack was captured).
    /// The library of the allocation whose stack AuditEntry.recordCurrentStack just left
    /// in the thread's scratch (its first `count` frames).
    @inline(__always) static func value(capturedFrames count: Int) -> UInt16 {
        value(frames: sg_stack_scratch().unsafelyUnwrapped, count: count)
    }

    @inline(never) static func valueOfCaller(skip: Int) -> UInt16 {
        let buffer = sg_stack_scratch().unsafelyUnwrapped
        // Most allocations come straight from the program: its frame tells (found by
        // frame pointers, no unwind step), and only a call through the runtime (strdup,
        // operator new, ld.so) pays for a walk.
        var n = StackUnwinder.captureFromProgram(into: buffer, capacity: 1, skip: skip)
        if n > 0, let st = TagTable.state() {
            let first = value(st, pc: buffer[0])
            if first != runtimeMark && first != loaderMark { return first }
            n = StackUnwinder.captureFromProgram(into: buffer, capacity: captureDepth, skip: skip)
        }
        return value(frames: buffer, count: n)
    }

    @inline(__always) private static func value(_ st: UnsafeMutablePointer<TagTableState>, pc: UInt) -> UInt16 {
        let cache = (UnsafeMutableRawPointer(st) + TagTable.callerCacheOffset).assumingMemoryBound(to: UInt64.self)
        let slot = cache + Int((pc ^ (pc >> 12)) & UInt(TagTable.callerCacheWords - 1))
        let word = sg_atomic_load_u64(slot)
        if word != 0 && word >> 16 == UInt64(pc) { return UInt16(truncatingIfNeeded: word) }
        let v = resolve(st, pc: pc)
        sg_atomic_store_u64(slot, UInt64(pc) << 16 | UInt64(v))
        return v
    }

    /// A caller-cache miss: which module `pc` is in, then its tag.
    private static func resolve(_ st: UnsafeMutablePointer<TagTableState>, pc: UInt) -> UInt16 {
        guard let unwinder = StackUnwinder.state(), unwinder.pointee.findObject != 0 else { return resolveByModuleMap(st, pc: pc) }
        let find = unsafeBitCast(unwinder.pointee.findObject, to: SGFindObject.self)
        // struct dl_find_object (x86_64): flags, map_start, map_end, link_map, eh_frame, reserved[7]
        var result: (UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        guard find(UnsafeMutableRawPointer(bitPattern: pc), &result) == 0, result.3 != 0 else { return 0 }
        let linkMap = result.3
        let cache = (UnsafeMutableRawPointer(st) + TagTable.libraryCacheOffset).assumingMemoryBound(to: UInt64.self)
        let slot = cache + Int((linkMap >> 4 ^ linkMap >> 12) & UInt(TagTable.libraryCacheWords - 1))
        let word = sg_atomic_load_u64(slot)
        if word != 0 && word >> 16 == UInt64(linkMap) { return UInt16(truncatingIfNeeded: word) }
        // struct link_map: l_addr, l_name, ...; the executable's name is empty.
        let name = UnsafeRawPointer(bitPattern: linkMap)!.load(fromByteOffset: 8, as: UnsafePointer<CChar>?.self)
        let v = value(st, path: name)
        sg_atomic_store_u64(slot, UInt64(linkMap) << 16 | UInt64(v))
        return v
    }

    /// Without _dl_find_object (glibc before 2.35): the module map (takes its lock).
    private static func resolveByModuleMap(_ st: UnsafeMutablePointer<TagTableState>, pc: UInt) -> UInt16 {
        var record = ModuleRecord()
        guard ModuleMap.lookupRecord(pc, into: &record) >= 0, let path = ModuleMap.path(of: &record) else { return 0 }
        return value(st, path: path)
    }

    private static func value(_ st: UnsafeMutablePointer<TagTableState>, path: UnsafePointer<CChar>?) -> UInt16 {
        var name: UnsafePointer<CChar>
        if let path, path[0] != 0 {
            name = TagTable.baseName(path)
        } else {
            name = withUnsafeBytes(of: &st.pointee.executableName) { UnsafePointer($0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        }
        if strncmp(name, StackDebugSupport.cString("ld-linux"), 8) == 0 { return loaderMark }
        if isRuntime(name) { return runtimeMark }
        sg_mutex_lock(&st.pointee.tagMutex)
        let index = TagTable.libraryTagLocked(st, name: name)
        sg_mutex_unlock(&st.pointee.tagMutex)
        return index.map { UInt16($0 + 1) } ?? 0
    }

    /// Libraries whose allocations are made on someone else's behalf (the loader, ld-linux,
    /// is told apart before: `loaderMark`).
    static func isRuntime(_ name: UnsafePointer<CChar>) -> Bool {
        func hasPrefix(_ p: StaticString) -> Bool { strncmp(name, StackDebugSupport.cString(p), p.utf8CodeUnitCount) == 0 }
        return hasPrefix("libc.so") || hasPrefix("libstdc++.so") || hasPrefix("libgcc_s.so")
            || hasPrefix("libslabguard_rt.so") || hasPrefix("libswiftCore.so") || hasPrefix("libc++.so")
            || hasPrefix("libc++abi.so") || hasPrefix("libm.so") || hasPrefix("libpthread.so") || hasPrefix("libdl.so")
    }

    /// Forgets every cached answer (a library was unloaded).
    static func forgetCallers() {
        guard let st = TagTable.stateIfCreated else { return }
        let base = UnsafeMutableRawPointer(st) + TagTable.callerCacheOffset
        let words = TagTable.callerCacheWords + TagTable.libraryCacheWords
        let p = base.assumingMemoryBound(to: UInt64.self)
        for i in 0..<words { sg_atomic_store_u64(p + i, 0) }
    }

    // MARK: - Owner words

    static let reportedAtUnload: UInt64 = 1 << 63

    @inline(__always) static func libraryValue(ofOwner word: UInt64) -> UInt16 { UInt16(truncatingIfNeeded: word >> 32) & indexMask }
    @inline(__always) static func isLoaderAllocated(owner word: UInt64) -> Bool { UInt16(truncatingIfNeeded: word >> 32) & loaderFlag != 0 }
    @inline(__always) static func explicitKey(ofOwner word: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: word) }

    /// A debug buffer of `bytes` allocated by the library whose tag value is `value`.
    @inline(__always) static func chargeLibrary(_ value: UInt16, bytes: Int) {
        let index = value & indexMask
        if index != 0 { TagTable.chargeShard(Int(index) - 1, bytes: bytes) }
    }

    /// A debug buffer of `bytes` with owner word `owner` is freed.
    static func discharge(owner: UInt64, bytes: Int) {
        let library = libraryValue(ofOwner: owner)
        if library != 0 { TagTable.dischargeShard(Int(library) - 1, bytes: bytes) }
        if let index = TagTable.liveIndex(forKey: explicitKey(ofOwner: owner)) { TagTable.discharge(index, bytes: bytes) }
    }
}
