// Multi-threaded stress and fork tests, and the helpers the other suites share
// (POSIX threads that really exit, a semaphore, buffer stamps).
//
// The stress test runs 4 threads of random allocations and frees (sizes from
// 1 B to 128 KiB, through the size classes, large spans and a private object
// cache), handing a quarter of their buffers to other threads through a locked
// queue.  Every buffer carries a stamp derived from its address and size, checked
// before it is freed, so overlapping buffers or a buffer handed out twice show up.
// Failures are counted in atomics and checked on the test's thread.

import Glibc
import Synchronization
import Testing
@testable import SlabguardCore
import Slabguard

// MARK: - Helpers shared by the suites

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Starts `body` on a new POSIX thread.  Unlike the test runner's pooled threads these
/// exit, running their thread-exit hooks (slabguard's magazine flush).
func startThread(_ body: @escaping () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { argument in
        Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue().run()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed")
    return thread
}

/// Waits until `thread` has exited (its TLS destructors included).
func join(_ thread: pthread_t) { pthread_join(thread, nil) }

/// Runs `body` on a new thread and waits for the thread to exit.
func onNewThread(_ body: @escaping () -> Void) { join(startThread(body)) }

final class Semaphore: @unchecked Sendable {
    private let s: UnsafeMutablePointer<sem_t>
    init() { s = .allocate(capacity: 1); sem_init(s, 0, 0) }
    deinit { sem_destroy(s); s.deallocate() }
    func signal() { sem_post(s) }
    func wait() { while sem_wait(s) != 0 {} }
}

/// Fills `n` bytes with `seed`.
func stamp(_ p: UnsafeMutableRawPointer, _ n: Int, seed: UInt8) {
    if n > 0 { memset(p, Int32(seed), n) }
}

/// Whether all `n` bytes equal `seed` (compares the buffer with itself shifted by one).
func isStamped(_ p: UnsafeRawPointer, _ n: Int, seed: UInt8) -> Bool {
    if n <= 0 { return true }
    if p.load(as: UInt8.self) != seed { return false }
    return n == 1 || memcmp(p, p + 1, n - 1) == 0
}

/// The stress stamp: a word naming the buffer (address and size), then a fill byte
/// derived from both.
private func stampBuffer(_ p: UnsafeMutableRawPointer, _ n: Int) {
    let seed = UInt8(truncatingIfNeeded: (UInt(bitPattern: p) >> 4) ^ UInt(n) ^ 0x5A)
    if n >= 16 {
        p.storeBytes(of: UInt(bitPattern: p) ^ UInt(n) ^ 0xFEED_0000_0000_0000, as: UInt.self)
        stamp(p + 8, n - 8, seed: seed)
    } else {
        stamp(p, n, seed: seed)
    }
}

private func checkBuffer(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
    let seed = UInt8(truncatingIfNeeded: (UInt(bitPattern: p) >> 4) ^ UInt(n) ^ 0x5A)
    if n >= 16 {
        return p.load(as: UInt.self) == UInt(bitPattern: p) ^ UInt(n) ^ 0xFEED_0000_0000_0000
            && isStamped(p + 8, n - 8, seed: seed)
    }
    return isStamped(p, n, seed: seed)
}

/// Whether `q`, the result of reallocating the stamped buffer (`old`, `oldSize`) to
/// `newSize` bytes, starts with the old buffer's contents.
private func checkReallocated(_ q: UnsafeMutableRawPointer, from old: UnsafeMutableRawPointer, _ oldSize: Int, _ newSize: Int) -> Bool {
    let kept = min(oldSize, newSize)
    let seed = UInt8(truncatingIfNeeded: (UInt(bitPattern: old) >> 4) ^ UInt(oldSize) ^ 0x5A)
    if oldSize >= 16 {
        if kept >= 8 && q.load(as: UInt.self) != UInt(bitPattern: old) ^ UInt(oldSize) ^ 0xFEED_0000_0000_0000 { return false }
        return kept <= 8 || isStamped(q + 8, kept - 8, seed: seed)
    }
    return isStamped(q, kept, seed: seed)
}

// MARK: - Stress

private struct Held: @unchecked Sendable {
    var pointer: UnsafeMutableRawPointer
    var size: Int
    var fromCache: Bool
}

/// The locked queue through which threads hand buffers to each other.
private final class Handoff: Sendable {
    let items = Mutex<[Held]>([])
    func push(_ h: Held) -> Bool {
        items.withLock { q in
            if q.count >= 4096 { return false }
            q.append(h)
            return true
        }
    }
    func pop() -> Held? { items.withLock { $0.popLast() } }
}

final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

private final class StressCounters: Sendable {
    let corrupted = Atomic<Int>(0)
    let failedAllocations = Atomic<Int>(0)
    let crossThreadFrees = Atomic<Int>(0)
    let largeAllocations = Atomic<Int>(0)
    let reallocations = Atomic<Int>(0)
}

@Suite(.timeLimit(.minutes(5))) struct StressTests {
    @Test func multiThreadedStress() throws {
        let threads = 4, operations = 200_000, slots = 1000
        let cache = try #require(ObjectCache(name: "test.stress.objects", size: 56))
        let handoff = Handoff()
        let counters = StressCounters()

        func release(_ h: Held) {
            if !checkBuffer(h.pointer, h.size) { counters.corrupted.add(1, ordering: .relaxed) }
            if h.fromCache { cache.free(h.pointer) } else { free(h.pointer, size: h.size) }
        }

        let workers = (0..<threads).map { t in
            startThread {
                var rng = SplitMix(seed: UInt64(t) &* 7919 &+ 1)
                var live = [Held?](repeating: nil, count: slots)
                for op in 0..<operations {
                    let i = rng.next(slots)
                    if let h = live[i] {
                        if !h.fromCache && rng.next(8) == 0 {
                            // realloc: the old stamp must survive in the prefix; restamp after.
                            let newSize = rng.next(20) == 0 ? SizeClasses.maxSize + rng.next(64 * 1024) : 1 + rng.next(4000)
                            guard let q = realloc(h.pointer, oldSize: h.size, newSize: newSize) else {
                                counters.failedAllocations.add(1, ordering: .relaxed)
                                continue
                            }
                            counters.reallocations.add(1, ordering: .relaxed)
                            if !checkReallocated(q, from: h.pointer, h.size, newSize) { counters.corrupted.add(1, ordering: .relaxed) }
                            stampBuffer(q, newSize)
                            live[i] = Held(pointer: q, size: newSize, fromCache: false)
                            continue
                        }
                        live[i] = nil
                        if rng.next(4) == 0 && handoff.push(h) { continue }
                        release(h)
                    } else {
                        let r = rng.next(1000)
                        var held: Held?
                        if r < 100 {
                            if let p = cache.allocate() { held = Held(pointer: p, size: 56, fromCache: true) }
                        } else {
                            let size = r < 105 ? SizeClasses.maxSize + 1 + rng.next(96 * 1024)
                                : r < 200 ? 1025 + rng.next(SizeClasses.maxSize - 1024)
                                : r < 210 ? rng.next(17)
                                : 1 + rng.next(1024)
                            if size > SizeClasses.maxSize { counters.largeAllocations.add(1, ordering: .relaxed) }
                            if let p = alloc(size) { held = Held(pointer: p, size: size, fromCache: false) }
                        }
                        if let h = held {
                            stampBuffer(h.pointer, h.size)
                            live[i] = h
                        } else {
                            counters.failedAllocations.add(1, ordering: .relaxed)
                        }
                    }
                    if op % 4 == 0, let h = handoff.pop() {
                        counters.crossThreadFrees.add(1, ordering: .relaxed)
                        release(h)
                    }
                }
                for case let h? in live { release(h) }
            }
        }
        workers.forEach(join)
        while let h = handoff.pop() { release(h) }

        #expect(counters.corrupted.load(ordering: .relaxed) == 0, "buffers overwritten or handed out twice")
        #expect(counters.failedAllocations.load(ordering: .relaxed) == 0)
        #expect(counters.crossThreadFrees.load(ordering: .relaxed) > 10_000)
        #expect(counters.largeAllocations.load(ordering: .relaxed) > 100)
        #expect(counters.reallocations.load(ordering: .relaxed) > 10_000)
        let arenaProblem = StateRegion.arena.bound(to: PageArena.self).pointee.verify()
        #expect(arenaProblem == nil, "arena: \(arenaProblem.map { "\($0)" } ?? "")")
        // Every worker exited: all the private cache's buffers are back, nothing stranded.
        let s = cache.statistics
        #expect(s.buffersInUse == 0)
        #expect(s.allocations > 10_000)
        #expect(cache.destroy() == 0)
    }

    /// Buffers allocated on one thread and freed on others, many times over, with the
    /// threads exiting in between: the cache's accounting stays exact.
    @Test func producerConsumerThroughOneCache() throws {
        let cache = try #require(ObjectCache(name: "test.stress.pc", size: 100))
        let handoff = Handoff()
        let counters = StressCounters()
        for _ in 0..<3 {
            let done = Flag()
            let producer = startThread {
                for _ in 0..<30_000 {
                    guard let p = cache.allocate() else { counters.failedAllocations.add(1, ordering: .relaxed); continue }
                    stampBuffer(p, 100)
                    while !handoff.push(Held(pointer: p, size: 100, fromCache: true)) { sched_yield() }
                }
                done.set()
            }
            let consumer = startThread {
                while true {
                    if let h = handoff.pop() {
                        if !checkBuffer(h.pointer, h.size) { counters.corrupted.add(1, ordering: .relaxed) }
                        cache.free(h.pointer)
                    } else if done.isSet {
                        if let h = handoff.pop() { cache.free(h.pointer); continue }
                        break
                    } else {
                        sched_yield()
                    }
                }
            }
            join(producer)
            join(consumer)
            #expect(cache.statistics.buffersInUse == 0)
        }
        #expect(counters.corrupted.load(ordering: .relaxed) == 0)
        #expect(counters.failedAllocations.load(ordering: .relaxed) == 0)
        #expect(cache.statistics.allocations == 90_000)
        #expect(cache.destroy() == 0)
    }

    /// reap() on one thread while others allocate and free through the same cache.
    @Test func reapWhileOtherThreadsAllocate() throws {
        let cache = try #require(ObjectCache(name: "test.stress.reap", size: 300))
        let stop = Flag()
        let counters = StressCounters()
        let workers = (0..<3).map { t in
            startThread {
                var rng = SplitMix(seed: UInt64(t) + 1234)
                var live = [UnsafeMutableRawPointer?](repeating: nil, count: 300)
                while !stop.isSet {
                    let i = rng.next(300)
                    if let p = live[i] {
                        if !checkBuffer(p, 300) { counters.corrupted.add(1, ordering: .relaxed) }
                        cache.free(p)
                        live[i] = nil
                    } else if let p = cache.allocate() {
                        stampBuffer(p, 300)
                        live[i] = p
                    } else {
                        counters.failedAllocations.add(1, ordering: .relaxed)
                    }
                }
                for case let p? in live { cache.free(p) }
            }
        }
        for _ in 0..<150 {
            cache.reap()
            usleep(1000)
        }
        stop.set()
        workers.forEach(join)
        #expect(counters.corrupted.load(ordering: .relaxed) == 0)
        #expect(counters.failedAllocations.load(ordering: .relaxed) == 0)
        #expect(cache.statistics.buffersInUse == 0)
        cache.reap()
        #expect(cache.statistics.slabs == 0, "with every thread gone, a reap returns every slab")
        #expect(cache.destroy() == 0)
    }

    // MARK: - Fork

    /// fork() while other threads allocate: the child (only the forking thread survives)
    /// can allocate and free — no lock is left held by a thread that does not exist there,
    /// and the other threads' magazines were reclaimed.  The child runs no Swift runtime
    /// code that could need a lock: plain loops over the allocator's entry points.
    @Test func forkedChildCanAllocate() throws {
        let stop = Flag()
        let counters = StressCounters()
        let workers = (0..<2).map { t in
            startThread {
                var rng = SplitMix(seed: UInt64(t) + 99)
                var live = [UnsafeMutableRawPointer?](repeating: nil, count: 256)
                var sizes = [Int](repeating: 0, count: 256)
                while !stop.isSet {
                    let i = rng.next(256)
                    if let p = live[i] {
                        free(p, size: sizes[i])
                        live[i] = nil
                    } else {
                        let size = rng.next(50) == 0 ? 40_000 + rng.next(100_000) : 1 + rng.next(2000)
                        live[i] = alloc(size)
                        sizes[i] = size
                        if let p = live[i] { memset(p, 0x21, min(size, 64)) } else { counters.failedAllocations.add(1, ordering: .relaxed) }
                    }
                }
                for i in 0..<256 { if let p = live[i] { free(p, size: sizes[i]) } }
            }
        }
        var statuses: [Int32] = []
        for round in 0..<12 {
            usleep(2000)
            let pid = fork()
            if pid == 0 { _exit(childWork(seed: round)) }
            #expect(pid > 0, "fork failed: errno \(errno)")
            guard pid > 0 else { break }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            statuses.append(status)
        }
        stop.set()
        workers.forEach(join)
        #expect(counters.failedAllocations.load(ordering: .relaxed) == 0)
        for status in statuses {
            // WIFEXITED && WEXITSTATUS == 0; a hung child is killed by its alarm (SIGALRM).
            #expect(status & 0x7F == 0, "child killed by signal \(status & 0x7F)")
            #expect((status >> 8) & 0xFF == 0, "child found a problem (exit \((status >> 8) & 0xFF))")
        }
    }
}

/// The forked child's work: allocations of many sizes (pulling from magazines the
/// parent's other threads had), a fresh object cache, large spans; returns the exit code.
@inline(never)
private func childWork(seed: Int) -> Int32 {
    alarm(20)
    var size = 1 + seed
    var n = 0
    while n < 4000 {
        guard let p = Allocator.malloc(size) else { return 2 }
        memset(p, 0x7E, size)
        let q = Allocator.malloc(size)
        if q == nil || q == p { return 3 }
        memset(q!, 0x3F, size)
        if p.load(as: UInt8.self) != 0x7E || p.load(fromByteOffset: size - 1, as: UInt8.self) != 0x7E { return 4 }
        Allocator.free(p)
        Allocator.free(q)
        size = size % 3000 + 97
        n += 1
    }
    let name: StaticString = "child.cache"
    let cacheName = UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
    guard let cache = CacheHandle.create(name: cacheName, size: 72, alignment: 8, constructor: nil, destructor: nil, argument: nil) else { return 5 }
    n = 0
    while n < 1000 {
        guard let b = cache.allocate() else { return 6 }
        memset(b, 1, 72)
        cache.free(b)
        n += 1
    }
    if cache.destroy().outstandingBuffers != 0 { return 7 }
    guard let big = Allocator.malloc(5 << 20) else { return 8 }
    memset(big, 2, 5 << 20)
    Allocator.free(big)
    return 0
}
