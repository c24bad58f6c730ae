// An audit entry — one half of a buffer's audit record (Buffer/AuditRecord.swift) and the
// shape of a transaction: which thread, when, from which stack (a StackDepot id).  It
// is here, below the buffer's metadata, because the transaction log records it too.

import CSlabguardShim

/// One half of an audit record: stack id | thread | time.
struct AuditEntry {
    let base: UnsafeMutableRawPointer

    var stackId: UInt32 { base.load(as: UInt32.self) }
    var thread: UInt32 { base.load(fromByteOffset: 4, as: UInt32.self) }
    var time: UInt64 { base.load(fromByteOffset: 8, as: UInt64.self) }
    /// The stack's frames, from the depot.
    var stack: UnsafeMutablePointer<UInt> { StackDepot.frames(stackId).frames }
    var frames: Int { StackDepot.frames(stackId).count }
    var depth: Int { StackDepot.maxDepth }
    var isRecorded: Bool { time != 0 }

    func record(thread: UInt32, time: UInt64, stackId: UInt32) {
        base.storeBytes(of: stackId, as: UInt32.self)
        base.storeBytes(of: thread, toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: time, toByteOffset: 8, as: UInt64.self)
    }

    func clear() { record(thread: 0, time: 0, stackId: 0) }
}

extension AuditEntry {
    /// Fills the entry with the current thread, the time (a clock reading the caller made
    /// for the same call, or now) and stack (interned in the depot);
    /// the number of frames captured, left in the thread's stack scratch.  Never inlined:
    /// `skip` counts the frames above this one that are slabguard's.
    @discardableResult
    @inline(never) func recordCurrentStack(skip: Int, time: UInt64 = AuditClock.now()) -> Int {
        let depth = min(OptionsState.shared.pointee.options.auditDepth, Int(SG_STACK_SCRATCH_FRAMES))
        // The thread's scratch: a signal handler allocating in the middle of this would
        // reuse it, which costs that one record its stack at worst.
        let buffer = sg_stack_scratch().unsafelyUnwrapped
        let n = StackUnwinder.captureFromProgram(into: buffer, capacity: depth, skip: skip)
        let id = StackDepot.intern(buffer, n)
        record(thread: AuditThread.id(), time: time, stackId: id)
        return n
    }
}
