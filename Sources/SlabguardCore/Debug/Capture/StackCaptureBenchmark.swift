// What a stack capture costs, per frame — for `slabguard-bench --stack-capture`
// (BENCHMARKS.md).  Hit: the whole stack's unwind rules are in the rule cache (the
// steady state of a program: its call sites repeat).  Miss: the rule of a frame is
// computed from the DWARF CFI (the first time a return address is seen).

import Glibc

package enum StackCaptureBenchmark {
    /// Nanoseconds per frame of capturing the caller's stack `iterations` times, and
    /// the frames per capture.
    @inline(never)
    package static func captureHits(iterations: Int) -> (nanosecondsPerFrame: Double, frames: Int) {
        let buffer = UnsafeMutablePointer<UInt>.allocate(capacity: 64)
        defer { buffer.deallocate() }
        var frames = StackUnwinder.capture(into: buffer, capacity: 64, skip: 0)   // warm
        let start = AuditClock.monotonicNanoseconds()
        for _ in 0..<iterations { frames = StackUnwinder.capture(into: buffer, capacity: 64, skip: 0) }
        let elapsed = Double(AuditClock.monotonicNanoseconds() - start)
        return (elapsed / Double(iterations * max(frames, 1)), frames)
    }

    /// Nanoseconds per frame to compute an unwind rule from the CFI (a cache miss), over
    /// the return addresses of the caller's stack.
    @inline(never)
    package static func ruleMisses(iterations: Int) -> Double {
        let buffer = UnsafeMutablePointer<UInt>.allocate(capacity: 64)
        defer { buffer.deallocate() }
        let frames = StackUnwinder.capture(into: buffer, capacity: 64, skip: 0)
        guard frames > 0 else { return 0 }
        let start = AuditClock.monotonicNanoseconds()
        var sink = 0
        for _ in 0..<iterations {
            for f in 0..<frames { sink &+= StackUnwinder.computeRule(for: buffer[f] - 1).cfaOffset }
        }
        let elapsed = Double(AuditClock.monotonicNanoseconds() - start)
        if sink == Int.min { print("") }
        return elapsed / Double(iterations * frames)
    }
}
