// Quarantine — freed buffers of debug caches wait, poisoned, until `quarantine=SIZE`
// bytes are queued (`default` brings a small one); the oldest then leave, their free
// pattern verified, and go back to their caches.  A use-after-free write to a buffer in
// quarantine is therefore caught even when the buffer would otherwise have been handed
// out again at once.
//
// Two levels, so that a free does not take a shared lock: each thread first collects
// its freed chunks in a batch of its own (SG_QUARANTINE_BATCH, thread-local, no lock);
// a full batch joins the shared FIFO in one lock acquisition, which also detaches the
// oldest chunks beyond the limit, verified and freed after the lock is dropped.  A
// thread's batch joins the FIFO when the thread exits (ThreadRegistry's exit hook).
//
// Locking: quarantineMutex guards the FIFO (linked through the tags' link words).

import CSlabguardShim
import Glibc

/// The checks' state: the quarantine FIFO (its own region of the static map, `debug_checks`).
struct ChecksState {
    var quarantineMutex = pthread_mutex_t()
    var quarantineHead: UnsafeMutableRawPointer? = nil   // oldest chunk
    var quarantineTail: UnsafeMutableRawPointer? = nil
    var quarantineBytes = 0
    var quarantineCount = 0
    var operationCount: UInt64 = 0      // for verify=N (HeapVerifier.countOperation)

    @inline(__always) static var shared: UnsafeMutablePointer<ChecksState> {
        StateRegion.debugChecks.bound(to: ChecksState.self)
    }
}

enum Quarantine {
    static func hold(_ chunk: UnsafeMutableRawPointer, cache: UnsafeMutablePointer<CacheCore>, tag: BufferTag) {
        let n = sg_quarantine_count()
        // Only the default heap's caches (ids 0…72, never destroyed) wait in a thread's
        // batch: a cache that can be destroyed must find all its buffers in the FIFO.
        let batched = cache.pointee.id >= 0 && Int(cache.pointee.id) < SizeClasses.count
        if batched && n < UInt32(SG_QUARANTINE_BATCH) && sg_thread_state() == UInt32(SG_THREAD_LIVE) {
            sg_set_quarantine_entry(n, chunk, cache)
            sg_set_quarantine_count(n + 1)
            return
        }
        spill(first: chunk, cache: cache)
    }

    /// The thread is exiting (or forked): its batch joins the shared FIFO.
    static func flushThreadBatch() {
        guard sg_quarantine_count() > 0 else { return }
        spill(first: nil, cache: nil)
    }

    /// Appends this thread's batch (then `first`, if any) to the FIFO, and releases the
    /// oldest chunks beyond the limit.
    private static func spill(first: UnsafeMutableRawPointer?, cache firstCache: UnsafeMutablePointer<CacheCore>?) {
        let state = ChecksState.shared
        // A cache given `quarantine=SIZE` by its own debug string, with no process-wide
        // quarantine set, uses a 4 MiB queue.
        let configured = OptionsState.shared.pointee.options.quarantineBytes
        let limit = configured > 0 ? configured : 4 << 20
        // Chain the batch (oldest first) and `first` through their link words.
        var head: UnsafeMutableRawPointer? = nil
        var tail: UnsafeMutableRawPointer? = nil
        var tailTag: BufferTag? = nil
        var bytes = 0
        var count = 0
        let n = sg_quarantine_count()
        var i: UInt32 = 0
        while i <= n {
            let chunk: UnsafeMutableRawPointer?
            let cache: UnsafeMutablePointer<CacheCore>?
            if i < n {
                chunk = sg_quarantine_chunk(i)
                cache = sg_quarantine_cache(i)?.assumingMemoryBound(to: CacheCore.self)
            } else {
                chunk = first
                cache = firstCache
            }
            i += 1
            guard let chunk, let cache else { continue }
            let tag = BufferTag(base: chunk + cache.pointee.tagOffset)
            tag.link = nil
            if let t = tailTag { t.link = chunk } else { head = chunk }
            tail = chunk
            tailTag = tag
            bytes += cache.pointee.chunkSize
            count += 1
        }
        // The batch's slots are cleared, not just counted out: a stale slot would point at
        // a chunk long since handed out again, and the leak scan reads this thread-local
        // storage as a root (it hid a leak of gcc's that Valgrind reports).
        var k: UInt32 = 0
        while k < n { sg_set_quarantine_entry(k, nil, nil); k += 1 }
        sg_set_quarantine_count(0)
        guard let head, let tail else { return }
        // Append, and detach the oldest beyond the limit, in one critical section.
        sg_mutex_lock(&state.pointee.quarantineMutex)
        if let t = state.pointee.quarantineTail {
            BufferTag(base: t + tagOffset(of: t)).link = head
        } else {
            state.pointee.quarantineHead = head
        }
        state.pointee.quarantineTail = tail
        state.pointee.quarantineBytes += bytes
        state.pointee.quarantineCount += count
        var leaving: UnsafeMutableRawPointer? = nil
        var leavingTail: UnsafeMutableRawPointer? = nil
        while state.pointee.quarantineBytes > limit, let oldest = state.pointee.quarantineHead {
            let oldestCache = cacheOf(oldest)
            let oldestTag = BufferTag(base: oldest + oldestCache.pointee.tagOffset)
            state.pointee.quarantineHead = oldestTag.link
            if state.pointee.quarantineHead == nil { state.pointee.quarantineTail = nil }
            state.pointee.quarantineBytes -= oldestCache.pointee.chunkSize
            state.pointee.quarantineCount -= 1
            oldestTag.link = nil
            if let t = leavingTail { BufferTag(base: t + tagOffset(of: t)).link = oldest } else { leaving = oldest }
            leavingTail = oldest
        }
        sg_mutex_unlock(&state.pointee.quarantineMutex)
        releaseAll(leaving)
    }

    /// A cache is being destroyed: its buffers leave the FIFO (verified) first.
    static func purge(_ cache: UnsafeMutablePointer<CacheCore>) {
        let state = ChecksState.shared
        var leaving: UnsafeMutableRawPointer? = nil
        var leavingTail: UnsafeMutableRawPointer? = nil
        sg_mutex_lock(&state.pointee.quarantineMutex)
        var previous: UnsafeMutableRawPointer? = nil
        var c = state.pointee.quarantineHead
        while let chunk = c {
            let owner = cacheOf(chunk)
            let tag = BufferTag(base: chunk + owner.pointee.tagOffset)
            c = tag.link
            guard owner == cache else { previous = chunk; continue }
            if let p = previous { BufferTag(base: p + tagOffset(of: p)).link = c } else { state.pointee.quarantineHead = c }
            if state.pointee.quarantineTail == chunk { state.pointee.quarantineTail = previous }
            state.pointee.quarantineBytes -= owner.pointee.chunkSize
            state.pointee.quarantineCount -= 1
            tag.link = nil
            if let t = leavingTail { BufferTag(base: t + cache.pointee.tagOffset).link = chunk } else { leaving = chunk }
            leavingTail = chunk
        }
        sg_mutex_unlock(&state.pointee.quarantineMutex)
        releaseAll(leaving)
    }

    /// Releases a chain of chunks detached from the FIFO (linked through their tags).
    private static func releaseAll(_ first: UnsafeMutableRawPointer?) {
        var leaving = first
        while let chunk = leaving {
            let cache = cacheOf(chunk)
            let tag = BufferTag(base: chunk + cache.pointee.tagOffset)
            leaving = tag.link
            release(chunk, cache: cache, tag: tag)
        }
    }

    /// Returns a buffer leaving quarantine to its cache, unverified: it is verified once,
    /// when it leaves the magazine layer for the user again (DebugAllocator.allocate), as
    /// kmem's debug caches do, or by the heap verification at exit if it never does.
    /// (Verifying here too read every freed buffer twice, the first time long after it
    /// left the cache: `default`'s most expensive memory traffic.)
    private static func release(_ chunk: UnsafeMutableRawPointer, cache: UnsafeMutablePointer<CacheCore>, tag: BufferTag) {
        CacheOps.free(cache, chunk)
    }

    /// Whether `chunk` is waiting in quarantine (reports say so).
    static func contains(_ chunk: UnsafeRawPointer) -> Bool {
        var i: UInt32 = 0
        while i < sg_quarantine_count() {   // this thread's batch (other threads' are out of sight)
            if UnsafeRawPointer(sg_quarantine_chunk(i)) == chunk { return true }
            i += 1
        }
        let state = ChecksState.shared
        sg_mutex_lock(&state.pointee.quarantineMutex)
        defer { sg_mutex_unlock(&state.pointee.quarantineMutex) }
        var c = state.pointee.quarantineHead
        while let x = c {
            if UnsafeRawPointer(x) == chunk { return true }
            c = BufferTag(base: x + tagOffset(of: x)).link
        }
        return false
    }

    @inline(__always) private static func cacheOf(_ chunk: UnsafeRawPointer) -> UnsafeMutablePointer<CacheCore> {
        CacheOps.owner(of: chunk)!.objectCache
    }

    @inline(__always) private static func tagOffset(of chunk: UnsafeRawPointer) -> Int {
        cacheOf(chunk).pointee.tagOffset
    }
}
