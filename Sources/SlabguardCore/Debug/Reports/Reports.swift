// Reports — what the debug layer says when it finds a heap error, in the
// words of design.md §4 (kmem/libumem users recognise them), as text or one
// JSON object per report.  Every report names the buffer (address, cache,
// size) and, with `audit`, the stacks of its last allocation and free; frames
// are symbolized in-process from the ELF symbol tables as
// `function+0xoff (module+0xoffset)`, which `slabguard run` turns into
// `function+0xoff (file:line)`.
//
// Reports are written with write(2) from a mapped scratch area, never through
// the heap (which may be damaged), one at a time under `reportMutex`.  Then the
// configured action: abort, or continue with `noabort`.

import CSlabguardShim
import Glibc

enum DebugReport {
    enum Kind: UInt8 {
        case modifiedAfterFree, redzone, duplicateFree, invalidFree, badFreeSize, badFreeAddress, leak, useAfterFree, crash,
             redzoneRead, underflow, leakAtUnload, stalePointer, tagCheck, invalidTag, mismatch

        /// Its slot in the report counts (ReportTally).
        var index: Int { Int(rawValue) }
        init?(index: Int) {
            guard index >= 0 && index < 256, let kind = Kind(rawValue: UInt8(index)) else { return nil }
            self = kind
        }

        /// Its name in the summary line and its JSON counts.
        var summaryName: StaticString {
            switch self {
            case .modifiedAfterFree: return "modified after free"
            case .redzone, .redzoneRead, .underflow: return "redzone violation"
            case .duplicateFree: return "duplicate free"
            case .invalidFree: return "invalid free"
            case .badFreeSize: return "bad free size"
            case .badFreeAddress: return "bad free address"
            case .leak: return "leak"
            case .useAfterFree: return "use-after-free"
            case .crash: return "fatal signal"
            case .leakAtUnload: return "leak at unload"
            case .stalePointer: return "stale pointer"
            case .tagCheck: return "tag check"
            case .invalidTag: return "invalid tag"
            case .mismatch: return "alloc-dealloc mismatch"
            }
        }

        /// The suppression kind that silences it (design §10), as a bit; 0: none does.
        var suppressionBit: UInt32 {
            switch self {
            case .leak: return Suppressions.Kind.leak.bit
            case .modifiedAfterFree: return Suppressions.Kind.modified.bit
            case .redzone, .redzoneRead, .underflow: return Suppressions.Kind.redzone.bit
            case .duplicateFree, .invalidFree, .badFreeSize, .badFreeAddress: return Suppressions.Kind.free.bit
            case .useAfterFree: return Suppressions.Kind.useAfterFree.bit
            case .leakAtUnload: return Suppressions.Kind.unload.bit
            case .stalePointer: return Suppressions.Kind.stale.bit
            case .mismatch: return Suppressions.Kind.mismatch.bit
            case .crash, .tagCheck, .invalidTag: return 0
            }
        }
        var headline: StaticString {
            switch self {
            case .modifiedAfterFree: return "buffer modified after being freed"
            case .redzone: return "redzone violation: write past end of buffer"
            case .redzoneRead: return "redzone violation: read past end of buffer"
            case .underflow: return "redzone violation: write before start of buffer"
            case .duplicateFree: return "duplicate free: buffer freed twice"
            case .invalidFree: return "invalid free: buffer not in cache"
            case .badFreeSize: return "bad free: free size != alloc size"
            case .badFreeAddress: return "bad free: free address != alloc address"
            case .leak: return "leak"
            case .useAfterFree: return "use-after-free"
            case .crash: return "fatal signal"
            case .leakAtUnload: return "leak at unload"
            case .stalePointer: return "stale pointer"
            case .tagCheck: return "tag check"
            case .invalidTag: return "invalid tag"
            case .mismatch: return "alloc-dealloc mismatch"   // + ": buffer allocated by …, freed by …" (MismatchReport.swift)
            }
        }
    }

    // MARK: - Report kinds

    /// Where damage found after the fact was found, and by which thread (design §4): the
    /// finder is not the damager, and its stack is not one of the buffer's life.
    enum DetectionPoint {
        case reuse          // the buffer handed out again (or leaving the quarantine)
        case free           // the buffer freed
        case verification   // sg_verify, Debug.verifyHeap, verify=N
        case exit           // the heap verification at exit
        case crash          // the heap verification after a fatal signal

        var label: StaticString {
            switch self {
            case .reuse: "detected when the buffer was reused by thread"
            case .free: "detected at free by thread"
            case .verification: "detected by heap verification in thread"
            case .exit: "detected at exit (heap verification) by thread"
            case .crash: "detected by heap verification after a fatal signal, in thread"
            }
        }
    }

    static func modifiedAfterFree(cache: UnsafeMutablePointer<CacheCore>, chunk: UnsafeMutableRawPointer, tag: BufferTag, at address: UInt,
                                  detected point: DetectionPoint) {
        var r = ReportBuilder(.modifiedAfterFree, cacheFlags: cache.pointee.debugFlags)
        let offset = address - UInt(bitPattern: chunk)
        let word = address & ~7
        let found = UnsafePointer<UInt64>(bitPattern: word)!.pointee
        r.line { w in
            w.append("modification occurred at offset ")
            w.append(hex: UInt(word) - UInt(bitPattern: chunk))
            w.append(" (")
            w.append(hex: UInt(Pattern.freed), width: 16)
            w.append(" replaced by ")
            w.append(hex: UInt(found), width: 16)
            w.append(")")
        }
        r.field("offset", UInt(word) - UInt(bitPattern: chunk))
        r.fieldHex("expected", UInt(Pattern.freed))
        r.fieldHex("found", UInt(found))
        _ = offset
        r.buffer(cache: cache, user: chunk + tag.state.offset, size: tag.state.size)
        r.currentStack(point.label)
        r.auditStacks(cache: cache, tag: tag, freeFirst: true)
        r.contents(cache: cache, tag: tag)
        r.finish()
    }

    static func redzoneViolation(cache: UnsafeMutablePointer<CacheCore>, chunk: UnsafeMutableRawPointer, tag: BufferTag,
                                 user: UnsafeMutableRawPointer, size: Int?, at address: UInt, detected point: DetectionPoint = .free) {
        var r = ReportBuilder(.redzone, cacheFlags: cache.pointee.debugFlags)
        let offset = address - UInt(bitPattern: user)
        r.line { w in
            w.append("first damaged byte at offset ")
            w.append(hex: offset)
            w.append(" (")
            if let size { w.append(decimal: UInt(Int(offset) - size)) } else { w.append("?") }
            w.append(" bytes past the end): ")
            w.append(hex: UInt(UnsafePointer<UInt8>(bitPattern: address)!.pointee), width: 2)
            w.append(" where the redzone has ")
            w.append(hex: UInt(Pattern.byte(Pattern.redzone, at: address)), width: 2)
            w.append(" (a byte of its 0xfeedface pattern)")
        }
        r.field("offset", offset)
        if let size {
            r.buffer(cache: cache, user: user, size: size)
            r.currentStack(point.label)
            r.auditStacks(cache: cache, tag: tag, freeFirst: false)
        } else {
            // The overrun went on through the tag: its size and stacks are gone.
            r.note { w in w.append("the overrun went on through the buffer's tag: its requested size and stacks are lost") }
            r.endNotes()
            r.buffer(cache: cache, user: user, size: cache.pointee.tagOffset - (user - chunk))
            r.currentStack(point.label)
        }
        r.finish()
    }

    /// A write before the start of a slab buffer, found in the tail guard of the chunk before it.
    static func underflow(cache: UnsafeMutablePointer<CacheCore>, chunk: UnsafeMutableRawPointer, tag: BufferTag,
                          size: Int, at address: UInt, detected point: DetectionPoint = .free) {
        var r = ReportBuilder(.underflow, cacheFlags: cache.pointee.debugFlags)
        let before = UInt(bitPattern: chunk) - address
        r.line { w in
            w.append("first damaged byte ")
            w.append(decimal: before)
            w.append(before == 1 ? " byte before the start of the buffer (underflow): " : " bytes before the start of the buffer (underflow): ")
            w.append(hex: UInt(UnsafePointer<UInt8>(bitPattern: address)!.pointee), width: 2)
            w.append(" where the guard has ")
            w.append(hex: UInt(Pattern.byte(Pattern.redzone, at: address)), width: 2)
        }
        r.field("bytes_before", before)
        r.buffer(cache: cache, user: chunk, size: size)
        r.currentStack(point.label)
        r.auditStacks(cache: cache, tag: tag, freeFirst: false)
        r.finish()
    }

    static func duplicateFree(cache: UnsafeMutablePointer<CacheCore>, chunk: UnsafeMutableRawPointer, tag: BufferTag) {
        var r = ReportBuilder(.duplicateFree, cacheFlags: cache.pointee.debugFlags)
        r.buffer(cache: cache, user: chunk + tag.state.offset, size: tag.state.size)
        r.currentStack("second free by thread")
        r.auditStacks(cache: cache, tag: tag, freeFirst: true, freeLabel: "first free by thread")
        r.finish()
    }

    static func invalidFree(_ p: UnsafeMutableRawPointer, expectedSize: Int?) {
        var r = ReportBuilder(.invalidFree, cacheFlags: 0)
        r.line { w in
            w.append("address ")
            w.append(hex: UInt(bitPattern: p))
            w.append(" is not the start of a buffer allocated by slabguard")
        }
        r.fieldHex("address", UInt(bitPattern: p))
        r.currentStack("freed by thread")
        r.finish()
    }

    static func badFreeAddress(cache: UnsafeMutablePointer<CacheCore>, chunk: UnsafeMutableRawPointer, tag: BufferTag, given: UnsafeMutableRawPointer) {
        badFreeAddress(flags: cache.pointee.debugFlags, name: cache.namePointer, user: chunk + tag.state.offset, size: tag.state.size,
                       tag: tag, layout: TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags)), given: given)
    }

    /// `free(p + 16)`: the buffer the address points into, and its stacks.
    private static func badFreeAddress(flags: UInt32, name: UnsafePointer<CChar>, user: UnsafeMutableRawPointer, size: Int,
                                       tag: BufferTag, layout: TagLayout, given: UnsafeMutableRawPointer) {
        var r = ReportBuilder(.badFreeAddress, cacheFlags: flags)
        r.line { w in
            w.append("free address ")
            w.append(hex: UInt(bitPattern: given))
            w.append(" is ")
            w.append(hex: UInt(bitPattern: given) &- UInt(bitPattern: user))
            w.append(" bytes into the buffer")
        }
        r.fieldHex("address", UInt(bitPattern: given))
        r.buffer(name: name, user: user, size: size)
        r.currentStack("freed by thread")
        r.auditStacks(layout: layout, tag: tag, freeFirst: false)
        r.finish()
    }

    static func badFreeSize(cache: UnsafeMutablePointer<CacheCore>, chunk: UnsafeMutableRawPointer, tag: BufferTag, given: Int) {
        badFreeSize(flags: cache.pointee.debugFlags, name: cache.namePointer, user: chunk + tag.state.offset, size: tag.state.size,
                    tag: tag, layout: TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags)), given: given)
    }

    private static func badFreeSize(flags: UInt32, name: UnsafePointer<CChar>, user: UnsafeMutableRawPointer, size: Int,
                                    tag: BufferTag, layout: TagLayout, given: Int) {
        var r = ReportBuilder(.badFreeSize, cacheFlags: flags)
        r.line { w in
            w.append("free size ")
            w.append(decimal: UInt(given))
            w.append(" != alloc size ")
            w.append(decimal: UInt(size))
        }
        r.field("free_size", UInt(given))
        r.buffer(name: name, user: user, size: size)
        r.currentStack("freed by thread")
        r.auditStacks(layout: layout, tag: tag, freeFirst: false)
        r.finish()
    }

    static var largeName: UnsafePointer<CChar> {
        let s: StaticString = "large (page arena)"
        return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    static var guardedName: UnsafePointer<CChar> {
        let s: StaticString = "guarded (page arena)"
        return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    static func name(of span: UnsafeMutablePointer<LargeSpan>) -> UnsafePointer<CChar> {
        span.pointee.guarded ? guardedName : largeName
    }

    // MARK: - Large spans (debug mode)

    static func duplicateFreeLarge(span: UnsafeMutablePointer<LargeSpan>, tag: BufferTag, layout: TagLayout) {
        var r = ReportBuilder(.duplicateFree, cacheFlags: 0)
        r.buffer(name: name(of: span), user: span.pointee.base + span.pointee.userOffset, size: span.pointee.requestedSize)
        r.currentStack("second free by thread")
        r.auditStacks(layout: layout, tag: tag, freeFirst: true, freeLabel: "first free by thread")
        r.finish()
    }

    /// `free(p + 16)` of a large or guarded buffer.
    static func badFreeAddressLarge(span: UnsafeMutablePointer<LargeSpan>, tag: BufferTag, layout: TagLayout, given: UnsafeMutableRawPointer) {
        badFreeAddress(flags: 0, name: name(of: span), user: span.pointee.base + span.pointee.userOffset,
                       size: span.pointee.requestedSize, tag: tag, layout: layout, given: given)
    }

    static func badFreeSizeLarge(span: UnsafeMutablePointer<LargeSpan>, tag: BufferTag, layout: TagLayout, given: Int) {
        badFreeSize(flags: 0, name: name(of: span), user: span.pointee.base + span.pointee.userOffset,
                    size: span.pointee.requestedSize, tag: tag, layout: layout, given: given)
    }

    static func redzoneLarge(span: UnsafeMutablePointer<LargeSpan>, tag: BufferTag, layout: TagLayout, at address: UInt) {
        let user = span.pointee.base + span.pointee.userOffset
        var r = ReportBuilder(address < UInt(bitPattern: user) ? .underflow : .redzone, cacheFlags: 0)
        if address < UInt(bitPattern: user) {
            // A guarded buffer's pad: written before the start (underflow).
            let before = UInt(bitPattern: user) - address
            r.line { w in
                w.append("first damaged byte ")
                w.append(decimal: before)
                w.append(before == 1 ? " byte before the start of the buffer (underflow)" : " bytes before the start of the buffer (underflow)")
                appendDamagedByte(&w, at: address, pattern: "guard")
            }
            r.field("bytes_before", before)
        } else {
            let offset = address - UInt(bitPattern: user)
            r.line { w in
                w.append("first damaged byte at offset ")
                w.append(hex: offset)
                w.append(" (")
                w.append(decimal: offset - UInt(span.pointee.requestedSize))
                w.append(" bytes past the end)")
                appendDamagedByte(&w, at: address, pattern: "redzone")
            }
            r.field("offset", offset)
        }
        r.buffer(name: name(of: span), user: user, size: span.pointee.requestedSize)
        r.currentStack("detected at free by thread")
        r.auditStacks(layout: layout, tag: tag, freeFirst: false)
        r.finish()
    }

    /// `: 0xVV where the redzone has 0xPP (a byte of its 0xfeedface pattern)`, as a slab
    /// buffer's redzone report says it (a guarded buffer's slack before its guard page, a
    /// large buffer's pad).
    private static func appendDamagedByte(_ w: inout ReportWriter, at address: UInt, pattern: StaticString) {
        w.append(": ")
        w.append(hex: UInt(UnsafePointer<UInt8>(bitPattern: address)!.pointee), width: 2)
        w.append(" where the ")
        w.append(pattern)
        w.append(" has ")
        w.append(hex: UInt(Pattern.byte(Pattern.redzone, at: address)), width: 2)
        w.append(" (a byte of its 0xfeedface pattern)")
    }

}
