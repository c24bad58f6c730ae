// Thread registry: which threads hold magazines, so that a thread's magazines
// go back to the depots when it exits (a pthread key destructor), a destroyed
// cache can collect the magazines other threads hold for it, and a forked
// child can reclaim the magazines of threads that do not exist in it.
//
// A thread registers on its first magazine miss.  Before the key exists (early
// heap set-up) and after its destructor ran (thread-local teardown), a thread
// has no magazines and uses the slab layer directly.
//
// Locking: `mutex` guards the record list; it is taken before any depot lock.

import CSlabguardShim
import Glibc

struct ThreadRecord {
    var slots: UnsafeMutablePointer<sg_magazine_slot>
    var next: UnsafeMutablePointer<ThreadRecord>?
    var previous: UnsafeMutablePointer<ThreadRecord>?
}

struct ThreadRegistry {
    var mutex = pthread_mutex_t()
    var first: UnsafeMutablePointer<ThreadRecord>? = nil
    var count = 0
    var key = pthread_key_t()
    var keyReady = false
    var pool = FixedPool(recordSize: MemoryLayout<ThreadRecord>.stride)
    /// Called first when a thread exits, installed by a layer above (the debug layer hands
    /// the thread's quarantine batch on).
    var exitHook: (@convention(c) () -> Void)? = nil
    /// Magazine id → cache (MagazineIds), SG_MAX_CACHES entries.
    var cachesById: UnsafeMutablePointer<UnsafeMutablePointer<MagazineCache>?>? = nil

    @inline(__always) static var shared: UnsafeMutablePointer<ThreadRegistry> { StateRegion.threadRegistry.bound(to: ThreadRegistry.self) }
    static var lock: RawLock { RawLock(UnsafeMutableRawPointer(shared).assumingMemoryBound(to: pthread_mutex_t.self)) }

    /// Creates the thread-exit key (heap set-up, phase 2).
    static func setUp() {
        let r = shared
        r.pointee.pool = FixedPool(recordSize: MemoryLayout<ThreadRecord>.stride)
        if pthread_key_create(&r.pointee.key, { record in
            if let record { ThreadRegistry.threadExited(record.assumingMemoryBound(to: ThreadRecord.self)) }
        }) == 0 {
            r.pointee.keyReady = true
        }
    }

    /// The calling thread's magazine slot for `cache`, registering the thread on first
    /// use; nil when the thread cannot use magazines now.
    ///
    /// A thread's first allocator call can come after its key destructors have run (glibc
    /// frees thread state in __libc_thread_freeres): registered then, it stays listed after
    /// it ends, its slots in a stack glibc may cache, reuse or unmap (a forked child once
    /// faulted reading them: the false `malloc re-entered` abort of CPython's test_threading).
    /// So a record is never trusted to be live: a new thread whose slots are a listed
    /// record's replaces it, and every walk of other threads' slots reads only mapped ones.
    @inline(__always) static func slot(for cache: UnsafeMutablePointer<MagazineCache>) -> UnsafeMutablePointer<sg_magazine_slot>? {
        let id = Int(cache.pointee.id)
        if id < 0 { return nil }
        let state = sg_thread_state()
        if state == UInt32(SG_THREAD_LIVE) { return sg_thread_slots() + id }
        if state == UInt32(SG_THREAD_NEW) && register() { return sg_thread_slots() + id }
        return nil
    }

    /// Whether a record's slots are still mapped memory (see `slot(for:)`).
    static func slotsMapped(_ record: UnsafeMutablePointer<ThreadRecord>) -> Bool {
        Platform.isMapped(UnsafeRawPointer(record.pointee.slots), bytes: Int(SG_MAX_CACHES) * MemoryLayout<sg_magazine_slot>.stride)
    }

    private static func register() -> Bool {
        let r = shared
        guard r.pointee.keyReady else { return false }
        lock.lock()
        // A record with our slots belongs to a thread that ended without its key destructor
        // (registered too late for it): its TLS is ours now, its magazines gone with it.
        var stale = r.pointee.first
        while let x = stale {
            stale = x.pointee.next
            if x.pointee.slots == sg_thread_slots() { unlink(x) }
        }
        guard let raw = r.pointee.pool.allocate() else { lock.unlock(); return false }
        let record = raw.bindMemory(to: ThreadRecord.self, capacity: 1)
        record.initialize(to: ThreadRecord(slots: sg_thread_slots(), next: r.pointee.first, previous: nil))
        if let f = r.pointee.first { f.pointee.previous = record }
        r.pointee.first = record
        r.pointee.count += 1
        lock.unlock()
        sg_set_thread_record(raw)
        sg_set_thread_state(UInt32(SG_THREAD_LIVE))
        pthread_setspecific(r.pointee.key, raw)
        return true
    }

    /// Key destructor: the thread is exiting.  Later allocations on it (other
    /// destructors) go straight to the slab layer.
    static func threadExited(_ record: UnsafeMutablePointer<ThreadRecord>) {
        if let hook = shared.pointee.exitHook { hook() }
        sg_set_thread_state(UInt32(SG_THREAD_DEAD))
        lock.lock()
        flushAll(record.pointee.slots)
        unlink(record)
        lock.unlock()
        sg_set_thread_record(nil)
    }

    /// Hands every magazine in `slots` to the depots (registry lock held).
    static func flushAll(_ slots: UnsafeMutablePointer<sg_magazine_slot>) {
        for id in 0..<Int(SG_MAX_CACHES) {
            let slot = slots + id
            if slot.pointee.loaded == nil && slot.pointee.previous == nil
                && slot.pointee.allocations == 0 && slot.pointee.frees == 0 { continue }
            guard let cache = MagazineIds.cache(id: id) else { slot.load(nil); continue }
            Depot.flush(slot, of: cache)
        }
    }

    private static func unlink(_ record: UnsafeMutablePointer<ThreadRecord>) {
        let r = shared
        if let p = record.pointee.previous { p.pointee.next = record.pointee.next } else { r.pointee.first = record.pointee.next }
        if let n = record.pointee.next { n.pointee.previous = record.pointee.previous }
        r.pointee.count -= 1
        r.pointee.pool.free(UnsafeMutableRawPointer(record))
    }

    /// Collects every thread's magazines for `cache` (cache destroy; registry lock held by caller).
    static func flushEverywhere(_ cache: UnsafeMutablePointer<MagazineCache>) {
        let id = Int(cache.pointee.id)
        guard id >= 0 else { return }
        var record = shared.pointee.first
        while let r = record {
            if slotsMapped(r) { Depot.flush(r.pointee.slots + id, of: cache) }
            record = r.pointee.next
        }
    }

    /// Visits each live thread's slot for `cache` (statistics; registry lock held by caller).
    static func sumSlots(for cache: UnsafeMutablePointer<MagazineCache>) -> (rounds: Int, allocations: UInt64, frees: UInt64) {
        let id = Int(cache.pointee.id)
        guard id >= 0 else { return (0, 0, 0) }
        var rounds = 0
        var allocations: UInt64 = 0, frees: UInt64 = 0
        var record = shared.pointee.first
        while let r = record {
            guard slotsMapped(r) else { record = r.pointee.next; continue }
            let slot = r.pointee.slots + id
            rounds += Int(slot.pointee.count)
            if let p = slot.previousMagazine { rounds += p.pointee.count }
            allocations &+= slot.pointee.allocations
            frees &+= slot.pointee.frees
            record = r.pointee.next
        }
        return (rounds, allocations, frees)
    }

    /// In a forked child only the forking thread exists: reclaim the magazines of all
    /// others (their slots were copied into the child with the rest of memory).
    static func reclaimAfterFork() {
        let r = shared
        let me = sg_thread_record()
        var record = r.pointee.first
        while let rec = record {
            record = rec.pointee.next
            if UnsafeMutableRawPointer(rec) == me { continue }
            if slotsMapped(rec) { flushAll(rec.pointee.slots) }   // a thread that ended unseen (see `slot(for:)`)
            unlink(rec)
        }
    }
}
