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
        DebugState.shared.pointee.options = options
        DebugState.shared.pointee.configured = true
    }

    /// Parses an option string into cache flags (for debug object caches).
    package static func flags(_ text: String) throws(ConfigureError) -> UInt32 {
        do { return try DebugOptions.parse(text, source: "ObjectCache").flags.rawValue } catch { throw .invalidOptions("\(error)") }
    }

    /// Tag bytes for a cache with `flags`.
    package static func tagBytes(for flags: UInt32) -> Int {
        flags == 0 ? 0 : DebugLayer.layout(for: DebugFlags(rawValue: flags)).totalBytes
    }

    package static func verifyHeap() -> Int { HeapVerifier.verifyAll() }
    package static func findLeaks() -> Int { LeakFinder.run() }
    package static var reportCount: UInt64 { DebugState.shared.pointee.reportCount }
    package static func setReportFileDescriptor(_ fd: Int32) { DebugState.shared.pointee.reportFD = fd }
}

extension DebugLayer {
    /// Heap set-up phase 2 (debug): exit handler for leaks and the log.
    static func setUpExitWork() {
        let state = DebugState.shared
        let flags = state.pointee.options.flags
        openLogFile()
        if flags.contains(.audit) { TransactionLog.setUp(depth: state.pointee.options.auditDepth) }
        if !flags.isEmpty { FaultExplainer.install() }
        if (flags.contains(.leaks) || flags.contains(.log)) && !state.pointee.leakCheckRegistered {
            state.pointee.leakCheckRegistered = true
            atexit { DebugLayer.atExit() }
        }
    }

    static func atExit() {
        let flags = DebugState.shared.pointee.options.flags
        if flags.contains(.leaks) { LeakFinder.run() }
        writeLogIfRequested()
    }

    /// log=PATH: writes the transaction log (at exit, and before an abort).
    static func writeLogIfRequested() {
        let state = DebugState.shared
        guard let fd = state.pointee.logFD else { return }
        _ = ftruncate(fd, 0)
        _ = lseek(fd, 0, SEEK_SET)
        TransactionLog.write(to: fd)
    }
}
