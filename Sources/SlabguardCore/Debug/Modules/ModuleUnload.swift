// What the debug layer does around a library's dlclose (Entry/ModuleEntry.swift calls in):
// before, keep what is needed once the library is gone (its symbols, for reports and the
// flight recorder); after, if it was unmapped, record that and look for the buffers it
// leaked (charged to its library tag, or with a frame of it in the allocation stack)
// and the places still pointing into it (Leaks/StalePointers.swift).

import CSlabguardShim
import Glibc

enum ModuleUnload {
    /// A library was loaded: the module map sees it now (its load time), and the log's
    /// copy of the map is rewritten (a process killed later still has it).
    static func opened() {
        ModuleMap.refresh()
        FlightRecorder.writeMaps()
    }

    static func closing(at address: UInt) {
        // Index its symbols now: the symbolizer keeps them after the file is unmapped.
        guard ElfSymbols.prepare(moduleAt: address) else { return }
        FlightRecorder.libraryClosing(at: address)
    }

    static func closed(at address: UInt) {
        ModuleMap.refresh()
        var module = ModuleInfo()
        guard ModuleMap.lookup(address, into: &module), !module.isLoaded else { return }   // still mapped
        UnloadHistory.note(start: module.start)
        FlightRecorder.libraryUnloaded(start: module.start)
        LibraryTags.forgetCallers()   // its addresses and link_map may be the next library's
        let flags = OptionsState.shared.pointee.options.flags
        guard flags.contains(.modules) && sg_debug_flags() != 0 else { return }
        guard sg_system_calls_filtered() == 0 else { return }   // sandboxed: the scan's system calls could kill it
        withUnsafeBytes(of: &module.path) { raw in
            let path = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            _ = LeakFinder.run(unloading: LeakFinder.UnloadedLibrary(
                start: module.start, end: module.end, path: path, tagValue: TagTable.libraryTagValue(named: TagTable.baseName(path))))
        }
    }
}
