// StackUnwinder: allocation-free, lock-free capture of the current thread's return addresses
// on x86_64 Linux, using DWARF call-frame information (.eh_frame), so it works through code
// built without frame pointers (glibc, gcc -O2).
//
// Design
// - Start: `sg_current_frame` (CSlabguardShim, always-inline asm) reads rip, rsp and rbp at one
//   instruction of `capture`, a consistent register set for a CFI step. `capture` also takes the
//   address of one of its own locals (`marker`); frames whose CFA is not above it belong to the
//   capture machinery and are not reported, so the result is the same whether or not the
//   compiler inlined the helper. Entry 0 is the return address of `capture` (in its caller).
// - Step: for a pc the unwind rule (CFA = rsp|rbp + offset, return address at CFA-8, rbp saved
//   at CFA-8n / unchanged / unknown) is found by looking up the module's PT_GNU_EH_FRAME
//   segment (glibc's lock-free `_dl_find_object`; `dl_iterate_phdr` as fallback), binary
//   searching the .eh_frame_hdr table for the FDE, and running the CIE + FDE CFA programs up to
//   the pc. Lookups use pc for the first (exact) frame and return address - 1 for the others.
//   Only rsp, rbp and rip are tracked: a frame whose CFA is a DWARF expression (PLT stubs,
//   signal trampolines), uses another base register, or whose return address is not a plain
//   "saved at CFA+n" ends the walk; an undefined return address (_start, thread start) is the
//   normal end.
// - Safety: every stack read must be 8-aligned inside [initial rsp, stack top] and each CFA must
//   be strictly above the previous one (so the walk terminates). Stack top, found without
//   syscalls or allocation: for glibc threads `pthread_self()` (struct pthread sits right above
//   the stack), for the main thread `__libc_stack_end`, otherwise initial rsp + 256 KiB.
//   .eh_frame data reads are bounded to the module's mapping. Return addresses below 64 KiB stop.
// - Cache: 64K 8-byte words in one anonymous mapping, 2-way set associative over 32K buckets,
//   bucket = (key ^ key >> 15) & 0x7FFF for the lookup address `key` (< 2^47). A word is
//   (key >> 15) << 32 | rule32: the bucket index supplies the 15 key bits the tag omits
//   (low 15 bits = bucket ^ (tag & 0x7FFF)), so the key and its rule live in a single 64-bit
//   word that is read and written with one relaxed atomic load/store. Readers therefore never
//   see a torn entry and need no lock; concurrent writers can only replace a whole valid entry
//   by another whole valid entry. 0 means empty (no valid key has a zero tag). Rules that do not
//   fit (frames > 4 MiB, odd offsets) are simply recomputed each time. "Stop" results are cached
//   too. ModuleMap.refresh() clears the table when it sees a module unloaded.
//   rule32: bits 0-1 kind (1 step, 2 end, 3 stop), bit 2 CFA base is rbp, bits 3-4 rbp rule
//   (0 unchanged, 1 saved at CFA-8n, 2 unknown), bits 5-12 n, bits 13-31 CFA offset / 8.
// - Memory/locking: all state is in mmapped memory created once under pthread_once; `warmUp()`
//   does that (plus the module map) ahead of time. No malloc, no Swift runtime allocation, no
//   locks on the capture path (a cache miss calls `_dl_find_object`, which is lock-free; only
//   the dl_iterate_phdr fallback takes the loader's lock).

import Glibc
import Synchronization
import CSlabguardShim

/// One decoded unwind step for a code address.
struct UnwindRule {
    static let step = 1, end = 2, stop = 3
    var kind = UnwindRule.stop
    var cfaIsRbp = false
    var cfaOffset = 0
    var raOffset = -8
    var rbpRule = 0        // 0 unchanged, 1 saved at CFA + rbpOffset, 2 unknown
    var rbpOffset = 0

    @inline(__always)
    init(word: UInt32) {
        kind = Int(word & 3)
        cfaIsRbp = word & 4 != 0
        rbpRule = Int((word >> 3) & 3)
        rbpOffset = -8 * Int((word >> 5) & 0xFF)
        cfaOffset = 8 * Int(word >> 13)
    }

    init() {}

    /// The packed form, or nil when the rule does not fit in 32 bits.
    var word: UInt32? {
        if kind != UnwindRule.step { return UInt32(kind) }
        guard raOffset == -8, cfaOffset >= 0, cfaOffset & 7 == 0, cfaOffset >> 3 < 1 << 19 else { return nil }
        var w = UInt32(kind) | (cfaIsRbp ? 4 : 0) | UInt32(rbpRule) << 3 | UInt32(cfaOffset >> 3) << 13
        if rbpRule == 1 {
            guard rbpOffset < 0, rbpOffset & 7 == 0, -rbpOffset >> 3 < 256 else { return nil }
            w |= UInt32(-rbpOffset >> 3) << 5
        }
        return w
    }
}

struct StackUnwinderState {
    var table: UnsafeMutablePointer<Atomic<UInt64>>
    /// [0] cache misses, [1] force the dl_iterate_phdr path (tests)
    var counters: UnsafeMutablePointer<Atomic<Int>>
    var scratch: UnsafeMutablePointer<UInt>
    var mainStackEnd: UInt = 0
    var findObject: UInt = 0
    var iteratePhdr: UInt = 0
    /// Text of slabguard's own library when it is libslabguard_rt.so (preloaded or linked),
    /// else 0: captureFromProgram hops over these frames by their frame pointers.
    var ownLow: UInt = 0
    var ownHigh: UInt = 0
}


private let ruleTableWords = 1 << 16
private let scratchFrames = 128

private func unwinderInitialize() {
    let tableBytes = ruleTableWords * 8
    guard let mem = StackDebugSupport.mapMemory(4096 + tableBytes) else { return }
    let counters = (mem + 1024).bindMemory(to: Atomic<Int>.self, capacity: 2)
    let scratch = (mem + 2048).bindMemory(to: UInt.self, capacity: scratchFrames)
    let table = (mem + 4096).bindMemory(to: Atomic<UInt64>.self, capacity: ruleTableWords)
    let st = mem.bindMemory(to: StackUnwinderState.self, capacity: 1)
    st.initialize(to: StackUnwinderState(table: table, counters: counters, scratch: scratch))
    let stackEndVariable = StackDebugSupport.symbolAddress("__libc_stack_end")
    if stackEndVariable != 0 { st.pointee.mainStackEnd = StackDebugSupport.load(stackEndVariable, as: UInt.self) }
    st.pointee.findObject = StackDebugSupport.symbolAddress("_dl_find_object")
    st.pointee.iteratePhdr = StackDebugSupport.symbolAddress("dl_iterate_phdr")
    StackLayerState.shared.pointee.unwinder = st
}

enum StackUnwinder {
    @inline(__always)
    static func state() -> UnsafeMutablePointer<StackUnwinderState>? {
        pthread_once(&StackLayerState.shared.pointee.unwinderOnce) { unwinderInitialize() }
        return StackLayerState.shared.pointee.unwinder
    }

    /// Sets up everything (rule cache, module map, symbolizer state) and walks the current
    /// stack once, so that the first capture inside malloc does no one-time work.
    static func warmUp() {
        guard let st = state() else { return }
        ModuleMap.refresh()
        _ = ElfSymbols.state()
        var pc: UInt = 0, sp: UInt = 0, fp: UInt = 0
        sg_current_frame(&pc, &sp, &fp)
        var own = ModuleInfo()
        if ModuleMap.lookup(pc, into: &own), ModuleMap.isSlabguardLibrary(own) {
            st.pointee.ownLow = own.start
            st.pointee.ownHigh = own.end
        }
        _ = capture(into: st.pointee.scratch, capacity: scratchFrames, skip: 0)
    }

    /// Writes up to `capacity` return addresses of the caller's stack (skipping `skip`
    /// innermost frames beyond the capture function itself) and returns the count.
    /// Entry 0 is the return address into the function that called `capture`.
    @inline(never)
    static func capture(into buffer: UnsafeMutablePointer<UInt>, capacity: Int, skip: Int) -> Int {
        #if arch(x86_64)
        guard capacity > 0, let st = state() else { return 0 }
        var marker: UInt = 0
        let frameMarker = address(of: &marker)
        var pc: UInt = 0, sp: UInt = 0, fp: UInt = 0
        sg_current_frame(&pc, &sp, &fp)
        return walk(st, pc, sp, fp, frameMarker, buffer, capacity, skip)
        #else
        return 0
        #endif
    }

    /// The calling thread's stack from the program's frame on: entry 0 is the return
    /// address into the code that called malloc/free (or whatever slabguard entry).
    /// Inside the preloaded library, slabguard's own frames are hopped over by their frame
    /// pointers (all of its code keeps them) until a return address leaves its text —
    /// two loads per frame instead of an unwind step, and none of them stored.  Elsewhere
    /// (the core linked into a program or the tests, where its text is the program's), a
    /// full capture skipping `skip` frames.
    @inline(never)
    static func captureFromProgram(into buffer: UnsafeMutablePointer<UInt>, capacity: Int, skip: Int) -> Int {
        #if arch(x86_64)
        guard capacity > 0, let st = state() else { return 0 }
        let low = st.pointee.ownLow, high = st.pointee.ownHigh
        if low != 0 {
            var pc: UInt = 0, sp: UInt = 0, fp: UInt = 0
            sg_current_frame(&pc, &sp, &fp)
            let top = stackTop(sp, st.pointee.mainStackEnd)
            var frame = fp, hops = 0
            while hops < 32 && frame >= sp && frame & 7 == 0 && frame < top &- 16 {
                let ra = StackDebugSupport.load(frame &+ 8, as: UInt.self)
                let callerFrame = StackDebugSupport.load(frame, as: UInt.self)
                if ra < low || ra >= high {
                    guard ra >= 0x10000 else { break }
                    buffer[0] = ra
                    if capacity == 1 { return 1 }
                    return 1 + walk(st, ra, frame &+ 16, callerFrame, 0, buffer + 1, capacity - 1, 0, exact: false)
                }
                guard callerFrame > frame else { break }
                frame = callerFrame
                hops += 1
            }
        }
        return capture(into: buffer, capacity: capacity, skip: skip + 1)
        #else
        return 0
        #endif
    }

    /// The stack of an interrupted context (a signal handler's ucontext): entry 0 is `pc`
    /// itself, then the return addresses above it.
    static func capture(fromPC pc: UInt, sp: UInt, fp: UInt, into buffer: UnsafeMutablePointer<UInt>, capacity: Int) -> Int {
        #if arch(x86_64)
        guard capacity > 1, let st = state() else { return 0 }
        buffer[0] = pc
        return 1 + walk(st, pc, sp, fp, 0, buffer + 1, capacity - 1, 0)
        #else
        return 0
        #endif
    }

    @inline(never)
    private static func address(of pointer: UnsafeMutablePointer<UInt>) -> UInt {
        UInt(bitPattern: pointer)
    }

    /// Upper bound of the current thread's stack (see the header comment).
    @inline(__always)
    private static func stackTop(_ sp: UInt, _ mainStackEnd: UInt) -> UInt {
        let me = UInt(pthread_self())
        if me > sp && me - sp <= 1 << 30 { return me }
        if mainStackEnd > sp && mainStackEnd - sp <= 1 << 32 { return mainStackEnd }
        return sp &+ (256 << 10)
    }

    private static func walk(_ st: UnsafeMutablePointer<StackUnwinderState>, _ pc0: UInt, _ sp0: UInt, _ fp0: UInt,
                             _ marker: UInt, _ buffer: UnsafeMutablePointer<UInt>, _ capacity: Int, _ skip: Int,
                             exact exactFirst: Bool = true) -> Int {
        var pc = pc0, sp = sp0, fp = fp0
        var fpKnown = true
        var exact = exactFirst
        var count = 0
        var toSkip = skip
        let low = sp0
        let high = stackTop(sp0, st.pointee.mainStackEnd)
        guard high >= low &+ 16 else { return 0 }
        let lastSlot = high - 8
        var steps = 0
        while steps < 4096 {
            steps += 1
            let rule = cachedRule(st, exact ? pc : pc &- 1)
            guard rule.kind == UnwindRule.step, fpKnown || !rule.cfaIsRbp else { break }
            let cfa = (rule.cfaIsRbp ? fp : sp) &+ UInt(bitPattern: rule.cfaOffset)
            guard cfa > sp, cfa <= high, cfa & 7 == 0 else { break }
            let raAt = cfa &+ UInt(bitPattern: rule.raOffset)
            guard raAt >= low, raAt <= lastSlot, raAt & 7 == 0 else { break }
            let ra = StackDebugSupport.load(raAt, as: UInt.self)
            if rule.rbpRule == 1 {
                let at = cfa &+ UInt(bitPattern: rule.rbpOffset)
                guard at >= low, at <= lastSlot, at & 7 == 0 else { break }
                fp = StackDebugSupport.load(at, as: UInt.self)
            } else if rule.rbpRule == 2 {
                fpKnown = false
            }
            guard ra >= 0x10000 else { break }
            if cfa > marker {
                if toSkip > 0 {
                    toSkip -= 1
                } else {
                    buffer[count] = ra
                    count += 1
                    if count == capacity { break }
                }
            }
            sp = cfa
            pc = ra
            exact = false
        }
        return count
    }

    /// The cached packed rule for `key`, or 0.
    @inline(__always)
    private static func probe(_ st: UnsafeMutablePointer<StackUnwinderState>, _ key: UInt) -> UInt32 {
        guard key >= 0x10000 && key < 1 << 47 else { return 0 }
        let slot = Int((key ^ (key >> 15)) & 0x7FFF) << 1
        let tag = UInt64(key >> 15)
        let w0 = st.pointee.table[slot].load(ordering: .relaxed)
        if w0 >> 32 == tag { return UInt32(truncatingIfNeeded: w0) }
        let w1 = st.pointee.table[slot + 1].load(ordering: .relaxed)
        return w1 >> 32 == tag ? UInt32(truncatingIfNeeded: w1) : 0
    }

    @inline(__always)
    private static func cachedRule(_ st: UnsafeMutablePointer<StackUnwinderState>, _ key: UInt) -> UnwindRule {
        let w = probe(st, key)
        return w != 0 ? UnwindRule(word: w) : missRule(st, key)
    }

    /// Whether the rule for lookup address `key` (return address - 1) is in the cache; for tests.
    static func isCached(_ key: UInt) -> Bool {
        guard let st = state() else { return false }
        return probe(st, key) != 0
    }

    @inline(never)
    private static func missRule(_ st: UnsafeMutablePointer<StackUnwinderState>, _ key: UInt) -> UnwindRule {
        st.pointee.counters[0].wrappingAdd(1, ordering: .relaxed)
        let rule = computeRule(st, key)
        if key >= 0x10000 && key < 1 << 47, let w = rule.word {
            let slot = Int((key ^ (key >> 15)) & 0x7FFF) << 1
            let word = UInt64(key >> 15) << 32 | UInt64(w)
            var target = slot
            if st.pointee.table[slot].load(ordering: .relaxed) != 0 {
                target = st.pointee.table[slot + 1].load(ordering: .relaxed) == 0 ? slot + 1 : slot + Int((key >> 4) & 1)
            }
            st.pointee.table[target].store(word, ordering: .relaxed)
        }
        return rule
    }

    /// The unwind rule for a code address (`pc` exact: pass return address - 1 for a caller
    /// frame), computed from the CFI without touching the cache; for tests and diagnostics.
    static func computeRule(for pc: UInt) -> UnwindRule {
        guard let st = state() else { return UnwindRule() }
        return computeRule(st, pc)
    }

    private static func computeRule(_ st: UnsafeMutablePointer<StackUnwinderState>, _ pc: UInt) -> UnwindRule {
        guard pc >= 0x10000 else { return UnwindRule() }
        var hdr: UInt = 0, low: UInt = 0, high: UInt = 0
        let mode = st.pointee.counters[1].load(ordering: .relaxed)
        guard ModuleMap.unwindSection(containing: pc, st.pointee.findObject, st.pointee.iteratePhdr,
                                      forceIteratePhdr: mode != 0, &hdr, &low, &high) else { return UnwindRule() }
        return DwarfCFI.rule(for: pc, ehFrameHdr: hdr, low: low, high: high, linearScan: mode == 2)
    }

    /// Forgets every cached rule (after a module was unloaded).
    static func invalidateCache() {
        guard let st = state() else { return }
        for i in 0..<ruleTableWords { st.pointee.table[i].store(0, ordering: .relaxed) }
    }

    /// Number of rule computations so far (cache misses); for tests and diagnostics.
    static var cacheMisses: Int {
        state()?.pointee.counters[0].load(ordering: .relaxed) ?? 0
    }

    /// Test hook: resolve unwind sections with dl_iterate_phdr instead of _dl_find_object, and
    /// optionally find FDEs by scanning .eh_frame instead of the .eh_frame_hdr table.
    static func setUsesIteratePhdr(_ on: Bool, linearScan: Bool = false) {
        state()?.pointee.counters[1].store(on ? (linearScan ? 2 : 1) : 0, ordering: .relaxed)
    }
}
