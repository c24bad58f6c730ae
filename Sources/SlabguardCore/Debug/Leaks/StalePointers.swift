// `stale pointer` (design §8): after a library's dlclose unmapped it, the words the leak
// scan met that still point into its range — in live heap buffers (reachable ones: the
// scan reads those), in other modules' data, and the signal handlers installed — each
// place named (buffer + offset, cache and allocation stack; or module + offset; or the
// signal), with what it pointed at (the library's symbols, indexed before the dlclose).
// Words on stacks or in other anonymous memory are not named: dead stack slots would
// make false reports.  Neither are slabguard's own data (its module map records the
// library's range), the loader's and the C library's data (ld.so's dead pointer to the
// ld.so.cache mapping it unmapped, which the next library may land on), nor buffers the dynamic loader or a runtime allocated for itself (ld.so's
// records of past mappings, the Swift runtime's list of loaded images: no frame of the
// program in their allocation stacks, Tags/LibraryTags.swift): bookkeeping of where the
// library was, not pointers the program holds.

import CSlabguardShim
import Glibc

extension DebugReport {
    static func stalePointers(_ library: LeakFinder.UnloadedLibrary, _ findings: UnsafeMutablePointer<LeakFinder.StaleFinding>,
                              _ found: Int, _ candidates: UnsafeMutablePointer<LeakFinder.Candidate>, _ count: Int) {
        // Which findings are places worth naming (heap buffers, module data), and the signals.
        var places = 0
        var kept = 0
        for i in 0..<found {
            let f = findings[i]
            var module = ModuleInfo()
            var keep = false
            if count > 0, let c = LeakFinder.find(f.place, candidates, count) {
                keep = !allocatedByTheLoader(candidates[c])
            } else if ModuleMap.lookup(f.place, into: &module) && module.isLoaded {
                keep = !ModuleMap.isSlabguardLibrary(module) && !ModuleMap.isLoaderOrCLibrary(module)
            }
            if keep {
                findings[kept] = f
                kept += 1
            }
        }
        var handlers: UInt64 = 0
        for sig in Int32(1)..<65 {
            var action = sigaction()
            if sigaction(sig, nil, &action) == 0 {
                let h = unsafeBitCast(action.__sigaction_handler.sa_handler, to: UInt.self)
                if h >= library.start && h < library.end { handlers |= 1 << UInt64(sig - 1) }
            }
        }
        places = kept + handlers.nonzeroBitCount
        guard places > 0 else { return }
        var r = ReportBuilder(.stalePointer, cacheFlags: 0, leakBuffers: UInt(places), library: library.path)
        r.field("places", UInt(places))
        var stackShown = false
        for i in 0..<kept {
            let f = findings[i]
            if let c = LeakFinder.find(f.place, candidates, count).map({ candidates[$0] }) {
                r.line { w in
                    w.append("buffer ")
                    w.append(hex: c.start)
                    w.append(" + ")
                    w.append(hex: f.place - c.start)
                    w.append(" (")
                    if let cache = c.cache { w.append(cString: cache.namePointer) } else { w.append(cString: DebugReport.largeName) }
                    w.append(", size ")
                    w.append(decimal: UInt64(c.size))
                    w.append(") holds ")
                    appendTarget(&w, f.value)
                }
                if !stackShown, let cache = c.cache, let tag = c.tag {
                    r.auditStacks(cache: cache, tag: BufferTag(base: tag), freeFirst: false, allocationOnly: true)
                    stackShown = true
                }
            } else {
                var module = ModuleInfo()
                _ = ModuleMap.lookup(f.place, into: &module)
                r.line { w in
                    withUnsafeBytes(of: &module.path) { w.append(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
                    w.append("+")
                    w.append(hex: f.place - module.base)
                    w.append(" (its data) holds ")
                    appendTarget(&w, f.value)
                }
            }
        }
        for sig in Int32(1)..<65 where handlers & (1 << UInt64(sig - 1)) != 0 {
            var action = sigaction()
            _ = sigaction(sig, nil, &action)
            r.line { w in
                w.append("the handler of signal ")
                w.append(decimal: Int(sig))
                w.append(" is ")
                appendTarget(&w, unsafeBitCast(action.__sigaction_handler.sa_handler, to: UInt.self))
            }
        }
        r.finish(informational: true)
    }

    /// Whether the buffer was allocated by the dynamic loader, or by a runtime for itself.
    private static func allocatedByTheLoader(_ c: LeakFinder.Candidate) -> Bool {
        guard let base = c.tag ?? c.largeTag else { return false }
        // Noted at allocation (Tags/LibraryTags.swift), with or without audit.
        if LibraryTags.isLoaderAllocated(owner: BufferTag(base: base).owner) { return true }
        guard let cache = c.cache, let tag = c.tag else { return false }
        let layout = TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags))
        guard let entry = BufferTag(base: tag).auditEntry(0, layout: layout), entry.frames > 0 else { return false }
        var module = ModuleInfo()
        guard ModuleMap.lookup(entry.stack[0], into: &module) else { return false }
        return withUnsafeBytes(of: &module.path) { ReportBuilder.contains($0.baseAddress!.assumingMemoryBound(to: UInt8.self), "/ld-linux") }
    }

    /// `0xVALUE` and, when the unloaded library's symbols know it, `(function+0xOFF)`.
    private static func appendTarget(_ w: inout ReportWriter, _ value: UInt) {
        w.append(hex: value)
        appendFunction(&w, at: value)
    }

    /// ` (function+0xOFF)` for a code address the symbolizer knows (also in a library
    /// already unloaded: its symbols were indexed at its dlclose), else nothing.
    static func appendFunction(_ w: inout ReportWriter, at address: UInt) {
        var name = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var offset: UInt = 0
        let named = withUnsafeMutableBytes(of: &name) {
            ElfSymbols.symbolize(address, name: $0.baseAddress!.assumingMemoryBound(to: CChar.self), capacity: 64, offset: &offset)
        }
        guard named else { return }
        w.append(" (")
        withUnsafeBytes(of: &name) { w.append(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        w.append("+")
        w.append(hex: offset)
        w.append(")")
    }
}
