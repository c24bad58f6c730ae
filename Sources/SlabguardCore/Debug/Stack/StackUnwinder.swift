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
                             _ marker: UInt, _ buffer: UnsafeMutablePointer<UInt>, _ capacity: Int, _ skip: Int) -> Int {
        var pc = pc0, sp = sp0, fp = fp0
        var fpKnown = true
        var exact = true
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

/// Bounded little-endian reader over mapped .eh_frame / .eh_frame_hdr bytes.
private struct CFIReader {
    var p: UInt
    var end: UInt
    var ok = true

    @inline(__always)
    mutating func take(_ n: UInt) -> UInt? {
        guard ok, p <= end, end - p >= n else { ok = false; return nil }
        let at = p
        p += n
        return at
    }
    mutating func u8() -> UInt8 { take(1).map { StackDebugSupport.load($0, as: UInt8.self) } ?? 0 }
    mutating func u16() -> UInt16 { take(2).map { StackDebugSupport.load($0, as: UInt16.self) } ?? 0 }
    mutating func u32() -> UInt32 { take(4).map { StackDebugSupport.load($0, as: UInt32.self) } ?? 0 }
    mutating func u64() -> UInt { take(8).map { StackDebugSupport.load($0, as: UInt.self) } ?? 0 }
    mutating func skip(_ n: UInt) { _ = take(n) }

    mutating func uleb() -> UInt {
        var result: UInt = 0, shift: UInt = 0
        while ok {
            let b = u8()
            if shift < 64 { result |= UInt(b & 0x7F) << shift }
            shift += 7
            if b & 0x80 == 0 { break }
        }
        return result
    }

    mutating func sleb() -> Int {
        var result: UInt = 0, shift: UInt = 0, b: UInt8 = 0
        while ok {
            b = u8()
            if shift < 64 { result |= UInt(b & 0x7F) << shift }
            shift += 7
            if b & 0x80 == 0 { break }
        }
        if shift < 64 && b & 0x40 != 0 { result |= UInt.max << shift }
        return Int(bitPattern: result)
    }

    /// Reads a DW_EH_PE-encoded pointer (absptr/uleb/sleb/udata2-8/sdata2-8, pcrel/datarel,
    /// indirect when `deref`). Unsupported encodings clear `ok`.
    mutating func encoded(_ enc: UInt8, dataBase: UInt, deref: Bool = true) -> UInt {
        if enc == 0xFF { return 0 }
        let field = p
        var v: UInt
        switch enc & 0x0F {
        case 0x00, 0x04, 0x0C: v = u64()
        case 0x01: v = uleb()
        case 0x02: v = UInt(u16())
        case 0x03: v = UInt(u32())
        case 0x09: v = UInt(bitPattern: sleb())
        case 0x0A: v = UInt(bitPattern: Int(Int16(bitPattern: u16())))
        case 0x0B: v = UInt(bitPattern: Int(Int32(bitPattern: u32())))
        default: ok = false; return 0
        }
        switch enc & 0x70 {
        case 0x00: break
        case 0x10: v = v &+ field
        case 0x30:
            guard dataBase != 0 else { ok = false; return 0 }
            v = v &+ dataBase
        default: ok = false; return 0
        }
        if enc & 0x80 != 0 && deref && ok {
            guard v & 7 == 0, v >= 0x10000 else { ok = false; return 0 }
            v = StackDebugSupport.load(v, as: UInt.self)
        }
        return v
    }
}

/// What we need from a CIE.
private struct CIEInfo {
    var codeAlign: UInt = 1
    var dataAlign = -8
    var raRegister: UInt = 16
    var fdeEncoding: UInt8 = 0
    var hasAugmentationData = false
    var isSignalFrame = false
    var program: UInt = 0
    var programEnd: UInt = 0
}

/// Register rules of one CFA table row (only CFA, rbp and the return address are tracked).
private struct RowRules {
    var cfaRegister: UInt = 7
    var cfaOffset = 8
    var cfaIsExpression = false
    var rbpKind: UInt8 = 0      // 0 same value, 1 saved at CFA + offset, 2 undefined, 3 other
    var rbpOffset = 0
    var raKind: UInt8 = 0
    var raOffset = 0
}

private enum DwarfCFI {
    /// Computes the unwind rule for `pc` in the module whose .eh_frame_hdr is at `ehFrameHdr`.
    static func rule(for pc: UInt, ehFrameHdr hdr: UInt, low: UInt, high: UInt, linearScan: Bool) -> UnwindRule {
        var rule = UnwindRule()
        let fde = findFDE(pc, hdr, low, high, linearScan)
        guard fde != 0 else { return rule }
        var cie = CIEInfo()
        var begin: UInt = 0, program: UInt = 0, programEnd: UInt = 0
        guard parseFDE(fde, pc, low, high, &cie, &begin, &program, &programEnd), !cie.isSignalFrame else { return rule }
        var row = RowRules()
        var loc = begin
        guard execute(cie.program, cie.programEnd, UInt.max, &cie, &row, initial: RowRules(), &loc) else { return rule }
        let initial = row
        guard execute(program, programEnd, pc, &cie, &row, initial: initial, &loc) else { return rule }
        if row.raKind == 2 {
            rule.kind = UnwindRule.end
            return rule
        }
        guard !row.cfaIsExpression, row.cfaRegister == 7 || row.cfaRegister == 6, row.raKind == 1 else { return rule }
        rule.kind = UnwindRule.step
        rule.cfaIsRbp = row.cfaRegister == 6
        rule.cfaOffset = row.cfaOffset
        rule.raOffset = row.raOffset
        switch row.rbpKind {
        case 0: rule.rbpRule = 0
        case 1: rule.rbpRule = 1; rule.rbpOffset = row.rbpOffset
        default: rule.rbpRule = 2
        }
        return rule
    }

    /// FDE address for `pc` via the .eh_frame_hdr search table (linear .eh_frame scan if absent).
    static func findFDE(_ pc: UInt, _ hdr: UInt, _ low: UInt, _ high: UInt, _ linearScan: Bool) -> UInt {
        guard hdr >= low, hdr < high else { return 0 }
        var r = CFIReader(p: hdr, end: high)
        let version = r.u8(), framePtrEnc = r.u8(), countEnc = r.u8(), tableEnc = r.u8()
        guard r.ok, version == 1 else { return 0 }
        let ehFrame = r.encoded(framePtrEnc, dataBase: hdr)
        guard r.ok else { return 0 }
        if countEnc == 0xFF || tableEnc == 0xFF || linearScan { return scanEhFrame(pc, ehFrame, low, high) }
        let count = r.encoded(countEnc, dataBase: hdr)
        let table = r.p
        let fieldSize: UInt
        switch tableEnc & 0x0F {
        case 0x02, 0x0A: fieldSize = 2
        case 0x03, 0x0B: fieldSize = 4
        case 0x00, 0x04, 0x0C: fieldSize = 8
        default: return scanEhFrame(pc, ehFrame, low, high)
        }
        guard r.ok, count > 0, table <= high, count <= (high - table) / (2 * fieldSize) else { return 0 }
        var lo: UInt = 0, hi = count   // find the last entry whose initial location <= pc
        if tableEnc == 0x3B {          // datarel | sdata4: the common, fast case
            while lo < hi {
                let mid = (lo + hi) >> 1
                let loc = hdr &+ UInt(bitPattern: Int(StackDebugSupport.load(table + mid * 8, as: Int32.self)))
                if loc <= pc { lo = mid + 1 } else { hi = mid }
            }
            guard lo > 0 else { return 0 }
            return hdr &+ UInt(bitPattern: Int(StackDebugSupport.load(table + (lo - 1) * 8 + 4, as: Int32.self)))
        }
        while lo < hi {
            let mid = (lo + hi) >> 1
            var e = CFIReader(p: table + mid * 2 * fieldSize, end: high)
            let loc = e.encoded(tableEnc, dataBase: hdr)
            guard e.ok else { return 0 }
            if loc <= pc { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return 0 }
        var e = CFIReader(p: table + (lo - 1) * 2 * fieldSize + fieldSize, end: high)
        let fde = e.encoded(tableEnc, dataBase: hdr)
        return e.ok ? fde : 0
    }

    /// Walks .eh_frame entry by entry (only when the header has no search table).
    static func scanEhFrame(_ pc: UInt, _ ehFrame: UInt, _ low: UInt, _ high: UInt) -> UInt {
        var at = ehFrame
        var guardCount = 0
        while at >= low && at < high && guardCount < 1 << 20 {
            guardCount += 1
            var r = CFIReader(p: at, end: high)
            let length = UInt(r.u32())
            guard r.ok, length != 0, length != 0xFFFF_FFFF, length <= high - r.p else { return 0 }
            let id = r.u32()
            if r.ok && id != 0 {
                var cie = CIEInfo()
                var begin: UInt = 0, program: UInt = 0, programEnd: UInt = 0
                if parseFDE(at, pc, low, high, &cie, &begin, &program, &programEnd) { return at }
            }
            at = at + 4 + length
        }
        return 0
    }

    /// Parses the CIE at `at`.
    static func parseCIE(_ at: UInt, _ low: UInt, _ high: UInt, _ cie: inout CIEInfo) -> Bool {
        guard at >= low else { return false }
        var r = CFIReader(p: at, end: high)
        let length = UInt(r.u32())
        guard r.ok, length >= 4, length != 0xFFFF_FFFF, length <= high - r.p else { return false }
        r.end = r.p + length
        guard r.u32() == 0 else { return false }   // CIE id
        let version = r.u8()
        guard r.ok, version == 1 || version == 3 || version == 4 else { return false }
        let augmentation = r.p
        var augLength: UInt = 0
        while r.ok && r.u8() != 0 { augLength += 1 }
        guard r.ok, augLength < 16 else { return false }
        @inline(__always) func aug(_ i: UInt) -> UInt8 { StackDebugSupport.load(augmentation + i, as: UInt8.self) }
        var i: UInt = 0
        if augLength >= 2 && aug(0) == 0x65 && aug(1) == 0x68 {   // "eh": old GCC pointer
            r.skip(8)
            i = 2
        }
        if version == 4 { r.skip(2) }   // address_size, segment_selector_size
        cie.codeAlign = r.uleb()
        cie.dataAlign = r.sleb()
        cie.raRegister = version == 1 ? UInt(r.u8()) : r.uleb()
        if i < augLength && aug(i) == 0x7A {   // 'z'
            cie.hasAugmentationData = true
            let dataLength = r.uleb()
            let dataEnd = r.p &+ dataLength
            guard r.ok, dataEnd <= r.end, dataEnd >= r.p else { return false }
            i += 1
            while i < augLength {
                switch aug(i) {
                case 0x4C: _ = r.u8()                                                   // 'L' LSDA encoding
                case 0x50: let enc = r.u8(); _ = r.encoded(enc, dataBase: 0, deref: false)   // 'P' personality
                case 0x52: cie.fdeEncoding = r.u8()                                     // 'R' FDE encoding
                case 0x53: cie.isSignalFrame = true                                     // 'S'
                default: break                                                          // 'B', 'G', ...
                }
                i += 1
            }
            r.p = dataEnd
        } else if i < augLength {
            return false   // unknown augmentation without length: cannot skip its data
        }
        cie.program = r.p
        cie.programEnd = r.end
        return r.ok
    }

    /// Parses the FDE at `fde`; succeeds only when `pc` lies in its range.
    static func parseFDE(_ fde: UInt, _ pc: UInt, _ low: UInt, _ high: UInt, _ cie: inout CIEInfo,
                         _ begin: inout UInt, _ program: inout UInt, _ programEnd: inout UInt) -> Bool {
        guard fde >= low else { return false }
        var r = CFIReader(p: fde, end: high)
        let length = UInt(r.u32())
        guard r.ok, length >= 8, length != 0xFFFF_FFFF, length <= high - r.p else { return false }
        r.end = r.p + length
        let ciePointerField = r.p
        let cieOffset = UInt(r.u32())
        guard r.ok, cieOffset != 0, cieOffset <= ciePointerField,
              parseCIE(ciePointerField - cieOffset, low, high, &cie) else { return false }
        begin = r.encoded(cie.fdeEncoding, dataBase: 0)
        let range = r.encoded(cie.fdeEncoding & 0x0F, dataBase: 0)
        guard r.ok, pc >= begin, pc - begin < range else { return false }
        if cie.hasAugmentationData { r.skip(r.uleb()) }
        program = r.p
        programEnd = r.end
        return r.ok
    }

    @inline(__always)
    private static func setRule(_ row: inout RowRules, _ reg: UInt, _ kind: UInt8, _ offset: Int, _ ra: UInt) {
        if reg == 6 {
            row.rbpKind = kind
            row.rbpOffset = offset
        } else if reg == ra {
            row.raKind = kind
            row.raOffset = offset
        }
    }

    @inline(__always)
    private static func restoreRule(_ row: inout RowRules, _ reg: UInt, _ initial: RowRules, _ ra: UInt) {
        if reg == 6 {
            row.rbpKind = initial.rbpKind
            row.rbpOffset = initial.rbpOffset
        } else if reg == ra {
            row.raKind = initial.raKind
            row.raOffset = initial.raOffset
        }
    }

    /// Runs a CFA program until the location advances past `target`.
    static func execute(_ start: UInt, _ end: UInt, _ target: UInt, _ cie: inout CIEInfo,
                        _ row: inout RowRules, initial: RowRules, _ loc: inout UInt) -> Bool {
        var r = CFIReader(p: start, end: end)
        let ca = cie.codeAlign, da = cie.dataAlign, ra = cie.raRegister
        // DW_CFA_remember_state stack: 4 levels are plenty for compiler output.
        var saved0 = RowRules(), saved1 = RowRules(), saved2 = RowRules(), saved3 = RowRules()
        var depth = 0
        while r.ok && r.p < r.end {
            let op = r.u8()
            switch op >> 6 {
            case 1:   // DW_CFA_advance_loc
                loc = loc &+ UInt(op & 0x3F) &* ca
                if loc > target { return true }
            case 2:   // DW_CFA_offset
                setRule(&row, UInt(op & 0x3F), 1, Int(bitPattern: r.uleb()) &* da, ra)
            case 3:   // DW_CFA_restore
                restoreRule(&row, UInt(op & 0x3F), initial, ra)
            default:
                switch op {
                case 0x00: break                                                         // nop
                case 0x01:                                                               // set_loc
                    loc = r.encoded(cie.fdeEncoding, dataBase: 0)
                    if loc > target { return r.ok }
                case 0x02, 0x03, 0x04:                                                   // advance_loc1/2/4
                    let delta = op == 0x02 ? UInt(r.u8()) : op == 0x03 ? UInt(r.u16()) : UInt(r.u32())
                    loc = loc &+ delta &* ca
                    if loc > target { return r.ok }
                case 0x05: let reg = r.uleb(); setRule(&row, reg, 1, Int(bitPattern: r.uleb()) &* da, ra)
                case 0x06: restoreRule(&row, r.uleb(), initial, ra)                      // restore_extended
                case 0x07: setRule(&row, r.uleb(), 2, 0, ra)                             // undefined
                case 0x08: setRule(&row, r.uleb(), 0, 0, ra)                             // same_value
                case 0x09: let reg = r.uleb(); _ = r.uleb(); setRule(&row, reg, 3, 0, ra) // register
                case 0x0A:                                                               // remember_state
                    switch depth {
                    case 0: saved0 = row
                    case 1: saved1 = row
                    case 2: saved2 = row
                    case 3: saved3 = row
                    default: return false
                    }
                    depth += 1
                case 0x0B:                                                               // restore_state
                    guard depth > 0 else { return false }
                    depth -= 1
                    // The CFA is part of the saved row, as the spec requires.
                    switch depth {
                    case 0: row = saved0
                    case 1: row = saved1
                    case 2: row = saved2
                    default: row = saved3
                    }
                case 0x0C:                                                               // def_cfa
                    row.cfaRegister = r.uleb()
                    row.cfaOffset = Int(bitPattern: r.uleb())
                    row.cfaIsExpression = false
                case 0x0D: row.cfaRegister = r.uleb(); row.cfaIsExpression = false       // def_cfa_register
                case 0x0E: row.cfaOffset = Int(bitPattern: r.uleb())                     // def_cfa_offset
                case 0x0F: r.skip(r.uleb()); row.cfaIsExpression = true                  // def_cfa_expression
                case 0x10, 0x16:                                                         // expression, val_expression
                    let reg = r.uleb(); r.skip(r.uleb()); setRule(&row, reg, 3, 0, ra)
                case 0x11: let reg = r.uleb(); setRule(&row, reg, 1, r.sleb() &* da, ra) // offset_extended_sf
                case 0x12:                                                               // def_cfa_sf
                    row.cfaRegister = r.uleb()
                    row.cfaOffset = r.sleb() &* da
                    row.cfaIsExpression = false
                case 0x13: row.cfaOffset = r.sleb() &* da                                // def_cfa_offset_sf
                case 0x14: let reg = r.uleb(); _ = r.uleb(); setRule(&row, reg, 3, 0, ra) // val_offset
                case 0x15: let reg = r.uleb(); _ = r.sleb(); setRule(&row, reg, 3, 0, ra) // val_offset_sf
                case 0x2E: _ = r.uleb()                                                  // GNU_args_size
                case 0x2F:                                                               // GNU_negative_offset_extended
                    let reg = r.uleb()
                    setRule(&row, reg, 1, 0 &- (Int(bitPattern: r.uleb()) &* da), ra)
                default: return false
                }
            }
        }
        return r.ok
    }
}
