// The allocation sites holding the most live bytes, from the stack depot's per-stack
// counters (Audit/StackDepot.swift): the end of the ::kmastat table, so that the live
// table (`slabguard stat/top PID`), the table at exit (`slabguard log kmastat`) and
// sg_stats_print answer "who holds the memory" too.  Frames are printed as reports
// print them ("#N 0xPC name+0xOFF (module+0xOFF)"; the live table, rewritten every
// second, without the name), which the CLI's symbolizer turns into file:line.  No allocation: the top rows live in a stack buffer.

import CSlabguardShim
import SlabguardFormats
import Glibc

extension StatisticsTable {
    static let siteRows = 8
    static var siteFrames: Int { StackDepotFormat.siteFrames }

    /// The header, then per site a line "site ID LIVE_BYTES LIVE_BUFFERS ALLOCATIONS
    /// BYTES_ALLOCATED" and its first frames; nothing when no stack is kept (no audit).
    static func printSites(to sink: inout TextSink) {
        guard StackDepot.isSetUp else { return }
        StackDepot.moveThreadChanges()   // this thread's pending changes; others lag by < 64 per stack
        var rows = SiteScratch()   // on the stack: withUnsafeTemporaryAllocation may use the heap, which is this
        withUnsafeMutableBytes(of: &rows) { raw in
            let top = raw.baseAddress!.bindMemory(to: StackDepot.Site.self, capacity: siteRows)
            var count = 0
            StackDepot.forEachSite { site in
                guard site.liveBytes > 0 else { return }
                // Insertion into the top rows, largest first (ties: the older stack first).
                var at = count
                while at > 0 && top[at - 1].liveBytes < site.liveBytes { at -= 1 }
                guard at < siteRows else { return }
                var i = min(count, siteRows - 1)
                while i > at { top[i] = top[i - 1]; i -= 1 }
                top[at] = site
                count = min(count + 1, siteRows)
            }
            guard count > 0 else { return }
            var header = RawLine()
            header.append("allocation site (stack)      live bytes  live bufs       allocs  bytes allocated\n")
            header.flush(to: &sink)
            for row in 0..<count { printSite(top[row], to: &sink) }
        }
    }

    private static func printSite(_ site: StackDepot.Site, to sink: inout TextSink) {
        var l = RawLine()
        l.append("site ")
        l.appendPadded(Int(site.id), width: 0)
        l.appendPadded(site.liveBytes, width: 20)
        l.appendPadded(site.liveBuffers, width: 11)
        l.appendPadded(site.allocations, width: 13)
        l.appendPadded(site.allocatedBytes, width: 17)
        l.append("\n")
        l.flush(to: &sink)
        let (frames, depth) = StackDepot.frames(site.id)
        var scratch = SiteScratch()
        withUnsafeMutableBytes(of: &scratch) { buffer in
            let name = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
            let text = buffer.baseAddress! + 256
            for i in 0..<min(depth, siteFrames) {
                let pc = frames[i]
                var w = ReportWriter(memory: text, capacity: MemoryLayout<SiteScratch>.size - 256)
                w.append("    #")
                w.append(decimal: i)
                w.append(" ")
                w.append(hex: pc, width: 12)
                var offset: UInt = 0
                if sink.namesFrames && ElfSymbols.symbolize(pc &- 1, name: name, capacity: 256, offset: &offset) {
                    w.append(" ")
                    w.append(cString: name)
                    w.append("+")
                    w.append(hex: offset &+ 1)
                }
                var module = ModuleInfo()
                if ModuleMap.lookup(pc, into: &module), module.isLoaded {
                    w.append(" (")
                    withUnsafePointer(to: &module.path) { w.append(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
                    w.append("+")
                    w.append(hex: pc &- module.base)
                    w.append(")")
                }
                w.newline()
                sink.write(text, w.count)
            }
        }
    }
}

/// 1 KiB of stack for the top rows or one frame line (a symbol name, then the line).
private struct SiteScratch {
    var words: (SIMD64<UInt64>, SIMD64<UInt64>) = (.zero, .zero)
}
