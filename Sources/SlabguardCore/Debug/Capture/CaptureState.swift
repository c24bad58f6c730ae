// The capture part's state: the audit clock's source and start, when a forked child
// was forked, and the last libraries unloaded — the "when" and "by whom" that every
// record above is stamped with.  Its own region of the static map (`debug_capture`).

import CSlabguardShim
import Glibc

struct CaptureState {
    var clock = AuditClockState()
    var forkTicks: UInt64 = 0           // in a forked child: when the fork happened (AuditClock ticks)
    var unloads = UnloadHistory.Table()

    @inline(__always) static var shared: UnsafeMutablePointer<CaptureState> {
        StateRegion.debugCapture.bound(to: CaptureState.self)
    }
}

/// The kernel thread id of the calling thread, cached in a thread-local slot (read from
/// glibc's thread descriptor, not a system call: see sg_gettid).
enum AuditThread {
    @inline(__always) static func id() -> UInt32 {
        var tid = sg_thread_id()
        if tid == 0 { tid = sg_gettid(); sg_set_thread_id(tid) }
        return tid
    }
}

/// The last 32 libraries unloaded (start address, audit-clock time), for the crash
/// explainer's "unloaded at".
enum UnloadHistory {
    struct Table {
        var entries = FixedBytes512()   // 32 × (start, ticks)
        var next = 0
    }

    @inline(__always) private static var table: UnsafeMutablePointer<Table> {
        UnsafeMutableRawPointer(CaptureState.shared.field(\.unloads)).assumingMemoryBound(to: Table.self)
    }

    @inline(__always) private static var words: UnsafeMutablePointer<UInt64> {
        UnsafeMutableRawPointer(table).assumingMemoryBound(to: UInt64.self)   // entries is the first field
    }

    /// When the library starting at `start` was unloaded (ticks), or nil.
    static func unloadTime(start: UInt) -> UInt64? {
        for i in 0..<32 where words[2 * i] == UInt64(start) && words[2 * i + 1] != 0 { return words[2 * i + 1] }
        return nil
    }

    static func note(start: UInt) {
        let t = table
        let i = t.pointee.next & 31
        words[2 * i] = UInt64(start)
        words[2 * i + 1] = AuditClock.now()
        t.pointee.next += 1
    }
}
