// Debug layer — kmem_flags for Linux.
//
// What it does: when debugging is on (SLABGUARD_DEBUG, `slabguard run
// --debug`, the Swift/C configuration call, or per object cache), every
// allocation and free of a debug cache goes through DebugAllocator, which
// checks and maintains the buffer tag (BufferTag.swift): the free pattern is
// verified when a buffer is handed out again, the redzone and the allocation
// state when it is freed; audit entries record the last allocating and
// freeing stacks; the transaction log records every operation; quarantine
// delays reuse; heap verification walks every slab; leaks are found at exit
// by a conservative reachability scan.  Problems become reports
// (Reports/), then the configured action (abort unless `noabort`).
//
// Configuration is fixed before the heap's first allocation: the default
// heap's caches are created with tags sized for the options (audit depth,
// contents), and the fast path tests one word (`sg_debug_flags()`).  Object
// caches may have their own flags.
//
// Parts: the layer is itself layered (DESIGN.md, "The debug layer's parts"): Text,
// Options, Capture, FlightRecorder, Audit, Buffer, Tags, Reports, Checks, Faults, Leaks,
// Modules, Statistics, each a folder naming only the ones before it and owning its own
// region of the static map; this file and the other top-level ones compose them.
//
// Invariants: see Buffer/BufferTag.swift.  The debug paths never allocate through
// the allocator they check (audit records live out of line in slab sidecars and
// large-span records, their stacks in the stack depot; reports are built in a mapped
// scratch and written with write(2)).  All of this state is in the static memory map
// (DESIGN.md), reached through StateRegion, never by a hand-written offset.
//
// Locking: the checks run lock-free on the calling thread's buffer (a buffer
// belongs to one thread between allocation and free).  The quarantine FIFO,
// the retired-span lists and report output each have a mutex (taken around
// fork, before the heap's locks); heap walks take each cache's slab lock.

import CSlabguardShim
import Glibc

/// The top's own state: whether the exit work is registered (`debug_control`).  Every
/// part below owns its state in a region of its own (DESIGN.md, "The debug layer's parts").
struct DebugState {
    var exitWorkRegistered = false

    @inline(__always) static var shared: UnsafeMutablePointer<DebugState> { StateRegion.debugControl.bound(to: DebugState.self) }
}

enum DebugLayer {
    /// Installs the configuration hook; called from the front ends' start (cheap, idempotent).
    static func install() {
        let life = HeapLifecycle.shared
        if life.pointee.configure == nil {
            life.pointee.configure = { flags, tagBytes in DebugLayer.configureDefaultHeap(flags, tagBytes) }
            life.pointee.ready = { DebugLayer.setUpExitWork() }
            life.pointee.freshChunkHook = { cache, chunk in DebugAllocator.prepareFreshChunk(cache, chunk) }
            life.pointee.slabRetireHook = { slab in AuditRecords.releaseSidecar(slab) }
            registerLocks()
            FlightRecorder.state.pointee.printStatistics = { sink in StatisticsTable.print(to: &sink.assumingMemoryBound(to: TextSink.self).pointee) }
            FlightRecorder.state.pointee.sampleTimeline = { memory, capacity in StatisticsTable.writeSample(into: memory, capacity: capacity) }
            life.pointee.forkChild = { DebugLayer.resetAfterFork() }
            ThreadRegistry.shared.pointee.exitHook = { Quarantine.flushThreadBatch(); TagTable.releaseThreadSlot(); StackDepot.moveThreadChanges() }
            life.pointee.cacheDestroyHook = { cache in Quarantine.purge(cache.assumingMemoryBound(to: CacheCore.self)) }
            life.pointee.reclaimHook = { Retirement.releaseAll() }
            life.pointee.tagLinkOffset = TagLayout.linkWord
        }
    }

    // The debug layer's rows of the lock order (DESIGN.md 2–7: report, quarantine, retired
    // spans, module map, ELF symbols, tags: each may take the ones after it, and the heap's),
    // which the fork handlers take before the heap's (Caches/LockOrder.swift).
    private static func registerLocks() {
        LockOrder.register(1, LockRow(name: "mutex", file: "ReportOutput.swift") { i in
            i == 0 ? ReportOutput.reportMutex : nil })
        LockOrder.register(2, LockRow(name: "quarantineMutex", file: "Quarantine.swift") { i in
            i == 0 ? ChecksState.shared.field(\.quarantineMutex) : nil })
        LockOrder.register(3, LockRow(name: "retiredMutex", file: "GuardedAllocator.swift") { i in
            i == 0 ? GuardState.shared.field(\.retiredMutex) : nil })
        LockOrder.register(4, LockRow(name: "mutex", file: "ModuleMap.swift") { i in i == 0 ? ModuleMap.mutexIfCreated : nil })
        LockOrder.register(5, LockRow(name: "mutex", file: "ElfSymbols.swift") { i in i == 0 ? ElfSymbols.mutexIfCreated : nil })
        LockOrder.register(6, LockRow(name: "tagMutex", file: "TagTable.swift") { i in i == 0 ? TagTable.mutexIfCreated : nil })
    }

    /// With a flight recorder, at the start of a debug allocation or free (outside the
    /// checked section, as verify=N's verification): about once a second, the live
    /// statistics and a pending leak check on demand (Leaks/LeakRequests.swift).
    /// Never from a thread that holds an allocator lock or is inside a checked call (a
    /// signal handler's malloc that interrupted one): the table's walk takes locks.
    /// True when it did the work (the caller's clock reading is then old: a leak check
    /// can take milliseconds).
    @inline(__always) static func liveWork(now: UInt64) -> Bool {
        guard sg_debug_depth() == 0, sg_held_lock_count() == 0 else { return false }
        guard FlightRecorder.refreshStatisticsIfDue(now: now) else { return false }
        LeakFinder.serveRequest()
        return true
    }

    /// In a forked child, after every lock was re-initialized: the state that is per process.
    static func resetAfterFork() {
        CaptureState.shared.pointee.forkTicks = AuditClock.now()
        ReportOutput.resetAfterFork()
        Watchpoints.forgetAfterFork()
        FlightRecorder.detachAfterFork(stackWordsUsed: StackDepot.wordsUsed)
        sg_set_thread_id(0)   // the cached id is the parent's thread's
        TagTable.reinitializeThreadSlotsAfterFork()
    }

    /// Heap set-up hook: reads SLABGUARD_DEBUG unless options were set through the API,
    /// and reports the default heap's flags and tag size.  A bad option string is fatal
    /// (exit status 2) — running unchecked when checks were asked for would be worse.
    static func configureDefaultHeap(_ flags: UnsafeMutablePointer<UInt32>, _ tagBytes: UnsafeMutablePointer<Int>) {
        let state = OptionsState.shared
        AuditClock.start()
        if !state.pointee.configured, let text = Platform.environment("SLABGUARD_DEBUG") {
            // In secure execution (where secure_getenv sees nothing) the checks still
            // apply, but no option from the environment may make slabguard write a file.
            let secure = Platform.isSecureExecution
            // The message buffer is mapped, not malloc'd: we are inside the allocator's set-up.
            let capacity = pageSize
            guard let message = Platform.map(capacity)?.assumingMemoryBound(to: CChar.self) else { _exit(2) }
            let ok = DebugOptions.parse(text, source: "SLABGUARD_DEBUG", into: &state.pointee.options,
                                        error: message, errorCapacity: capacity)
            if !ok {
                message[strlen(message)] = 10   // the newline (the buffer is a zeroed page)
                Platform.writeAll(2, message, strlen(message))
                _exit(2)
            }
            Platform.unmap(UnsafeMutableRawPointer(message), capacity)
            if secure { dropFileOptions(&state.pointee.options) }
            state.pointee.configured = true
        }
        let options = state.pointee.options
        let heapFlags = checkingFlags(options.flags)
        flags.pointee = heapFlags.rawValue
        tagBytes.pointee = heapFlags.isEmpty ? 0 : TagLayout(flags: heapFlags).totalBytes
        sg_set_debug_flags(heapFlags.rawValue)
        sg_set_sampling(heapFlags.isEmpty && options.flags.contains(.sample)
                        ? (options.sampleMilliseconds > 0 ? GuardedAllocator.timeSampling : GuardedAllocator.countSampling) : 0)
        openLogFile()   // the flight recorder's file, before the depot and the ring that live in it
        // A debug run without log= still publishes its live table and answers leak
        // requests (`slabguard stat/top/leaks PID`), from a recorder in memory.
        if !FlightRecorder.isRecording && !heapFlags.isEmpty { _ = FlightRecorder.createLive() }
        if options.flags.contains(.audit) || options.flags.contains(.guards) || options.flags.contains(.sample) {
            StackDepot.setUp()
        }
        // Every debug allocation finds its library by its stack (Tags/LibraryTags.swift).
        if !heapFlags.isEmpty || options.flags.contains(.sample) { StackUnwinder.warmUp() }
    }

    /// Secure execution: the options that write or read files (`log=`, `report_path=`,
    /// `suppressions=`) are ignored, with one line.
    static func dropFileOptions(_ options: inout DebugOptions) {
        guard options.flags.contains(.log) || options.hasReportPath || options.hasSuppressions else { return }
        options.flags.remove(.log)
        options.clearFilePaths()
        Platform.writeError("slabguard: secure execution (setuid/setgid): ignoring log=, report_path= and suppressions= from SLABGUARD_DEBUG\n")
    }

    /// log=PATH: the log file is created at start-up (design §11's rules), so a path
    /// that cannot be written is said at once, in one line, not discovered at exit.
    static func openLogFile() {
        let state = OptionsState.shared
        guard state.pointee.options.flags.contains(.log) else { return }
        var error: Int32 = 0
        // The path with %p expanded, in a mapped page (no heap here).
        guard let page = Platform.map(2 * pageSize) else { return }
        defer { Platform.unmap(page, 2 * pageSize) }
        state.pointee.options.withLogPath { DebugOptions.expandingPid($0, into: page, capacity: 2 * pageSize) }
        let path = page.assumingMemoryBound(to: CChar.self)
        // A program this one started with the same environment (same path, no %p) must not
        // replace its parent's log while the parent runs: say so and keep none.
        if let owner = FlightRecorder.liveOwner(ofFile: path), owner != getpid() {
            state.pointee.options.flags.remove(.log)
            ReportWriter.withStackBuffer(fd: 2) { w in
                w.append("slabguard: the log file '")
                w.append(cString: path)
                w.append("' belongs to running process ")
                w.append(decimal: UInt64(owner))
                w.append("; this process keeps no log (put %p in the path for one log per process)\n")
            }
            return
        }
        let fd = Platform.createFile(path, error: &error)
        if let fd {
            if FlightRecorder.create(fd: fd) {
                Platform.close(fd)   // the mapping is the log: no descriptor kept (a program may close or reuse it)
                return
            }
            error = errno
            Platform.close(fd)
        }
        state.pointee.options.flags.remove(.log)
        ReportWriter.withStackBuffer(fd: 2) { w in
            w.append("slabguard: cannot write the log file '")
            state.pointee.options.withLogPath { w.append(cString: $0) }
            w.append("': ")
            w.append(cString: Platform.fileErrorText(error))
            w.append(" (log= gives a writable path; no log is kept)\n")
        }
    }

    /// The flags the default heap's caches run with.  `sample=N` alone (with at most
    /// noabort, report=) keeps the fast paths: only the sampled buffers are checked.
    static func checkingFlags(_ flags: DebugFlags) -> DebugFlags {
        let rest = flags.subtracting([.sample, .noabort, .jsonReport])
        if flags.contains(.sample) && rest.isEmpty { return DebugFlags(rawValue: 0) }
        return flags
    }

}
