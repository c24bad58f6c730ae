// Tag checks — `tag check: N buffers, M bytes outstanding in tag NAME` (design §9), and
// the `invalid tag` reports.
//
// In debug mode a check walks the heap as ::umem_verify does, one cache's slab lock at a
// time and then the large-span lock, and lists every live buffer whose owner word holds
// the tag's key, grouped by allocation stack (with `audit`), largest group first.  Other
// threads may allocate and free on the tag meanwhile: each buffer listed was outstanding
// when its slab was looked at, and N is the number listed (the tag's counters may have
// moved on by the time the report is written).  In fast mode no buffer carries its tag:
// the check reports the counters, and says how to get stacks.
//
// Memory: the findings go to a mapped array (room for twice the tag's counted buffers
// plus 4096), unmapped after; buffers past its end are counted, not listed.

import CSlabguardShim
import Glibc

enum TagCheck {
    struct Finding {
        var user: UInt
        var size: UInt
        var tag: UnsafeMutableRawPointer
        var cache: UnsafeMutablePointer<CacheCore>?   // nil: a large or guarded span
        var span: UnsafeMutablePointer<LargeSpan>?
        var stackId: UInt32
        var group: Int32
    }

    static let groupsShown = 8

    /// Checks the live tag in slot `index`; reports what is outstanding and returns how many buffers.
    static func run(_ index: Int) -> Int {
        let counters = TagTable.counters(index)
        guard sg_debug_flags() != 0 else {
            guard counters.buffers > 0 else { return 0 }
            var r = ReportBuilder(.tagCheck, cacheFlags: 0, leakBuffers: UInt(counters.buffers), leakBytes: UInt(max(0, counters.bytes)),
                                  library: TagTable.name(index))
            r.note { w in w.append("without SLABGUARD_DEBUG the buffers are counted, not kept: run with SLABGUARD_DEBUG=default for each buffer and its allocation stack") }
            r.endNotes()
            r.hasStacks = false
            r.finish(informational: true)
            return counters.buffers
        }
        let key = TagTable.key(of: index)
        let capacity = 2 * max(0, counters.buffers) + 4096
        let bytes = roundUp(capacity * MemoryLayout<Finding>.stride, pageSize)
        guard let memory = Platform.map(bytes) else {
            Platform.writeError("slabguard: tag check skipped: no memory for the walk\n")
            return max(0, counters.buffers)
        }
        defer { Platform.unmap(memory, bytes) }
        let findings = memory.bindMemory(to: Finding.self, capacity: capacity)
        var stored = 0, total = 0
        var totalBytes: UInt = 0
        collect(key: key, into: findings, capacity: capacity, stored: &stored, total: &total, bytes: &totalBytes)
        guard total > 0 else { return 0 }
        report(index, findings, stored, total: total, bytes: totalBytes)
        return total
    }

    private static func collect(key: UInt32, into out: UnsafeMutablePointer<Finding>, capacity: Int,
                                stored: inout Int, total: inout Int, bytes: inout UInt) {
        CacheRegistry.lock.lock()
        var c = CacheRegistry.shared.pointee.first
        while let cache = c {
            c = cache.pointee.nextCache
            guard cache.pointee.debugFlags != 0 else { continue }
            let layout = TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags))
            let lock = cache.slabLock
            lock.lock()
            cache.forEachAllocatedChunk { chunk, tag, state in
                guard LibraryTags.explicitKey(ofOwner: tag.owner) == key else { return }
                total += 1
                bytes += UInt(state.size)
                if stored < capacity {
                    out[stored] = Finding(user: UInt(bitPattern: chunk) + UInt(state.offset), size: UInt(state.size),
                                          tag: tag.base, cache: cache, span: nil,
                                          stackId: tag.auditEntry(0, layout: layout)?.stackId ?? 0, group: -1)
                    stored += 1
                }
            }
            lock.unlock()
        }
        CacheRegistry.lock.unlock()
        let heap = SizeClassHeap.defaultHeap
        let largeLock = heap.largeLock
        largeLock.lock()
        var span = heap.pointee.largeSpans
        while let s = span {
            span = s.pointee.next
            let tag = BufferTag(base: s.pointee.base)
            guard tag.state.isAllocated, LibraryTags.explicitKey(ofOwner: tag.owner) == key else { continue }
            total += 1
            bytes += UInt(s.pointee.requestedSize)
            if stored < capacity {
                out[stored] = Finding(user: UInt(bitPattern: s.pointee.base + s.pointee.userOffset), size: UInt(s.pointee.requestedSize),
                                      tag: s.pointee.base, cache: nil, span: s,
                                      stackId: tag.auditEntry(0, layout: TagLayout.of(s))?.stackId ?? 0, group: -1)
                stored += 1
            }
        }
        largeLock.unlock()
    }

    private static func report(_ index: Int, _ f: UnsafeMutablePointer<Finding>, _ n: Int, total: Int, bytes: UInt) {
        // Groups: the same allocation stack (without audit: the same cache).
        var groups = 0
        for i in 0..<n where f[i].group < 0 {
            f[i].group = Int32(groups)
            for j in (i + 1)..<max(i + 1, n) where f[j].group < 0 && f[j].stackId == f[i].stackId && f[j].cache == f[i].cache {
                f[j].group = Int32(groups)
            }
            groups += 1
        }
        var r = ReportBuilder(.tagCheck, cacheFlags: 0, leakBuffers: UInt(total), leakBytes: bytes, library: TagTable.name(index))
        var shown = 0
        var lastBytes = UInt.max, lastGroup = -1
        while shown < min(groups, r.json ? 1 : groupsShown) {
            var best = -1, bestBytes: UInt = 0, bestCount: UInt = 0, example = -1
            for g in 0..<groups {
                var gb: UInt = 0, count: UInt = 0, first = -1
                for i in 0..<n where f[i].group == Int32(g) { gb += f[i].size; count += 1; if first < 0 { first = i } }
                let before = gb < lastBytes || (gb == lastBytes && g > lastGroup)
                if before && (best < 0 || gb > bestBytes) { best = g; bestBytes = gb; bestCount = count; example = first }
            }
            guard best >= 0 else { break }
            let e = f[example]
            r.line { w in
                w.append(decimal: bestCount)
                w.append(bestCount == 1 ? " buffer, " : " buffers, ")
                w.append(decimal: bestBytes)
                w.append(" bytes from one allocation stack:")
            }
            if let cache = e.cache {
                r.buffer(cache: cache, user: UnsafeMutableRawPointer(bitPattern: e.user)!, size: Int(e.size), label: "for example buffer")
                r.auditStacks(cache: cache, tag: BufferTag(base: e.tag), freeFirst: false, allocationOnly: true)
            } else if let span = e.span {
                r.buffer(name: DebugReport.name(of: span), user: UnsafeMutableRawPointer(bitPattern: e.user)!, size: Int(e.size), label: "for example buffer")
                r.auditStacks(layout: TagLayout.of(span), tag: BufferTag(base: e.tag), freeFirst: false, allocationOnly: true)
            }
            lastBytes = bestBytes
            lastGroup = best
            shown += 1
        }
        if groups > shown || n < total {
            r.note { w in
                if groups > shown { w.append(decimal: groups - shown); w.append(" more allocation stacks not shown") }
                if n < total { if groups > shown { w.append("; ") }; w.append(decimal: total - n); w.append(" buffers counted but not listed") }
            }
            r.endNotes()
        }
        r.field("groups", UInt(groups))
        r.hasStacks = false   // every check is printed, even when the same buffers are outstanding
        r.finish(informational: true)
    }

    // MARK: - Invalid uses

    static func reportInvalid(_ use: InvalidTagUse, name: UnsafePointer<CChar>?, destroyedAt: AuditEntry? = nil) {
        var r = ReportBuilder(.invalidTag, cacheFlags: 0, library: name, tagUse: use)
        r.currentStack("used by thread")
        if let destroyedAt, destroyedAt.stackId != 0 { r.recordedStack(destroyedAt, key: "destroy_stack", label: "destroyed by thread") }
        r.finish()
    }

    /// A handle that is not a live tag: the report (then abort, unless noabort).
    static func reportInvalid(handle: UInt, lookup: TagLookup) {
        switch lookup {
        case .destroyed(let index):
            reportInvalid(.afterDestroy, name: index.map(TagTable.name), destroyedAt: index.flatMap(TagTable.destroyEntry))
        case .invalid: reportInvalid(.notATag(handle), name: nil)
        case .live: return
        }
    }
}
