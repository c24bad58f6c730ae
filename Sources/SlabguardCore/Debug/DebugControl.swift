// Debug control for the front ends: configuring the default heap before its
// first allocation, per-cache debug flags, verification, leak checks, the
// report destination, and the exit-time work (leaks, log=PATH).

import CSlabguardShim
import Glibc

package enum DebugControl {
    package enum ConfigureError: Error, Equatable {
        case invalidOptions(String)
        case heapAlreadyInUse
    }

    /// Sets the default heap's debug options (the SLABGUARD_DEBUG words).  Must run before
    /// the heap's first allocation; the environment is then ignored.
    package static func configure(_ text: String) throws(ConfigureError) {
        DebugLayer.install()
        let options: DebugOptions
        do { options = try DebugOptions.parse(text, source: "configure") } catch { throw .invalidOptions("\(error)") }
        let life = HeapLifecycle.shared
        sg_mutex_lock(&life.pointee.initMutex)
        defer { sg_mutex_unlock(&life.pointee.initMutex) }
        guard sg_atomic_load_u64(&life.pointee.state) == 0 else { throw .heapAlreadyInUse }
        OptionsState.shared.pointee.options = options
        OptionsState.shared.pointee.configured = true
    }

    /// Parses an option string into cache flags (for debug object caches).
    package static func flags(_ text: String) throws(ConfigureError) -> UInt32 {
        do { return try DebugOptions.parse(text, source: "ObjectCache").flags.rawValue } catch { throw .invalidOptions("\(error)") }
    }

    /// Tag bytes for a cache with `flags`.
    package static func tagBytes(for flags: UInt32) -> Int {
        flags == 0 ? 0 : TagLayout(flags: DebugFlags(rawValue: flags)).totalBytes
    }

    package static func verifyHeap() -> Int { HeapVerifier.verifyAll() }
    package static func findLeaks() -> Int { LeakFinder.run() }
    package static var reportCount: UInt64 { ReportOutput.state.pointee.reportCount }
    package static func setReportFileDescriptor(_ fd: Int32) { ReportOutput.reportFD = fd }

    /// Why the library could not create `path` as an output file (design §11's rules, as at
    /// its start-up), or nil when it can; a file created by the check is left empty.
    package static func outputFileProblem(_ path: String) -> String? {
        var error: Int32 = 0
        guard let fd = path.withCString({ Platform.createFile($0, error: &error) }) else {
            return String(cString: Platform.fileErrorText(error))
        }
        Platform.close(fd)
        return nil
    }

    /// What is wrong with a suppressions file ("line N: REASON", "cannot read it: …"), or nil.
    package static func suppressionsProblem(_ path: String) -> String? {
        var error: Int32 = 0
        guard let (memory, count, mapped) = path.withCString({ Platform.readFile($0, error: &error) }) else {
            return "cannot read it: " + (error == EINVAL ? "not a regular file" : String(cString: strerror(error)))
        }
        defer { Platform.unmap(memory, mapped) }
        var found = 0
        let problem = Suppressions.parse(memory, count: count, into: nil, found: &found)
        guard let problem else { return nil }
        return "line \(problem.line): \(problem.reason)"
    }
}

extension DebugLayer {
    /// Heap set-up phase 2 (debug): exit handler for leaks and the log.
    static func setUpExitWork() {
        let options = OptionsState.shared.pointee.options
        let flags = options.flags
        FlightRecorder.writeMaps()
        ReportOutput.setUp()
        if options.hasSuppressions { options.withSuppressionsPath { Suppressions.load($0) } }
        if flags.contains(.audit) { TransactionLog.setUp() }
        if !flags.isEmpty { FaultExplainer.install() }
        if !flags.isEmpty { Watchpoints.setUp(options: options) }
        if !flags.isEmpty && !DebugState.shared.pointee.exitWorkRegistered {
            DebugState.shared.pointee.exitWorkRegistered = true
            // on_exit, not atexit: the handler needs the exit status (exitcode=N).
            // Through sg_marked_exit_handler: the leak scan then reads this thread's stack
            // from the handler's entry up, not through its own frames (LeakFinder.swift).
            let handler: @convention(c) (Int32) -> Void = { status in DebugLayer.atExit(status: status) }
            on_exit(sg_marked_exit_handler, unsafeBitCast(handler, to: UnsafeMutableRawPointer.self))
        }
    }

    /// At exit: a heap verification, the leak check, the log, the summary; then, when the program would exit 0
    /// but something was reported, the `exitcode` status (not under `slabguard run`,
    /// which applies it to the run as a whole).  glibc runs the rest of the exit
    /// handlers (and flushes stdio) for an exit called from one, with the last status.
    static func atExit(status: Int32) {
        let options = OptionsState.shared.pointee.options
        // What a stale pointer wrote into a freed buffer still waiting (in quarantine or
        // on a free list), or an overrun into a neighbour, is found now, not never.
        if !options.flags.isDisjoint(with: [.deadbeef, .redzone]) { _ = HeapVerifier.verifyAll(detected: .exit) }
        let sandboxed = sg_system_calls_filtered() != 0
        if options.flags.contains(.leaks) {
            if !sandboxed { LeakFinder.run() } else { noteSandboxedExit() }
        }
        FlightRecorder.finish(status: status, sandboxed: sandboxed)
        ReportOutput.writeSummaryTakingLock(json: options.flags.contains(.jsonReport))
        if status == 0 && ReportOutput.anyReported && ReportOutput.setsExitStatus && options.effectiveExitCode != 0 {
            exit(Int32(options.effectiveExitCode))
        }
    }

    /// The program sandboxed itself (seccomp): the scan's system calls (listing threads,
    /// stopping them, reading the memory map) could kill it with SIGSYS, so no scan, one line
    /// straight to standard error (a report channel needs a socket).
    private static func noteSandboxedExit() {
        var line = RawLine()
        line.append("slabguard: the leak check at exit was skipped: a seccomp filter\n")
        line.flush(to: 2)
        line.append("  is in force, and the check's system calls could kill the process\n")
        line.flush(to: 2)
    }
}
