// Support — the small tools every workload shares: a monotonic clock, a fast
// deterministic PRNG, page-backed scratch memory that belongs to neither
// allocator, threads, a barrier, and a single-producer/single-consumer ring.
//
// Everything a workload uses between its two clock readings is here or in
// the allocator shims (Allocators.swift), and is the same code for every
// allocator: the harness's own memory (slot arrays, the ring) comes from mmap,
// so it neither helps nor hurts either heap.

import Glibc
import Synchronization

/// Nanoseconds on CLOCK_MONOTONIC.
@inline(__always) func monotonicNanoseconds() -> UInt64 { nanoseconds(CLOCK_MONOTONIC) }

/// CPU time of the whole process (all its threads), in nanoseconds.
@inline(__always) func processCPUNanoseconds() -> UInt64 { nanoseconds(CLOCK_PROCESS_CPUTIME_ID) }

@inline(__always) private func nanoseconds(_ clock: clockid_t) -> UInt64 {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Wall-clock and CPU time of a timed region.  CPU time (summed over the
/// process's threads) is less disturbed than wall time when other programs
/// compete for the CPUs; busy-waiting counts in both.
struct Elapsed {
    var wall: UInt64
    var cpu: UInt64
}

/// wyrand: one add and one 64×64→128 multiply per number; deterministic from its seed,
/// so every allocator sees exactly the same sequence of sizes and slots.
struct WyRand {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    @inline(__always) mutating func next() -> UInt64 {
        state &+= 0xA076_1D64_78BD_642F
        let m = state.multipliedFullWidth(by: state ^ 0xE703_7ED1_A0B4_28DB)
        return m.high ^ m.low
    }
}

/// A uniform integer in 0..<n from 32 random bits (multiply-high, no division).
@inline(__always) func below(_ n: Int, _ bits32: UInt64) -> Int {
    Int(truncatingIfNeeded: ((bits32 & 0xFFFF_FFFF) &* UInt64(n)) >> 32)
}

/// Anonymous mapped memory, outside both heaps.  Freed explicitly.
struct MappedArray<Element> {
    let base: UnsafeMutablePointer<Element>
    let count: Int
    private let bytes: Int

    init(count: Int) {
        let bytes = max(4096, (count * MemoryLayout<Element>.stride + 4095) & ~4095)
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { fatalError("slabguard-bench: mmap of \(bytes) bytes failed") }
        self.base = p.bindMemory(to: Element.self, capacity: count)
        self.count = count
        self.bytes = bytes
    }

    @inline(__always) subscript(i: Int) -> Element {
        get { base[i] }
        nonmutating set { base[i] = newValue }
    }

    func release() { munmap(UnsafeMutableRawPointer(base), bytes) }
}

/// A thread barrier over pthread_barrier_t (stable storage in mapped memory).
struct Barrier {
    private let storage: MappedArray<pthread_barrier_t>

    init(parties: Int) {
        storage = MappedArray(count: 1)
        pthread_barrier_init(storage.base, nil, UInt32(parties))
    }

    func wait() { _ = pthread_barrier_wait(storage.base) }

    func release() {
        pthread_barrier_destroy(storage.base)
        storage.release()
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Starts a thread running `body`.  (Thread start-up is outside every timed region.)
func spawnThread(_ body: @escaping () -> Void) -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        body.run()
        return nil
    }, context)
    if rc != 0 { fatalError("slabguard-bench: pthread_create failed (\(rc))") }
    return thread
}

func joinThread(_ thread: pthread_t) { pthread_join(thread, nil) }

/// Runs `body(t)` on `count` threads, all released together; returns the wall
/// time from their release until the last one finished, and the process's CPU
/// time over the same interval.  One "thread" is the
/// calling thread itself: a single-threaded workload stays in a single-threaded
/// process, which glibc's malloc notices (it skips its arena locks then), as it
/// would in a real single-threaded program.
func timeOnThreads(_ count: Int, _ body: @escaping (Int) -> Void) -> Elapsed {
    if count == 1 {
        let c0 = processCPUNanoseconds(), t0 = monotonicNanoseconds()
        body(0)
        let t1 = monotonicNanoseconds(), c1 = processCPUNanoseconds()
        return Elapsed(wall: t1 - t0, cpu: c1 - c0)
    }
    let start = Barrier(parties: count + 1)
    var threads: [pthread_t] = []
    for t in 0..<count {
        threads.append(spawnThread {
            start.wait()
            body(t)
        })
    }
    let c0 = processCPUNanoseconds()
    start.wait()
    let t0 = monotonicNanoseconds()
    for thread in threads { joinThread(thread) }
    let t1 = monotonicNanoseconds(), c1 = processCPUNanoseconds()
    start.release()
    return Elapsed(wall: t1 - t0, cpu: c1 - c0)
}

/// One atomic index alone on its cache lines (the object is padded past 128 bytes),
/// so the producer's and the consumer's indices never share a line.
final class PaddedIndex: @unchecked Sendable {
    let value = Atomic<Int>(0)
    private var padding: (Int, Int, Int, Int, Int, Int, Int, Int,
                          Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

/// A bounded lock-free single-producer/single-consumer ring of (buffer, size) items.
/// Each side keeps a cached copy of the other side's index and reloads it only
/// when the ring looks full (producer) or empty (consumer).  A side that must
/// wait spins briefly, then yields the CPU (the machine has 2 cores).
final class SPSCRing: @unchecked Sendable {
    struct Item {
        var buffer: UnsafeMutableRawPointer?
        var size: Int
    }

    let capacity: Int
    private let mask: Int
    private let items: MappedArray<Item>
    private let head = PaddedIndex()   // next item to take; written by the consumer
    private let tail = PaddedIndex()   // next free cell; written by the producer

    init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0)
        self.capacity = capacity
        self.mask = capacity - 1
        self.items = MappedArray(count: capacity)
    }

    deinit { items.release() }

    /// Producer side.
    struct Producer {
        let ring: SPSCRing
        var tail = 0
        var cachedHead = 0

        @inline(__always) mutating func push(_ buffer: UnsafeMutableRawPointer, size: Int) {
            if tail &- cachedHead == ring.capacity {
                var spins = 0
                cachedHead = ring.head.value.load(ordering: .acquiring)
                while tail &- cachedHead == ring.capacity {
                    spins &+= 1
                    if spins > 64 { sched_yield() }
                    cachedHead = ring.head.value.load(ordering: .acquiring)
                }
            }
            ring.items[tail & ring.mask] = Item(buffer: buffer, size: size)
            tail &+= 1
            ring.tail.value.store(tail, ordering: .releasing)
        }
    }

    /// Consumer side.
    struct Consumer {
        let ring: SPSCRing
        var head = 0
        var cachedTail = 0

        @inline(__always) mutating func pop() -> Item {
            if head == cachedTail {
                var spins = 0
                cachedTail = ring.tail.value.load(ordering: .acquiring)
                while head == cachedTail {
                    spins &+= 1
                    if spins > 64 { sched_yield() }
                    cachedTail = ring.tail.value.load(ordering: .acquiring)
                }
            }
            let item = ring.items[head & ring.mask]
            head &+= 1
            ring.head.value.store(head, ordering: .releasing)
            return item
        }
    }
}

/// Fields of /proc/self/status in KiB ("VmRSS", "VmHWM"); 0 when unreadable.
func procStatusKiB(_ field: String) -> Int {
    let fd = open("/proc/self/status", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(field + ":") {
        let digits = line.dropFirst(field.count + 1).filter { $0.isNumber }
        return Int(digits) ?? 0
    }
    return 0
}

/// Writes a line to standard error (unbuffered).
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(2, bytes.baseAddress! + done, bytes.count - done)
            if n <= 0 { break }
            done += n
        }
    }
}
