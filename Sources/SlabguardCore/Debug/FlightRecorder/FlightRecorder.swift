// The flight recorder — `log=PATH` (design §7): a binary file written as the program
// runs, through a shared file mapping, so that whatever was recorded survives a
// SIGKILL, an abort or the OOM killer (the kernel owns the pages).  `slabguard log`
// reads it after the process is gone.
//
// The file (format version 2, little-endian; `slabguard log` checks magic, version and
// sizes), one region after another, each at a fixed offset named in the header — the
// format is defined once, in Sources/SlabguardFormats/RecorderFormat.swift:
//
//   header       4 KiB    magic "SLABGLOG", version, pid, start times (realtime and
//                         monotonic ns, and audit-clock ticks), the latest clock sample
//                         (ticks, ns: converts ticks to seconds), exit state and status,
//                         every region's offset and size, the options, the command line
//   modules      256 KiB  the module map as text lines (ModuleMap.write), rewritten at
//                         start, at exit and before an abort
//   caches       256 KiB  "ADDRESS NAME" lines: each cache's record address (what a
//                         transaction names) and its name, rewritten like the modules
//   reports      1 MiB    every report's text, appended
//   statistics   64 KiB   the ::kmastat table at exit (StatisticsTable, through the mapping)
//   timeline     1 MiB    the heap over time (TimelineFormat: 512 samples, about one a second)
//   symbols      4 MiB    libraries' function symbols, captured at their dlclose (so their
//                         frames stay named after the file is gone): "M START END BIAS
//                         PATH", then "S ADDRESS SIZE NAME" lines, then "U START TICKS"
//                         once the library was really unmapped
//   buckets      4 MiB    the stack depot's hash buckets  } StackDepot's own storage,
//   stacks       64 MiB   the stack depot's words         } placed in the file
//   ring         64 MiB   the transaction ring (TransactionLog: 64-byte entries)
//
// The file is sparse: untouched parts take no disk.  A forked child keeps no record (its
// mapping is made private at the fork, so the parent's file stays the parent's); a
// program started with the same path while the log's writer still runs keeps none
// either and says so — `%p` in the path (the pid) gives each process its own.
// Nothing here allocates; the regions are written lock-free (reports under the report
// lock, modules and caches under their own locks while being read).

import CSlabguardShim
import Glibc
import SlabguardFormats

enum FlightRecorder {
    // The format (magic, header fields, regions, ring entries) is SlabguardFormats'.
    typealias Field = RecorderHeader.Field

    struct State {
        var base: UnsafeMutableRawPointer? = nil
        var fileBytes = 0
        var device: UInt64 = 0   // the file's identity: a forked child reopens it by path only if it is still this file
        var inode: UInt64 = 0
        var printStatistics: (@convention(c) (UnsafeMutableRawPointer) -> Void)? = nil   // Statistics' printer, given a TextSink
        var nextLiveStatistics: UInt64 = 0   // audit ticks: when the live table is next due
        var sampleTimeline: (@convention(c) (UnsafeMutableRawPointer, Int) -> Int)? = nil   // Statistics' sampler: memory, capacity → bytes
        var timelineCountdown: UInt64 = 0    // seconds until the next sample
        var writingStatistics: UInt64 = 0    // 1 while a thread rewrites it (others skip)
        var liveDescriptor: Int32 = -1       // the live recorder's memory file (no log=), kept open for `slabguard stat`
        var liveOnly = false                 // no log=: header to timeline only, in memory; no ring, no depot
        var sandboxed = false                // a seccomp filter was found: no more live work (its system calls could kill)
    }

    @inline(__always) static var state: UnsafeMutablePointer<State> {
        UnsafeMutableRawPointer(StateRegion.debugRecorder.bound(to: State.self))
            .assumingMemoryBound(to: State.self)
    }

    @inline(__always) static var isRecording: Bool { state.pointee.base != nil }


    @inline(__always) private static func store(_ value: UInt64, at field: Int) {
        state.pointee.base!.storeBytes(of: value, toByteOffset: field, as: UInt64.self)
    }

    /// Sizes and maps the file `fd` (just created, empty) and writes its header.  Heap
    /// set-up, phase 1 (nothing here allocates).  False when the file cannot be sized or
    /// mapped: the caller says so and keeps no log.
    static func create(fd: Int32) -> Bool {
        let bytes = RecorderRegion.fileBytes
        guard Platform.setFileSize(fd, bytes), let base = Platform.mapFileShared(fd, bytes) else { return false }
        if let identity = Platform.fileIdentity(fd) { (state.pointee.device, state.pointee.inode) = (identity.device, identity.inode) }
        writeHeader(base, bytes: bytes)
        return true
    }

    /// A debug run without `log=`: the live recorder, the same format up to the timeline
    /// (RecorderRegion.liveBytes) in an anonymous memory file whose descriptor stays open
    /// at 890 or above, so that `slabguard stat/top/leaks PID` open it through
    /// /proc/PID/fd (design §12).  No ring and no depot (they stay in process memory);
    /// nothing reaches a disk; gone with the process.  False when the kernel refuses
    /// (a seccomp filter, a descriptor limit below 891): the run goes on without it.
    static func createLive() -> Bool {
        let fd = sg_memory_file(liveFileName.utf8Start, liveDescriptorFloor)
        guard fd >= 0 else { return false }
        let bytes = RecorderRegion.liveBytes
        guard Platform.setFileSize(fd, bytes), let base = Platform.mapFileShared(fd, bytes) else { Platform.close(fd); return false }
        state.pointee.liveOnly = true
        state.pointee.liveDescriptor = fd
        writeHeader(base, bytes: bytes)
        return true
    }

    /// The live recorder's name in /proc/PID/maps and /proc/PID/fd ("/memfd:NAME (deleted)").
    static var liveFileName: StaticString { "slabguard-live" }
    static let liveDescriptorFloor: Int32 = 890

    private static func writeHeader(_ base: UnsafeMutableRawPointer, bytes: Int) {
        let s = state
        s.pointee.base = base
        s.pointee.fileBytes = bytes
        let transactions = !s.pointee.liveOnly
        memcpy(base + Field.magic, RecorderHeader.magic.utf8Start, RecorderHeader.Width.magic)
        base.storeBytes(of: RecorderHeader.version, toByteOffset: Field.version, as: UInt32.self)
        base.storeBytes(of: UInt32(RecorderHeader.bytes), toByteOffset: Field.headerBytes, as: UInt32.self)
        store(UInt64(getpid()), at: Field.pid)
        var realtime = timespec()
        clock_gettime(CLOCK_REALTIME, &realtime)
        store(UInt64(realtime.tv_sec) &* 1_000_000_000 &+ UInt64(realtime.tv_nsec), at: Field.startRealtime)
        let clock = AuditClock.state.pointee
        store(clock.startNanoseconds, at: Field.startMonotonic)
        store(clock.startTicks, at: Field.startTicks)
        store(clock.useTSC ? 1 : 0, at: Field.useTSC)
        sampleClock()
        store(UInt64(RecorderRegion.ring.offset), at: Field.ringOffset)
        store(transactions ? UInt64(RecorderRegion.ring.bytes / RingEntry.bytes) : 0, at: Field.ringEntries)
        store(UInt64(RingEntry.bytes), at: Field.entryBytes)
        store(UInt64(RecorderRegion.stacks.offset), at: Field.stacksOffset)
        store(transactions ? UInt64(StackDepotFormat.storageWords) : 0, at: Field.stacksWords)
        store(UInt64(RecorderRegion.buckets.offset), at: Field.bucketsOffset)
        store(transactions ? UInt64(StackDepotFormat.bucketCount) : 0, at: Field.bucketCount)
        store(UInt64(RecorderRegion.modules.offset), at: Field.modulesOffset)
        store(UInt64(RecorderRegion.modules.bytes), at: Field.modulesBytes)
        store(UInt64(RecorderRegion.reports.offset), at: Field.reportsOffset)
        store(UInt64(RecorderRegion.reports.bytes), at: Field.reportsBytes)
        store(UInt64(RecorderRegion.caches.offset), at: Field.cachesOffset)
        store(UInt64(RecorderRegion.caches.bytes), at: Field.cachesBytes)
        store(UInt64(bytes), at: Field.fileBytes)
        store(UInt64(RecorderRegion.statistics.offset), at: Field.statisticsOffset)
        store(UInt64(RecorderRegion.statistics.bytes), at: Field.statisticsBytes)
        store(UInt64(RecorderRegion.symbols.offset), at: Field.symbolsOffset)
        store(transactions ? UInt64(RecorderRegion.symbols.bytes) : 0, at: Field.symbolsBytes)
        store(UInt64(RecorderRegion.timeline.offset), at: Field.timelineOffset)
        store(UInt64(RecorderRegion.timeline.bytes), at: Field.timelineBytes)
        store(1, at: Field.timelineStride)
        _ = OptionsState.shared.pointee.options.render(into: (base + Field.options).assumingMemoryBound(to: CChar.self),
                                                     capacity: RecorderHeader.Width.options)
        writeCommandLine(into: base + Field.commandLine, capacity: RecorderHeader.Width.commandLine - 1)
    }

    /// The region for the stack depot's buckets and words, and the transaction ring.
    static var stackStorage: (buckets: UnsafeMutableRawPointer, words: UnsafeMutableRawPointer)? {
        guard let base = state.pointee.base, !state.pointee.liveOnly else { return nil }
        return (base + RecorderRegion.buckets.offset, base + RecorderRegion.stacks.offset)
    }

    static var ring: (memory: UnsafeMutableRawPointer, entries: Int)? {
        guard let base = state.pointee.base, !state.pointee.liveOnly else { return nil }
        return (base + RecorderRegion.ring.offset, RecorderRegion.ring.bytes / RingEntry.bytes)
    }

    /// Records the current (ticks, nanoseconds) pair: the reader's rate for turning
    /// ticks into seconds.  Called per transaction block, per report and at exit.
    static func sampleClock() {
        guard isRecording else { return }
        let clock = AuditClock.state.pointee
        let ns = AuditClock.monotonicNanoseconds()
        store(clock.useTSC ? sg_rdtsc() : ns, at: Field.clockTicks)
        store(ns, at: Field.clockNanoseconds)
    }

    /// Rewrites the module map and the cache table (start, exit, before an abort).  Each is
    /// skipped when its lock is busy (on the way to an abort this thread may hold one):
    /// the previous copy stays.
    static func writeMaps() {
        guard let base = state.pointee.base else { return }
        // In place, the used count set to 0 first: a reader of a file whose process died
        // meanwhile sees no map rather than half of one.
        let modulesBefore = base.load(fromByteOffset: Field.modulesUsed, as: UInt64.self)
        store(0, at: Field.modulesUsed)
        let modules = ModuleMap.write(into: base + RecorderRegion.modules.offset, capacity: RecorderRegion.modules.bytes)
        store(modules >= 0 ? UInt64(modules) : modulesBefore, at: Field.modulesUsed)
        let cachesBefore = base.load(fromByteOffset: Field.cachesUsed, as: UInt64.self)
        store(0, at: Field.cachesUsed)
        let caches = CacheNames.write(into: base + RecorderRegion.caches.offset, capacity: RecorderRegion.caches.bytes)
        store(caches >= 0 ? UInt64(caches) : cachesBefore, at: Field.cachesUsed)
    }

    /// Appends one report's text (report lock held).
    static func appendReport(_ bytes: UnsafeRawPointer, _ count: Int) {
        guard let base = state.pointee.base else { return }
        let used = Int(base.load(fromByteOffset: Field.reportsUsed, as: UInt64.self))
        guard used + count <= RecorderRegion.reports.bytes else { return }
        memcpy(base + RecorderRegion.reports.offset + used, bytes, count)
        store(UInt64(used + count), at: Field.reportsUsed)
        sampleClock()
    }

    /// The process is exiting with `status`: the last clock sample and the maps (not
    /// under a seccomp filter: reading the maps and the threads' slots makes system calls
    /// an allow-list may punish with SIGSYS).
    static func finish(status: Int32, sandboxed: Bool = false) {
        guard isRecording else { return }
        // A live recorder dies with the process: nothing to leave in it.
        if !sandboxed && !state.pointee.liveOnly {
            writeMaps()
            writeStatistics()
        }
        sampleClock()
        store(AuditClock.now(), at: Field.endTicks)
        store(UInt64(bitPattern: Int64(status)), at: Field.exitStatus)
        store(1, at: Field.exited)
    }

    /// The pid recorded in the log at `path` when that file is a flight recorder of a
    /// process still running, else nil.
    static func liveOwner(ofFile path: UnsafePointer<CChar>) -> Int32? {
        var header = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let pidEnd = Field.pid + RecorderHeader.Width.word
        let recorded = withUnsafeMutableBytes(of: &header) { bytes -> UInt64? in
            guard let n = Platform.readFile(path, into: bytes.baseAddress!, capacity: bytes.count), n >= pidEnd,
                  memcmp(bytes.baseAddress! + Field.magic, RecorderHeader.magic.utf8Start, RecorderHeader.Width.magic) == 0
            else { return nil }
            return bytes.load(fromByteOffset: Field.pid, as: UInt64.self)
        }
        guard let recorded, recorded != 0, let pid = Int32(exactly: recorded), Platform.processExists(pid) else { return nil }
        return pid
    }

    // MARK: - Libraries unloaded

    /// Before a `dlclose` of the library whose code holds `address`: its function symbols
    /// go into the symbols region, so that frames in it stay named once it is unmapped and
    /// its file perhaps deleted.  (A dlclose that does not unmap it leaves them unused.)
    static func libraryClosing(at address: UInt) {
        guard isRecording, !state.pointee.liveOnly else { return }   // a live recorder has no symbols region
        var module = ModuleInfo()
        guard ModuleMap.lookup(address, into: &module) else { return }
        let header = appendSymbolsLine { line in
            line.append("M ")
            line.append(hex: module.start); line.append(" ")
            line.append(hex: module.end); line.append(" ")
            line.append(hex: module.base); line.append(" ")
            withUnsafeBytes(of: &module.path) { line.append(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        }
        guard header else { return }
        _ = ElfSymbols.forEachFunction(inModuleAt: address) { value, size, name in
            appendSymbolsLine { line in
                line.append("S ")
                line.append(hex: UInt(value)); line.append(" ")
                line.append(hex: UInt(size)); line.append(" ")
                line.append(cString: name)
            }
        }
    }

    /// After that `dlclose`, the library starting at `start` being gone: its unload time.
    static func libraryUnloaded(start: UInt) {
        guard isRecording else { return }
        appendSymbolsLine { line in
            line.append("U ")
            line.append(hex: start); line.append(" ")
            line.append(decimal: UInt(AuditClock.now()))
        }
        sampleClock()
    }

    /// Appends one line (`body`'s text and a newline) to the symbols region; false when it
    /// does not fit (then nothing is appended).
    @discardableResult
    private static func appendSymbolsLine(_ body: (inout ReportWriter) -> Void) -> Bool {
        guard let base = state.pointee.base, !state.pointee.liveOnly else { return false }
        let used = Int(base.load(fromByteOffset: Field.symbolsUsed, as: UInt64.self))
        var line = ReportWriter(memory: base + RecorderRegion.symbols.offset + used, capacity: max(0, RecorderRegion.symbols.bytes - used))
        body(&line)
        line.append("\n")
        guard !line.isTruncated else { return false }
        store(UInt64(used + line.count), at: Field.symbolsUsed)
        return true
    }

    /// The ::kmastat table into its region, through the mapping.  Skipped when the
    /// registry's lock is busy (on the way to an abort).
    /// The table's printer is the statistics part's, above this one: it installs itself.
    private static func writeStatistics() {
        guard let base = state.pointee.base, let print = state.pointee.printStatistics, CacheRegistry.lock.tryLock() else { return }
        CacheRegistry.lock.unlock()
        printTable(print, into: base)
    }

    /// The table into the statistics region, its used bytes in the header.  Frames are not
    /// named in process: the readers name them (`log kmastat` from the depot, `stat` with
    /// the symbolizer), so no ELF symbol index is built every second or at every exit.
    private static func printTable(_ print: @convention(c) (UnsafeMutableRawPointer) -> Void, into base: UnsafeMutableRawPointer) {
        var sink = TextSink(memory: base + RecorderRegion.statistics.offset, capacity: RecorderRegion.statistics.bytes)
        sink.namesFrames = false
        withUnsafeMutablePointer(to: &sink) { print(UnsafeMutableRawPointer($0)) }
        store(UInt64(sink.used), at: Field.statisticsUsed)
    }

    /// The live table (`slabguard stat PID`, `top`): rewritten about once a second by
    /// whichever thread frees then, under a sequence number a reader checks (odd while
    /// writing).  Skipped when the registry's lock is busy or another thread is at it.
    /// True when it was due (at most about once a second): the top serves a leak request then.
    @inline(__always) static func refreshStatisticsIfDue(now: UInt64) -> Bool {
        let s = state
        guard s.pointee.base != nil, now >= s.pointee.nextLiveStatistics else { return false }
        refreshStatistics(now: now)
        return true
    }

    @inline(never) private static func refreshStatistics(now: UInt64) {
        let s = state
        guard let base = s.pointee.base, sg_atomic_cas_u64(&s.pointee.writingStatistics, 0, 1) != 0 else { return }
        defer { sg_atomic_store_u64(&s.pointee.writingStatistics, 0) }
        let rate = AuditClock.Conversion()
        let second = rate.spanNanoseconds > 0 ? UInt64(1e9 * Double(rate.spanTicks) / Double(rate.spanNanoseconds)) : 1_000_000_000
        s.pointee.nextLiveStatistics = now &+ second
        // Under a seccomp filter the table's walk (mincore on thread slots, the ELF files
        // of symbols) and the sample's /proc read could meet SIGSYS: the last table stays.
        if !s.pointee.sandboxed { s.pointee.sandboxed = sg_system_calls_filtered() != 0 }
        guard !s.pointee.sandboxed, let print = s.pointee.printStatistics, CacheRegistry.lock.tryLock() else { return }
        CacheRegistry.lock.unlock()
        let sequence = base.load(fromByteOffset: Field.statisticsSequence, as: UInt64.self)
        sg_atomic_store_u64((base + Field.statisticsSequence).assumingMemoryBound(to: UInt64.self), sequence | 1)
        printTable(print, into: base)
        store(now, at: Field.statisticsTicks)
        sampleTimeline(base)
        sampleClock()
        sg_atomic_store_u64((base + Field.statisticsSequence).assumingMemoryBound(to: UInt64.self), (sequence | 1) &+ 1)
    }

    /// The heap over time: a sample every `timelineStride` refreshes (seconds) into the next
    /// slot; a full region keeps every other sample and doubles the stride.
    private static func sampleTimeline(_ base: UnsafeMutableRawPointer) {
        let s = state
        guard let sample = s.pointee.sampleTimeline else { return }
        if s.pointee.timelineCountdown > 1 { s.pointee.timelineCountdown -= 1; return }
        var stride = max(base.load(fromByteOffset: Field.timelineStride, as: UInt64.self), 1)
        let region = base + RecorderRegion.timeline.offset, slot = TimelineFormat.slotBytes
        var used = Int(base.load(fromByteOffset: Field.timelineUsed, as: UInt64.self))
        if used + slot > RecorderRegion.timeline.bytes {
            var i = 1
            while 2 * i * slot < used { memmove(region + i * slot, region + 2 * i * slot, slot); i += 1 }
            used = i * slot
            stride *= 2
            store(stride, at: Field.timelineStride)
        }
        let memory = region + used
        memset(memory, 0, slot)
        _ = sample(memory, slot)
        store(UInt64(used + slot), at: Field.timelineUsed)
        s.pointee.timelineCountdown = stride
    }

    /// In a forked child.  With `%p` in the path the child gets a file of its own: the
    /// header, maps and stacks so far copied into it (its transactions start afresh), then
    /// mapped over the old mapping in place, so every pointer into it stays good.  Without,
    /// or if that fails, the mapping becomes private: nothing the child does reaches the
    /// parent's file.
    static func detachAfterFork(stackWordsUsed: Int) {
        let s = state
        guard let base = s.pointee.base else { return }
        if s.pointee.liveOnly {
            // The child's own memory file at the parent's descriptor number: the header
            // copied (only it: reading the rest would fill the parent's holes), the maps
            // written anew; else no live recorder (the parent's must not hear the child).
            let old = s.pointee.liveDescriptor
            let fd = sg_memory_file(liveFileName.utf8Start, liveDescriptorFloor)
            if fd >= 0, Platform.setFileSize(fd, s.pointee.fileBytes), Platform.writeAll(fd, base, RecorderHeader.bytes),
               Platform.remapFileShared(base, fd, s.pointee.fileBytes) {
                s.pointee.liveDescriptor = old >= 0 && sg_move_descriptor(fd, old) != 0 ? old : fd
                restartAfterFork()
                writeMaps()
                return
            }
            if fd >= 0 { Platform.close(fd) }
            if old >= 0 { Platform.close(old) }
            s.pointee.liveDescriptor = -1
            privatize(base, s.pointee.fileBytes)
            return
        }
        if OptionsState.shared.pointee.options.withLogPath(hasPidMark), let fd = childFile() {
            let depotBytes = stackWordsUsed * 8
            var ok = Platform.writeAll(fd, base, RecorderRegion.buckets.offset)   // header, maps, reports, statistics
            ok = ok && Platform.writeAll(fd, base + RecorderRegion.buckets.offset, RecorderRegion.stacks.offset - RecorderRegion.buckets.offset)
            ok = ok && Platform.writeAll(fd, base + RecorderRegion.stacks.offset, min(depotBytes, RecorderRegion.ring.offset - RecorderRegion.stacks.offset))
            if ok, Platform.remapFileShared(base, fd, s.pointee.fileBytes) {
                if let identity = Platform.fileIdentity(fd) { (s.pointee.device, s.pointee.inode) = (identity.device, identity.inode) }
                Platform.close(fd)
                restartAfterFork()
                return
            }
            Platform.close(fd)
        }
        privatize(base, s.pointee.fileBytes)
    }

    /// A forked child's own recorder, its parent's copied in: this pid, no reports,
    /// statistics or samples yet, not exited, no leak request pending.
    private static func restartAfterFork() {
        store(UInt64(getpid()), at: Field.pid)
        store(0, at: Field.reportsUsed)
        store(0, at: Field.statisticsUsed)
        store(0, at: Field.statisticsSequence)
        store(0, at: Field.statisticsTicks)
        store(0, at: Field.timelineUsed)
        store(1, at: Field.timelineStride)
        state.pointee.timelineCountdown = 0
        store(0, at: Field.exited)
        store(state.pointee.base!.load(fromByteOffset: Field.leakRequest, as: UInt64.self), at: Field.leakAnswer)
    }

    /// The child's copy of the mapping made private: the file reopened read-only by its path
    /// when it is still the same file, else its contents copied into anonymous memory.
    private static func privatize(_ base: UnsafeMutableRawPointer, _ bytes: Int) {
        let s = state
        var done = false
        OptionsState.shared.pointee.options.withLogPath { path in
            guard let fd = Platform.openForReading(path) else { return }
            if let identity = Platform.fileIdentity(fd), identity.device == s.pointee.device && identity.inode == s.pointee.inode {
                done = Platform.privatizeFileMapping(base, fd, bytes)
            }
            Platform.close(fd)
        }
        if !done && !Platform.replaceWithPrivateCopy(base, bytes) { s.pointee.base = nil }
    }

    /// Whether a path has `%p`.
    private static func hasPidMark(_ path: UnsafePointer<CChar>) -> Bool {
        var i = 0
        while path[i] != 0 {
            if path[i] == 0x25 && path[i + 1] == 0x70 { return true }
            i += 1
        }
        return false
    }

    /// The child's own file (path with its pid), created and sized, or nil.
    private static func childFile() -> Int32? {
        guard let page = Platform.map(2 * pageSize) else { return nil }
        defer { Platform.unmap(page, 2 * pageSize) }
        OptionsState.shared.pointee.options.withLogPath { DebugOptions.expandingPid($0, into: page, capacity: 2 * pageSize) }
        var error: Int32 = 0
        guard let fd = Platform.createFile(page.assumingMemoryBound(to: CChar.self), error: &error) else { return nil }
        guard Platform.setFileSize(fd, RecorderRegion.fileBytes) else { Platform.close(fd); return nil }
        return fd
    }

    private static func writeCommandLine(into out: UnsafeMutableRawPointer, capacity: Int) {
        let path: StaticString = "/proc/self/cmdline"
        guard let n = Platform.readFile(UnsafeRawPointer(path.utf8Start).assumingMemoryBound(to: CChar.self),
                                        into: out, capacity: capacity), n > 0 else { return }
        let bytes = out.assumingMemoryBound(to: UInt8.self)
        for i in 0..<(n - 1) where bytes[i] == 0 { bytes[i] = 0x20 }
        bytes[n - 1] = 0
    }
}

/// "ADDRESS NAME" lines for every cache (the flight recorder's cache table).
enum CacheNames {
    /// Bytes written, or -1 when the registry's lock is busy.
    static func write(into memory: UnsafeMutableRawPointer, capacity: Int) -> Int {
        var used = 0
        guard CacheRegistry.lock.tryLock() else { return -1 }
        var c = CacheRegistry.shared.pointee.first
        while let cache = c {
            var line = ReportWriter(memory: memory + used, capacity: max(0, capacity - used))
            line.append(hex: UInt(bitPattern: cache))
            line.append(" ")
            line.append(cString: cache.namePointer)
            line.append("\n")
            guard line.totalBytes < capacity - used else { break }
            used += line.count
            c = cache.pointee.nextCache
        }
        CacheRegistry.lock.unlock()
        return used
    }
}
