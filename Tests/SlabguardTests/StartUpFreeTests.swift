// A report's "last freed by" section is left out when the recorded free happened inside
// slabguard itself (its own start-up: every frame an allocator function or the dynamic
// loader): it would say nothing about the program.  The free entry of a real buffer is
// rewritten to such a stack, then the report for that buffer is written (noabort).

import CSlabguardShim
import Foundation
import Glibc
import Slabguard
@testable import SlabguardCore
import Testing

@Suite("Free stacks from slabguard's own start-up", .timeLimit(.minutes(5)))
struct StartUpFreeTests {
    /// Allocates and frees a 64-byte buffer; with `internalFree` its free stack is then
    /// made of slabguard's own functions.  Reports it as modified after free.
    static func reportAFreedBuffer(internalFree: Bool) {
        let p = sgTestAllocate(64)
        sgTestRelease(p, 64)
        let cache = CacheOps.owner(of: p)!.objectCache
        let tag = BufferTag(base: p + cache.pointee.tagOffset)
        let layout = TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags))
        let free = tag.auditEntry(1, layout: layout)!
        if internalFree {
            let lock: @convention(c) (UnsafeMutablePointer<pthread_mutex_t>?) -> Void = sg_mutex_lock
            let unlock: @convention(c) (UnsafeMutablePointer<pthread_mutex_t>?) -> Void = sg_mutex_unlock
            let frames: [UInt] = [unsafeBitCast(lock, to: UInt.self) + 8, unsafeBitCast(unlock, to: UInt.self) + 8]
            let id = frames.withUnsafeBufferPointer { StackDepot.intern($0.baseAddress!, 2) }
            free.record(thread: free.thread, time: free.time, stackId: id)
        }
        DebugReport.modifiedAfterFree(cache: cache, chunk: p, tag: tag, at: UInt(bitPattern: p) + 8, detected: .verification)
    }

    @Test func aFreeInsideSlabguardIsNotShown() async {
        let result = await #expect(processExitsWith: .exitCode(1), observing: [\.standardErrorContent]) {
            try Debug.configure("deadbeef,redzone,audit,noabort")
            StartUpFreeTests.reportAFreedBuffer(internalFree: true)
        }
        let text = stderrText(result)
        #expect(text.contains("slabguard: buffer modified after being freed"), "\(text)")
        #expect(!text.contains("last freed by"), "\(text)")
        #expect(text.contains("allocated by thread") && text.contains("sgTestAllocate"), "\(text)")
    }

    @Test func theProgramsFreeIsShown() async {
        let result = await #expect(processExitsWith: .exitCode(1), observing: [\.standardErrorContent]) {
            try Debug.configure("deadbeef,redzone,audit,noabort")
            StartUpFreeTests.reportAFreedBuffer(internalFree: false)
        }
        let text = stderrText(result)
        #expect(text.contains("last freed by thread") && text.contains("sgTestRelease"), "\(text)")
    }
}
