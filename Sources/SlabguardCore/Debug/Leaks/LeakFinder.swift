// Leak finder — `leaks`: at exit (or on request) reports buffers that are
// still allocated AND unreachable, grouped by allocation stack, largest first
// (like ::findleaks and LeakSanitizer).
//
// Reachability is conservative: every aligned word of every writable mapping
// of the process (globals, stacks, TLS, other allocators' memory — read from
// /proc/self/maps), minus the ranges slabguard mapped for itself (heap region,
// metadata: subtracted from each line, since the kernel merges neighbouring
// mappings into one line), is a root — except the main thread's stack below its
// stack pointer (the scanning thread's own — at exit, the exit handler's on entry,
// below which lie only the checks' own frames — or the one it stopped at), which
// holds only dead frames: stale pointers there hid real leaks that Valgrind and
// LeakSanitizer (which read stacks from the stack pointer up) report, two of
// gcc's among them.  Other threads' stacks are read whole (their bounds are not
// known for certain); any word pointing into a live buffer (interior
// pointers count) marks it, and marked buffers are scanned in turn.  Buffers
// never marked are leaks.  Being conservative means a leak can be missed (a
// stale word that looks like a pointer) but a reachable buffer is never
// reported, so real programs that keep memory until exit get no false report.
//
// Memory: candidate and work arrays are mapped for the scan and unmapped after
// (from the page arena's free spans when the system has no more: at exit under
// `ulimit -v`); nothing is allocated through the heap.  A scan that cannot be
// done right is skipped with one line, never turned into reports.
//
// Threads: at exit other threads may still be running, allocating, freeing and
// moving pointers.  The scan stops them (sg_world.c: ptrace through a helper task,
// their registers read into a table that is a root; where ptrace cannot be used, a
// signal whose handler waits, the registers saved on the thread's stack), with none
// of them inside a lock the scan takes, and lets them go before reporting.

import CSlabguardShim
import Glibc

enum LeakFinder {
    /// A live buffer: user start, size, its tag (nil for large spans), marked flag in bit 0 of `flags`.
    struct Candidate {
        var start: UInt
        var size: UInt
        var tag: UnsafeMutableRawPointer?
        var cache: UnsafeMutablePointer<CacheCore>?
        var marked: Bool
        var group: Int32
        var largeTag: UnsafeMutableRawPointer? = nil
    }

    /// A library just unmapped by dlclose: its code range and path (leak at unload).
    struct UnloadedLibrary {
        var start: UInt
        var end: UInt
        var path: UnsafePointer<CChar>
        var tagValue: UInt16 = 0   // its library tag's index + 1 (Tags/LibraryTags.swift), 0: none
    }

    /// Words found pointing into an unloaded library while scanning (stale pointers):
    /// where, and the value.  Filled during the scan (no lock, no report), read after.
    struct StaleFinding { var place: UInt; var value: UInt }
    static let staleCapacity = 64

    /// Set while a scan at unload runs: the library's range, and where findings go.
    /// The leaks part's state (`debug_leaks`): the unload scan's probe first (`probe`
    /// points at it), then whether a thread is serving a check on demand.
    struct LeaksState {
        var probe = StaleProbe()
        var serving: UInt64 = 0
    }

    /// A leak check on demand (`slabguard leaks PID`): `newOnly`, `--new`.
    struct OnDemand { var newOnly: Bool }

    struct StaleProbe {
        var start: UInt = 0
        var end: UInt = 0
        var findings: UnsafeMutablePointer<StaleFinding>? = nil
        var count = 0
    }
    @inline(__always) static var probe: UnsafeMutablePointer<StaleProbe> {
        UnsafeMutableRawPointer(StateRegion.debugLeaks.bound(to: LeaksState.self))
            .assumingMemoryBound(to: StaleProbe.self)
    }

    /// Finds and reports leaks; returns the number of leaked buffers.  With `unloading`,
    /// only the buffers that library allocated (design §8's leak at unload: run after its
    /// dlclose unmapped it, so its own data, gone, is no root; what the host still holds
    /// is reachable and no leak).
    @discardableResult
    static func run(unloading: UnloadedLibrary? = nil, onDemand: OnDemand? = nil) -> Int {
        // Everything the scan needs is mapped first: nothing may be mapped (Platform
        // takes a lock a stopped thread may hold) while the world is stopped.
        let estimate = countLive()
        let capacity = estimate + estimate / 2 + 4096
        let candidateBytes = roundUp(capacity * MemoryLayout<Candidate>.stride, pageSize)
        let workBytes = roundUp(capacity * 8, pageSize)
        let rangeBytes = roundUp(MetadataMappings.capacity * 16, pageSize)
        let staleBytes = roundUp(staleCapacity * MemoryLayout<StaleFinding>.stride, pageSize)
        // Two pieces, the maps text apart: at an address-space limit the memory comes from
        // the arena's free spans, and one piece of 1.3 MiB did not always fit in one
        // (a heap of freed 1 MiB blocks: the scan was skipped or not by how they merged).
        guard let scratch = ScratchMemory(bytes: candidateBytes + 2 * workBytes + rangeBytes + staleBytes) else {
            return skipped("no memory for the scan")
        }
        defer { scratch.release() }
        guard let mapsScratch = ScratchMemory(bytes: mapsBytes) else { return skipped("no memory for the scan") }
        defer { mapsScratch.release() }
        let candidates = scratch.base.bindMemory(to: Candidate.self, capacity: capacity)
        let work = (scratch.base + candidateBytes).bindMemory(to: Int.self, capacity: capacity)
        let own = (scratch.base + candidateBytes + workBytes).bindMemory(to: UInt.self, capacity: 2 * MetadataMappings.capacity)
        let stale = (scratch.base + candidateBytes + workBytes + rangeBytes).bindMemory(to: StaleFinding.self, capacity: staleCapacity)
        let suspects = (scratch.base + candidateBytes + workBytes + rangeBytes + staleBytes).bindMemory(to: UInt.self, capacity: capacity)
        let maps = mapsScratch.base.assumingMemoryBound(to: UInt8.self)
        if let library = unloading { probe.pointee = StaleProbe(start: library.start, end: library.end, findings: stale, count: 0) }
        defer { probe.pointee = StaleProbe() }

        var skip = 0
        var parked = false
        guard var count = scanOnce(candidates, capacity, work, own, maps, parked: &parked, skip: &skip) else { return skip }
        // A parked thread (asleep with the stop signal blocked: in a page fault, on a lock)
        // keeps its registers in the kernel, out of sight: a buffer malloc just returned to
        // it may be held nowhere else yet (a false leak, seen once in a CI run of fork_busy
        // with every signal blocked).  So with threads parked, the scan runs again a little
        // later, and only buffers unreachable both times are leaks.
        if parked {
            var n = 0
            for i in 0..<count where !candidates[i].marked { suspects[n] = candidates[i].start; n += 1 }
            if n > 0 {
                sg_world_pause_ms(20)
                probe.pointee.count = 0
                guard let again = scanOnce(candidates, capacity, work, own, maps, parked: &parked, skip: &skip) else { return skip }
                count = again
                for i in 0..<count where !candidates[i].marked && !contains(suspects, n, candidates[i].start) {
                    candidates[i].marked = true
                }
            }
        }
        // Reporting symbolizes and takes locks: the other threads run again by now.
        // What they do with reachable buffers no longer matters; unreachable ones
        // cannot be touched by a correct program.
        if let library = unloading { DebugReport.stalePointers(library, stale, probe.pointee.count, candidates, count) }
        return DebugReport.leaks(candidates, count, unloading: unloading, onDemand: onDemand)
    }

    /// One scan: the scan's locks, the other threads stopped, the live buffers collected,
    /// sorted and marked from the roots, the threads let go.  The candidate count, or nil
    /// with `skip` set to what a skipped check returns; `parked` says whether any thread
    /// was parked rather than stopped.
    private static func scanOnce(_ candidates: UnsafeMutablePointer<Candidate>, _ capacity: Int,
                                 _ work: UnsafeMutablePointer<Int>, _ own: UnsafeMutablePointer<UInt>,
                                 _ maps: UnsafeMutablePointer<UInt8>, parked: inout Bool, skip: inout Int) -> Int? {
        // The locks the scan needs are taken first, in the global order, then the other
        // threads stopped: none of them can be stopped inside one of these, and one
        // waiting for one of them stops while it waits.
        lockForScan()
        guard sg_world_stop(2000) >= 0 else {
            unlockAfterScan()
            let blocked = sg_world_unstopped_state() == Int32(UInt8(ascii: "b"))
            let unlisted = sg_world_unstopped_thread() == 0   // no thread named: /proc/self/task could not be read
            skip = skipped(unlisted ? "the process's threads could not be listed (/proc/self/task: no descriptor free?)"
                                    : blocked ? "a thread that blocks the stop signal kept running" : "a thread did not stop in 2 s",
                           thread: sg_world_unstopped_thread(), state: sg_world_unstopped_state())
            return nil
        }
        parked = sg_world_parked_count() > 0
        let count = collect(into: candidates, capacity: capacity)
        guard count < capacity else {
            resume()
            skip = skipped("more live buffers than the scan has room for")
            return nil
        }
        guard count > 0 else { resume(); return 0 }
        sort(candidates, count)
        var workCount = 0
        let ownCount = MetadataMappings.snapshotLocked(into: own, capacity: MetadataMappings.capacity)
        guard scanRoots(candidates, count, work, &workCount, maps: maps, own: own, ownCount: ownCount) else {
            resume()
            skip = skipped("/proc/self/maps cannot be read, or lists more than 65,536 mappings")
            return nil
        }
        scanRegisters(candidates, count, work, &workCount)
        scanCachesWithoutTags(candidates, count, work, &workCount)
        while workCount > 0 {
            workCount -= 1
            let c = candidates[work[workCount]]
            scanRange(c.start, c.start + c.size, candidates, count, work, &workCount)
        }
        resume()
        return count
    }

    /// Whether the ascending `values[0..<n]` holds `value`.
    private static func contains(_ values: UnsafeMutablePointer<UInt>, _ n: Int, _ value: UInt) -> Bool {
        var low = 0, high = n
        while low < high {
            let mid = (low + high) / 2
            if values[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low < n && values[low] == value
    }

    /// The maps text is read through a 64 KiB window; the ranges it names (start and end,
    /// bit 0 of the start marking the main thread's stack) are kept for up to 65,536
    /// mappings, Linux's default limit being 65,530.  (The whole text read into 1 MiB was
    /// cut short past 1 MiB, about 15,000 mappings — 5,000 guarded buffers — and every
    /// root after the cut, the program's globals among them, went unread: all its buffers
    /// reported as leaks.)
    private static let mapsTextBytes = 64 << 10
    private static let mapsRangeCapacity = 1 << 16
    private static let mapsBytes = mapsTextBytes + mapsRangeCapacity * 16

    /// Takes, in the global lock order (DESIGN.md), the locks the scan reads under: the
    /// cache registry, each cache's slab lock, the large-span lock, and last the
    /// mapping table (a leaf lock).  The scan itself then takes none.
    private static func lockForScan() {
        CacheRegistry.lock.lock()
        var c = CacheRegistry.shared.pointee.first
        while let cache = c {
            cache.slabLock.lock()
            c = cache.pointee.nextCache
        }
        SizeClassHeap.defaultHeap.largeLock.lock()
        MetadataMappings.lock()
    }

    /// Lets the other threads go, then gives the scan's locks back (before any report:
    /// reporting takes locks that come before these in the order).
    private static func resume() {
        sg_world_resume()
        unlockAfterScan()
    }

    private static func unlockAfterScan() {
        MetadataMappings.unlock()
        SizeClassHeap.defaultHeap.largeLock.unlock()
        var c = CacheRegistry.shared.pointee.first
        while let cache = c {
            cache.slabLock.unlock()
            c = cache.pointee.nextCache
        }
        CacheRegistry.lock.unlock()
    }

    /// One line saying why there is no leak check (never a report of everything).
    private static func skipped(_ why: StaticString, thread: Int32 = 0, state: Int32 = 0) -> Int {
        ReportOutput.writeLine { w in
            w.append("slabguard: leak check skipped: ")
            w.append(why)
            if thread != 0 {
                w.append(" (thread ")
                w.append(decimal: UInt(thread))
                if state > 32 && state < 127 && state != Int32(UInt8(ascii: "b")) {
                    w.append(", state ")
                    w.append(byte: UInt8(state))
                }
                w.append(")")
            }
            w.append("\n")
        }
        return 0
    }

    /// The scan's working memory: mapped, or when the system has no more address space
    /// (at exit under `ulimit -v`), free pages of the arena's own region.
    struct ScratchMemory {
        let base: UnsafeMutableRawPointer
        let bytes: Int
        let fromArena: Bool

        init?(bytes: Int) {
            self.bytes = bytes
            if let p = Platform.map(bytes) {
                base = p
                fromArena = false
                return
            }
            var zeroed = false
            let arena = StateRegion.arena.bound(to: PageArena.self)
            var fresh = arena.pointee.allocate(pages: bytes >> pageShift, zeroed: &zeroed)
            // Out of address space (ulimit -v): the freed spans kept out of reuse go back first.
            if fresh == nil, sg_held_lock_count() == 0, Retirement.releaseAll() {
                fresh = arena.pointee.allocate(pages: bytes >> pageShift, zeroed: &zeroed)
            }
            guard let p = fresh else { return nil }
            base = p
            fromArena = true
        }

        func release() {
            if fromArena {
                StateRegion.arena.bound(to: PageArena.self).pointee.free(base, pages: bytes >> pageShift)
            } else {
                Platform.unmap(base, bytes)
            }
        }
    }

    // MARK: - Candidates

    private static func countLive() -> Int {
        var n = 0
        CacheOps.forEachCache { cache in
            if cache.pointee.debugFlags != 0 { n += cache.pointee.buffersOut }
        }
        n += SizeClassHeap.defaultHeap.pointee.largeCount
        return n
    }

    private static func collect(into out: UnsafeMutablePointer<Candidate>, capacity: Int) -> Int {
        var n = 0
        // Every lock is held by the caller (lockForScan).
        var c = CacheRegistry.shared.pointee.first
        while let cache = c {
            c = cache.pointee.nextCache
            guard cache.pointee.debugFlags != 0 else { continue }
            cache.forEachAllocatedChunk { chunk, tag, state in
                guard n < capacity else { return }
                out[n] = Candidate(start: UInt(bitPattern: chunk) + UInt(state.offset), size: UInt(state.size),
                                   tag: tag.base, cache: cache, marked: false, group: -1)
                n += 1
            }
        }
        let heap = SizeClassHeap.defaultHeap
        let debugLarge = heap.pointee.debugFlags != 0
        var span = heap.pointee.largeSpans
        while let s = span, n < capacity {
            // Debug spans carry a tag page: skip retired (freed) ones.
            if !debugLarge || BufferTag(base: s.pointee.base).state.isAllocated {
                out[n] = Candidate(start: UInt(bitPattern: s.pointee.base + s.pointee.userOffset), size: UInt(s.pointee.requestedSize),
                                   tag: nil, cache: nil, marked: false, group: -1,
                                   largeTag: debugLarge ? s.pointee.base : nil)
                n += 1
            }
            span = s.pointee.next
        }
        return n
    }

    /// Object caches without debug flags keep no allocation state, so every chunk of
    /// their slabs is a root (their buffers may hold the only pointer to a tagged one).
    private static func scanCachesWithoutTags(_ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                                              _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int) {
        var c = CacheRegistry.shared.pointee.first
        while let cache = c {
            c = cache.pointee.nextCache
            guard cache.pointee.debugFlags == 0 else { continue }
            for list in Int32(0)...Int32(1) {
                var slab = cache.slabs.listHead(SlabList(rawValue: list)!).pointee
                while let s = slab {
                    let start = UInt(bitPattern: s.pointee.base)
                    scanRange(start, start + UInt(s.pointee.carved * cache.pointee.chunkSize), a, n, work, &workCount)
                    slab = s.pointee.next
                }
            }
        }
    }

    /// Heap sort by start address (no allocation, O(n log n)).
    private static func sort(_ a: UnsafeMutablePointer<Candidate>, _ n: Int) {
        func siftDown(_ start: Int, _ end: Int) {
            var root = start
            while 2 * root + 1 < end {
                var child = 2 * root + 1
                if child + 1 < end && a[child].start < a[child + 1].start { child += 1 }
                if a[root].start >= a[child].start { return }
                let t = a[root]; a[root] = a[child]; a[child] = t
                root = child
            }
        }
        var i = n / 2 - 1
        while i >= 0 { siftDown(i, n); i -= 1 }
        var end = n - 1
        while end > 0 {
            let t = a[0]; a[0] = a[end]; a[end] = t
            siftDown(0, end)
            end -= 1
        }
    }

    /// The candidate containing address `v`, if any (binary search).
    @inline(__always) static func find(_ v: UInt, _ a: UnsafeMutablePointer<Candidate>, _ n: Int) -> Int? {
        var lo = 0, hi = n
        while lo < hi {
            let mid = (lo + hi) >> 1
            if a[mid].start <= v { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let c = a[lo - 1]
        return v < c.start + max(c.size, 1) ? lo - 1 : nil
    }

    private static func scanRange(_ from: UInt, _ to: UInt, _ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                                  _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int) {
        let low = a[0].start, high = a[n - 1].start + a[n - 1].size
        var p = (from + 7) & ~7
        let stale = probe
        let staleStart = stale.pointee.start, staleEnd = stale.pointee.end
        while p + 8 <= to {
            let v = UnsafePointer<UInt>(bitPattern: p)!.pointee
            if v >= staleStart && v < staleEnd && stale.pointee.count < staleCapacity {
                stale.pointee.findings![stale.pointee.count] = StaleFinding(place: p, value: v)
                stale.pointee.count += 1
            }
            if v >= low && v < high, let i = find(v, a, n), !a[i].marked {
                a[i].marked = true
                work[workCount] = i
                workCount += 1
            }
            p += 8
        }
    }

    // MARK: - Roots

    /// Every readable, writable mapping, minus slabguard's own ranges `own` (sorted).
    /// False when the maps cannot be read.
    private static func scanRoots(_ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                                  _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int,
                                  maps buffer: UnsafeMutablePointer<UInt8>, own: UnsafeMutablePointer<UInt>, ownCount: Int) -> Bool {
        // Every range is listed first, then scanned: scanning while reading would see maps
        // change.
        // This thread's view of the (shared) maps: /proc/self is the leader's, empty once
        // main ended with pthread_exit (a zombie leader), and every buffer was a leak.
        let mapsPath: StaticString = "/proc/thread-self/maps"
        let ranges = UnsafeMutableRawPointer(buffer + mapsTextBytes).bindMemory(to: UInt.self, capacity: 2 * mapsRangeCapacity)
        var count = 0
        var overflow = false
        let read = Platform.forEachLine(ofFile: UnsafeRawPointer(mapsPath.utf8Start).assumingMemoryBound(to: CChar.self),
                                        buffer: buffer, capacity: mapsTextBytes) { text, line, end in
            var i = line
            let from = parseHex(text, &i); i += 1
            let to = parseHex(text, &i); i += 1
            guard i + 1 < end else { return }
            let readable = text[i] == UInt8(ascii: "r"), writable = text[i + 1] == UInt8(ascii: "w")
            guard readable && writable && !isSpecial(text, line, end) else { return }
            guard count < mapsRangeCapacity else { overflow = true; return }
            ranges[2 * count] = from | (isMainStack(text, line, end) ? 1 : 0)
            ranges[2 * count + 1] = to
            count += 1
        }
        guard read && !overflow else { return false }
        // Linux merges neighbouring anonymous mappings into one maps line, so a line
        // may hold the program's memory next to slabguard's: each line is scanned minus
        // slabguard's ranges, never kept or dropped whole.
        for r in 0..<count {
            let from = ranges[2 * r] & ~1, to = ranges[2 * r + 1]
            let live = ranges[2 * r] & 1 != 0 ? liveStackStart(from, to) : from
            scanExcluding(live, to, own, ownCount, a, n, work, &workCount)
        }
        return true
    }

    /// The registers of the threads stopped by ptrace (sg_world_ptrace.c): a thread that
    /// blocks every signal may hold its only pointer to a buffer in one.  A root, never
    /// subtracted as slabguard's memory; no place in it is a stale pointer of a library.
    private static func scanRegisters(_ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                                      _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int) {
        var words: UnsafePointer<UInt>? = nil
        var count = 0
        sg_world_registers(&words, &count)
        guard let words, count > 0 else { return }
        let saved = probe.pointee
        probe.pointee.start = 0
        probe.pointee.end = 0
        let start = UInt(bitPattern: words)
        scanRange(start, start + UInt(count * 8), a, n, work, &workCount)
        probe.pointee.start = saved.start
        probe.pointee.end = saved.end
    }

    /// Scans [from, to) except the parts inside the sorted ranges `own[0..<count]`.
    static func scanExcluding(_ from: UInt, _ to: UInt, _ own: UnsafeMutablePointer<UInt>, _ count: Int,
                              _ a: UnsafeMutablePointer<Candidate>, _ n: Int,
                              _ work: UnsafeMutablePointer<Int>, _ workCount: inout Int) {
        var cursor = from
        for r in 0..<count where cursor < to {
            let start = own[2 * r], end = own[2 * r + 1]
            if end <= cursor { continue }
            if start >= to { break }
            if start > cursor { scanRange(cursor, start, a, n, work, &workCount) }
            cursor = max(cursor, end)
        }
        if cursor < to { scanRange(cursor, to, a, n, work, &workCount) }
    }

    /// Whether a maps line is the main thread's stack ("[stack]": a mapping that grows
    /// down, never merged with a neighbour).
    private static func isMainStack(_ b: UnsafeMutablePointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        let label: StaticString = "[stack]"
        let n = label.utf8CodeUnitCount
        guard end - start > n else { return false }
        for k in 0..<n where b[end - n + k] != label.utf8Start[k] { return false }
        return true
    }

    /// Where the live part of the stack in [from, to) begins: this thread's stack pointer
    /// when it runs on that stack — at exit, where the exit handler was entered (below
    /// that lie only the checks' own frames) —, else that of the thread stopped on it,
    /// else `from` (a thread that was not stopped in the handler: all of it is read).
    private static func liveStackStart(_ from: UInt, _ to: UInt) -> UInt {
        var pc: UInt = 0, sp: UInt = 0, fp: UInt = 0
        sg_current_frame(&pc, &sp, &fp)
        if sp >= from && sp < to {
            let mark = UInt(sg_exit_stack_mark())
            return (mark > sp && mark < to ? mark : sp) & ~7
        }
        let stopped = sg_world_stack_pointer_in(from, to)
        return stopped != 0 ? stopped & ~7 : from
    }

    /// [vvar], [vsyscall] and similar cannot be read safely.
    private static func isSpecial(_ b: UnsafeMutablePointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        var i = start
        while i + 4 < end {
            if b[i] == UInt8(ascii: "[") && b[i + 1] == UInt8(ascii: "v") { return true }
            i += 1
        }
        return false
    }

    private static func parseHex(_ b: UnsafeMutablePointer<UInt8>, _ i: inout Int) -> UInt {
        var v: UInt = 0
        while true {
            let c = b[i]
            let d: UInt
            if c >= 48 && c <= 57 { d = UInt(c - 48) } else if c >= 97 && c <= 102 { d = UInt(c - 87) } else { return v }
            v = v << 4 | d
            i += 1
        }
    }
}
