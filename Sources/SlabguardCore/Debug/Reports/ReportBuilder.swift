// ReportBuilder — lays out one report as text or JSON (design.md §4) through a
// ReportWriter over a mapped scratch buffer, holding the report lock from
// `begin` to `finish`, then applies the configured action.

import CSlabguardShim
import Glibc

/// The access that faulted (crash explanations).
struct FaultAccess {
    var isWrite: Bool
    var address: UInt
    var offset: Int       // from the buffer's start (negative: before it)
    var size: Int
    var width = 0         // bytes the instruction accessed (AccessSize), 0 when not known
}

struct ReportBuilder: ~Copyable {
    let kind: DebugReport.Kind
    let json: Bool
    let noabort: Bool
    let ownsLock: Bool      // false: this thread held the report lock already (see init)
    var w: ReportWriter
    var notesOpen = false
    /// Hash of the stacks shown, for folding repeats (ReportOutput.admit).
    var signature: UInt64 = 0xCBF2_9CE4_8422_2325
    var hasStacks = false
    /// A frame matched the suppressions file.
    var suppressed = false

    /// Scratch memory, mapped at the first report: the writer's buffer, then a symbol-name
    /// buffer and room for a captured stack.
    struct Scratch {
        var memory: UnsafeMutableRawPointer? = nil
    }
    static let bufferBytes = 32 * 1024
    static let nameBytes = 1024

    private static var scratch: UnsafeMutablePointer<Scratch> {
        StateRegion.reportScratch.bound(to: Scratch.self)
    }

    /// Starts a report (takes the report lock).  `cacheFlags` are the flags of the cache
    /// involved; `noabort` and `report=json` apply when set there or globally.
    init(_ kind: DebugReport.Kind, cacheFlags: UInt32, leakBuffers: UInt = 0, leakBytes: UInt = 0,
         fault: FaultAccess? = nil, library: UnsafePointer<CChar>? = nil, tagUse: InvalidTagUse? = nil,
         mismatch: AllocationMismatch? = nil) {
        // A report never waits on itself: when this thread holds the report lock already
        // (a signal handler interrupted a report, or left one with siglongjmp) the
        // report is written without it rather than never.
        ownsLock = sg_mutex_lock_unless_held(ReportOutput.reportMutex) != 0
        self.kind = kind
        let s = ReportBuilder.scratch
        if s.pointee.memory == nil { s.pointee.memory = Platform.map(ReportBuilder.bufferBytes + ReportBuilder.nameBytes + 1024) }
        let flags = DebugFlags(rawValue: cacheFlags | OptionsState.shared.pointee.options.flags.rawValue)
        json = flags.contains(.jsonReport)
        noabort = flags.contains(.noabort)
        // Built whole in memory, then printed, folded or suppressed at `finish`.
        w = ReportWriter(memory: s.pointee.memory!, capacity: ReportBuilder.bufferBytes)
        if json {
            w.beginObject()
            w.jsonKey("report")
            if kind == .leak { w.appendJSONString("leak") } else { w.appendJSONString(kind.headline) }
            if kind == .leakAtUnload, let library { w.jsonKey("library"); w.appendJSONString(cString: library) }
            if kind == .tagCheck || kind == .invalidTag, let library { w.jsonKey("tag"); w.appendJSONString(cString: library) }
            if kind == .tagCheck { w.jsonField("buffers", decimal: UInt64(leakBuffers)); w.jsonField("bytes", decimal: UInt64(leakBytes)) }
            if let tagUse { tagUse.appendJSON(&w) }
            if let mismatch { mismatch.appendJSON(&w) }
            ReportOutput.identityJSON(&w)
            if let f = fault {
                w.jsonKey("access"); w.appendJSONString(f.isWrite ? "write" : "read")
                w.jsonKey("address"); w.append("\""); w.append(hex: f.address); w.append("\"")
                if kind == .useAfterFree {
                    w.jsonKey("offset"); w.append(f.offset < 0 ? "-" : ""); w.append(decimal: UInt64(f.offset.magnitude))
                }
                if f.width > 0 { w.jsonField("access_size", decimal: f.width) }
            }
        } else {
            w.append("slabguard: ")
            w.append(kind.headline)
            if kind == .leak || kind == .leakAtUnload {
                w.append(": ")
                w.append(decimal: leakBuffers)
                w.append(leakBuffers == 1 ? " buffer, " : " buffers, ")
                w.append(decimal: leakBytes)
                if kind == .leakAtUnload, let library {
                    w.append(" bytes allocated by ")
                    w.append(cString: library)
                    w.append(" not freed")
                } else {
                    w.append(" bytes not freed")
                }
            }
            if kind == .stalePointer, let library {
                w.append(": ")
                w.append(cString: library)
                w.append(" unloaded, but ")
                w.append(decimal: leakBuffers)
                w.append(leakBuffers == 1 ? " place still points into it" : " places still point into it")
            }
            if kind == .tagCheck, let library {
                w.append(": ")
                w.append(decimal: leakBuffers)
                w.append(leakBuffers == 1 ? " buffer, " : " buffers, ")
                w.append(decimal: leakBytes)
                w.append(" bytes outstanding in tag ")
                w.append(cString: library)
            }
            if kind == .invalidTag, let tagUse { tagUse.appendHeadline(&w, name: library) }
            if let mismatch { mismatch.appendHeadline(&w) }
            if kind == .useAfterFree, let f = fault {
                // use-after-free: read|write at ADDR, offset 0xOFF into buffer of SIZE bytes
                w.append(f.isWrite ? ": write at " : ": read at ")
                w.append(hex: f.address)
                w.append(", offset ")
                if f.offset < 0 { w.append("-") }
                w.append(hex: UInt(f.offset.magnitude))
                w.append(" into buffer of ")
                w.append(decimal: UInt64(f.size))
                w.append(" bytes")
            }
            w.newline()
            w.append("  in process ")
            ReportOutput.appendProcess(&w)
            w.append(", thread ")
            w.append(decimal: UInt64(AuditThread.id()))
            w.newline()
            if let f = fault, f.width > 0 {
                w.append("  access size: ")
                w.append(decimal: f.width)
                w.append(f.width == 1 ? " byte (" : " bytes (")
                w.append(f.isWrite ? "a write" : "a read")
                w.append(", from the faulting instruction)\n")
            }
        }
    }

    /// One line of explanation (text) / the "message" field (JSON).
    mutating func line(_ body: (inout ReportWriter) -> Void) {
        if json {
            w.jsonKey("message")
            w.append("\"")
            body(&w)
            w.append("\"")
        } else {
            w.append("  ")
            body(&w)
            w.newline()
        }
    }

    /// One note line (text: "  note: ...") / an element of the "notes" array (JSON).
    /// Notes come together; `endNotes` closes them.
    mutating func note(_ body: (inout ReportWriter) -> Void) {
        if json {
            if !notesOpen { w.jsonKey("notes"); w.beginArray(); notesOpen = true }
            w.jsonElement()
            w.append("\"")
            body(&w)
            w.append("\"")
        } else {
            w.append("  note: ")
            body(&w)
            w.newline()
        }
    }

    mutating func endNotes() {
        if notesOpen { w.endArray(); notesOpen = false }
    }

    mutating func field(_ key: StaticString, _ value: UInt) {
        if json { w.jsonField(key, decimal: UInt64(value)) }
    }

    mutating func fieldHex(_ key: StaticString, _ value: UInt) {
        if json { w.jsonKey(key); w.append("\""); w.append(hex: value, width: 16); w.append("\"") }
    }

    mutating func buffer(cache: UnsafeMutablePointer<CacheCore>, user: UnsafeMutableRawPointer, size: Int, label: StaticString = "buffer") {
        buffer(name: cache.namePointer, user: user, size: size, label: label)
    }

    mutating func buffer(name: UnsafePointer<CChar>, user: UnsafeMutableRawPointer, size: Int, label: StaticString = "buffer") {
        if json {
            w.jsonKey("buffer")
            w.beginObject()
            w.jsonKey("address"); w.append("\""); w.append(hex: UInt(bitPattern: user)); w.append("\"")
            w.jsonField("cache", cString: name)
            w.jsonField("size", decimal: size)
            w.endObject()
        } else {
            w.append("  ")
            w.append(label)
            w.append(" ")
            w.append(hex: UInt(bitPattern: user))
            w.append(", cache ")
            w.append(cString: name)
            w.append(", size ")
            w.append(decimal: size)
            w.newline()
        }
    }

    /// The last free and allocation stacks recorded in the buffer's tag (with `audit`).
    mutating func auditStacks(cache: UnsafeMutablePointer<CacheCore>, tag: BufferTag, freeFirst: Bool,
                     freeLabel: StaticString = "last freed by thread", allocationOnly: Bool = false) {
        auditStacks(layout: TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags)), tag: tag,
                    freeFirst: freeFirst, freeLabel: freeLabel, allocationOnly: allocationOnly)
    }

    mutating func auditStacks(layout: TagLayout, tag: BufferTag, freeFirst: Bool,
                     freeLabel: StaticString = "last freed by thread", allocationOnly: Bool = false) {
        guard let allocation = tag.auditEntry(0, layout: layout), let free = tag.auditEntry(1, layout: layout) else { return }
        if allocationOnly {
            stack(allocation, key: "allocation_stack", label: "allocated by thread")
        } else if freeFirst {
            stack(free, key: "free_stack", label: freeLabel, isFree: true)
            stack(allocation, key: "allocation_stack", label: "allocated by thread")
        } else {
            stack(allocation, key: "allocation_stack", label: "allocated by thread")
            stack(free, key: "free_stack", label: freeLabel, isFree: true)
        }
    }

    /// One recorded audit entry (a stack with its thread and time), e.g. where a tag was destroyed.
    mutating func recordedStack(_ entry: AuditEntry, key: StaticString, label: StaticString) {
        stack(entry, key: key, label: label)
    }

    /// The stack of the thread reporting (where the error was detected).
    mutating func currentStack(_ label: StaticString) {
        guard let memory = ReportBuilder.scratch.pointee.memory else { return }
        let frames = (memory + ReportBuilder.bufferBytes + 512).assumingMemoryBound(to: UInt.self)
        let count = StackUnwinder.capture(into: frames, capacity: 64, skip: 0)   // slabguard's own frames are dropped by name in emitStack
        emitStack(key: "current_stack", label: label, thread: AuditThread.id(),
                  time: AuditClock.now(), frames: frames, count: count)
    }

    /// The stack of an interrupted context: the faulting instruction, then its callers.
    /// `afterAccess`: `pc` is the instruction after the access (a watchpoint's trap), so the
    /// symbolizer's "return address - 1" already lands in the access.
    mutating func faultStack(pc: UInt, sp: UInt, fp: UInt, label: StaticString, afterAccess: Bool = false) {
        guard let memory = ReportBuilder.scratch.pointee.memory else { return }
        let frames = (memory + ReportBuilder.bufferBytes + 512).assumingMemoryBound(to: UInt.self)
        let count = StackUnwinder.capture(fromPC: pc, sp: sp, fp: fp, into: frames, capacity: 64)
        // Entry 0 is an instruction address, not a return address: +1 so that the
        // symbolizer's "return address - 1" lands on it.
        if count > 0 && !afterAccess { frames[0] &+= 1 }
        emitStack(key: "fault_stack", label: label, thread: AuditThread.id(),
                  time: AuditClock.now(), frames: frames, count: count, keepInternal: true)
    }

    private mutating func stack(_ entry: AuditEntry, key: StaticString, label: StaticString, isFree: Bool = false) {
        guard entry.isRecorded else { return }   // never freed (or allocated) by anyone
        // A free recorded inside slabguard's own start-up says nothing about the program.
        if isFree, onlyStartUp(entry.stack, min(entry.frames, entry.depth)) { return }
        emitStack(key: key, label: label, thread: entry.thread, time: entry.time, frames: entry.stack, count: min(entry.frames, entry.depth))
    }

    private mutating func emitStack(key: StaticString, label: StaticString, thread: UInt32, time: UInt64,
                           frames: UnsafeMutablePointer<UInt>, count: Int, keepInternal: Bool = false) {
        let elapsed = AuditClock.nanosecondsSinceStart(time)
        let name = (ReportBuilder.scratch.pointee.memory! + ReportBuilder.bufferBytes).assumingMemoryBound(to: CChar.self)
                if json {
            w.jsonKey(key)
            w.beginObject()
            w.jsonField("thread", decimal: UInt64(thread))
            w.jsonField("time_ns", decimal: elapsed)
            w.jsonKey("frames")
            w.beginArray()
        } else {
            w.append("  ")
            w.append(label)
            w.append(" ")
            w.append(decimal: UInt64(thread))
            w.append(" at ")
            w.append(seconds: elapsed)
            w.append(":\n")
        }
        var shown = 0
        var skipping = !keepInternal
        for i in 0..<count {
            let pc = frames[i]
            var offset: UInt = 0
            let known = ElfSymbols.symbolize(pc &- 1, name: name, capacity: 256, offset: &offset)
            // Leading frames inside slabguard itself say nothing about the program.
            if skipping && known && i < count - 1 && ReportBuilder.isInternal(name) { continue }
            skipping = false
            var module = ModuleInfo()
            let haveModule = ModuleMap.lookup(pc, into: &module)
            if haveModule {
                withUnsafeMutablePointer(to: &module) { noteFrame(pc: pc, name: known ? name : nil, module: $0) }
            } else {
                noteFrame(pc: pc, name: known ? name : nil, module: nil)
            }
            if json {
                w.jsonElement()
                w.beginObject()
                w.jsonKey("address"); w.append("\""); w.append(hex: pc); w.append("\"")
                if known {
                    w.jsonField("function", cString: name)
                    w.jsonField("offset", decimal: UInt64(offset &+ 1))
                }
                if haveModule {
                    withUnsafePointer(to: &module.path) { p in
                        w.jsonField("module", cString: UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self))
                    }
                    w.jsonKey("module_offset"); w.append("\""); w.append(hex: pc &- module.base); w.append("\"")
                    if !module.isLoaded { w.jsonKey("unloaded"); w.append("true") }
                }
                w.endObject()
            } else {
                w.append("    #")
                w.append(decimal: shown)
                w.append(" ")
                w.append(hex: pc, width: 12)
                if known {
                    w.append(" ")
                    w.append(cString: name)
                    w.append("+")
                    w.append(hex: offset &+ 1)
                }
                if haveModule {
                    w.append(" (")
                    withUnsafePointer(to: &module.path) { p in
                        w.append(cString: UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self))
                    }
                    if module.isLoaded {
                        w.append("+")
                        w.append(hex: pc &- module.base)
                    } else {
                        w.append(", unloaded")   // named from the symbols indexed at its dlclose
                    }
                    w.append(")")
                }
                w.newline()
            }
            shown += 1
        }
        if json { w.endArray(); w.endObject() }
    }

    /// Whether every frame of a stack is in slabguard itself or the dynamic loader (the
    /// program's start-up); a frame that cannot be named is the program's.
    private func onlyStartUp(_ frames: UnsafeMutablePointer<UInt>, _ count: Int) -> Bool {
        let name = (ReportBuilder.scratch.pointee.memory! + ReportBuilder.bufferBytes).assumingMemoryBound(to: CChar.self)
        var i = 0
        while i < count {
            var offset: UInt = 0
            let known = ElfSymbols.symbolize(frames[i] &- 1, name: name, capacity: 256, offset: &offset)
            i += 1
            if known && ReportBuilder.isInternal(name) { continue }
            var module = ModuleInfo()
            guard ModuleMap.lookup(frames[i - 1], into: &module) else { return false }
            let inLoader = withUnsafePointer(to: &module.path) { p in
                ReportBuilder.contains(UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), "/ld-linux")
            }
            if !inLoader { return false }
        }
        return count > 0
    }

    /// Whether a NUL-terminated string contains `needle` (no C-string temporaries).
    static func contains(_ text: UnsafePointer<UInt8>, _ needle: StaticString) -> Bool {
        let n = needle.utf8CodeUnitCount
        let bytes = needle.utf8Start
        var i = 0
        while text[i] != 0 {
            var k = 0
            while k < n && text[i + k] == bytes[k] { k += 1 }
            if k == n { return true }
            i += 1
        }
        return false
    }

    /// Folds the frame into the signature and matches it against the suppressions.
    private mutating func noteFrame(pc: UInt, name: UnsafePointer<CChar>?, module: UnsafeMutablePointer<ModuleInfo>?) {
        hasStacks = true
        let stable = module.map { pc &- $0.pointee.base } ?? pc   // the same in every process
        signature = (signature ^ UInt64(stable)) &* 0x100_0000_01B3
        let bits = kind.suppressionBit
        guard !suppressed, bits != 0, Suppressions.isActive else { return }
        if let name, Suppressions.matches(bits, name) { suppressed = true; return }
        guard let module else { return }
        withUnsafePointer(to: &module.pointee.path) { p in
            let path = UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self)
            if Suppressions.matches(bits, path) { suppressed = true; return }
            var base = path
            var c = path
            while c.pointee != 0 { if c.pointee == 0x2F { base = c + 1 }; c += 1 }
            if Suppressions.matches(bits, base) { suppressed = true }
        }
    }

    /// Whether a symbol is part of the allocator: its Swift modules, the C API, the
    /// interposed libc entry points and the global operator new/delete family (`_Znw…`,
    /// `_Zna…`, `_Zdl…`, `_Zda…`: slabguard's exports, or the C++ runtime's own when they
    /// were not interposed; a class's own operator new is `_ZN…nw…`, not matched).
    static func isInternal(_ name: UnsafePointer<CChar>) -> Bool {
        func hasPrefix(_ p: StaticString) -> Bool {
            let bytes = p.utf8Start
            for i in 0..<p.utf8CodeUnitCount where UInt8(bitPattern: name[i]) != bytes[i] { return false }
            return true
        }
        func equals(_ p: StaticString) -> Bool { hasPrefix(p) && name[p.utf8CodeUnitCount] == 0 }
        return hasPrefix("$s13SlabguardCore") || hasPrefix("$s9Slabguard") || hasPrefix("$s16SlabguardRuntime")
            || hasPrefix("sg_") || equals("malloc") || equals("free") || equals("calloc") || equals("realloc")
            || equals("reallocarray") || equals("posix_memalign") || equals("aligned_alloc") || equals("memalign")
            || equals("valloc") || equals("pvalloc") || equals("malloc_usable_size")
            || hasPrefix("_Znw") || hasPrefix("_Zna") || hasPrefix("_Zdl") || hasPrefix("_Zda")
    }

    /// The buffer's first bytes saved at its last free (with `contents`).
    mutating func contents(cache: UnsafeMutablePointer<CacheCore>, tag: BufferTag) {
        contents(layout: TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags)), tag: tag, size: tag.state.size)
    }

    mutating func contents(layout: TagLayout, tag: BufferTag, size: Int) {
        guard let saved = tag.contents(layout: layout) else { return }
        let count = min(layout.contentsBytes, size)
        if json {
            w.jsonKey("contents")
            w.append("\"")
            for i in 0..<count { w.appendHexDigits(UInt64(saved.load(fromByteOffset: i, as: UInt8.self)), width: 2) }
            w.append("\"")
        } else {
            w.append("  contents at last free (first ")
            w.append(decimal: count)
            w.append(" bytes):\n")
            w.appendHexDump(bytes: saved, count: count, baseOffset: 0, indent: 4)
        }
    }

    /// Ends the report, writes it out, and aborts unless `noabort`.
    /// A suppressed report is counted only, and does not abort; a repeat of an earlier
    /// one (same kind, same stacks) is counted, not printed.
    consuming func finish(isLeak: Bool = false, informational: Bool = false, leakBuffers: UInt = 0, leakBytes: UInt = 0) {
        if json { w.endObject() }
        w.newline()
        if suppressed {
            ReportOutput.noteSuppressed()
        } else {
            if isLeak { ReportOutput.noteLeak(buffers: leakBuffers, bytes: leakBytes) }
            if ReportOutput.admit(kind, signature: signature, hasStacks: hasStacks) {
                ReportOutput.emit(w.bytes.baseAddress!, w.count)
            }
            ReportOutput.state.pointee.reportCount &+= 1
        }
        let abortAfter = !noabort && !isLeak && !informational && !suppressed
        if abortAfter { ReportOutput.writeSummary(json: json) }
        if ownsLock { sg_mutex_unlock(ReportOutput.reportMutex) }
        if abortAfter {
            FlightRecorder.finish(status: 128 + SIGABRT)   // log=PATH: its last words before the abort
            abort()
        }
    }
}


