// Heap verification (::umem_verify) — walks every slab of every debug cache:
// each free buffer's pattern, each live buffer's redzone, each tag's state.
// Runs on demand, every N operations (`verify=N`), and when a crash is being
// explained.  Takes each cache's slab lock in turn; buffers that change state
// while being looked at (another thread allocating or freeing them) are
// re-checked and skipped rather than reported.

import CSlabguardShim
import Glibc

enum HeapVerifier {
    /// Verifies every debug cache; returns the number of problems reported.  From a
    /// crash handler (`skipBusy`), a lock that is held is skipped rather than waited for:
    /// the crashed thread may be the one holding it.
    static func verifyAll(skipBusy: Bool = false, detected point: DebugReport.DetectionPoint = .verification) -> Int {
        var problems = 0
        if skipBusy { guard CacheRegistry.lock.tryLock() else { return 0 } } else { CacheRegistry.lock.lock() }
        var c = CacheRegistry.shared.pointee.first
        while let cache = c {
            if cache.pointee.debugFlags != 0 { problems += verify(cache, skipBusy: skipBusy, detected: point) }
            c = cache.pointee.nextCache
        }
        CacheRegistry.lock.unlock()
        return problems
    }

    static func verify(_ cache: UnsafeMutablePointer<CacheCore>, skipBusy: Bool = false,
                       detected point: DebugReport.DetectionPoint = .verification) -> Int {
        var problems = 0
        let lock = cache.slabLock
        if skipBusy { guard lock.tryLock() else { return 0 } } else { lock.lock() }
        for list in Int32(0)...Int32(2) {   // partial, full, empty (no array: this may run inside malloc)
            var slab = cache.slabs.listHead(SlabList(rawValue: list)!).pointee
            while let s = slab {
                problems += verify(slab: s, cache: cache, detected: point)
                slab = s.pointee.next
            }
        }
        lock.unlock()
        return problems
    }

    private static func verify(slab: UnsafeMutablePointer<Slab>, cache: UnsafeMutablePointer<CacheCore>,
                               detected point: DebugReport.DetectionPoint) -> Int {
        let flags = DebugFlags(rawValue: cache.pointee.debugFlags)
        let tagOffset = cache.pointee.tagOffset
        var problems = 0
        for i in 0..<slab.pointee.carved {
            let chunk = slab.pointee.base + i * cache.pointee.chunkSize
            let tag = BufferTag(base: chunk + tagOffset)
            let state = tag.state
            if state.isFree {
                if flags.contains(.deadbeef), let bad = Pattern.firstMismatch(chunk, tagOffset, Pattern.freed),
                   tag.state == state {
                    DebugReport.modifiedAfterFree(cache: cache, chunk: chunk, tag: tag, at: bad, detected: point)
                    Pattern.fill(chunk, tagOffset, Pattern.freed)
                    problems += 1
                }
            } else if state.isAllocated {
                let user = chunk + state.offset
                if flags.contains(.redzone),
                   let bad = Pattern.firstMismatch(user + state.size, tagOffset + 8 - state.offset - state.size, Pattern.redzone),
                   tag.state == state {
                    DebugReport.redzoneViolation(cache: cache, chunk: chunk, tag: tag, user: user, size: state.size, at: bad, detected: point)
                    problems += 1
                }
                if flags.contains(.redzone), state.offset == 0, let bad = BufferTag.underflow(before: chunk, slab: slab),
                   tag.state == state {
                    DebugReport.underflow(cache: cache, chunk: chunk, tag: tag, size: state.size, at: bad, detected: point)
                    Pattern.fill(chunk - TagLayout.tailGuardBytes, TagLayout.tailGuardBytes, Pattern.redzone)
                    problems += 1
                }
            } else if !state.isBusy {
                DebugReport.modifiedAfterFree(cache: cache, chunk: chunk, tag: tag, at: UInt(bitPattern: tag.base) + UInt(TagLayout.stateWord),
                                              detected: point)
                problems += 1
            }
        }
        return problems
    }

    /// verify=N: every N-th operation verifies the whole heap.
    @inline(__always) static func countOperation() {
        let options = OptionsState.shared.pointee.options
        let interval = options.verifyInterval
        guard interval > 0, options.flags.contains(.verify) else { return }
        let n = sg_atomic_add_u64(&ChecksState.shared.pointee.operationCount, 1) &+ 1
        if n % UInt64(interval) == 0 { _ = verifyAll(detected: .verification) }
    }
}
