// Watchpoints — the culprit at the instruction, without guards' cost (`watch[=N]`, and
// the replays of `slabguard hunt`).  The CPU has four debug registers per thread; the
// shim opens them at start-up as perf breakpoints inherited by every later thread
// (sg_watch.c).  Two ways to aim them:
//
//   watch      a freed buffer's first word (pointers and counters live at the start):
//              at most one move per N ms, to the buffer freed then (an idle register
//              first, else round robin): each stays on its buffer for about 4N ms, or
//              until it is reused.
//   hunt       SLABGUARD_HUNT=freed|overrun:OFFSET:ADDR,... (set by `slabguard hunt`):
//              only buffers allocated from the stack ADDR,... (as a report listed it;
//              hunt turns address randomisation off so it is the same from run to run):
//              `freed`, the damaged word at OFFSET from the chunk once such a buffer is
//              freed; `overrun`, the byte at OFFSET from the buffer's start while it is
//              live (the first byte the earlier run found damaged past its end).
//
// A write into a watched range raises SIGTRAP in the writing thread, after the store
// (sg_fault.c routes it here).  It is reported only when it is true: the buffer is
// still free (or the byte still past the end of a live buffer) and the write is the
// program's, not slabguard's own (a thread inside a checked allocation or free);
// anything else parks the register and resumes.  A buffer leaving the free state is
// unwatched first (DebugAllocator), so a reused buffer is never reported.
//
// Refused (perf_event_paranoid 3, a seccomp filter, a debugger attached — it would
// stop at each trap and its own hardware watchpoints use the same registers): one
// line, and the run goes on without watchpoints.
//
// Cost: a time-stamp counter read per free, four compares per allocation and free; an ioctl per move
// (at most one per N ms) and per reuse of a watched buffer (at most as many).  Nothing
// here allocates.

import CSlabguardShim
import Glibc

/// The watchpoints' state, in the faults part's region (GuardState.watch).
struct WatchState {
    var slots = 0                          // registers opened; 0: off
    var intervalNanoseconds: UInt64 = 0
    var nextMove: UInt64 = 0               // audit ticks
    var nextSlot = 0
    var moving: UInt64 = 0                 // 1 while a thread moves a register (others skip)
    var watched = (UInt(0), UInt(0), UInt(0), UInt(0))   // the address each register watches; 0 idle
    var hunt = HuntSite()
}

/// SLABGUARD_HUNT's site: which buffers, which offset.
struct HuntSite {
    enum Kind: UInt8 { case none, freed, overrun }
    var kind = Kind.none
    var offset = 0
    var frameCount = 0
    var frames = (UInt(0), UInt(0), UInt(0), UInt(0))
}

enum Watchpoints {
    @inline(__always) static var state: UnsafeMutablePointer<WatchState> { GuardState.shared.field(\.watch) }

    @inline(__always) private static var watched: UnsafeMutablePointer<UInt> {
        UnsafeMutableRawPointer(state.field(\.watched)).assumingMemoryBound(to: UInt.self)
    }

    @inline(__always) static var isOn: Bool { state.pointee.slots > 0 }

    // MARK: - Set-up

    /// Heap set-up, phase 2 (one thread, usually): opens the registers when `watch` is on
    /// or a hunt's site is given, after the crash handler is installed.
    static func setUp(options: DebugOptions) {
        var site = HuntSite()
        if let text = Platform.environment("SLABGUARD_HUNT") { site = parseSite(text) }
        guard options.flags.contains(.watch) || site.kind != .none else { return }
        if let why = refusal() {
            ReportWriter.withStackBuffer(fd: 2) { w in
                w.append("slabguard: watch is off: ")
                w.append(why)
                w.append("; the run goes on without watchpoints\n")
            }
            return
        }
        var error: Int32 = 0
        let opened = Int(sg_watch_open(&error))
        guard opened > 0, sg_fault_install_trap() == 0 else {
            if opened > 0 { sg_watch_forget() }
            ReportWriter.withStackBuffer(fd: 2) { w in
                w.append("slabguard: watch is off: the kernel refused CPU watchpoints (perf_event_open: ")
                w.append(cString: strerror(error))
                w.append("; kernel.perf_event_paranoid must be 2 or lower); the run goes on without them\n")
            }
            return
        }
        let s = state
        s.pointee.hunt = site
        s.pointee.intervalNanoseconds = UInt64(max(1, options.watchMilliseconds)) * 1_000_000
        s.pointee.slots = opened
    }

    /// Why watchpoints cannot be used here, or nil.
    private static func refusal() -> StaticString? {
        if sg_system_calls_filtered() != 0 { return "a seccomp filter is in force (perf_event_open could kill the process)" }
        if isTraced() { return "a debugger is tracing this process (it would stop at each trap, and its own watchpoints use the same registers)" }
        return nil
    }

    /// /proc/self/status says TracerPid other than 0.
    private static func isTraced() -> Bool {
        let path: StaticString = "/proc/self/status"
        var text = FixedBytes4K()
        return withUnsafeMutableBytes(of: &text) { raw in
            let b = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            guard let n = Platform.readFile(UnsafeRawPointer(path.utf8Start).assumingMemoryBound(to: CChar.self),
                                            into: raw.baseAddress!, capacity: raw.count - 1), n > 0 else { return false }
            let key: StaticString = "\nTracerPid:\t"
            let k = key.utf8CodeUnitCount
            var i = 0
            while i + k < n {
                if memcmp(b + i, key.utf8Start, k) == 0 { return b[i + k] != 0x30 || b[i + k + 1] != 0x0A }
                i += 1
            }
            return false
        }
    }

    /// `freed:0x10:0x401136,0x4011f2` → the site; a malformed value is no site (hunt checks
    /// its own values; a program run by hand with a bad one just runs).
    static func parseSite(_ text: UnsafePointer<CChar>) -> HuntSite {
        var site = HuntSite()
        var p = text
        func word(_ w: StaticString) -> Bool {
            guard strncmp(p, UnsafeRawPointer(w.utf8Start).assumingMemoryBound(to: CChar.self), w.utf8CodeUnitCount) == 0 else { return false }
            p += w.utf8CodeUnitCount
            return true
        }
        func hex() -> UInt? {
            guard p[0] == 0x30, p[1] == 0x78 || p[1] == 0x58 else { return nil }
            p += 2
            var v: UInt = 0
            var digits = 0
            while digits < 16 {
                let c = UInt8(bitPattern: p[0])
                let d: UInt8
                switch c {
                case 0x30...0x39: d = c - 0x30
                case 0x61...0x66: d = c - 0x61 + 10
                case 0x41...0x46: d = c - 0x41 + 10
                default: return digits > 0 ? v : nil
                }
                v = v << 4 | UInt(d)
                digits += 1
                p += 1
            }
            return v
        }
        let kind: HuntSite.Kind
        if word("freed:") { kind = .freed } else if word("overrun:") { kind = .overrun } else { return site }
        guard let offset = hex(), offset < 1 << 40, p[0] == 0x3A else { return site }
        p += 1
        var frames = (UInt(0), UInt(0), UInt(0), UInt(0))
        var n = 0
        withUnsafeMutableBytes(of: &frames) { raw in
            let f = raw.baseAddress!.assumingMemoryBound(to: UInt.self)
            while n < 4, let a = hex() {
                f[n] = a
                n += 1
                if p[0] != 0x2C { break }
                p += 1
            }
        }
        guard n > 0 else { return site }
        site.kind = kind
        site.offset = Int(offset)
        site.frames = frames
        site.frameCount = n
        return site
    }

    // MARK: - Aiming

    /// A buffer of a debug cache is leaving the free state (allocation) or being freed:
    /// no register may stay on its chunk (`bytes` from `chunk`).
    @inline(__always) static func unwatch(chunk: UnsafeMutableRawPointer, bytes: Int) {
        let start = UInt(bitPattern: chunk), end = start + UInt(bytes)
        let w = watched
        for i in 0..<SG_WATCH_SLOTS_COUNT where w[i] >= start && w[i] < end { park(i) }
    }

    /// A debug cache's buffer was freed, poisoned and marked free.
    @inline(__always) static func freed(chunk: UnsafeMutableRawPointer, user: UnsafeMutableRawPointer, tag: BufferTag,
                                        layout: TagLayout) {
        let s = state
        if s.pointee.hunt.kind == .freed {
            guard let entry = tag.auditEntry(0, layout: layout), matchesSite(entry) else { return }
            aim(at: UInt(bitPattern: chunk + s.pointee.hunt.offset) & ~7, length: 8)
            return
        }
        guard s.pointee.hunt.kind == .none else { return }
        // One move per N ms: moving a register is an ioctl that reprograms every thread's
        // copy (about 70 µs here with two busy threads), so the rate, not the free, pays.
        // An idle register (never used, or its buffer reused) is taken first, else the
        // oldest watch moves.
        // Audit ticks (the TSC: one instruction, where a clock_gettime per free cost 7 %);
        // N ms in ticks from the rate measured so far, once per move.
        let now = AuditClock.now()
        guard now >= s.pointee.nextMove else { return }
        let rate = AuditClock.Conversion()
        let ticks = rate.spanNanoseconds > 0
            ? UInt64(Double(s.pointee.intervalNanoseconds) * Double(rate.spanTicks) / Double(rate.spanNanoseconds))
            : s.pointee.intervalNanoseconds
        s.pointee.nextMove = now &+ ticks
        let w = watched
        var idle = -1
        for i in 0..<s.pointee.slots where w[i] == 0 { idle = i; break }
        aim(at: UInt(bitPattern: user) & ~7, length: 8, slot: idle)
    }

    /// A debug cache's buffer was handed out (hunt `overrun`): watch the damaged byte past
    /// its end while it is live.
    @inline(__always) static func allocated(user: UnsafeMutableRawPointer, size: Int, tag: BufferTag, layout: TagLayout) {
        let s = state
        guard s.pointee.hunt.kind == .overrun, s.pointee.hunt.offset >= size,
              let entry = tag.auditEntry(0, layout: layout), matchesSite(entry) else { return }
        aim(at: UInt(bitPattern: user + s.pointee.hunt.offset), length: 1)
    }

    /// The allocation stack has the site's frames, one after another, within its first few.
    private static func matchesSite(_ entry: AuditEntry) -> Bool {
        let s = state
        let count = min(entry.frames, entry.depth)
        let k = s.pointee.hunt.frameCount
        return withUnsafeBytes(of: &s.pointee.hunt.frames) { raw in
            let f = raw.baseAddress!.assumingMemoryBound(to: UInt.self)
            let stack = entry.stack
            var start = 0
            while start + k <= count && start < 8 {
                var i = 0
                while i < k && stack[start + i] == f[i] { i += 1 }
                if i == k { return true }
                start += 1
            }
            return false
        }
    }

    /// Moves register `chosen` (or the next, round robin) to `address`; skipped when another
    /// thread is moving one (the next free gets its turn).
    private static func aim(at address: UInt, length: Int, slot chosen: Int = -1) {
        let s = state
        guard sg_atomic_cas_u64(&s.pointee.moving, 0, 1) != 0 else { return }
        var slot = chosen
        if slot < 0 {
            slot = s.pointee.nextSlot % s.pointee.slots
            s.pointee.nextSlot = slot + 1
        }
        watched[slot] = address
        if sg_watch_set(Int32(slot), address, Int32(length)) != 0 { watched[slot] = 0 }
        sg_atomic_store_u64(&s.pointee.moving, 0)
    }

    private static func park(_ slot: Int) {
        watched[slot] = 0
        _ = sg_watch_set(Int32(slot), 0, 8)
    }

    /// Every register idle (at exit, before the trap handler goes).
    static func parkAll() {
        guard isOn else { return }
        for i in 0..<state.pointee.slots { park(i) }
    }

    /// In a forked child: the child has no watchpoints (inherit_thread), and its copies
    /// of the descriptors would move the parent's.
    static func forgetAfterFork() {
        guard isOn else { return }
        sg_watch_forget()
        state.pointee.slots = 0
        for i in 0..<SG_WATCH_SLOTS_COUNT { watched[i] = 0 }
    }

    private static var SG_WATCH_SLOTS_COUNT: Int { Int(SG_WATCH_SLOTS) }

    // MARK: - The trap

    /// SIGTRAP: 2 when it was one of our watchpoints (reported if true, then resumed), 0
    /// otherwise (the program's handler or the default action follows).
    static func trapped(_ info: UnsafeMutableRawPointer, _ context: UnsafeMutableRawPointer) -> Int32 {
        let data = sg_trap_perf_data(info)
        guard data >> 63 == 1, isOn else { return 0 }
        let slot = Int(data & 3)
        let address = UInt((data & ~(1 << 63)) >> 2)
        guard slot < state.pointee.slots else { return 0 }
        // slabguard's own write (a fresh slab carved over an old one's memory, say), or a
        // register moved on since: not the program's.
        guard sg_debug_depth() == 0, sg_held_lock_count() == 0, watched[slot] == address else { park(slot); return 2 }
        var pc: UInt = 0, sp: UInt = 0, fp: UInt = 0
        var write: Int32 = 0
        sg_fault_registers(context, &pc, &sp, &fp, &write)
        if !report(address: address, pc: pc, sp: sp, fp: fp) { park(slot); return 2 }
        park(slot)   // noabort: reported once; the write stays (it is found again at reuse)
        return 2
    }

    /// The report, when `address` is still in a freed buffer or past a live one's end.
    private static func report(address: UInt, pc: UInt, sp: UInt, fp: UInt) -> Bool {
        guard let p = UnsafeRawPointer(bitPattern: address), let found = DebugChunk.holding(p) else { return false }
        let (cache, chunk, tag) = (found.cache, found.chunk, found.tag)
        let state = tag.state
        let user = UInt(bitPattern: chunk + state.offset)
        if state.isFree {
            let access = FaultAccess(isWrite: true, address: address, offset: Int(address) - Int(user), size: state.size,
                                     width: 0)   // pc is past the store: its width is not decoded
            var r = ReportBuilder(.useAfterFree, cacheFlags: cache.pointee.debugFlags, fault: access)
            r.buffer(cache: cache, user: UnsafeMutableRawPointer(bitPattern: user)!, size: state.size)
            r.faultStack(pc: pc, sp: sp, fp: fp, label: "written by thread", afterAccess: true)
            r.auditStacks(cache: cache, tag: tag, freeFirst: true)
            r.finish()
            return true
        }
        guard state.isAllocated, address >= user + UInt(state.size) else { return false }
        let access = FaultAccess(isWrite: true, address: address, offset: Int(address - user), size: state.size, width: 0)
        var r = ReportBuilder(.redzone, cacheFlags: cache.pointee.debugFlags, fault: access)
        r.line { w in
            w.append("write at ")
            w.append(hex: address)
            w.append(", ")
            w.append(decimal: address - user - UInt(state.size))
            w.append(" bytes past the end of the buffer (a CPU watchpoint, at the instruction)")
        }
        r.field("offset", address - user)
        r.buffer(cache: cache, user: UnsafeMutableRawPointer(bitPattern: user)!, size: state.size)
        r.faultStack(pc: pc, sp: sp, fp: fp, label: "written by thread", afterAccess: true)
        r.auditStacks(cache: cache, tag: tag, freeFirst: false, allocationOnly: true)
        r.finish()
        return true
    }
}
