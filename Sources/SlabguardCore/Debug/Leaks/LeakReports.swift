// The leak reports — `leak: N buffers, M bytes not freed` and, at a library's unload,
// `leak at unload` (design §4, §8): the scan's unreached candidates grouped by allocation
// stack, largest group first, each group one report with an example buffer.

import CSlabguardShim
import Glibc

extension DebugReport {
    /// Groups unreached candidates by allocation stack and reports each group, largest first.
    /// With `unloading`, only those allocated from that library (a frame of the first two
    /// of its allocation stack in its range: malloc called by the library, or through one
    /// libc function), reported as `leak at unload`.
    static func leaks(_ candidates: UnsafeMutablePointer<LeakFinder.Candidate>, _ count: Int,
                      unloading: LeakFinder.UnloadedLibrary? = nil, onDemand: LeakFinder.OnDemand? = nil) -> Int {
        // Not leaks after all: a buffer freed since the scan (by a thread left parked in
        // the kernel, see sg_world.c, once the world ran again); and in a forked child,
        // a buffer allocated before the fork — inherited, held perhaps only in the
        // registers of a thread the child does not have, and the parent's to report.
        let forkTime = CaptureState.shared.pointee.forkTicks
        let heapLayout = TagLayout(flags: DebugFlags(rawValue: SizeClassHeap.defaultHeap.pointee.debugFlags))
        for i in 0..<count where !candidates[i].marked {
            let c = candidates[i]
            guard let base = c.tag ?? c.largeTag else { continue }
            let tag = BufferTag(base: base)
            if !tag.state.isAllocated { candidates[i].marked = true; continue }
            let layout = c.cache.map { TagLayout(flags: DebugFlags(rawValue: $0.pointee.debugFlags)) } ?? heapLayout
            if forkTime != 0, let entry = tag.auditEntry(0, layout: layout), entry.time < forkTime { candidates[i].marked = true }
            let record = layout.auditDepth > 0 ? AuditRecords.record(forTag: tag) : nil
            // Reported when its library was unloaded: the mark is in the audit record (out
            // of harm's way) and in the owner word (there without audit).
            let reportedBefore = record.map(AuditRecords.isReportedAtUnload) == true || tag.owner & LibraryTags.reportedAtUnload != 0
            if let library = unloading {
                // Allocated by the library: charged to its library tag (the first frame
                // outside the runtime), or one of the first two frames in it.
                var inside = library.tagValue != 0 && LibraryTags.libraryValue(ofOwner: tag.owner) == library.tagValue
                if !inside, let entry = tag.auditEntry(0, layout: layout) {
                    let frames = entry.stack, n = min(entry.frames, 2)
                    for f in 0..<n where frames[f] >= library.start && frames[f] < library.end { inside = true }
                }
                if !inside || reportedBefore { candidates[i].marked = true; continue }
                if let record { AuditRecords.markReportedAtUnload(record) }
                tag.owner |= LibraryTags.reportedAtUnload
            } else if reportedBefore {
                candidates[i].marked = true
            } else if let check = onDemand {
                if check.newOnly, let record, AuditRecords.isListedByCheck(record) { candidates[i].marked = true; continue }
                if let record { AuditRecords.markListedByCheck(record) }
            }
        }
        // Group: identical allocation stacks (or the same cache without audit).
        var groups = 0
        var leaked = 0
        for i in 0..<count where !candidates[i].marked {
            leaked += 1
            if candidates[i].group >= 0 { continue }
            candidates[i].group = Int32(groups)
            for j in (i + 1)..<max(i + 1, count) where !candidates[j].marked && candidates[j].group < 0
                && sameOrigin(candidates[i], candidates[j]) {
                candidates[j].group = Int32(groups)
            }
            groups += 1
        }
        // Report groups by total bytes, largest first (selection: groups are few).
        var reported = 0
        var lastBytes = UInt.max
        var lastGroup = -1
        while reported < groups {
            var best = -1
            var bestBytes: UInt = 0
            for g in 0..<groups {
                let bytes = groupBytes(candidates, count, g)
                let before = bytes < lastBytes || (bytes == lastBytes && g > lastGroup)
                if before && (best < 0 || bytes > bestBytes) { best = g; bestBytes = bytes }
            }
            if best < 0 { break }
            reportLeakGroup(candidates, count, best, bytes: bestBytes, unloading: unloading)
            lastBytes = bestBytes
            lastGroup = best
            reported += 1
        }
        return leaked
    }

    fileprivate static func groupBytes(_ c: UnsafeMutablePointer<LeakFinder.Candidate>, _ n: Int, _ g: Int) -> UInt {
        var bytes: UInt = 0
        for i in 0..<n where !c[i].marked && c[i].group == Int32(g) { bytes += c[i].size }
        return bytes
    }

    /// Same allocation stack; without stacks, the same cache (large spans all together).
    /// Large and guarded spans are compared by their stacks too: under `guards` every
    /// buffer is one, and all of a run's leaks came out as one group with one example.
    fileprivate static func sameOrigin(_ a: LeakFinder.Candidate, _ b: LeakFinder.Candidate) -> Bool {
        if let ea = allocationEntry(a), let eb = allocationEntry(b) {
            if ea.frames != eb.frames { return false }
            for f in 0..<ea.frames where ea.stack[f] != eb.stack[f] { return false }
            return true
        }
        if a.tag == nil && b.tag == nil { return true }
        return a.tag != nil && b.tag != nil && a.cache == b.cache
    }

    /// The audit entry of a candidate's allocation, when stacks are kept.
    fileprivate static func allocationEntry(_ c: LeakFinder.Candidate) -> AuditEntry? {
        if let tag = c.tag, let cache = c.cache {
            return BufferTag(base: tag).auditEntry(0, layout: TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags)))
        }
        guard let base = c.largeTag, let span = largeSpan(at: base) else { return nil }
        return BufferTag(base: base).auditEntry(0, layout: TagLayout.of(span))
    }

    /// The large or guarded span whose tag page is at `base`.
    fileprivate static func largeSpan(at base: UnsafeMutableRawPointer) -> UnsafeMutablePointer<LargeSpan>? {
        guard let owner = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: base),
              owner.load(as: UInt32.self) == OwnerKind.large.rawValue else { return nil }
        return owner.assumingMemoryBound(to: LargeSpan.self)
    }

    fileprivate static func reportLeakGroup(_ c: UnsafeMutablePointer<LeakFinder.Candidate>, _ n: Int, _ g: Int, bytes: UInt,
                                        unloading: LeakFinder.UnloadedLibrary?) {
        var buffers: UInt = 0
        var first = -1
        for i in 0..<n where !c[i].marked && c[i].group == Int32(g) {
            buffers += 1
            if first < 0 { first = i }
        }
        let example = c[first]
        var r = ReportBuilder(unloading == nil ? .leak : .leakAtUnload, cacheFlags: example.cache?.pointee.debugFlags ?? 0,
                              leakBuffers: buffers, leakBytes: bytes, library: unloading?.path)
        r.field("buffers", buffers)
        r.field("bytes", bytes)
        if let cache = example.cache, let tag = example.tag {
            r.buffer(cache: cache, user: UnsafeMutableRawPointer(bitPattern: example.start)!, size: Int(example.size), label: "for example buffer")
            r.auditStacks(cache: cache, tag: BufferTag(base: tag), freeFirst: false, allocationOnly: true)
        } else if let tag = example.largeTag {
            let span = largeSpan(at: tag)
            r.buffer(name: span.map(name(of:)) ?? largeName, user: UnsafeMutableRawPointer(bitPattern: example.start)!,
                     size: Int(example.size), label: "for example buffer")
            r.auditStacks(layout: span.map(TagLayout.of(_:))
                              ?? TagLayout(flags: DebugFlags(rawValue: SizeClassHeap.defaultHeap.pointee.debugFlags)),
                          tag: BufferTag(base: tag), freeFirst: false, allocationOnly: true)
        }
        r.finish(isLeak: true, leakBuffers: buffers, leakBytes: bytes)
    }
}
