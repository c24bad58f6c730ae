// The stack depot: each distinct stack stored once, named by a 32-bit id; memory grows
// with the number of distinct stacks, not with how often they are interned.

import Glibc
import Testing
@testable import SlabguardCore

@Suite("Stack depot", .timeLimit(.minutes(5)))
struct StackDepotTests {
    init() { StackDepot.setUp() }

    private func intern(_ frames: [UInt]) -> UInt32 {
        frames.withUnsafeBufferPointer { StackDepot.intern($0.baseAddress!, $0.count) }
    }

    private func frames(_ id: UInt32) -> [UInt] {
        let f = StackDepot.frames(id)
        return Array(UnsafeBufferPointer(start: f.frames, count: f.count))
    }

    @Test func aStackInternedAgainIsTheSameIdAndTakesNoMemory() {
        let stack: [UInt] = [0x7000_1234, 0x7000_5678, 0x7000_9abc, UInt(0xdead_0000) + UInt.random(in: 0..<1 << 20)]
        let first = intern(stack)
        #expect(first != 0)
        // An id is where the stack is stored: the same id means it was not stored again.
        // (Other suites intern concurrently, so the depot's byte count cannot be compared.)
        for _ in 0..<10_000 { #expect(intern(stack) == first) }
        #expect(frames(first) == stack)
    }

    @Test func distinctStacksGetDistinctIdsAndKeepTheirFrames() {
        let base = UInt(0x5000_0000) + UInt.random(in: 0..<1 << 24) << 8
        var ids: [UInt32: [UInt]] = [:]
        for i in 0..<2000 {
            let stack = (0..<(1 + i % 20)).map { base + UInt(i) << 6 + UInt($0) }
            let id = intern(stack)
            #expect(id != 0 && ids[id] == nil)
            ids[id] = stack
        }
        for (id, stack) in ids { #expect(frames(id) == stack) }
        // Stacks differing only in depth are different stacks.
        #expect(intern([base, base + 1]) != intern([base, base + 1, base + 2]))
    }

    @Test func threadsInterningTheSameStacksAgreeOnTheirFrames() {
        let base = UInt(0x6000_0000) + UInt.random(in: 0..<1 << 24) << 8
        let threads = 8
        let results = UnsafeMutablePointer<UInt32>.allocate(capacity: threads * 64)
        defer { results.deallocate() }
        var handles = [pthread_t](repeating: 0, count: threads)
        struct Job { var base: UInt; var out: UnsafeMutablePointer<UInt32> }
        let jobs = UnsafeMutablePointer<Job>.allocate(capacity: threads)
        defer { jobs.deallocate() }
        for t in 0..<threads {
            jobs[t] = Job(base: base, out: results + t * 64)
            pthread_create(&handles[t], nil, { arg in
                let job = arg!.assumingMemoryBound(to: Job.self).pointee
                var frames = [UInt](repeating: 0, count: 8)
                for s in 0..<64 {
                    for f in 0..<8 { frames[f] = job.base + UInt(s * 8 + f) }
                    job.out[s] = frames.withUnsafeBufferPointer { StackDepot.intern($0.baseAddress!, 8) }
                }
                return nil
            }, jobs + t)
        }
        for h in handles { pthread_join(h, nil) }
        for s in 0..<64 {
            let expected = (0..<8).map { base + UInt(s * 8 + $0) }
            for t in 0..<threads { #expect(frames(results[t * 64 + s]) == expected) }
        }
    }
}
