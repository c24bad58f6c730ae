// Transaction log — a bounded ring of every allocation and free in debug
// caches with `audit` (kmem's transaction log): thread, time, buffer, size,
// cache and stack.  Written lock-free: each thread claims a block of
// SG_LOG_BLOCK slot numbers with one atomic add on the shared counter (not one
// per transaction: that counter was every thread's hottest cache line), fills
// them in order, and stamps each slot's sequence number last, so a reader
// skips slots being rewritten, and slots a thread claimed but never wrote.  The
// ring holds a power of two of entries (a slot is `sequence & mask`, no divide).
// Sequence numbers order one thread's transactions exactly; across threads
// they are ordered to within a block, and the times order them.  With
// `log=PATH` the ring is a region of the flight recorder's file
// (Debug/FlightRecorder), written as the program runs.

import CSlabguardShim
import Glibc
import SlabguardFormats

enum TransactionLog {
    struct State {
        var ring: UnsafeMutableRawPointer? = nil
        var capacity = 0
        var next: UInt64 = 0
    }

    static let ringBytes = 4 << 20
    /// The entry's layout (and TransactionKind) is SlabguardFormats' RingEntry.
    static var entryBytes: Int { RingEntry.bytes }

    @inline(__always) static var state: UnsafeMutablePointer<State> {
        StateRegion.transactionLog.bound(to: State.self)
    }

    /// Maps the ring (heap set-up, when `audit` is on).
    static func setUp() {
        let s = state
        if let ring = FlightRecorder.ring {   // log=PATH: in the file
            s.pointee.capacity = ring.entries
            s.pointee.ring = ring.memory
            return
        }
        s.pointee.capacity = ringBytes / entryBytes
        s.pointee.ring = Platform.map(ringBytes)
    }

    static func record(_ kind: TransactionKind, cache: UnsafeMutablePointer<CacheCore>, buffer: UnsafeMutableRawPointer,
                       size: Int, audit: AuditEntry) {
        let s = state
        guard let ring = s.pointee.ring else { return }
        let next = sg_log_next().unsafelyUnwrapped, end = sg_log_end().unsafelyUnwrapped
        if next.pointee == end.pointee {
            next.pointee = sg_atomic_add_u64(&s.pointee.next, UInt64(SG_LOG_BLOCK))
            end.pointee = next.pointee &+ UInt64(SG_LOG_BLOCK)
            FlightRecorder.sampleClock()
        }
        let index = next.pointee
        next.pointee = index &+ 1
        let entry = ring + Int(index & UInt64(s.pointee.capacity - 1)) * entryBytes
        entry.storeBytes(of: 0, toByteOffset: RingEntry.Field.sequence, as: UInt64.self)   // being written
        entry.storeBytes(of: kind.rawValue << RingEntry.kindShift | UInt64(audit.thread), toByteOffset: RingEntry.Field.kindThread, as: UInt64.self)
        entry.storeBytes(of: audit.time, toByteOffset: RingEntry.Field.time, as: UInt64.self)
        entry.storeBytes(of: UInt64(UInt(bitPattern: buffer)), toByteOffset: RingEntry.Field.address, as: UInt64.self)
        entry.storeBytes(of: UInt64(size), toByteOffset: RingEntry.Field.size, as: UInt64.self)
        entry.storeBytes(of: UInt64(UInt(bitPattern: cache)), toByteOffset: RingEntry.Field.cache, as: UInt64.self)
        entry.storeBytes(of: UInt64(audit.stackId), toByteOffset: RingEntry.Field.stackId, as: UInt64.self)
        sg_atomic_store_u64((entry + RingEntry.Field.sequence).assumingMemoryBound(to: UInt64.self), index &+ 1)
    }
}
