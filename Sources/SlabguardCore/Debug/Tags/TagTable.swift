// Tags — accounting per subsystem (design §9), the OSMalloc tag / libkext `memck` idea
// done right: every buffer allocated through a tag is charged to it, and a check lists
// what is still outstanding.  Two kinds of tag share one table:
//   explicit tags  sg_tag_create / Swift `Tag`: counted in every mode; in debug mode each
//                  buffer also carries its tag's key, so a check lists the outstanding
//                  buffers with their allocation stacks (TagCheck.swift);
//   library tags   in debug mode, every loaded library and the executable: a buffer is
//                  charged to the first frame of its allocation stack outside libc,
//                  libstdc++, libgcc, the loader, the Swift runtime and slabguard
//                  (LibraryTags.swift).  Keyed by file name: a reloaded library keeps its tag.
//
// The table is one anonymous mapping made at first use (a header, 256 records of 128
// bytes, the caller caches of LibraryTags, the library tags' counter slots: 192 KiB of
// address space, touched as used), published in the `debug_tags` region of the static map.
//
// A handle (sg_tag_t *) is not a pointer: 0x5347 in its top 16 bits (a non-canonical
// address, so dereferencing it faults), the slot's generation (20 bits, from 1) and its
// index (12 bits; 256 slots: the table is small, so that a debug run at its address-space
// limit still has room for the exit leak scan).  Destroy marks the slot destroyed and keeps its name and generation,
// so a later use says `invalid tag: tag NAME used after destroy`; a destroyed slot is
// reused (generation + 1) only once every slot has been used, and an old handle then
// fails the generation check.
//
// Per buffer (debug mode): the owner word of the buffer tag (BufferTag.ownerWord):
// bits 0–31 the explicit tag's key (generation << 12 | index; 0: none), bits 32–47 the
// library tag's index + 1 (0: none), bit 63 reported as leaked at its library's unload
// (bits 48–50: the allocation kind, Checks/AllocationKinds.swift).
//
// Counters (bytes in use, peak bytes, allocations, frees; buffers in use is allocations -
// frees) are read by statistics without a lock: an explicit tag's are relaxed atomics in
// its record; a library tag's, updated by every debug allocation, are in per-thread slots
// (TagShard: plain stores by the slot's one thread, atomics in the shared slot), its peak
// sampled.  `tagMutex` guards the tag slots' life (create, destroy, a library tag's
// creation); it nests only the mapping table's lock.

import CSlabguardShim
import Glibc

/// One tag's record in the table (128 bytes).
struct TagRecord {
    static let free: UInt32 = 0, live: UInt32 = 1, destroyed: UInt32 = 2, library: UInt32 = 3

    var state: UInt32 = 0
    var generation: UInt32 = 0
    var bytesInUse: UInt64 = 0       // two's complement: decremented by adding -bytes
    var peakBytes: UInt64 = 0
    var allocations: UInt64 = 0
    var frees: UInt64 = 0
    var destroyed: (UInt64, UInt64) = (0, 0)   // who destroyed it: an AuditEntry (stack id, thread, time)
    var name = FixedBytes64()         // NUL-terminated, at most 63 bytes
    var padding: UInt64 = 0           // to 128 bytes (buffers in use = allocations - frees, not kept)
}

/// A library tag's counters in one thread slot (TagTable.threadSlot): every debug
/// allocation and free updates its thread's, with plain stores when the slot is the
/// thread's own (the first 16 threads) and atomics in the shared slot; readers add the
/// slots up.  In use = allocated - freed; the peak is taken every 256th allocation of a slot.
struct TagShard {
    var allocations: UInt64 = 0
    var frees: UInt64 = 0
    var allocatedBytes: UInt64 = 0
    var freedBytes: UInt64 = 0
}

/// The table's header.
struct TagTableState {
    var tagMutex = pthread_mutex_t()
    var used = 0                      // slots ever used: [0, used)
    var reuseCursor = 0               // where the search for a destroyed slot resumes
    var threadSlots: UInt64 = 0       // bit s: counter slot s is a live thread's own
    var executableName = FixedBytes64()   // the executable's file name (its library tag)
}

/// What a handle names.
enum TagLookup {
    case live(Int)              // the slot index
    case destroyed(Int?)        // the slot, while it still has the destroyed tag's name
    case invalid                // not a handle
}

enum TagTable {
    static let capacity = 256
    static let handlePrefix: UInt = 0x5347 << 48
    static let headerBytes = 4096
    static let recordsOffset = headerBytes
    static let callerCacheOffset = recordsOffset + capacity * MemoryLayout<TagRecord>.stride
    static let callerCacheWords = 2048
    static let libraryCacheOffset = callerCacheOffset + callerCacheWords * 8
    static let libraryCacheWords = 256
    static let shardsOffset = roundUp(libraryCacheOffset + libraryCacheWords * 8, 4096)
    /// Counter slots: one per thread for the first `ownSlots` threads, then one shared.
    static let ownSlots = 16
    static let sharedSlot = ownSlots
    static let totalBytes = shardsOffset + (ownSlots + 1) * capacity * MemoryLayout<TagShard>.stride

    /// The table, mapped on first use; nil when no memory.
    @inline(__always) static func state() -> UnsafeMutablePointer<TagTableState>? {
        if let existing = stateIfCreated { return existing }
        return createState()
    }

    @inline(never) private static func createState() -> UnsafeMutablePointer<TagTableState>? {
        precondition(MemoryLayout<TagRecord>.stride == 128 && MemoryLayout<TagTableState>.size <= headerBytes)
        let slot = UnsafeMutableRawPointer(StateRegion.debugTags.bound(to: UInt64.self))
            .assumingMemoryBound(to: UInt64.self)
        guard let memory = Platform.map(totalBytes) else { return nil }
        let st = memory.bindMemory(to: TagTableState.self, capacity: 1)
        st.initialize(to: TagTableState())
        sg_mutex_reinit(&st.pointee.tagMutex)
        var exe = FixedBytes64()
        withUnsafeMutableBytes(of: &exe) { b in
            let out = b.baseAddress!.assumingMemoryBound(to: CChar.self)
            var path = FixedBytes4K()
            withUnsafeMutableBytes(of: &path) { p in
                let text = p.baseAddress!.assumingMemoryBound(to: CChar.self)
                let n = readlink(StackDebugSupport.cString("/proc/self/exe"), text, 4095)
                if n > 0 { text[n] = 0; copyName(baseName(text), into: out) } else { copyName(StackDebugSupport.cString("program"), into: out) }
            }
        }
        st.pointee.executableName = exe
        if sg_atomic_cas_u64(slot, 0, UInt64(UInt(bitPattern: memory))) == 0 {
            Platform.unmap(memory, totalBytes)
        }
        return UnsafeMutableRawPointer(bitPattern: UInt(sg_atomic_load_u64(slot)))!.assumingMemoryBound(to: TagTableState.self)
    }

    /// The table if it exists (statistics and fork handlers create nothing).
    @inline(__always) static var stateIfCreated: UnsafeMutablePointer<TagTableState>? {
        let slot = UnsafeMutableRawPointer(StateRegion.debugTags.bound(to: UInt64.self))
            .assumingMemoryBound(to: UInt64.self)
        return UnsafeMutableRawPointer(bitPattern: UInt(sg_atomic_load_u64(slot)))?.assumingMemoryBound(to: TagTableState.self)
    }

    static var mutexIfCreated: UnsafeMutablePointer<pthread_mutex_t>? {
        stateIfCreated.map { withUnsafeMutablePointer(to: &$0.pointee.tagMutex) { $0 } }
    }

    @inline(__always) static func record(_ st: UnsafeMutablePointer<TagTableState>, _ index: Int) -> UnsafeMutablePointer<TagRecord> {
        (UnsafeMutableRawPointer(st) + recordsOffset).assumingMemoryBound(to: TagRecord.self) + index
    }

    /// The record of slot `index` of the existing table.
    @inline(__always) static func record(_ index: Int) -> UnsafeMutablePointer<TagRecord>? {
        guard let st = stateIfCreated, index >= 0, index < capacity else { return nil }
        return record(st, index)
    }

    // MARK: - Handles and keys

    static func handle(index: Int, generation: UInt32) -> UInt {
        handlePrefix | UInt(generation & 0xF_FFFF) << 12 | UInt(index)
    }

    /// The key a buffer of slot `index` carries in its owner word.
    static func key(of index: Int) -> UInt32 {
        guard let r = record(index) else { return 0 }
        return (r.pointee.generation & 0xF_FFFF) << 12 | UInt32(index)
    }

    static func lookup(handle: UInt) -> TagLookup {
        guard handle & ~UInt(0xFFFF_FFFF) == handlePrefix, let st = stateIfCreated else { return .invalid }
        let index = Int(handle & 0xFFF), generation = UInt32((handle >> 12) & 0xF_FFFF)
        guard index < st.pointee.used, generation != 0 else { return .invalid }
        let r = record(st, index)
        let state = r.pointee.state
        if r.pointee.generation & 0xF_FFFF == generation {
            if state == TagRecord.live { return .live(index) }
            if state == TagRecord.destroyed { return .destroyed(index) }
            return .invalid
        }
        return r.pointee.generation & 0xF_FFFF > generation ? .destroyed(nil) : .invalid
    }

    /// The live explicit tag whose key is `key`, or nil.
    static func liveIndex(forKey key: UInt32) -> Int? {
        let index = Int(key & 0xFFF)
        guard key != 0, let r = record(index), r.pointee.state == TagRecord.live,
              r.pointee.generation & 0xF_FFFF == key >> 12 else { return nil }
        return index
    }

    // MARK: - Life

    /// A new explicit tag named `name` (truncated to 63 bytes): its handle, or nil when the
    /// table is full of live tags or there is no memory.
    static func create(name: UnsafePointer<CChar>) -> UInt? {
        guard let st = state() else { return nil }
        sg_mutex_lock(&st.pointee.tagMutex)
        defer { sg_mutex_unlock(&st.pointee.tagMutex) }
        guard let index = claimSlotLocked(st) else { return nil }
        let generation = (record(st, index).pointee.generation & 0xF_FFFF) &+ 1
        let r = initializeSlotLocked(st, index, name: name, state: TagRecord.live, generation: generation == 0x10_0000 ? 1 : generation)
        return handle(index: index, generation: r.pointee.generation)
    }

    /// A library tag named `name` (tagMutex held by the caller): an existing one of that name, or a new one.
    static func libraryTagLocked(_ st: UnsafeMutablePointer<TagTableState>, name: UnsafePointer<CChar>) -> Int? {
        if let index = findLibraryLocked(st, name: name) { return index }
        guard let index = claimSlotLocked(st) else { return nil }
        _ = initializeSlotLocked(st, index, name: name, state: TagRecord.library, generation: 1)
        return index
    }

    /// The library tag of that file name, as a LibraryTags value (index + 1), 0: none.
    static func libraryTagValue(named name: UnsafePointer<CChar>) -> UInt16 {
        guard let st = stateIfCreated else { return 0 }
        sg_mutex_lock(&st.pointee.tagMutex)
        defer { sg_mutex_unlock(&st.pointee.tagMutex) }
        return findLibraryLocked(st, name: name).map { UInt16($0 + 1) } ?? 0
    }

    private static func findLibraryLocked(_ st: UnsafeMutablePointer<TagTableState>, name: UnsafePointer<CChar>) -> Int? {
        for i in 0..<st.pointee.used {
            let r = record(st, i)
            if r.pointee.state == TagRecord.library && sameName(r, name) { return i }
        }
        return nil
    }

    /// A fresh record in slot `index` (its counters and destroy entry zero), named `name`.
    private static func initializeSlotLocked(_ st: UnsafeMutablePointer<TagTableState>, _ index: Int, name: UnsafePointer<CChar>,
                                             state: UInt32, generation: UInt32) -> UnsafeMutablePointer<TagRecord> {
        let r = record(st, index)
        r.pointee = TagRecord()
        r.pointee.generation = generation
        withUnsafeMutableBytes(of: &r.pointee.name) { copyName(name, into: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        r.pointee.state = state
        return r
    }

    private static func claimSlotLocked(_ st: UnsafeMutablePointer<TagTableState>) -> Int? {
        if st.pointee.used < capacity {
            st.pointee.used += 1
            return st.pointee.used - 1
        }
        for step in 0..<capacity {
            let i = (st.pointee.reuseCursor + step) % capacity
            if record(st, i).pointee.state == TagRecord.destroyed {
                st.pointee.reuseCursor = (i + 1) % capacity
                return i
            }
        }
        return nil
    }

    /// Retires a live tag: later uses of its handle are reported, with (when stacks are
    /// kept: the stack depot is set up) where it was destroyed.
    static func retire(_ index: Int) {
        guard let st = stateIfCreated else { return }
        var id: UInt32 = 0
        if StackDepot.isSetUp {
            let buffer = sg_stack_scratch().unsafelyUnwrapped
            id = StackDepot.intern(buffer, StackUnwinder.captureFromProgram(into: buffer, capacity: StackDepot.maxDepth, skip: 1))
        }
        sg_mutex_lock(&st.pointee.tagMutex)
        let r = record(st, index)
        if r.pointee.state == TagRecord.live {
            r.pointee.state = TagRecord.destroyed
            destroyEntry(index)?.record(thread: AuditThread.id(), time: AuditClock.now(), stackId: id)
        }
        sg_mutex_unlock(&st.pointee.tagMutex)
    }

    /// Where slot `index`'s tag was destroyed (an audit entry; not recorded: time 0).
    static func destroyEntry(_ index: Int) -> AuditEntry? {
        guard let r = record(index) else { return nil }
        return AuditEntry(base: UnsafeMutableRawPointer(r.field(\.destroyed)))
    }

    // MARK: - Counters

    static func charge(_ index: Int, bytes: Int) {
        guard let r = record(index) else { return }
        // Two atomic adds, and a CAS only when the peak moves.
        _ = sg_atomic_add_u64(&r.pointee.allocations, 1)
        let now = sg_atomic_add_u64(&r.pointee.bytesInUse, UInt64(bytes)) &+ UInt64(bytes)
        var peak = sg_atomic_load_u64(&r.pointee.peakBytes)
        while Int64(bitPattern: now) > Int64(bitPattern: peak) {
            if sg_atomic_cas_u64(&r.pointee.peakBytes, peak, now) != 0 { break }
            peak = sg_atomic_load_u64(&r.pointee.peakBytes)
        }
    }

    static func discharge(_ index: Int, bytes: Int) {
        guard let r = record(index) else { return }
        _ = sg_atomic_add_u64(&r.pointee.frees, 1)
        _ = sg_atomic_add_u64(&r.pointee.bytesInUse, UInt64(bitPattern: Int64(-bytes)))
    }

    @inline(__always) static func shard(_ index: Int, slot: Int) -> UnsafeMutablePointer<TagShard>? {
        guard let st = stateIfCreated else { return nil }
        return (UnsafeMutableRawPointer(st) + shardsOffset).assumingMemoryBound(to: TagShard.self) + slot * capacity + index
    }

    /// The calling thread's counter slot: its own (claimed at its first debug allocation,
    /// given back when it exits), or the shared one.
    @inline(__always) static func threadSlot() -> Int {
        let s = sg_tag_slot()
        return s != 0 ? Int(s) - 1 : claimThreadSlot()
    }

    @inline(never) private static func claimThreadSlot() -> Int {
        guard let st = stateIfCreated, sg_thread_state() != UInt32(SG_THREAD_DEAD) else { return sharedSlot }
        while true {
            let mask = sg_atomic_load_u64(&st.pointee.threadSlots)
            let free = (~mask) & ((1 << UInt64(ownSlots)) - 1)
            guard free != 0 else {
                sg_set_tag_slot(UInt32(sharedSlot + 1))
                return sharedSlot
            }
            let bit = free.trailingZeroBitCount
            if sg_atomic_cas_u64(&st.pointee.threadSlots, mask, mask | 1 << UInt64(bit)) != 0 {
                sg_set_tag_slot(UInt32(bit + 1))
                return bit
            }
        }
    }

    /// The thread is exiting (ThreadRegistry's exit hook): its own slot goes back (the
    /// counts stay, added to by the slot's next thread); what it allocates from here on
    /// (other thread-local destructors) counts in the shared slot.
    static func releaseThreadSlot() {
        let s = Int(sg_tag_slot()) - 1
        sg_set_tag_slot(UInt32(sharedSlot + 1))
        guard s >= 0, s < ownSlots, let st = stateIfCreated else { return }
        while true {
            let mask = sg_atomic_load_u64(&st.pointee.threadSlots)
            if sg_atomic_cas_u64(&st.pointee.threadSlots, mask, mask & ~(1 << UInt64(s))) != 0 { return }
        }
    }

    /// In a forked child only the forking thread exists: the other slots are free again.
    static func reinitializeThreadSlotsAfterFork() {
        guard let st = stateIfCreated else { return }
        let s = Int(sg_tag_slot()) - 1
        st.pointee.threadSlots = s >= 0 && s < ownSlots ? 1 << UInt64(s) : 0
    }

    /// A library tag's allocation (debug mode, inside malloc).
    @inline(__always) static func chargeShard(_ index: Int, bytes: Int) {
        let slot = threadSlot()
        guard let s = shard(index, slot: slot) else { return }
        let n: UInt64
        if slot == sharedSlot {
            n = sg_atomic_add_u64(&s.pointee.allocations, 1)
            _ = sg_atomic_add_u64(&s.pointee.allocatedBytes, UInt64(bytes))
        } else {
            n = s.pointee.allocations     // the slot's only writer: plain stores, read whole by others
            s.pointee.allocations = n &+ 1
            s.pointee.allocatedBytes &+= UInt64(bytes)
        }
        if n & 255 == 0 { notePeak(index, Int(sharded(index).bytes)) }
    }

    @inline(__always) static func dischargeShard(_ index: Int, bytes: Int) {
        let slot = threadSlot()
        guard let s = shard(index, slot: slot) else { return }
        if slot == sharedSlot {
            _ = sg_atomic_add_u64(&s.pointee.frees, 1)
            _ = sg_atomic_add_u64(&s.pointee.freedBytes, UInt64(bytes))
        } else {
            s.pointee.frees &+= 1
            s.pointee.freedBytes &+= UInt64(bytes)
        }
    }

    private static func notePeak(_ index: Int, _ bytes: Int) {
        guard let r = record(index) else { return }
        var peak = sg_atomic_load_u64(&r.pointee.peakBytes)
        while bytes > Int(Int64(bitPattern: peak)) {
            if sg_atomic_cas_u64(&r.pointee.peakBytes, peak, UInt64(bytes)) != 0 { break }
            peak = sg_atomic_load_u64(&r.pointee.peakBytes)
        }
    }

    /// The sums of a library tag's shards.
    private static func sharded(_ index: Int) -> (allocations: UInt64, frees: UInt64, bytes: Int64) {
        var a: UInt64 = 0, f: UInt64 = 0, ab: UInt64 = 0, fb: UInt64 = 0
        for slot in 0...sharedSlot {
            guard let s = shard(index, slot: slot) else { break }
            a &+= sg_atomic_load_u64(&s.pointee.allocations)
            f &+= sg_atomic_load_u64(&s.pointee.frees)
            ab &+= sg_atomic_load_u64(&s.pointee.allocatedBytes)
            fb &+= sg_atomic_load_u64(&s.pointee.freedBytes)
        }
        return (a, f, Int64(bitPattern: ab &- fb))
    }

    /// A snapshot of one tag's counters (each read atomically; a library tag's from its shards).
    static func counters(_ index: Int) -> (buffers: Int, bytes: Int, peak: Int, allocations: UInt64, frees: UInt64) {
        guard let r = record(index) else { return (0, 0, 0, 0, 0) }
        if r.pointee.state == TagRecord.library {
            let s = sharded(index)
            notePeak(index, Int(s.bytes))
            return (Int(Int64(bitPattern: s.allocations &- s.frees)), Int(s.bytes),
                    Int(Int64(bitPattern: sg_atomic_load_u64(&r.pointee.peakBytes))), s.allocations, s.frees)
        }
        // Frees first: a free counted is of an allocation counted, so in use is never negative.
        let frees = sg_atomic_load_u64(&r.pointee.frees)
        let allocations = sg_atomic_load_u64(&r.pointee.allocations)
        return (Int(Int64(bitPattern: allocations &- frees)),
                Int(Int64(bitPattern: sg_atomic_load_u64(&r.pointee.bytesInUse))),
                Int(Int64(bitPattern: sg_atomic_load_u64(&r.pointee.peakBytes))),
                allocations, frees)
    }

    /// The tag's name (NUL-terminated, in the table).
    static func name(_ index: Int) -> UnsafePointer<CChar> {
        guard let r = record(index) else { return StackDebugSupport.cString("?") }
        return UnsafeRawPointer(r.field(\.name)).assumingMemoryBound(to: CChar.self)
    }

    /// Calls `body` with each used slot's index and state, in slot order.
    static func forEachTag(_ body: (Int, UInt32) -> Void) {
        guard let st = stateIfCreated else { return }
        for i in 0..<st.pointee.used { body(i, record(st, i).pointee.state) }
    }

    // MARK: - Names

    static func copyName(_ name: UnsafePointer<CChar>, into out: UnsafeMutablePointer<CChar>) {
        var n = 0
        while n < 63 && name[n] != 0 { out[n] = name[n]; n += 1 }
        out[n] = 0
    }

    static func baseName(_ path: UnsafePointer<CChar>) -> UnsafePointer<CChar> {
        var last = path
        var p = path
        while p.pointee != 0 {
            if p.pointee == 0x2F { last = p + 1 }
            p += 1
        }
        return last
    }

    private static func sameName(_ r: UnsafeMutablePointer<TagRecord>, _ name: UnsafePointer<CChar>) -> Bool {
        var other = FixedBytes64()
        withUnsafeMutableBytes(of: &other) { copyName(name, into: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        return withUnsafeBytes(of: &r.pointee.name) { a in withUnsafeBytes(of: &other) { b in memcmp(a.baseAddress!, b.baseAddress!, 64) == 0 } }
    }
}
