// Audit time — when each allocation and free happened, cheap enough to take twice per
// malloc/free pair.  clock_gettime cost 11 % of `default`'s time on design §5's workload
// (a vDSO call each time); the time-stamp counter is one instruction.
//
// On the hot path a time is raw ticks: the TSC when it is invariant (constant rate in
// every power state and on every CPU, CPUID says so), else CLOCK_MONOTONIC nanoseconds.
// Ticks become nanoseconds only when shown: elapsed = (t - start) scaled by the rate
// measured between the start and now (one clock_gettime at start, one per conversion),
// so no calibration delay at start-up and the longer the run, the better the rate.
// Reports, the log and the fork mark all use these ticks, so their times agree.

import CSlabguardShim
import Glibc

struct AuditClockState {
    var useTSC = false
    var startTicks: UInt64 = 0
    var startNanoseconds: UInt64 = 0
}

enum AuditClock {
    @inline(__always) static var state: UnsafeMutablePointer<AuditClockState> {
        UnsafeMutableRawPointer(CaptureState.shared.field(\.clock))
            .assumingMemoryBound(to: AuditClockState.self)
    }

    /// Set-up (once, before any audit record): picks the source and marks the start.
    static func start() {
        let s = state
        s.pointee.useTSC = sg_tsc_is_invariant() != 0
        s.pointee.startNanoseconds = monotonicNanoseconds()
        s.pointee.startTicks = s.pointee.useTSC ? sg_rdtsc() : s.pointee.startNanoseconds
    }

    /// Now, in ticks.
    @inline(__always) static func now() -> UInt64 {
        state.pointee.useTSC ? sg_rdtsc() : monotonicNanoseconds()
    }

    /// Nanoseconds from the start to `ticks` (0 for a time before the start).
    static func nanosecondsSinceStart(_ ticks: UInt64) -> UInt64 { Conversion().nanosecondsSinceStart(ticks) }

    /// The tick rate measured now, for converting many times at once (the log).
    struct Conversion {
        let startTicks: UInt64, spanTicks: UInt64, spanNanoseconds: UInt64, useTSC: Bool

        init() {
            let s = AuditClock.state.pointee
            let nowNs = AuditClock.monotonicNanoseconds(), nowTicks = s.useTSC ? sg_rdtsc() : nowNs
            startTicks = s.startTicks
            useTSC = s.useTSC
            spanTicks = nowTicks > s.startTicks ? nowTicks - s.startTicks : 1
            spanNanoseconds = nowNs > s.startNanoseconds ? nowNs - s.startNanoseconds : 0
        }

        func nanosecondsSinceStart(_ ticks: UInt64) -> UInt64 {
            guard ticks > startTicks else { return 0 }
            let elapsed = ticks - startTicks
            guard useTSC else { return elapsed }
            // elapsed · spanNanoseconds / spanTicks, in 128 bits.
            let product = elapsed.multipliedFullWidth(by: spanNanoseconds)
            guard product.high < spanTicks else { return UInt64.max }
            return spanTicks.dividingFullWidth(product).quotient
        }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
