// Leak checks on demand — `slabguard leaks PID [--new]` (design §12): the running process
// performs the exit check's scan now and hands back its findings, without ptrace from the
// outside and without a signal.  The request reaches it through its flight recorder's
// header (the reader writes `leakFlags`, then `leakRequest` = `leakAnswer` + 1, into the
// shared file); the process looks at it when its live statistics are due (at most once a
// second, at the start of a debug allocation or free: DebugLayer.liveWork), and serves it
// there only when that is safe:
//   - the thread holds no allocator lock and is not inside a checked allocation or free
//     (a signal handler's malloc): the scan takes the same locks as the exit check, in
//     the same order; otherwise the next call serves it;
//   - one thread serves at a time (`serving`);
//   - a seccomp filter: not run (the scan's system calls could kill the process), said in
//     the answer's status; fast mode keeps no tags: said too.
// The other threads are stopped as for the exit check (sg_world.c: a ptrace helper task
// of the process itself, signals where that is refused), so threads inside malloc,
// forking or blocking signals are handled as they are at exit.  The findings are the
// ordinary leak reports, written to the log only (ReportState.onDemandThread: not to the
// program's standard error, not tallied, not folded into the exit check's repeats);
// with `--new`, buffers an earlier check listed (a bit in their audit record) are left
// out.  A process that makes no allocator call never answers: the reader times out.

import CSlabguardShim
import Glibc
import SlabguardFormats

extension LeakFinder {
    private static var serving: UnsafeMutablePointer<UInt64> {
        UnsafeMutableRawPointer(StateRegion.debugLeaks.bound(to: LeaksState.self).field(\.serving)).assumingMemoryBound(to: UInt64.self)
    }

    /// Serves a pending request, if there is one and this is a safe place.
    static func serveRequest() {
        guard let base = FlightRecorder.state.pointee.base else { return }
        func word(_ field: Int) -> UnsafeMutablePointer<UInt64> { (base + field).assumingMemoryBound(to: UInt64.self) }
        let request = sg_atomic_load_u64(word(RecorderHeader.Field.leakRequest))
        guard request != sg_atomic_load_u64(word(RecorderHeader.Field.leakAnswer)) else { return }
        guard sg_held_lock_count() == 0, sg_debug_depth() == 0, sg_atomic_cas_u64(serving, 0, 1) != 0 else { return }
        defer { sg_atomic_store_u64(serving, 0) }
        let newOnly = sg_atomic_load_u64(word(RecorderHeader.Field.leakFlags)) & LeakRequest.newOnly != 0
        let start = word(RecorderHeader.Field.reportsUsed).pointee
        var status = LeakRequest.done
        var found = 0
        if sg_system_calls_filtered() != 0 {
            status = LeakRequest.sandboxed
        } else if sg_debug_flags() == 0 {
            status = LeakRequest.noTags
        } else {
            let reports = ReportOutput.state
            let began = AuditClock.monotonicNanoseconds()
            reports.pointee.onDemandThread = AuditThread.id()
            found = run(onDemand: OnDemand(newOnly: newOnly))
            reports.pointee.onDemandThread = 0
            word(RecorderHeader.Field.leakNanoseconds).pointee = AuditClock.monotonicNanoseconds() &- began
        }
        word(RecorderHeader.Field.leakReportsStart).pointee = start
        word(RecorderHeader.Field.leakReportsEnd).pointee = word(RecorderHeader.Field.reportsUsed).pointee
        word(RecorderHeader.Field.leakFound).pointee = UInt64(max(0, found))
        word(RecorderHeader.Field.leakStatus).pointee = status
        sg_atomic_store_u64(word(RecorderHeader.Field.leakAnswer), request)
    }
}
