// Slab layer and object cache tests: geometry, slab fill/empty/reap, constructor
// and destructor counts, failing constructors, destroy with outstanding buffers.
// Every test uses its own caches, whose statistics no other test disturbs; test
// bodies are synchronous, so each runs on one thread and its magazines stay put.

import Glibc
import Synchronization
import Testing
@testable import SlabguardCore
import Slabguard

/// A private cache straight from the core (for looking at slabs and lists).
func makeCoreCache(_ name: String, size: Int, alignment: Int = 8,
                   constructor: BufferConstructor? = nil, destructor: BufferDestructor? = nil,
                   argument: UnsafeMutableRawPointer? = nil) -> UnsafeMutablePointer<CacheCore>? {
    name.withCString { n in
        CacheOps.create(CacheOps.Options(name: n, bufferSize: size, alignment: alignment,
                                         constructor: constructor, destructor: destructor, argument: argument))
    }
}

extension UnsafeMutablePointer where Pointee == CacheCore {
    func slabsOn(_ list: SlabList) -> Int {
        let lock = slabLock
        lock.lock()
        defer { lock.unlock() }
        var n = 0
        var s = slabs.listHead(list).pointee
        while let x = s { n += 1; s = x.pointee.next }
        return n
    }
}

/// Counts constructor and destructor calls (the callbacks run on any thread).
final class CallCounter: Sendable {
    let constructed = Atomic<Int>(0)
    let destructed = Atomic<Int>(0)
    let failEvery = Atomic<Int>(0)         // 0: never fail; n: fail every n-th construction
    let badDestructions = Atomic<Int>(0)   // destructor calls on a buffer not in constructed state
    static let magic: UInt64 = 0xC0DE_C0DE_C0DE_C0DE

    var constructor: ObjectCache.Constructor {
        { buffer in
            let n = self.constructed.add(1, ordering: .relaxed).newValue
            let every = self.failEvery.load(ordering: .relaxed)
            if every > 0 && n % every == 0 { return false }
            buffer.storeBytes(of: CallCounter.magic, as: UInt64.self)
            return true
        }
    }

    var destructor: ObjectCache.Destructor {
        { buffer in
            if buffer.load(as: UInt64.self) != CallCounter.magic { self.badDestructions.add(1, ordering: .relaxed) }
            buffer.storeBytes(of: 0, as: UInt64.self)
            self.destructed.add(1, ordering: .relaxed)
        }
    }

    var constructions: Int { constructed.load(ordering: .relaxed) }
    var destructions: Int { destructed.load(ordering: .relaxed) }
    var badDestructionCount: Int { badDestructions.load(ordering: .relaxed) }
}

@Suite(.timeLimit(.minutes(5))) struct SlabTests {
    @Test(arguments: [1, 8, 24, 64, 100, 192, 256, 1000, 1024, 3000, 4096, 5000, 9000, 32768, 100_000])
    func geometryBoundsWaste(size: Int) {
        for alignment in [8, 16, 64, 4096] {
            for tag in [0, 16] {
                let g = CacheGeometry(bufferSize: size, alignment: alignment, tagBytes: tag)
                #expect(g.chunkSize % alignment == 0)
                #expect(g.tagOffset >= size && g.chunkSize >= g.tagOffset + tag)
                #expect(g.buffersPerSlab >= 1)
                let slabBytes = g.slabPages * 4096
                #expect(g.buffersPerSlab * g.chunkSize <= slabBytes)
                #expect(slabBytes - g.buffersPerSlab * g.chunkSize < g.chunkSize, "buffersPerSlab is maximal")
                if g.slabPages < 64 {
                    #expect((slabBytes % g.chunkSize) * 8 <= slabBytes, "slab tail waste ≤ 1/8")
                }
            }
        }
    }

    /// The slab layer alone: exactly buffersPerSlab·k chunks fill k slabs; returning
    /// them empties the slabs (one empty slab is kept), and reaping returns that too.
    @Test func slabsFillEmptyAndReap() throws {
        let cache = try #require(makeCoreCache("test.slab.fill", size: 200))
        defer { _ = CacheOps.destroy(cache) }
        let perSlab = cache.slabs.pointee.buffersPerSlab
        let k = 3
        var chunks = [UnsafeMutableRawPointer?](repeating: nil, count: perSlab * k)
        let taken = cache.slabs.allocateFromSlabs(into: &chunks, count: perSlab * k)
        #expect(taken == perSlab * k)
        #expect(cache.pointee.slabCount == k)
        #expect(cache.slabsOn(.full) == k)
        #expect(cache.slabsOn(.partial) == 0)
        #expect(cache.slabsOn(.empty) == 0)
        #expect(cache.pointee.buffersOut == perSlab * k)
        #expect(cache.pointee.buffersTotal == perSlab * k)
        // Distinct chunks, each inside a slab of this cache, on a chunk boundary.
        #expect(Set(chunks.map { UInt(bitPattern: $0) }).count == perSlab * k)
        for c in chunks {
            let slab = try #require(CacheOps.owner(of: c!))
            #expect(slab.objectCache == cache)
            #expect((c! - UnsafeMutableRawPointer(slab.pointee.base)) % cache.pointee.chunkSize == 0)
            memset(c!, 0x77, 200)
        }
        // Return one slab's worth plus a few: full → partial → empty as chunks come back.
        chunks.withUnsafeMutableBufferPointer { all in
            cache.slabs.freeToSlabs(all.baseAddress!, count: 10)
            #expect(cache.slabsOn(.partial) >= 1)
            cache.slabs.freeToSlabs(all.baseAddress! + 10, count: perSlab * k - 10)
        }
        #expect(cache.pointee.buffersOut == 0)
        #expect(cache.pointee.slabCount == cache.slabs.pointee.emptySlabAllowance, "empty slabs past the allowance go back at once")
        #expect(cache.slabsOn(.empty) == cache.pointee.slabCount)
        cache.slabs.reap()
        #expect(cache.pointee.slabCount == 0)
        #expect(CacheOps.statistics(cache).memoryInUse == 0)
        for c in chunks { #expect(CacheOps.owner(of: c!)?.objectCache != cache, "the pages left the cache") }
    }

    @Test func partialSlabsAreUsedFirst() throws {
        let cache = try #require(makeCoreCache("test.slab.partial", size: 512))
        defer { _ = CacheOps.destroy(cache) }
        let perSlab = cache.slabs.pointee.buffersPerSlab
        var chunks = [UnsafeMutableRawPointer?](repeating: nil, count: perSlab + 5)
        #expect(cache.slabs.allocateFromSlabs(into: &chunks, count: perSlab + 5) == perSlab + 5)
        #expect(cache.slabsOn(.full) == 1 && cache.slabsOn(.partial) == 1)
        // Give back 3 chunks of the full slab; the next 3 must come from slabs we have.
        cache.slabs.freeToSlabs(&chunks, count: 3)
        var again = [UnsafeMutableRawPointer?](repeating: nil, count: 3)
        #expect(cache.slabs.allocateFromSlabs(into: &again, count: 3) == 3)
        #expect(cache.pointee.slabCount == 2)
        cache.slabs.freeToSlabs(&again, count: 3)
        chunks.withUnsafeMutableBufferPointer { cache.slabs.freeToSlabs($0.baseAddress! + 3, count: perSlab + 2) }
        cache.slabs.reap()
        #expect(cache.pointee.slabCount == 0)
    }

    /// Through the magazines: allocate buffersPerSlab·k, free everything and reap: no
    /// slab, no memory and no buffer in use remains.
    @Test func objectCacheFreeAllAndReapReturnsEverything() throws {
        let cache = try #require(ObjectCache(name: "test.slab.reap", size: 48))
        defer { #expect(cache.destroy() == 0) }
        let core = CacheHandleProbe.core(of: cache)
        let perSlab = core.slabs.pointee.buffersPerSlab
        let k = 4
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<(perSlab * k) { buffers.append(try #require(cache.allocate())) }
        var s = cache.statistics
        #expect(s.buffersInUse == perSlab * k)
        #expect(s.slabs >= k && s.slabs <= k + 1, "magazine fills may start one more slab")
        #expect(s.allocations >= UInt64(perSlab * k))
        #expect(Set(buffers).count == buffers.count)
        for b in buffers { cache.free(b) }
        #expect(cache.statistics.buffersInUse == 0)
        cache.reap()
        s = cache.statistics
        #expect(s.slabs == 0)
        #expect(s.memoryInUse == 0)
        #expect(s.buffersInUse == 0)
        #expect(s.buffersTotal == 0)
    }

    /// The constructor runs when buffers leave the slab layer — not again when a buffer
    /// cycles through a magazine; the destructor runs when magazines are drained to slabs.
    @Test func constructorAndDestructorCounts() throws {
        let counter = CallCounter()
        let cache = try #require(ObjectCache(name: "test.slab.ctor", size: 64,
                                             constructor: counter.constructor, destructor: counter.destructor))
        let first = try #require(cache.allocate())
        #expect(first.load(as: UInt64.self) == CallCounter.magic)
        let constructedOnce = counter.constructions
        #expect(constructedOnce >= 1)
        #expect(counter.destructions == 0)
        // The buffer keeps its constructed state through free/allocate cycles.
        first.storeBytes(of: 7, toByteOffset: 8, as: UInt64.self)
        for _ in 0..<100 {
            cache.free(first)
            let again = try #require(cache.allocate())
            #expect(again == first, "LIFO magazine")
            #expect(again.load(fromByteOffset: 8, as: UInt64.self) == 7, "state kept while cached")
        }
        #expect(counter.constructions == constructedOnce, "no construction on the magazine path")
        // Many buffers: constructions only as new chunks leave the slabs.
        var many: [UnsafeMutableRawPointer] = [first]
        for _ in 0..<999 { many.append(try #require(cache.allocate())) }
        for b in many { #expect(b.load(as: UInt64.self) == CallCounter.magic) }
        let constructed = counter.constructions
        #expect(constructed >= 1000)
        for b in many { cache.free(b) }
        #expect(counter.constructions == constructed)
        // Reap drains the magazines: every constructed buffer is destructed once.
        cache.reap()
        #expect(counter.destructions == counter.constructions)
        #expect(cache.statistics.slabs == 0)
        // Allocate again after the reap (fresh constructions), destroy destructs them.
        let b = try #require(cache.allocate())
        #expect(counter.constructions > constructed)
        cache.free(b)
        #expect(cache.destroy() == 0)
        #expect(counter.destructions == counter.constructions)
        #expect(counter.badDestructionCount == 0, "destructors see constructed buffers")
    }

    @Test func failingConstructorFailsTheAllocation() throws {
        let counter = CallCounter()
        counter.failEvery.store(1, ordering: .relaxed)   // every construction fails
        let cache = try #require(ObjectCache(name: "test.slab.ctorfail", size: 32,
                                             constructor: counter.constructor, destructor: counter.destructor))
        #expect(cache.allocate() == nil)
        var s = cache.statistics
        #expect(s.failures == 1)
        #expect(s.buffersInUse == 0)
        #expect(counter.destructions == 0, "unconstructed buffers are not destructed")
        #expect(CacheHandleProbe.core(of: cache).pointee.buffersOut == 0, "the raw chunks went back to the slabs")
        #expect(cache.allocate() == nil)
        s = cache.statistics
        #expect(s.failures == 2)
        // Constructions succeed again: allocations work, the failure count stays.
        counter.failEvery.store(0, ordering: .relaxed)
        let b = try #require(cache.allocate())
        #expect(b.load(as: UInt64.self) == CallCounter.magic)
        #expect(cache.statistics.failures == 2)
        cache.free(b)
        #expect(cache.destroy() == 0)
        #expect(counter.destructions == counter.constructions - 2, "failed constructions are not destructed")
    }

    /// A constructor failing now and then: allocations that do succeed get constructed buffers.
    @Test func intermittentConstructorFailures() throws {
        let counter = CallCounter()
        counter.failEvery.store(7, ordering: .relaxed)
        let cache = try #require(ObjectCache(name: "test.slab.ctorsome", size: 96,
                                             constructor: counter.constructor, destructor: counter.destructor))
        var got: [UnsafeMutableRawPointer] = []
        var failed = 0
        for _ in 0..<2000 {
            if let b = cache.allocate() {
                #expect(b.load(as: UInt64.self) == CallCounter.magic)
                got.append(b)
            } else {
                failed += 1
            }
        }
        #expect(got.count > 1000)
        #expect(cache.statistics.failures >= failed)
        for b in got { cache.free(b) }
        #expect(cache.destroy() == 0)
        let failedConstructions = counter.constructions / 7
        #expect(counter.destructions == counter.constructions - failedConstructions)
    }

    @Test func destroyReportsOutstandingBuffers() throws {
        let cache = try #require(ObjectCache(name: "test.slab.leak", size: 40))
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<300 { buffers.append(try #require(cache.allocate())) }
        for b in buffers.prefix(295) { cache.free(b) }
        #expect(cache.destroy() == 5)
        #expect(cache.destroy() == 0, "a second destroy is a no-op")
    }

    /// A buffer freed after its cache was destroyed goes back to its own slab, never
    /// to a newer cache that reuses the old cache's magazine id.
    @Test func freeAfterDestroyStaysWithItsSlab() throws {
        let old = try #require(makeCoreCache("test.slab.zombie", size: 40))
        var out: [UnsafeMutableRawPointer] = []
        for _ in 0..<3 { out.append(try #require(CacheOps.allocate(old))) }
        let oldId = old.pointee.id
        #expect(CacheOps.destroy(old).outstandingBuffers == 3)
        #expect(old.pointee.id == -1)
        let newer = try #require(makeCoreCache("test.slab.newer", size: 40))
        defer { _ = CacheOps.destroy(newer) }
        for b in out { CacheOps.free(old, b) }
        for b in out {
            let slab = try #require(CacheOps.owner(of: b))
            #expect(slab.objectCache == old)
            #expect(StateRegion.arena.bound(to: PageArena.self).pointee.entryWord(of: b) >> PageArena.markShift == 0,
                    "the slab's page-map mark still names the old magazine id")
        }
        #expect(old.pointee.buffersOut == 0)
        var fromNewer: [UnsafeMutableRawPointer] = []
        for _ in 0..<500 { fromNewer.append(try #require(CacheOps.allocate(newer))) }
        #expect(Set(fromNewer).isDisjoint(with: out), "newer cache (id \(newer.pointee.id), old id \(oldId)) got a stale buffer")
        for b in fromNewer { CacheOps.free(newer, b) }
    }

    /// Destructors run with no allocator lock held (they may call the allocator, even
    /// create caches): not the registry's, nor the cache's own depot and slab locks.
    @Test func destructorsRunWithNoAllocatorLockHeld() throws {
        final class Probe: Sendable {
            let calls = Atomic<Int>(0)
            let lockedOut = Atomic<Int>(0)
            let core = Atomic<Int>(0)
        }
        let probe = Probe()
        let destructor: ObjectCache.Destructor = { _ in
            let call = probe.calls.add(1, ordering: .relaxed).newValue
            guard call == 1 || call % 50 == 0 else { return }
            if let raw = UnsafeMutableRawPointer(bitPattern: probe.core.load(ordering: .relaxed)) {
                let core = raw.assumingMemoryBound(to: CacheCore.self)
                for lock in [core.slabLock, core.depotLock] {
                    if lock.tryLock() { lock.unlock() } else { probe.lockedOut.add(1, ordering: .relaxed) }
                }
            }
            // Other tests' threads take the registry lock now and then, briefly; we must never hold it.
            var got = false
            for _ in 0..<4000 where !got {
                if CacheRegistry.lock.tryLock() { CacheRegistry.lock.unlock(); got = true } else { usleep(50) }
            }
            if !got { probe.lockedOut.add(1, ordering: .relaxed) }
        }
        let cache = try #require(ObjectCache(name: "test.slab.dtorlocks", size: 32, destructor: destructor))
        probe.core.store(Int(bitPattern: CacheHandleProbe.core(of: cache)), ordering: .relaxed)
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<2000 { buffers.append(try #require(cache.allocate())) }
        for b in buffers { cache.free(b) }                // past the depot limit: flushes run destructors
        cache.reap()
        let b = try #require(cache.allocate())
        cache.free(b)
        #expect(cache.destroy() == 0)
        #expect(probe.calls.load(ordering: .relaxed) >= 2000)
        #expect(probe.lockedOut.load(ordering: .relaxed) == 0, "a destructor ran with an allocator lock held")
    }

    /// The chunk index of any address in a slab is its offset divided by the chunk size:
    /// by the reciprocal multiply where the cache has one, by a divide where not (a
    /// 1 MiB buffer's slabs are too big for it to be exact), at every byte of every chunk.
    @Test(arguments: [8, 24, 40, 56, 104, 1000, 3000, 4096, 8000, 32768, 1 << 20])
    func chunkIndexIsTheOffsetOverTheChunkSize(size: Int) throws {
        let cache = try #require(makeCoreCache("test.slab.index.\(size)", size: size))
        defer { _ = CacheOps.destroy(cache) }
        let b = try #require(CacheOps.allocate(cache))
        defer { CacheOps.free(cache, b) }
        let slab = try #require(CacheOps.owner(of: b))
        let chunkSize = cache.pointee.chunkSize
        let bytes = slab.pointee.pages << pageShift
        #expect((cache.slabs.pointee.chunkReciprocal == 0) == (size == 1 << 20))
        var offset = 0
        while offset < bytes {
            for delta in [0, 1, chunkSize - 1] where offset + delta < bytes {
                let p = UnsafeRawPointer(slab.pointee.base + offset + delta)
                #expect(slab.pointee.index(of: p) == (offset + delta) / chunkSize, "offset \(offset + delta), chunk \(chunkSize)")
            }
            offset += chunkSize
        }
    }

    /// A cache with no magazine slot (as caches beyond SG_MAX_CACHES run) works on the
    /// slab layer directly, with exact statistics.
    @Test func cacheWithoutMagazineSlot() throws {
        let cache = try #require(makeCoreCache("test.slab.noslot", size: 40))
        CacheRegistry.lock.lock()
        cache.magazines.assignMagazineId(-1)
        CacheRegistry.lock.unlock()
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<500 { buffers.append(try #require(CacheOps.allocate(cache))) }
        #expect(Set(buffers).count == 500)
        #expect(cache.pointee.buffersOut == 500, "no magazine holds extra buffers")
        for b in buffers.prefix(250) { CacheOps.free(cache, b) }
        for b in buffers.dropFirst(250) { Allocator.free(b) }   // free() finds the cache through the page map
        let s = CacheOps.statistics(cache)
        #expect(s.allocations == 500)
        #expect(s.buffersInUse == 0)
        #expect(cache.pointee.buffersOut == 0)
        #expect(CacheOps.destroy(cache).outstandingBuffers == 0)
    }

    @Test func cacheBuffersHonourAlignment() throws {
        for alignment in [8, 16, 32, 64, 128, 256, 1024, 4096] {
            let cache = try #require(ObjectCache(name: "test.slab.align\(alignment)", size: 24, alignment: alignment))
            var buffers: [UnsafeMutableRawPointer] = []
            for _ in 0..<200 {
                let b = try #require(cache.allocate())
                #expect(Int(bitPattern: b) % alignment == 0)
                memset(b, 0x11, 24)
                buffers.append(b)
            }
            for b in buffers { cache.free(b) }
            #expect(cache.destroy() == 0)
        }
    }

    @Test func badCacheArgumentsAreRejected() {
        #expect(ObjectCache(name: "bad", size: 0) == nil)
        #expect(ObjectCache(name: "bad", size: -8) == nil)
        #expect(ObjectCache(name: "bad", size: 16, alignment: 3) == nil)
        #expect(ObjectCache(name: "bad", size: 16, alignment: 8192) == nil)
        #expect(ObjectCache(name: "bad", size: (1 << 30) + 1) == nil)
    }

    @Test func statisticsNameAndSize() throws {
        let cache = try #require(ObjectCache(name: "test.slab.stats", size: 72))
        defer { cache.destroy() }
        let b = try #require(cache.allocate())
        let s = cache.statistics
        #expect(s.name == "test.slab.stats")
        #expect(s.bufferSize == 72)
        #expect(s.buffersInUse == 1)
        #expect(s.memoryInUse == s.slabs * CacheHandleProbe.core(of: cache).pointee.slabPages * 4096)
        #expect(Statistics.caches().contains { $0.name == "test.slab.stats" && $0.buffersInUse == 1 })
        cache.free(b)
    }
}

/// Reaches an ObjectCache's core record (tests only): looked up in the cache registry by
/// name (every test cache has a name of its own), so ObjectCache's internals stay private.
enum CacheHandleProbe {
    static func core(of cache: ObjectCache) -> UnsafeMutablePointer<CacheCore> {
        var found: UnsafeMutablePointer<CacheCore>? = nil
        CacheOps.forEachCache { c in
            if String(cString: c.namePointer) == cache.name { found = c }
        }
        guard let found else { fatalError("no cache named \(cache.name)") }
        return found
    }
}
