// The stack depot — every distinct stack stored once, named by a 32-bit id (as ASan's
// StackDepot and kmem's shared bufctl stacks): audit records and the transaction log
// hold ids, not frames, so memory grows with the number of distinct stacks, not with
// the number of buffers or transactions.
//
// Storage: one reservation (MAP_NORESERVE, touched as it fills) of 8-byte words.  A
// stack is [next id | hash] [depth] [4 counters] [frames...]; its id is its word index
// (0: none).  The counters (live bytes and buffers, allocations, bytes allocated) are
// charged by every debug allocation from the stack and discharged by its free, through
// a small per-thread table of pending changes moved with atomic adds every 64 changes:
// "who holds the memory" at any moment, and in the log after the process.
// A hash table of 2^19 buckets (one word each: the id of the newest stack in that
// bucket) chains stacks through `next`.
//
// Lock-free: `intern` looks the stack up; on a miss it claims words with one atomic
// add, writes the stack, then publishes it by a compare-and-swap on the bucket head
// (retrying on a lost race).  Two threads interning the same new stack at once may
// both store it (two ids, the same frames): rare and harmless.  Readers follow ids
// published with release ordering, so a stack they find is complete.  No lock, so no
// place in the lock order, and it may run anywhere malloc runs.  Full storage: 0
// (the stack is not recorded).

import CSlabguardShim
import Glibc
import SlabguardFormats

struct StackDepotState {
    var words: UnsafeMutablePointer<UInt64>? = nil     // storage; word 0 unused
    var buckets: UnsafeMutablePointer<UInt64>? = nil
    var used: UInt64 = 0                                // next free word (setUp: 1, id 0 is none)
    var stacks: UInt64 = 0
    var setUpState: UInt64 = 0                          // 0 not yet, 1 being set up, 2 done
}

enum StackDepot {
    // The storage's layout is SlabguardFormats' (the flight recorder's file holds it).
    static var storageWords: Int { StackDepotFormat.storageWords }   // 64 MiB of frames
    static var bucketCount: Int { StackDepotFormat.bucketCount }     // 4 MiB of bucket words
    /// Words of storage used so far (a forked child copies that much of the log's depot).
    static var wordsUsed: Int { Int(sg_atomic_load_u64(&state.pointee.used)) }
    static var maxDepth: Int { StackDepotFormat.maxDepth }

    @inline(__always) static var state: UnsafeMutablePointer<StackDepotState> {
        UnsafeMutableRawPointer(StateRegion.debugAudit.bound(to: StackDepotState.self))
            .assumingMemoryBound(to: StackDepotState.self)
    }

    /// Reserves the storage (heap set-up, with `audit` or guards).
    static func setUp() {
        let s = state
        // Once, even when threads race here (in-process users call it directly): the
        // loser waits for the winner, so no thread resets `used` under another's records.
        if sg_atomic_load_u64(&s.pointee.setUpState) == 2 { return }
        guard sg_atomic_cas_u64(&s.pointee.setUpState, 0, 1) != 0 else {
            while sg_atomic_load_u64(&s.pointee.setUpState) != 2 { sched_yield() }
            return
        }
        defer { sg_atomic_store_u64(&s.pointee.setUpState, 2) }
        guard s.pointee.words == nil else { return }
        // With log=PATH the depot lives in the flight recorder's file, so the log has every stack.
        let storage = FlightRecorder.stackStorage
        guard let words = storage?.words ?? Platform.reserve(storageWords * 8),
              let buckets = storage?.buckets ?? Platform.reserve(bucketCount * 8) else { return }
        s.pointee.used = 1   // the state starts zeroed (static storage): word 0 stays unused
        s.pointee.buckets = buckets.assumingMemoryBound(to: UInt64.self)
        s.pointee.words = words.assumingMemoryBound(to: UInt64.self)
    }

    /// Whether stacks are kept (set up with `audit`, guards or sampling).
    static var isSetUp: Bool { state.pointee.words != nil }

    @inline(__always) static func hash(_ frames: UnsafePointer<UInt>, _ count: Int) -> UInt32 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
        for i in 0..<count {
            h = (h ^ UInt64(frames[i])) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 29
        }
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }

    /// The id of the stack `frames[0..<count]` (stored now if it is new), or 0.
    static func intern(_ frames: UnsafePointer<UInt>, _ count: Int) -> UInt32 {
        guard count > 0, let words = state.pointee.words, let buckets = state.pointee.buckets else { return 0 }
        let depth = min(count, maxDepth)
        let h = hash(frames, depth)
        let bucket = UnsafeMutablePointer<UInt64>(buckets + Int(h) & (bucketCount - 1))
        let head = sg_atomic_load_u64(bucket)
        if let found = find(words, head, h, frames, depth) { return found }
        // New: claim its words and write the stack before publishing it (the counters
        // start at zero: the storage is fresh pages).
        let need = UInt64(StackDepotFormat.framesWord + depth)
        let at = sg_atomic_add_u64(&state.pointee.used, need)
        guard at + need <= UInt64(storageWords) else { return 0 }
        let record = words + Int(at)
        record[StackDepotFormat.depthWord] = UInt64(depth)
        for i in 0..<depth { record[StackDepotFormat.framesWord + i] = UInt64(frames[i]) }
        var expected = head
        while true {
            record[0] = expected << 32 | UInt64(h)
            if sg_atomic_cas_u64(bucket, expected, at) != 0 { break }
            expected = sg_atomic_load_u64(bucket)
            // Someone published meanwhile: maybe this very stack.
            if let found = find(words, expected, h, frames, depth) { return found }
        }
        _ = sg_atomic_add_u64(&state.pointee.stacks, 1)
        return UInt32(truncatingIfNeeded: at)
    }

    private static func find(_ words: UnsafeMutablePointer<UInt64>, _ first: UInt64, _ h: UInt32,
                             _ frames: UnsafePointer<UInt>, _ depth: Int) -> UInt32? {
        var id = first
        var guardSteps = 0
        while id != 0 && guardSteps < 1 << 16 {
            let record = words + Int(id)
            let link = record[0]
            if UInt32(truncatingIfNeeded: link) == h && record[StackDepotFormat.depthWord] == UInt64(depth) {
                var same = true
                for i in 0..<depth where record[StackDepotFormat.framesWord + i] != UInt64(frames[i]) { same = false; break }
                if same { return UInt32(truncatingIfNeeded: id) }
            }
            id = link >> 32
            guardSteps += 1
        }
        return nil
    }

    /// The frames of stack `id` (count 0 for id 0 or an id the depot never gave).
    static func frames(_ id: UInt32) -> (frames: UnsafeMutablePointer<UInt>, count: Int) {
        let empty = UnsafeMutablePointer<UInt>(bitPattern: 8)!
        guard id != 0, let words = state.pointee.words, UInt64(id) < sg_atomic_load_u64(&state.pointee.used) else {
            return (empty, 0)
        }
        let record = words + Int(id)
        let depth = Int(min(record[StackDepotFormat.depthWord], UInt64(maxDepth)))
        return (UnsafeMutableRawPointer(record + StackDepotFormat.framesWord).assumingMemoryBound(to: UInt.self), depth)
    }

    // MARK: - Live bytes per stack

    /// The counters of stack `id`, or nil (none, or an id the depot never gave).
    @inline(__always) private static func counters(_ id: UInt32) -> UnsafeMutablePointer<UInt64>? {
        guard id != 0, let words = state.pointee.words, UInt64(id) < sg_atomic_load_u64(&state.pointee.used) else { return nil }
        return words + Int(id)
    }

    /// A debug buffer of `bytes` was allocated from stack `id`.
    @inline(__always) static func charge(_ id: UInt32, bytes: Int) {
        note(id, bytes: Int64(bytes), buffers: 1, allocations: 1)
    }

    /// A debug buffer of `bytes` allocated from stack `id` was freed.
    @inline(__always) static func discharge(_ id: UInt32, bytes: Int) {
        note(id, bytes: -Int64(bytes), buffers: -1, allocations: 0)
    }

    /// Adds to the thread's pending changes for stack `id` (sg_site_delta): two threads
    /// allocating from one stack would otherwise bounce its counters' cache line on
    /// every call (measured: `default` 29 % slower on two threads).  The shared counters
    /// lag by at most 63 changes per stack and thread; the table at exit and the live
    /// table move the calling thread's changes first, a thread's exit moves its own.
    @inline(__always) private static func note(_ id: UInt32, bytes: Int64, buffers: Int64, allocations: Int64) {
        guard id != 0 else { return }
        let entry = sg_site_deltas().unsafelyUnwrapped + Int(id & UInt32(SG_SITE_DELTAS - 1))
        if entry.pointee.stack != id {
            move(entry)
            entry.pointee.stack = id
        }
        entry.pointee.live_bytes &+= bytes
        entry.pointee.live_buffers &+= buffers
        entry.pointee.allocations &+= allocations
        if bytes > 0 { entry.pointee.allocated_bytes &+= bytes }
        entry.pointee.changes &+= 1
        if entry.pointee.changes >= 64 { move(entry) }
    }

    /// Moves one entry's changes to its stack's shared counters.
    private static func move(_ entry: UnsafeMutablePointer<sg_site_delta>) {
        let e = entry.pointee
        entry.pointee.changes = 0
        entry.pointee.live_bytes = 0
        entry.pointee.live_buffers = 0
        entry.pointee.allocations = 0
        entry.pointee.allocated_bytes = 0
        guard e.changes > 0, let record = counters(e.stack) else { return }
        _ = sg_atomic_add_u64(record + StackDepotFormat.liveBytesWord, UInt64(bitPattern: e.live_bytes))
        _ = sg_atomic_add_u64(record + StackDepotFormat.liveBuffersWord, UInt64(bitPattern: e.live_buffers))
        _ = sg_atomic_add_u64(record + StackDepotFormat.allocationsWord, UInt64(bitPattern: e.allocations))
        _ = sg_atomic_add_u64(record + StackDepotFormat.allocatedBytesWord, UInt64(bitPattern: e.allocated_bytes))
    }

    /// Moves all of the calling thread's pending changes (before a table is written, at
    /// the thread's exit).
    static func moveThreadChanges() {
        let entries = sg_site_deltas().unsafelyUnwrapped
        for i in 0..<Int(SG_SITE_DELTAS) { move(entries + i) }
    }

    struct Site {
        var id: UInt32 = 0
        var liveBytes = 0, liveBuffers = 0, allocations = 0, allocatedBytes = 0
    }

    /// Calls `body` with every stored stack's counters, in id order (a walk of the words
    /// used; a record still being written by another thread ends the walk early).
    static func forEachSite(_ body: (Site) -> Void) {
        guard let words = state.pointee.words else { return }
        let used = Int(sg_atomic_load_u64(&state.pointee.used))
        StackDepotFormat.forEachRecord(used: used, word: { sg_atomic_load_u64(words + $0) }) { id, _ in
            func signed(_ word: Int) -> Int { Int(Int64(bitPattern: sg_atomic_load_u64(words + id + word))) }
            body(Site(id: UInt32(id), liveBytes: signed(StackDepotFormat.liveBytesWord), liveBuffers: signed(StackDepotFormat.liveBuffersWord),
                      allocations: signed(StackDepotFormat.allocationsWord), allocatedBytes: signed(StackDepotFormat.allocatedBytesWord)))
        }
    }

    /// Distinct stacks stored and bytes used (statistics, tests).
    static var statistics: (stacks: Int, bytes: Int) {
        (Int(sg_atomic_load_u64(&state.pointee.stacks)), Int(sg_atomic_load_u64(&state.pointee.used)) * 8)
    }
}
