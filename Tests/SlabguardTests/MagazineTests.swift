// Magazine and depot tests: the per-thread fast path, magazine exchange between
// threads through the depot, the depot's working-set limit, and magazines going
// back to the depot when a thread exits or the cache is destroyed.  Threads that
// must exit are real pthreads (see StressTests.swift's helpers); the test bodies
// are synchronous, so the test's own magazines stay on one thread.

import CSlabguardShim
import Glibc
import Testing
@testable import SlabguardCore
import Slabguard

/// The calling thread's magazine slot for `cache` (which must have a magazine id).
func ownSlot(_ cache: UnsafeMutablePointer<CacheCore>) -> UnsafeMutablePointer<sg_magazine_slot> {
    precondition(cache.pointee.id >= 0, "cache without a magazine slot")
    return sg_thread_slots() + Int(cache.pointee.id)
}

/// The rounds of the depot's full magazines, head first (depot lock taken).
func depotFullMagazines(_ cache: UnsafeMutablePointer<CacheCore>) -> [[UnsafeMutableRawPointer]] {
    let lock = cache.depotLock
    lock.lock()
    defer { lock.unlock() }
    var result: [[UnsafeMutableRawPointer]] = []
    var m = cache.magazines.pointee.fullMagazines
    while let x = m {
        result.append((0..<x.pointee.count).map { x.rounds[$0]! })
        m = x.pointee.next
    }
    return result
}

@Suite(.timeLimit(.minutes(5))) struct MagazineTests {
    @Test func fastPathIsLIFOAndCounted() throws {
        let cache = try #require(makeCoreCache("test.mag.fast", size: 32))
        try #require(cache.pointee.id >= 0, "all magazine ids are taken")
        defer { #expect(CacheOps.destroy(cache).outstandingBuffers == 0) }
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<10 { buffers.append(try #require(CacheOps.allocate(cache))) }
        let slot = ownSlot(cache)
        #expect(slot.pointee.capacity == Int32(cache.magazines.pointee.magazineCapacity))
        #expect(slot.pointee.count == slot.pointee.capacity - 10, "one batch filled the magazine")
        for b in buffers.reversed() { CacheOps.free(cache, b) }
        #expect(slot.pointee.count == slot.pointee.capacity)
        for b in buffers { #expect(CacheOps.allocate(cache) == b, "last freed, first allocated") }
        for b in buffers { CacheOps.free(cache, b) }
        let s = CacheOps.statistics(cache)
        #expect(s.allocations == 20)
        #expect(s.buffersInUse == 0)
        #expect(slot.pointee.frees == 20)
    }

    /// Frees of more than a magazine on one thread go to the depot as full magazines;
    /// another thread's allocations then take exactly those buffers, with no new slab
    /// and no chunk taken from the slab layer.
    @Test func magazinesMoveBetweenThreadsThroughTheDepot() throws {
        let cache = try #require(makeCoreCache("test.mag.exchange", size: 64))
        try #require(cache.pointee.id >= 0, "all magazine ids are taken")
        defer { #expect(CacheOps.destroy(cache).outstandingBuffers == 0) }
        let capacity = cache.magazines.pointee.magazineCapacity
        var mine: [UnsafeMutableRawPointer] = []
        for _ in 0..<(3 * capacity) { mine.append(try #require(CacheOps.allocate(cache))) }
        for b in mine { CacheOps.free(cache, b) }
        // This thread: a full loaded magazine and a full previous one; the depot: the first.
        let slot = ownSlot(cache)
        #expect(Int(slot.pointee.count) == capacity)
        #expect(slot.previousMagazine?.pointee.count == capacity)
        let depot = depotFullMagazines(cache)
        #expect(depot.count == 1)
        let handedOver = try #require(depot.first)
        #expect(handedOver.count == capacity)
        #expect(Set(handedOver).isSubset(of: Set(mine)))
        let slabs = cache.pointee.slabCount, chunksOut = cache.pointee.buffersOut

        var theirs: [UnsafeMutableRawPointer] = []
        onNewThread {
            for _ in 0..<capacity { theirs.append(CacheOps.allocate(cache)!) }
        }
        #expect(Set(theirs) == Set(handedOver), "the other thread got the depot's magazine")
        #expect(cache.pointee.slabCount == slabs, "no new slab")
        #expect(cache.pointee.buffersOut == chunksOut, "nothing taken from the slab layer")
        #expect(CacheOps.statistics(cache).buffersInUse == capacity)
        // Cross-thread frees: this thread frees what the other one allocated.
        for b in theirs { CacheOps.free(cache, b) }
        #expect(CacheOps.statistics(cache).buffersInUse == 0)
        #expect(CacheOps.statistics(cache).allocations == UInt64(4 * capacity))
    }

    /// A thread that exits hands its magazines to the depot: nothing is stranded, the
    /// counts it kept are folded into the cache, and the buffers are reusable elsewhere.
    @Test func threadExitReturnsMagazines() throws {
        let cache = try #require(ObjectCache(name: "test.mag.exit", size: 128))
        let core = CacheHandleProbe.core(of: cache)
        onNewThread {
            var held: [UnsafeMutableRawPointer] = []
            for _ in 0..<500 { held.append(cache.allocate()!) }
            for b in held { cache.free(b) }
            for _ in 0..<7 { cache.free(cache.allocate()!) }
        }
        let s = cache.statistics
        #expect(s.buffersInUse == 0, "no buffer stranded with the exited thread")
        #expect(s.allocations == 507, "the exited thread's counts were kept")
        #expect(core.pointee.buffersOut == Depot.roundsInDepot(core.magazines), "every chunk out of the slabs is in the depot")
        #expect(core.magazines.pointee.fullMagazineCount >= 1)
        // The depot's buffers serve this thread without new slabs.
        let slabs = s.slabs
        var here: [UnsafeMutableRawPointer] = []
        for _ in 0..<400 { here.append(try #require(cache.allocate())) }
        #expect(cache.statistics.slabs == slabs)
        for b in here { cache.free(b) }
        #expect(cache.destroy() == 0)
    }

    /// Allocations from thread-exit hooks that run after slabguard's own (other libraries'
    /// TLS destructors) bypass the magazines, so nothing is left in a dead thread's slot.
    @Test func allocationsInLateThreadExitHooksStrandNothing() throws {
        final class Late {
            let cache: ObjectCache
            var allocated = 0
            var sawDeadThread = false
            init(_ cache: ObjectCache) { self.cache = cache }
        }
        let cache = try #require(ObjectCache(name: "test.mag.late", size: 48))
        let late = Late(cache)
        var key = pthread_key_t()
        #expect(pthread_key_create(&key, { raw in
            let late = Unmanaged<Late>.fromOpaque(raw!).takeUnretainedValue()
            late.sawDeadThread = sg_thread_state() == UInt32(SG_THREAD_DEAD)
            var held: [UnsafeMutableRawPointer] = []
            for _ in 0..<20 { if let b = late.cache.allocate() { held.append(b) } }
            late.allocated = held.count
            for b in held { late.cache.free(b) }
        }) == 0)
        defer { pthread_key_delete(key) }
        let context = Unmanaged.passUnretained(late).toOpaque()
        onNewThread {
            pthread_setspecific(key, context)
            for _ in 0..<300 { cache.free(cache.allocate()!) }   // loads magazines first
        }
        #expect(late.allocated == 20)
        let core = CacheHandleProbe.core(of: cache)
        #expect(cache.statistics.buffersInUse == 0)
        #expect(core.pointee.buffersOut == Depot.roundsInDepot(core.magazines), "nothing stranded in the dead thread's slot")
        #expect(cache.statistics.allocations == 320)
        if late.sawDeadThread { #expect(core.pointee.slowAllocations == 20, "a dead thread allocates without magazines") }
        #expect(cache.destroy() == 0)
    }

    @Test func manyExitingThreadsStrandNothing() throws {
        let cache = try #require(ObjectCache(name: "test.mag.exits", size: 200))
        for round in 0..<8 {
            let threads = (0..<4).map { t in
                startThread {
                    var held: [UnsafeMutableRawPointer] = []
                    for i in 0..<(100 + 37 * t + round) {
                        held.append(cache.allocate()!)
                        if i % 3 == 0 { cache.free(held.removeLast()) }
                    }
                    for b in held { cache.free(b) }
                }
            }
            threads.forEach(join)
            #expect(cache.statistics.buffersInUse == 0)
        }
        #expect(cache.destroy() == 0)
    }

    /// Past `depotFullLimit` full magazines, frees go back to the slab layer.
    @Test func depotWorkingSetIsBounded() throws {
        let cache = try #require(makeCoreCache("test.mag.limit", size: 16))
        try #require(cache.pointee.id >= 0, "all magazine ids are taken")
        defer { #expect(CacheOps.destroy(cache).outstandingBuffers == 0) }
        let capacity = cache.magazines.pointee.magazineCapacity
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<(12 * capacity) { buffers.append(try #require(CacheOps.allocate(cache))) }
        for b in buffers { CacheOps.free(cache, b) }
        #expect(cache.magazines.pointee.fullMagazineCount <= cache.magazines.pointee.depotFullLimit)
        #expect(cache.pointee.buffersOut <= (cache.magazines.pointee.depotFullLimit + 2) * capacity)
        #expect(CacheOps.statistics(cache).buffersInUse == 0)
    }

    /// destroy() collects the magazines a live thread holds for the cache.
    @Test func destroyCollectsOtherThreadsMagazines() throws {
        let cache = try #require(makeCoreCache("test.mag.destroy", size: 80))
        let filled = Semaphore(), release = Semaphore()
        var sample: UnsafeMutableRawPointer? = nil
        let worker = startThread {
            var held: [UnsafeMutableRawPointer] = []
            for _ in 0..<300 { held.append(CacheOps.allocate(cache)!) }
            sample = held[0]
            for b in held { CacheOps.free(cache, b) }
            filled.signal()
            release.wait()
        }
        filled.wait()
        #expect(CacheOps.statistics(cache).buffersInUse == 0)
        #expect(cache.pointee.buffersOut >= 300, "the worker holds the buffers in its magazines")
        let result = CacheOps.destroy(cache)
        #expect(result.outstandingBuffers == 0)
        if let b = sample { #expect(CacheOps.owner(of: b)?.objectCache != cache, "the slabs went back to the arena") }
        release.signal()
        join(worker)
    }

    /// A forked child whose parent thread stopped between the two stores of a magazine
    /// exchange sees loaded == previous: flushing stashes that magazine once.
    @Test func flushStashesAMagazineOnce() throws {
        let cache = try #require(makeCoreCache("test.mag.flushonce", size: 24))
        try #require(cache.pointee.id >= 0, "all magazine ids are taken")
        let b = try #require(CacheOps.allocate(cache))
        CacheOps.free(cache, b)
        let slot = ownSlot(cache)
        slot.pointee.previous = slot.pointee.loaded      // the half-done exchange
        Depot.flush(slot, of: cache.magazines)
        #expect(slot.pointee.loaded == nil && slot.pointee.previous == nil)
        // Checked by the counters first: a magazine stashed twice links to itself.
        try #require(cache.magazines.pointee.fullMagazineCount == 1, "stashed twice: cache leaked to avoid a cyclic list")
        #expect(cache.magazines.pointee.emptyMagazineCount == 0)
        #expect(depotFullMagazines(cache).count == 1)
        #expect(CacheOps.destroy(cache).outstandingBuffers == 0)
    }
}
