// ::kmastat-style statistics table, written with write(2) and no allocation
// (sg_stats_print may be called from a program running on the preloaded allocator).

import CSlabguardShim
import Glibc

package enum StatisticsTable {
    /// Prints one line per cache with buffers, then arena and large-allocation totals.
    package static func print(to fd: Int32) {
        var sink = TextSink(fd: fd)
        print(to: &sink)
    }

    static func print(to fd: inout TextSink) {
        guard Heap.ensureReady() else { return }
        var line = RawLine()
        line.append("cache                          buf size   in use    total  mem in use       allocs  fails\n")
        line.flush(to: &fd)
        CacheOps.forEachCache { cache in
            let s = CacheOps.statisticsValues(cache)
            if s.buffersTotal == 0 && s.allocations == 0 { return }
            var l = RawLine()
            l.appendCString(cache.namePointer, width: 30)
            l.appendPadded(s.bufferSize, width: 9)
            l.appendPadded(s.buffersInUse, width: 9)
            l.appendPadded(s.buffersTotal, width: 9)
            l.appendPadded(s.memoryInUse, width: 12)
            l.appendPadded(Int(truncatingIfNeeded: s.allocations), width: 13)
            l.appendPadded(s.failures, width: 7)
            l.append("\n")
            l.flush(to: &fd)
        }
        printTags(to: &fd)
        let arena = StateRegion.arena.bound(to: PageArena.self).pointee.statistics()
        let heap = SizeClassHeap.defaultHeap.pointee
        line.append("large allocations: ")
        line.appendPadded(heap.largeCount, width: 0)
        line.append(" spans, ")
        line.appendPadded(heap.largeBytes, width: 0)
        line.append(" bytes\n")
        line.flush(to: &fd)
        line.append("arena: carved ")
        line.appendPadded(arena.carvedBytes, width: 0)
        line.append(", free ")
        line.appendPadded(arena.freeBytes, width: 0)
        line.append(", dirty free ")
        line.appendPadded(arena.dirtyFreeBytes, width: 0)
        line.append(", released ")
        line.appendPadded(arena.releasedBytes, width: 0)
        line.append(" bytes\n")
        line.flush(to: &fd)
        printSites(to: &fd)
    }
}

extension StatisticsTable {
    /// One line per tag (design §9): explicit tags, then (debug mode) the libraries.
    static func printTags(to fd: inout TextSink) {
        var any = false
        for pass in 0..<2 {
            let kind = pass == 0 ? TagRecord.live : TagRecord.library
            TagTable.forEachTag { index, state in
                guard state == kind else { return }
                let c = TagTable.counters(index)
                if c.allocations == 0 && state == TagRecord.library { return }
                if !any {
                    var h = RawLine()
                    h.append("tag                            kind     in use  bytes in use  peak bytes       allocs        frees\n")
                    h.flush(to: &fd)
                    any = true
                }
                var l = RawLine()
                l.appendCString(TagTable.name(index), width: 30)
                l.append(state == TagRecord.library ? " library" : " tag    ")
                l.appendPadded(c.buffers, width: 7)
                l.appendPadded(c.bytes, width: 14)
                l.appendPadded(c.peak, width: 12)
                l.appendPadded(Int(truncatingIfNeeded: c.allocations), width: 13)
                l.appendPadded(Int(truncatingIfNeeded: c.frees), width: 13)
                l.append("\n")
                l.flush(to: &fd)
            }
        }
    }
}

extension RawLine {
    mutating func appendCString(_ s: UnsafePointer<CChar>, width: Int) {
        var n = 0
        while s[n] != 0 && n < width - 1 { appendByte(UInt8(bitPattern: s[n])); n += 1 }
        while n < width { appendByte(32); n += 1 }
    }

    /// Right-aligned decimal in `width` columns (0: no padding).
    mutating func appendPadded(_ value: Int, width: Int) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let n = withUnsafeMutableBytes(of: &digits) { buf -> Int in
            let out = buf.baseAddress!.assumingMemoryBound(to: CChar.self)
            if value < 0 { out[0] = 45; return 1 + formatDecimal(-value, into: out + 1) }
            return formatDecimal(value, into: out)
        }
        var pad = width - n
        while pad > 0 { appendByte(32); pad -= 1 }
        withUnsafeBytes(of: &digits) { buf in for i in 0..<n { appendByte(buf[i]) } }
    }
}

extension CacheOps {
    /// Statistics without the name string (no allocation).
    static func statisticsValues(_ cache: UnsafeMutablePointer<CacheCore>) -> (bufferSize: Int, buffersInUse: Int, buffersTotal: Int, memoryInUse: Int, allocations: UInt64, failures: Int) {
        ThreadRegistry.lock.lock()
        let perThread = ThreadRegistry.sumSlots(for: cache.magazines)
        ThreadRegistry.lock.unlock()
        let inDepot = Depot.roundsInDepot(cache.magazines)
        let lock = cache.slabLock
        lock.lock()
        let c = cache.pointee
        lock.unlock()
        let allocations = c.retiredAllocations &+ perThread.allocations &+ UInt64(c.slowAllocations)
        return (c.bufferSize, max(0, c.buffersOut - inDepot - perThread.rounds), c.buffersTotal,
                c.slabCount * (c.slabPages << pageShift), allocations, c.allocationFailures)
    }
}

extension StatisticsTable {
    /// One sample of the heap over time into `memory` (TimelineFormat's lines: the time,
    /// the resident set, then each cache with buffers in use and each tag and library);
    /// lines that do not fit are left out.  The flight recorder calls it once a second.
    static func writeSample(into memory: UnsafeMutableRawPointer, capacity: Int) -> Int {
        var w = ReportWriter(memory: memory, capacity: capacity)
        var used = 0
        func line(_ body: (inout ReportWriter) -> Void) {
            body(&w)
            w.append("\n")
            if w.isTruncated { return }
            used = w.count
        }
        line { w in
            w.append("T ")
            w.append(decimal: AuditClock.now())
            w.append(" ")
            w.append(decimal: residentBytes())
        }
        CacheOps.forEachCache { cache in
            let s = CacheOps.statisticsValues(cache)
            guard s.buffersInUse > 0 else { return }
            line { w in
                w.append("c ")
                w.append(decimal: UInt64(s.buffersInUse * s.bufferSize))
                w.append(" ")
                w.append(decimal: UInt64(s.buffersInUse))
                w.append(" ")
                w.append(cString: cache.namePointer)
            }
        }
        TagTable.forEachTag { index, state in
            guard state == TagRecord.live || state == TagRecord.library else { return }
            let c = TagTable.counters(index)
            guard c.buffers > 0 else { return }
            line { w in
                w.append(state == TagRecord.library ? "t library " : "t tag ")
                w.append(decimal: UInt64(max(c.bytes, 0)))
                w.append(" ")
                w.append(decimal: UInt64(max(c.buffers, 0)))
                w.append(" ")
                w.append(cString: TagTable.name(index))
            }
        }
        return used
    }

    /// The resident set from /proc/self/statm (its second number, in pages), or 0.
    private static func residentBytes() -> UInt64 {
        var text = FixedBytes64()
        return withUnsafeMutableBytes(of: &text) { raw -> UInt64 in
            let path: StaticString = "/proc/self/statm"
            guard let n = Platform.readFile(UnsafeRawPointer(path.utf8Start).assumingMemoryBound(to: CChar.self),
                                            into: raw.baseAddress!, capacity: raw.count - 1), n > 0 else { return 0 }
            let b = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var i = 0
            while i < n && b[i] != 0x20 { i += 1 }
            i += 1
            var pages: UInt64 = 0
            while i < n && b[i] >= 0x30 && b[i] <= 0x39 { pages = pages * 10 + UInt64(b[i] - 0x30); i += 1 }
            return pages * UInt64(pageSize)
        }
    }
}
