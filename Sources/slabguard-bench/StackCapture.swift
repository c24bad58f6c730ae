// `slabguard-bench --stack-capture [DEPTH]`: ns per frame of slabguard's stack capture,
// from DEPTH nested calls (default 12) of -O Swift code.

import Glibc
import SlabguardCore

@inline(never) func stackBenchNest(_ depth: Int, _ body: () -> Void) {
    if depth <= 1 { body(); return }
    stackBenchNest(depth - 1, body)
    stackBenchSink &+= 1   // not a tail call
}
nonisolated(unsafe) var stackBenchSink = 0

func runStackCaptureBenchmark(depth: Int) {
    stackBenchNest(depth) {
        let hit = StackCaptureBenchmark.captureHits(iterations: 200_000)
        let miss = StackCaptureBenchmark.ruleMisses(iterations: 2_000)
        let hitText = "\((hit.nanosecondsPerFrame * 10).rounded() / 10)", missText = "\(Int(miss.rounded()))"
        print("stack capture, \(hit.frames) frames deep: hit \(hitText) ns/frame, miss (rule computed from CFI) \(missText) ns/frame")
    }
}
