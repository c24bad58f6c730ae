// Crash explanations — what slabguard says when the program dies of SIGSEGV or
// SIGBUS in debug mode, before the signal's usual course (the C entry and the
// chaining to the program's own handler are in CSlabguardShim/sg_fault.c).
//
// - A fault in a guarded buffer's guard page is an overrun: `redzone
//   violation: write past end of buffer` (`read past end` for a read), with the access, how far past the
//   end, the faulting stack and the allocation stack.
// - A fault in the pages of a freed guarded or large buffer (inaccessible
//   while retired) is `use-after-free: read|write at ADDR, offset 0xOFF into
//   buffer of SIZE bytes`, with the faulting stack and the buffer's free and
//   allocation stacks.
// - Any other crash (unless the program handles the signal itself): one note
//   naming the signal, the fault address and every register that holds a fill
//   pattern (0xdeadbeef… is a pointer read from freed memory, 0xbaddcafe… from
//   uninitialized memory, 0xfeedface… from a redzone), the faulting stack; then
//   the heap is verified and each damaged buffer reported.
// After a heap report the configured action applies (abort, or with noabort
// the signal's own action: the process dies of it).
//
// Runs in a signal handler: no allocation; reports go through ReportBuilder's
// mapped scratch and write(2); heap verification skips locks that are held.

import CSlabguardShim
import Glibc

enum FaultExplainer {
    /// Installs the SIGSEGV/SIGBUS handler (debug mode) and puts the program's handlers
    /// back at exit.
    static func install() {
        guard sg_fault_install({ sig, info, context in
            guard let info, let context else { return 0 }
            return FaultExplainer.explain(sig, info, context)
        }) == 0 else { return }
        atexit {
            Watchpoints.parkAll()   // no trap may outlive its handler
            if sg_system_calls_filtered() == 0 { sg_fault_uninstall() }
        }   // sandboxed: rt_sigaction may kill
    }

    /// Returns 1 when a heap error was reported, 0 otherwise.
    static func explain(_ signal: Int32, _ info: UnsafeMutableRawPointer, _ context: UnsafeMutableRawPointer) -> Int32 {
        if signal == SIGTRAP { return Watchpoints.trapped(info, context) }
        if sg_fault_code(info) <= 0 { return 0 }   // sent with kill(2): not a fault
        let address = UInt(bitPattern: sg_fault_address(info))
        var pc: UInt = 0, sp: UInt = 0, fp: UInt = 0
        var write: Int32 = 0
        sg_fault_registers(context, &pc, &sp, &fp, &write)
        if address != 0, let span = GuardedAllocator.span(containing: address),
           reportBufferFault(span, address: address, isWrite: write != 0, pc: pc, sp: sp, fp: fp) {
            return 1
        }
        if sg_fault_program_has_handler(signal) != 0 { return 0 }   // the program's business
        explainCrash(signal, address: address, context: context, pc: pc, sp: sp, fp: fp)
        return 0
    }

    /// A fault inside a slabguard span: an overrun into a guard page or an access to a
    /// freed buffer.  False if the address is neither.
    private static func reportBufferFault(_ span: UnsafeMutablePointer<LargeSpan>, address: UInt, isWrite: Bool,
                                          pc: UInt, sp: UInt, fp: UInt) -> Bool {
        let base = span.pointee.base
        let tag = BufferTag(base: base)
        let user = UInt(bitPattern: base + span.pointee.userOffset)
        let size = span.pointee.requestedSize
        let layout = TagLayout.of(span)
        let access = FaultAccess(isWrite: isWrite, address: address,
                                 offset: address >= user ? Int(address - user) : -Int(user - address), size: size,
                                 width: AccessSize.ofInstruction(at: pc))
        if tag.state.isFree {
            var r = ReportBuilder(.useAfterFree, cacheFlags: 0, fault: access)
            r.buffer(name: DebugReport.name(of: span), user: UnsafeMutableRawPointer(bitPattern: user)!, size: size)
            r.faultStack(pc: pc, sp: sp, fp: fp, label: "faulting access by thread")
            r.auditStacks(layout: layout, tag: tag, freeFirst: true, freeLabel: "freed by thread")
            r.contents(layout: layout, tag: tag, size: size)
            r.finish()
            return true
        }
        let guardStart = UInt(bitPattern: base) + UInt((span.pointee.pages - 1) << pageShift)
        guard span.pointee.guarded, tag.state.isAllocated, address >= guardStart else { return false }
        var r = ReportBuilder(isWrite ? .redzone : .redzoneRead, cacheFlags: 0, fault: access)
        r.line { w in
            w.append(isWrite ? "write at " : "read at ")
            w.append(hex: address)
            w.append(", ")
            w.append(decimal: address - user - UInt(size))
            w.append(" bytes past the end of the buffer (its guard page)")
        }
        r.field("offset", address - user)
        r.buffer(name: DebugReport.name(of: span), user: UnsafeMutableRawPointer(bitPattern: user)!, size: size)
        r.faultStack(pc: pc, sp: sp, fp: fp, label: "faulting access by thread")
        r.auditStacks(layout: layout, tag: tag, freeFirst: false, allocationOnly: true)
        r.finish()
        return true
    }

    /// A crash slabguard cannot attribute to a buffer: the fill patterns in sight, the
    /// stack, then a heap verification.
    private static func explainCrash(_ signal: Int32, address: UInt, context: UnsafeMutableRawPointer,
                                     pc: UInt, sp: UInt, fp: UInt) {
        var r = ReportBuilder(.crash, cacheFlags: 0)
        r.line { w in
            w.append(signal == SIGBUS ? "SIGBUS" : "SIGSEGV")
            w.append(" at address ")
            w.append(hex: address)
            if address == 0 { w.append(" (NULL, or a non-canonical address such as a fill pattern)") }
        }
        r.fieldHex("fault_address", address)
        var seen = false
        if let meaning = patternMeaning(address) {
            r.note { w in
                w.append("the fault address holds ")
                w.append(meaning)
            }
            seen = true
        }
        // The freed buffer in sight: the fault address, or a register pointing into one (the
        // object a stale pointer was followed into, whose freed words were then loaded).
        var freed: FreedBuffer? = nil
        if let b = freedBuffer(at: address) {
            freed = b
            r.note { w in
                w.append("the fault address is offset ")
                w.append(hex: address - UInt(bitPattern: b.user))
                w.append(" into a freed buffer")
            }
            seen = true
        }
        for i in Int32(0)..<16 {
            var name: UnsafePointer<CChar>? = nil
            let value = UInt(sg_fault_register(context, i, &name))
            guard let name else { continue }
            if let meaning = patternMeaning(value) {
                r.note { w in
                    appendRegister(&w, name, value)
                    w.append(": ")
                    w.append(meaning)
                }
                seen = true
            } else if isText(value) {
                r.note { w in
                    appendRegister(&w, name, value)
                    w.append(" (\"")
                    for k in 0..<8 { w.append(byte: UInt8(truncatingIfNeeded: value >> UInt(8 * k))) }
                    w.append("\"): text where a pointer was expected (a buffer overwritten with characters)")
                }
                seen = true
            } else if let b = freedBuffer(at: value) {
                r.note { w in
                    appendRegister(&w, name, value)
                    w.append(": points at offset ")
                    w.append(hex: value - UInt(bitPattern: b.user))
                    w.append(" into a freed buffer (a pointer kept after its free)")
                }
                if freed == nil { freed = b }
                seen = true
            }
        }
        // No register points into one (unoptimized code reloads its pointers): the words of
        // the crashed frame's stack just above its stack pointer.
        if freed == nil, seen, sp >= 0x10000, sp & 7 == 0 {
            let words = UnsafePointer<UInt>(bitPattern: sp)!
            for k in 0..<64 {
                guard let b = freedBuffer(at: words[k]) else { continue }
                freed = b
                r.note { w in
                    w.append("the stack at sp+")
                    w.append(hex: UInt(8 * k))
                    w.append(" holds ")
                    w.append(hex: words[k], width: 16)
                    w.append(": a pointer into a freed buffer")
                }
                break
            }
        }
        // A jump or call into a library that was unloaded (a stale function pointer): the
        // fault is at, or was executing, code that is no longer there.
        for k in 0..<2 {   // the fault address, then the pc (no array: this is a signal handler)
            let where_ = k == 0 ? address : pc
            var module = ModuleInfo()
            guard where_ >= 0x10000, ModuleMap.lookup(where_, into: &module), !module.isLoaded else { continue }
            r.note { w in
                w.append("the fault is in ")
                withUnsafeBytes(of: &module.path) { w.append(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
                w.append("+")
                w.append(hex: where_ - module.base)
                DebugReport.appendFunction(&w, at: where_)
                w.append(", a library already unloaded")
                if let t = UnloadHistory.unloadTime(start: module.start) {
                    w.append(" at ")
                    w.append(seconds: AuditClock.nanosecondsSinceStart(t))
                }
                w.append(": a pointer into it outlived its dlclose")
            }
            seen = true
            break
        }
        if !seen { r.note { w in w.append("no fill pattern in the fault address or the registers") } }
        r.endNotes()
        r.faultStack(pc: pc, sp: sp, fp: fp, label: "crashed in thread")
        if let b = freed {
            r.buffer(cache: b.cache, user: b.user, size: b.size, label: "freed buffer")
            r.auditStacks(cache: b.cache, tag: b.tag, freeFirst: true)
        }
        r.finish(informational: true)
        _ = HeapVerifier.verifyAll(skipBusy: true, detected: .crash)
        // A fatal report ends with the summary line, as an aborting one does.
        ReportOutput.writeSummaryTakingLock(json: OptionsState.shared.pointee.options.flags.contains(.jsonReport))
    }

    struct FreedBuffer {
        var cache: UnsafeMutablePointer<CacheCore>
        var tag: BufferTag
        var user: UnsafeMutableRawPointer
        var size: Int
    }

    /// The freed (or quarantined) debug buffer whose bytes hold `address`, or nil.  From a
    /// signal handler: reads only, no lock.
    private static func freedBuffer(at address: UInt) -> FreedBuffer? {
        guard address >= 0x10000, let p = UnsafeRawPointer(bitPattern: address), let found = DebugChunk.holding(p) else { return nil }
        let tag = found.tag
        let state = tag.state
        guard state.isFree, p < UnsafeRawPointer(tag.base) else { return nil }
        return FreedBuffer(cache: found.cache, tag: tag, user: found.chunk + state.offset, size: state.size)
    }

    /// `register NAME = 0xVALUE` (16 hex digits), the start of each register's note.
    private static func appendRegister(_ w: inout ReportWriter, _ name: UnsafePointer<CChar>, _ value: UInt) {
        w.append("register ")
        w.append(cString: name)
        w.append(" = ")
        w.append(hex: value, width: 16)
    }

    /// Eight printable ASCII characters (a pointer overwritten with text, "????????").
    private static func isText(_ value: UInt) -> Bool {
        for k in 0..<8 {
            let b = UInt8(truncatingIfNeeded: value >> UInt(8 * k))
            if b < 0x20 || b > 0x7e { return false }
        }
        return true
    }

    /// What a fill pattern in the upper half of `value` means, or nil.
    private static func patternMeaning(_ value: UInt) -> StaticString? {
        switch UInt32(truncatingIfNeeded: value >> 32) {
        case 0xdead_beef: return "0xdeadbeef...: a pointer read from freed memory"
        case 0xbadd_cafe: return "0xbaddcafe...: a pointer read from uninitialized memory"
        case 0xfeed_face: return "0xfeedface...: a pointer read from a redzone (past the end of a buffer)"
        default: return nil
        }
    }
}
