// ModuleMap: the list of loaded ELF modules (executable, shared objects, vDSO) as reported
// by dl_iterate_phdr, kept as an append-only snapshot of every module ever seen so that
// addresses captured before a dlclose can still be attributed to their module.
//
// Memory: one anonymous mmap made on first use (pthread_once): a state header, a fixed
// array of `capacity` records, and a bump-allocated pool holding the NUL-terminated paths.
// Nothing here allocates through malloc or the Swift runtime.
//
// Locking: every public entry point takes `mutex` (a pthread mutex living in the mmapped
// header); dl_iterate_phdr (loader lock) is called with it held. Records are never removed or
// reused (`alive` is cleared when a refresh no longer sees the module) and paths in the pool
// are immutable, so a copied record and its path pointer stay valid without the lock.
// ModuleMap never calls into ElfSymbols; after a refresh that saw an unload it clears the
// unwinder's rule cache (outside its lock).
//
// dl_iterate_phdr is not exposed by Swift's Glibc module (no <link.h>), so it is resolved
// with dlsym once, and `struct dl_phdr_info` / `Elf64_Phdr` fields are read by offset.

import CSlabguardShim
import Glibc
import SlabguardFormats

/// Snapshot of one module, filled by `ModuleMap.lookup`.
struct ModuleInfo {
    /// Load bias: runtime address = base + ELF virtual address (0 for a non-PIE executable).
    var base: UInt = 0
    /// Lowest runtime address and end (exclusive) of the module's PT_LOAD segments.
    var start: UInt = 0
    var end: UInt = 0
    /// False once a refresh no longer saw the module (dlclose'd).
    var isLoaded: Bool = false
    /// GNU build id (NT_GNU_BUILD_ID), truncated to 32 bytes; 0 when the module has none.
    var buildIdLength: Int = 0
    var buildId = InlineArray<32, UInt8>(repeating: 0)
    /// NUL-terminated path of the module file (truncated to 4095 bytes).
    var path = InlineArray<4096, CChar>(repeating: 0)
}

extension ModuleMap {
    /// Whether `module` is slabguard's own library, libslabguard_rt.so (by file name).
    static func isSlabguardLibrary(_ module: ModuleInfo) -> Bool {
        let name: StaticString = "libslabguard_rt.so"
        var length = 0
        while length < 4095 && module.path[length] != 0 { length += 1 }
        let n = name.utf8CodeUnitCount
        guard length >= n, length == n || module.path[length - n - 1] == 0x2F else { return false }
        for i in 0..<n where UInt8(bitPattern: module.path[length - n + i]) != name.utf8Start[i] { return false }
        return true
    }

    /// Whether `module` is the dynamic loader or the C library (by file name): their
    /// writable data is theirs, not the program's (ld.so keeps dead pointers to mappings
    /// it has unmapped, such as ld.so.cache, which a later library may land on).
    static func isLoaderOrCLibrary(_ module: ModuleInfo) -> Bool {
        var length = 0
        while length < 4095 && module.path[length] != 0 { length += 1 }
        var start = length
        while start > 0 && module.path[start - 1] != 0x2F { start -= 1 }
        func hasPrefix(_ p: StaticString) -> Bool {
            let n = p.utf8CodeUnitCount
            guard length - start >= n else { return false }
            for i in 0..<n where UInt8(bitPattern: module.path[start + i]) != p.utf8Start[i] { return false }
            return true
        }
        return hasPrefix("ld-linux") || hasPrefix("libc.so")
    }
}

/// Internal per-module record kept in the mmapped snapshot.
struct ModuleRecord {
    var start: UInt = 0
    var end: UInt = 0
    var bias: UInt = 0
    var pathOffset: Int = 0
    var pathLength: Int = 0
    var buildIdLength: Int = 0
    var buildId: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    /// When a refresh first saw it (audit-clock ticks): its load time, to within a refresh;
    /// 0 for the modules the first scan found (there from the start).
    var firstSeenTicks: UInt64 = 0
    var alive: Bool = false
    var seenEpoch: UInt = 0
}

/// Small allocation-free helpers shared by the stack files.
enum StackDebugSupport {
    /// Anonymous zero-filled read/write mapping, or nil.
    /// Through Platform, so the leak finder knows the range is slabguard's.
    static func mapMemory(_ bytes: Int) -> UnsafeMutableRawPointer? {
        Platform.map(bytes)
    }

    @inline(__always)
    static func cString(_ s: StaticString) -> UnsafePointer<CChar> {
        UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// Address of a global symbol (RTLD_DEFAULT lookup), 0 when absent.
    static func symbolAddress(_ name: StaticString) -> UInt {
        UInt(bitPattern: dlsym(UnsafeMutableRawPointer(bitPattern: 0), cString(name)))
    }

    @inline(__always)
    static func load<T>(_ address: UInt, as type: T.Type) -> T {
        UnsafeRawPointer(bitPattern: address).unsafelyUnwrapped.loadUnaligned(as: type)
    }

    /// write(2) the whole buffer, retrying on EINTR / short writes.
    static func writeAll(_ fd: Int32, _ buffer: UnsafePointer<CChar>, _ count: Int) -> Bool {
        Platform.writeAll(fd, buffer, count)
    }
}

typealias SGPhdrCallback = @convention(c) (UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32
typealias SGIteratePhdr = @convention(c) (SGPhdrCallback?, UnsafeMutableRawPointer?) -> Int32

/// Mmapped header of the module map.
struct ModuleMapState {
    var mutex = pthread_mutex_t()
    var count = 0
    var epoch: UInt = 0
    var adds: UInt64 = 0
    var subs: UInt64 = 0
    var scannedOnce = false
    var poolUsed = 0
    var exePathOffset = -1
    var iteratePhdr: UInt = 0
    var records: UnsafeMutablePointer<ModuleRecord>
    var pool: UnsafeMutablePointer<CChar>
    var line: UnsafeMutablePointer<CChar>
}


private func moduleMapInitialize() {
    let headerBytes = 4096
    let recordBytes = ModuleMap.capacity * MemoryLayout<ModuleRecord>.stride
    let lineBytes = 8192
    let total = headerBytes + recordBytes + lineBytes + ModuleMap.poolBytes
    guard let mem = StackDebugSupport.mapMemory(total) else { return }
    let records = (mem + headerBytes).bindMemory(to: ModuleRecord.self, capacity: ModuleMap.capacity)
    let line = (mem + headerBytes + recordBytes).bindMemory(to: CChar.self, capacity: lineBytes)
    let pool = (mem + headerBytes + recordBytes + lineBytes).bindMemory(to: CChar.self, capacity: ModuleMap.poolBytes)
    let st = mem.bindMemory(to: ModuleMapState.self, capacity: 1)
    st.initialize(to: ModuleMapState(records: records, pool: pool, line: line))
    sg_mutex_reinit(&st.pointee.mutex)
    st.pointee.iteratePhdr = StackDebugSupport.symbolAddress("dl_iterate_phdr")
    // Path of the main executable (dl_iterate_phdr reports it with an empty name).
    let n = readlink(StackDebugSupport.cString("/proc/self/exe"), pool, 4095)
    if n > 0 {
        pool[n] = 0
        st.pointee.exePathOffset = 0
        st.pointee.poolUsed = n + 1
    }
    StackLayerState.shared.pointee.moduleMap = st
}

enum ModuleMap {
    static let capacity = 1024
    static let poolBytes = 1 << 20

    @inline(__always)
    static func state() -> UnsafeMutablePointer<ModuleMapState>? {
        pthread_once(&StackLayerState.shared.pointee.moduleMapOnce) { moduleMapInitialize() }
        return StackLayerState.shared.pointee.moduleMap
    }

    /// Re-scans the loaded modules (cheap when dl_iterate_phdr's add/remove counters are unchanged).
    static func refresh() {
        guard let st = state() else { return }
        sg_mutex_lock(&st.pointee.mutex)
        let removed = refreshLocked(st)
        sg_mutex_unlock(&st.pointee.mutex)
        if removed { StackUnwinder.invalidateCache() }
    }

    /// Returns true when some module disappeared.
    private static func refreshLocked(_ st: UnsafeMutablePointer<ModuleMapState>) -> Bool {
        guard st.pointee.iteratePhdr != 0 else { return false }
        let iterate = unsafeBitCast(st.pointee.iteratePhdr, to: SGIteratePhdr.self)
        if st.pointee.scannedOnce {
            // Quick check: glibc's dlpi_adds / dlpi_subs counters (present when size >= 48).
            var probe: (UInt64, UInt64, Int) = (0, 0, 0)
            _ = iterate({ info, size, data in
                guard let info = info, let data = data else { return 1 }
                let p = data.assumingMemoryBound(to: (UInt64, UInt64, Int).self)
                if size >= 48 {
                    p.pointee = (info.load(fromByteOffset: 32, as: UInt64.self),
                                 info.load(fromByteOffset: 40, as: UInt64.self), 1)
                }
                return 1
            }, &probe)
            if probe.2 == 1 && probe.0 == st.pointee.adds && probe.1 == st.pointee.subs { return false }
        }
        st.pointee.epoch &+= 1
        _ = iterate({ info, size, data in
            guard let info = info, let data = data else { return 1 }
            ModuleMap.visit(info, size, data.assumingMemoryBound(to: ModuleMapState.self))
            return 0
        }, st)
        st.pointee.scannedOnce = true
        var removed = false
        for i in 0..<st.pointee.count {
            let r = st.pointee.records + i
            if r.pointee.alive && r.pointee.seenEpoch != st.pointee.epoch {
                r.pointee.alive = false
                removed = true
            }
        }
        return removed
    }

    /// dl_iterate_phdr visitor: matches the module against live records or appends a new one.
    fileprivate static func visit(_ info: UnsafeMutableRawPointer, _ size: Int, _ st: UnsafeMutablePointer<ModuleMapState>) {
        let bias = info.load(fromByteOffset: 0, as: UInt.self)
        let name = info.load(fromByteOffset: 8, as: UnsafePointer<CChar>?.self)
        let phdr = info.load(fromByteOffset: 16, as: UInt.self)
        let phnum = Int(info.load(fromByteOffset: 24, as: UInt16.self))
        if size >= 48 {
            st.pointee.adds = info.load(fromByteOffset: 32, as: UInt64.self)
            st.pointee.subs = info.load(fromByteOffset: 40, as: UInt64.self)
        }
        var start = UInt.max, end: UInt = 0
        for i in 0..<phnum {
            let ph = phdr + UInt(i * 56)
            if StackDebugSupport.load(ph, as: UInt32.self) == 1 {  // PT_LOAD
                let s = bias &+ StackDebugSupport.load(ph + 16, as: UInt.self)
                let e = s &+ StackDebugSupport.load(ph + 40, as: UInt.self)
                if s < start { start = s }
                if e > end { end = e }
            }
        }
        guard start < end else { return }
        var pathPtr: UnsafePointer<CChar>? = nil
        var pathLen = 0
        var pathOffset = -1
        if let name = name, name[0] != 0 {
            pathPtr = name
            pathLen = strnlen(name, 4095)
        } else if st.pointee.exePathOffset >= 0 {
            pathOffset = st.pointee.exePathOffset
            pathPtr = UnsafePointer(st.pointee.pool + pathOffset)
            pathLen = strlen(st.pointee.pool + pathOffset)
        }
        for i in 0..<st.pointee.count {
            let r = st.pointee.records + i
            if r.pointee.alive && sameModule(st, r, bias, start, end, pathPtr, pathLen) {
                r.pointee.seenEpoch = st.pointee.epoch
                return
            }
        }
        var rec = ModuleRecord()
        // GNU build id from the PT_NOTE segments (mapped, since they lie inside a PT_LOAD).
        for i in 0..<phnum {
            let ph = phdr + UInt(i * 56)
            guard StackDebugSupport.load(ph, as: UInt32.self) == 4 else { continue }  // PT_NOTE
            let s = bias &+ StackDebugSupport.load(ph + 16, as: UInt.self)
            let n = StackDebugSupport.load(ph + 32, as: UInt.self)
            guard s >= start, s < end, n <= end - s else { continue }
            if readBuildId(from: s, size: n, into: &rec) { break }
        }
        // The same file loaded again at the same place (dlopen/dlclose cycles): revive its record.
        for i in 0..<st.pointee.count {
            let r = st.pointee.records + i
            if !r.pointee.alive && sameModule(st, r, bias, start, end, pathPtr, pathLen)
                && r.pointee.buildIdLength == rec.buildIdLength
                && r.pointee.buildId == rec.buildId {
                r.pointee.alive = true
                r.pointee.seenEpoch = st.pointee.epoch
                return
            }
        }
        guard st.pointee.count < capacity else { return }
        if pathOffset < 0 {
            guard st.pointee.poolUsed + pathLen + 1 <= poolBytes else { return }   // pool full: not recorded
            pathOffset = st.pointee.poolUsed
            if pathLen > 0 { memcpy(st.pointee.pool + pathOffset, pathPtr!, pathLen) }
            st.pointee.pool[pathOffset + pathLen] = 0
            st.pointee.poolUsed += pathLen + 1
        }
        rec.start = start
        rec.end = end
        rec.bias = bias
        rec.pathOffset = pathOffset
        rec.pathLength = pathLen
        rec.alive = true
        rec.firstSeenTicks = st.pointee.scannedOnce ? AuditClock.now() : 0   // 0: there from the start
        rec.seenEpoch = st.pointee.epoch
        (st.pointee.records + st.pointee.count).initialize(to: rec)
        st.pointee.count += 1
    }

    @inline(__always)
    private static func sameModule(_ st: UnsafeMutablePointer<ModuleMapState>, _ r: UnsafeMutablePointer<ModuleRecord>,
                                   _ bias: UInt, _ start: UInt, _ end: UInt,
                                   _ path: UnsafePointer<CChar>?, _ pathLength: Int) -> Bool {
        r.pointee.bias == bias && r.pointee.start == start && r.pointee.end == end && r.pointee.pathLength == pathLength
            && (pathLength == 0 || memcmp(st.pointee.pool + r.pointee.pathOffset, path!, pathLength) == 0)
    }

    /// Parses ELF notes in [address, address+size) for NT_GNU_BUILD_ID (SlabguardFormats'
    /// parser, which the CLI shares); memory must be readable.
    static func readBuildId(from address: UInt, size: UInt, into rec: inout ModuleRecord) -> Bool {
        guard let notes = UnsafeRawPointer(bitPattern: address), size <= UInt(Int.max),
              let found = ElfNote.gnuBuildId(in: notes, count: Int(size)) else { return false }
        let n = min(found.count, 32)
        withUnsafeMutableBytes(of: &rec.buildId) { b in
            for i in 0..<n { b[i] = notes.load(fromByteOffset: found.offset + i, as: UInt8.self) }
        }
        rec.buildIdLength = n
        return n > 0
    }

    /// Index of the record containing `address` (live modules first, newest first), or -1.
    private static func findLocked(_ st: UnsafeMutablePointer<ModuleMapState>, _ address: UInt) -> Int {
        var i = st.pointee.count - 1
        var dead = -1
        while i >= 0 {
            let r = st.pointee.records + i
            if address >= r.pointee.start && address < r.pointee.end {
                if r.pointee.alive { return i }
                if dead < 0 { dead = i }
            }
            i -= 1
        }
        return dead
    }

    /// Copies the record containing `address` into `record` and returns its index (stable for
    /// the life of the process), or -1. Refreshes the map once when the address is unknown.
    static func lookupRecord(_ address: UInt, into record: UnsafeMutablePointer<ModuleRecord>) -> Int {
        guard let st = state() else { return -1 }
        var attempt = 0
        while attempt < 2 {
            // Held by this thread: a crash explained from inside the map (or in a fork child
            // before its locks are fresh) — unknown, rather than an abort about re-entry.
            guard sg_mutex_lock_unless_held(&st.pointee.mutex) != 0 else { return -1 }
            var removed = false
            if !st.pointee.scannedOnce || attempt == 1 { removed = refreshLocked(st) }
            let index = findLocked(st, address)
            if index >= 0 { record.pointee = st.pointee.records[index] }
            sg_mutex_unlock(&st.pointee.mutex)
            if removed { StackUnwinder.invalidateCache() }
            if index >= 0 { return index }
            attempt += 1
        }
        return -1
    }

    /// NUL-terminated path of a record (points into the immutable path pool).
    static func path(of record: UnsafePointer<ModuleRecord>) -> UnsafePointer<CChar>? {
        guard let st = state() else { return nil }
        return UnsafePointer(st.pointee.pool + record.pointee.pathOffset)
    }

    /// Looks up the module containing `address`; fills `info`. Works for unloaded modules too.
    static func lookup(_ address: UInt, into info: UnsafeMutablePointer<ModuleInfo>) -> Bool {
        var rec = ModuleRecord()
        guard lookupRecord(address, into: &rec) >= 0, let path = path(of: &rec) else { return false }
        info.pointee.base = rec.bias
        info.pointee.start = rec.start
        info.pointee.end = rec.end
        info.pointee.isLoaded = rec.alive
        info.pointee.buildIdLength = rec.buildIdLength
        withUnsafeBytes(of: &rec.buildId) { b in
            for i in 0..<32 { info.pointee.buildId[i] = b[i] }
        }
        var i = 0
        while i < 4095 && path[i] != 0 {
            info.pointee.path[i] = path[i]
            i += 1
        }
        info.pointee.path[i] = 0
        return true
    }

    /// Number of records (live and unloaded) currently in the snapshot.
    static var count: Int {
        guard let st = state() else { return 0 }
        sg_mutex_lock(&st.pointee.mutex)
        defer { sg_mutex_unlock(&st.pointee.mutex) }
        return st.pointee.count
    }

    /// Writes one line per module ever seen, in first-seen order:
    ///     START END BIAS BUILDID LOADED PATH\n
    /// (LOADED: the audit-clock ticks when it was first seen, 0: there from the start.)
    /// START/END/BIAS are 16-digit lowercase hex (no 0x); BUILDID is lowercase hex or "-";
    /// PATH is the rest of the line. file address = runtime address - BIAS. When ranges of
    /// an unloaded and a later module overlap, the later line is the current one.
    static func write(to fd: Int32) {
        forEachLine(wait: true) { line, n in StackDebugSupport.writeAll(fd, line, n) }
    }

    /// The same lines into memory (the flight recorder's module region); returns the bytes
    /// written (whole lines only, up to `capacity`).
    /// Nothing (-1) when the map's lock is busy: this runs on the way to an abort too.
    static func write(into memory: UnsafeMutableRawPointer, capacity: Int) -> Int {
        var used = 0
        guard forEachLine(wait: false, { line, n in
            guard used + n <= capacity else { return false }
            memcpy(memory + used, line, n)
            used += n
            return true
        }) else { return -1 }
        return used
    }

    /// Calls `body` with each module's line (see `write(to:)`) until it returns false;
    /// false when `wait` is false and the map's lock is taken.
    @discardableResult
    private static func forEachLine(wait: Bool, _ body: (UnsafePointer<CChar>, Int) -> Bool) -> Bool {
        guard let st = state() else { return false }
        if wait { sg_mutex_lock(&st.pointee.mutex) } else if sg_mutex_trylock(&st.pointee.mutex) == 0 { return false }
        if !st.pointee.scannedOnce { _ = refreshLocked(st) }
        let line = st.pointee.line
        for i in 0..<st.pointee.count {
            let r = st.pointee.records + i
            var n = 0
            n = appendHex(line, n, r.pointee.start)
            line[n] = 0x20; n += 1
            n = appendHex(line, n, r.pointee.end)
            line[n] = 0x20; n += 1
            n = appendHex(line, n, r.pointee.bias)
            line[n] = 0x20; n += 1
            if r.pointee.buildIdLength == 0 {
                line[n] = 0x2D; n += 1
            } else {
                let count = r.pointee.buildIdLength
                withUnsafeBytes(of: &r.pointee.buildId) { b in
                    for k in 0..<count {
                        line[n + 2 * k] = hexDigit(UInt(b[k]) >> 4)
                        line[n + 2 * k + 1] = hexDigit(UInt(b[k]) & 15)
                    }
                }
                n += 2 * count
            }
            line[n] = 0x20; n += 1
            n = appendDecimal(line, n, r.pointee.firstSeenTicks)
            line[n] = 0x20; n += 1
            let path = st.pointee.pool + r.pointee.pathOffset
            var k = 0
            while k < 4095 && path[k] != 0 {
                let c = path[k]
                line[n] = (c == 0x0A) ? 0x3F : c  // never break the line format
                n += 1; k += 1
            }
            line[n] = 0x0A; n += 1
            if !body(UnsafePointer(line), n) { break }
        }
        sg_mutex_unlock(&st.pointee.mutex)
        return true
    }

    private static func appendDecimal(_ line: UnsafeMutablePointer<CChar>, _ at: Int, _ value: UInt64) -> Int {
        var digits = (UInt64(0), UInt64(0), UInt64(0))   // 24 bytes: room for 20 digits
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { d in
            repeat { d[count] = UInt8(48 + v % 10); v /= 10; count += 1 } while v > 0
            for i in 0..<count { line[at + i] = CChar(d[count - 1 - i]) }
        }
        return at + count
    }

    @inline(__always)
    private static func hexDigit(_ v: UInt) -> CChar {
        CChar(v < 10 ? 0x30 + v : 0x57 + v)
    }

    private static func appendHex(_ line: UnsafeMutablePointer<CChar>, _ at: Int, _ value: UInt) -> Int {
        for k in 0..<16 { line[at + k] = hexDigit((value >> UInt(60 - 4 * k)) & 15) }
        return at + 16
    }
}

typealias SGFindObject = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32

/// Context for the dl_iterate_phdr fallback search.
private struct PhdrSearch {
    var pc: UInt = 0
    var ehFrameHdr: UInt = 0
    var low: UInt = 0
    var high: UInt = 0
    var found = false
}

extension ModuleMap {
    /// For the unwinder (lock-free, does not use the snapshot): finds the PT_GNU_EH_FRAME segment
    /// (.eh_frame_hdr) and the mapping bounds of the live module containing `pc`, with glibc's
    /// lock-free `_dl_find_object` (`findObject`), or `dl_iterate_phdr` (takes the loader lock)
    /// when that is unavailable or `forceIteratePhdr`. Both are resolved with dlsym by the caller.
    static func unwindSection(containing pc: UInt, _ findObject: UInt, _ iteratePhdr: UInt, forceIteratePhdr: Bool,
                              _ hdr: inout UInt, _ low: inout UInt, _ high: inout UInt) -> Bool {
        if findObject != 0 && !forceIteratePhdr {
            let find = unsafeBitCast(findObject, to: SGFindObject.self)
            // struct dl_find_object (x86_64): flags, map_start, map_end, link_map, eh_frame, reserved[7]
            var result: (UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            guard find(UnsafeMutableRawPointer(bitPattern: pc), &result) == 0, result.4 != 0 else { return false }
            hdr = result.4
            low = result.1
            high = result.2
            return true
        }
        guard iteratePhdr != 0 else { return false }
        let iterate = unsafeBitCast(iteratePhdr, to: SGIteratePhdr.self)
        var search = PhdrSearch()
        search.pc = pc
        _ = iterate({ info, _, data in
            guard let info = info, let data = data else { return 1 }
            let s = data.assumingMemoryBound(to: PhdrSearch.self)
            let bias = info.load(fromByteOffset: 0, as: UInt.self)
            let phdr = info.load(fromByteOffset: 16, as: UInt.self)
            let phnum = Int(info.load(fromByteOffset: 24, as: UInt16.self))
            var contains = false
            var low = UInt.max, high: UInt = 0, eh: UInt = 0
            for i in 0..<phnum {
                let ph = phdr + UInt(i * 56)
                let type = StackDebugSupport.load(ph, as: UInt32.self)
                let start = bias &+ StackDebugSupport.load(ph + 16, as: UInt.self)
                if type == 1 {   // PT_LOAD
                    let end = start &+ StackDebugSupport.load(ph + 40, as: UInt.self)
                    if s.pointee.pc >= start && s.pointee.pc < end { contains = true }
                    if start < low { low = start }
                    if end > high { high = end }
                } else if type == 0x6474_E550 {   // PT_GNU_EH_FRAME
                    eh = start
                }
            }
            guard contains else { return 0 }
            s.pointee = PhdrSearch(pc: s.pointee.pc, ehFrameHdr: eh, low: low, high: high, found: eh != 0)
            return 1
        }, &search)
        guard search.found else { return false }
        hdr = search.ehFrameHdr
        low = search.low
        high = search.high
        return true
    }
}

extension ModuleMap {
    /// The mutex, once the state exists (fork handlers take it without creating anything).
    static var mutexIfCreated: UnsafeMutablePointer<pthread_mutex_t>? {
        guard let st = StackLayerState.shared.pointee.moduleMap else { return nil }
        return st.field(\.mutex)
    }
}
