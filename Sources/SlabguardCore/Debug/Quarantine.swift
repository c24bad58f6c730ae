// Quarantine — freed buffers of debug caches wait, poisoned, in one FIFO until
// `quarantine=SIZE` bytes are queued; the oldest then leaves, its free pattern
// verified, and goes back to its cache.  A use-after-free write to a buffer in
// quarantine is therefore caught even when the buffer would otherwise have
// been handed out again at once.
//
// Locking: quarantineMutex guards the FIFO (linked through the tags' link words).

import CSlabguardShim
import Glibc

enum Quarantine {
    static func hold(_ chunk: UnsafeMutableRawPointer, cache: UnsafeMutablePointer<CacheCore>, tag: BufferTag) {
        let state = DebugState.shared
        // A cache given `quarantine=SIZE` by its own debug string, with no process-wide
        // quarantine set, uses a 4 MiB queue.
        let configured = state.pointee.options.quarantineBytes
        let limit = configured > 0 ? configured : 4 << 20
        tag.link = nil
        sg_mutex_lock(&state.pointee.quarantineMutex)
        if let tail = state.pointee.quarantineTail {
            BufferTag(base: tail + tagOffset(of: tail)).link = chunk
        } else {
            state.pointee.quarantineHead = chunk
        }
        state.pointee.quarantineTail = chunk
        state.pointee.quarantineBytes += cache.pointee.chunkSize
        state.pointee.quarantineCount += 1
        // Release the oldest beyond the limit (at most a few per call to bound latency).
        var released = 0
        while state.pointee.quarantineBytes > limit && released < 8, let oldest = state.pointee.quarantineHead {
            let oldestCache = cacheOf(oldest)
            let oldestTag = BufferTag(base: oldest + oldestCache.pointee.tagOffset)
            state.pointee.quarantineHead = oldestTag.link
            if state.pointee.quarantineHead == nil { state.pointee.quarantineTail = nil }
            state.pointee.quarantineBytes -= oldestCache.pointee.chunkSize
            state.pointee.quarantineCount -= 1
            sg_mutex_unlock(&state.pointee.quarantineMutex)
            release(oldest, cache: oldestCache, tag: oldestTag)
            sg_mutex_lock(&state.pointee.quarantineMutex)
            released += 1
        }
        sg_mutex_unlock(&state.pointee.quarantineMutex)
    }

    /// Verifies a buffer leaving quarantine and returns it to its cache.
    private static func release(_ chunk: UnsafeMutableRawPointer, cache: UnsafeMutablePointer<CacheCore>, tag: BufferTag) {
        if DebugFlags(rawValue: cache.pointee.debugFlags).contains(.deadbeef),
           let bad = Pattern.firstMismatch(chunk, cache.pointee.tagOffset, Pattern.freed) {
            DebugReport.modifiedAfterFree(cache: cache, chunk: chunk, tag: tag, at: bad)
            Pattern.fill(chunk, cache.pointee.tagOffset, Pattern.freed)
        }
        CacheOps.free(cache, chunk)
    }

    /// Whether `chunk` is waiting in quarantine (reports say so).
    static func contains(_ chunk: UnsafeRawPointer) -> Bool {
        let state = DebugState.shared
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
        CacheOps.owner(of: chunk)!.pointee.cache
    }

    @inline(__always) private static func tagOffset(of chunk: UnsafeRawPointer) -> Int {
        cacheOf(chunk).pointee.tagOffset
    }
}
