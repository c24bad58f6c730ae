// Workloads — what is measured.  Each is one generic function over
// `BenchAllocator` (see Allocators.swift for why that is fair), timed from
// the moment its threads are released until the last one finished; set-up
// that does not allocate from the heap under test (slot arrays, the ring,
// thread creation) is outside the clock.
//
// Every workload touches the buffers it gets (writes the first and the last
// byte) and reads them back before freeing them, summing what it reads into a
// checksum.  The sequences of sizes and slots come from a seeded PRNG, so the
// checksum depends only on the workload and its parameters: every allocator
// must produce the same one, which the runner checks.
//
//   random-1t, random-2t  random sizes 16–1024 B, 1000 live slots per thread;
//                         an operation frees a random slot's buffer and puts a
//                         new one there.
//   object-cache          64-byte objects from an ObjectCache (slabguard) or
//                         malloc(64): allocate 1000, free them in the same order.
//   producer-consumer     one thread allocates 16–1024 B buffers and passes them
//                         through a lock-free SPSC ring (1024 cells) to another
//                         thread, which frees them: every free is cross-thread.
//   larson                2 threads, 1000 slots each, sizes 8 B–8 KiB with 1 in
//                         128 from 8 KiB–64 KiB; every 10,000 operations the two
//                         threads swap slot arrays, so buffers are freed by the
//                         thread that did not allocate them.  (After Larson &
//                         Krishnan's server benchmark.)

import Glibc

struct WorkloadParameters {
    /// Multiplies every operation count (--quick uses 0.1).
    var scale: Double = 1
    var seed: UInt64 = 0x5EED_51AB_6A2D
}

/// One timed run.
struct Measurement {
    var elapsed: Elapsed
    var nanoseconds: UInt64 { elapsed.wall }
    /// Operations done (one operation = one allocation and one free).
    var operations: UInt64
    /// What the workload read back from its buffers; equal for every allocator.
    var checksum: UInt64
}

enum Workload: String, CaseIterable {
    case random1 = "random-1t"
    case random2 = "random-2t"
    case objectCache = "object-cache"
    case producerConsumer = "producer-consumer"
    case larson = "larson"

    var threads: Int { self == .random1 || self == .objectCache ? 1 : 2 }

    var summary: String {
        switch self {
        case .random1: return "1 thread, 16-1024 B, 1000 live slots, replace a random slot"
        case .random2: return "2 threads, each as random-1t"
        case .objectCache: return "ObjectCache vs malloc, 64 B objects, batches of 1000"
        case .producerConsumer: return "1 thread allocates 16-1024 B, SPSC ring, 1 thread frees"
        case .larson: return "2 threads, 8 B-8 KiB (1/128 up to 64 KiB), swap slot arrays every 10k ops"
        }
    }

    /// Operations per thread at scale 1 (each run of glibc takes roughly 0.2–0.5 s here).
    var baseOperations: Int {
        switch self {
        case .random1, .random2: return 10_000_000
        case .objectCache: return 20_000_000
        case .producerConsumer: return 5_000_000
        case .larson: return 1_500_000
        }
    }

    func operations(_ p: WorkloadParameters) -> Int {
        let granule = self == .larson ? Larson.operationsPerRound : (self == .objectCache ? ObjectChurn.batch : 1)
        let n = Int(Double(baseOperations) * p.scale)
        return max(granule, n / granule * granule)
    }

    func run<A: BenchAllocator>(_ allocator: A.Type, _ p: WorkloadParameters) -> Measurement {
        let ops = operations(p)
        switch self {
        case .random1: return RandomChurn.run(A.self, threads: 1, operations: ops, seed: p.seed)
        case .random2: return RandomChurn.run(A.self, threads: 2, operations: ops, seed: p.seed)
        case .objectCache: return ObjectChurn.run(A.self, operations: ops, seed: p.seed)
        case .producerConsumer: return ProducerConsumer.run(A.self, items: ops, seed: p.seed)
        case .larson: return Larson.run(A.self, operations: ops, seed: p.seed)
        }
    }
}

// MARK: - Buffer touching

/// Writes the first and the last byte of a new buffer.
@inline(__always) func touch(_ p: UnsafeMutableRawPointer, _ size: Int, _ value: UInt64) {
    p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
    (p + (size &- 1)).storeBytes(of: UInt8(truncatingIfNeeded: value >> 8), as: UInt8.self)
}

/// Reads back what `touch` wrote.
@inline(__always) func readBack(_ p: UnsafeMutableRawPointer, _ size: Int) -> UInt64 {
    UInt64(p.load(as: UInt8.self)) &+ UInt64((p + (size &- 1)).load(as: UInt8.self)) << 8
}

@inline(__always) func seed(_ base: UInt64, thread: Int) -> UInt64 {
    base ^ (UInt64(thread &+ 1) &* 0x9E37_79B9_7F4A_7C15)
}

/// A thread's live buffers and their sizes (in mapped memory, outside both heaps).
struct SlotArray {
    let buffers: MappedArray<UnsafeMutableRawPointer?>
    let sizes: MappedArray<Int>
    var count: Int { buffers.count }

    init(count: Int) {
        buffers = MappedArray(count: count)
        sizes = MappedArray(count: count)
    }

    func release() { buffers.release(); sizes.release() }

    /// The churn step: reads back and frees slot `i`'s buffer, puts a new touched buffer
    /// of `size` bytes there; returns what was read back.
    @inline(__always) func replace<A: BenchAllocator>(_ i: Int, size s: Int, stamp: UInt64, _ allocator: A.Type) -> UInt64 {
        let old = buffers[i].unsafelyUnwrapped
        let oldSize = sizes[i]
        let sum = readBack(old, oldSize)
        A.deallocate(old, size: oldSize)
        let p = A.allocate(s)
        touch(p, s, stamp)
        buffers[i] = p
        sizes[i] = s
        return sum
    }
}

// MARK: - (a) random sizes, random slots

enum RandomChurn {
    static let slots = 1000

    static func run<A: BenchAllocator>(_ allocator: A.Type, threads: Int, operations: Int, seed base: UInt64) -> Measurement {
        let arrays = (0..<threads).map { _ in SlotArray(count: slots) }
        let sums = MappedArray<UInt64>(count: threads)
        let elapsed = timeOnThreads(threads) { t in
            sums[t] = churn(A.self, arrays[t], operations: operations, seed: seed(base, thread: t))
        }
        let checksum = (0..<threads).reduce(UInt64(0)) { $0 &+ sums[$1] }
        for a in arrays { a.release() }
        sums.release()
        return Measurement(elapsed: elapsed, operations: UInt64(operations * threads), checksum: checksum)
    }

    @inline(__always) static func size(_ r: UInt64) -> Int { 16 &+ below(1009, r) }   // 16...1024

    static func churn<A: BenchAllocator>(_ allocator: A.Type, _ slots: SlotArray, operations: Int, seed: UInt64) -> UInt64 {
        var rng = WyRand(seed: seed)
        var sum: UInt64 = 0
        let n = slots.count
        for i in 0..<n {
            let s = size(rng.next())
            let p = A.allocate(s)
            touch(p, s, UInt64(i))
            slots.buffers[i] = p
            slots.sizes[i] = s
        }
        for op in 0..<operations {
            let r = rng.next()
            sum &+= slots.replace(below(n, r >> 32), size: size(r), stamp: UInt64(truncatingIfNeeded: op), A.self)
        }
        for i in 0..<n {
            let p = slots.buffers[i].unsafelyUnwrapped
            sum &+= readBack(p, slots.sizes[i])
            A.deallocate(p, size: slots.sizes[i])
        }
        return sum
    }
}

// MARK: - (b) fixed-size object churn

enum ObjectChurn {
    static let objectSize = 64
    static let batch = 1000

    static func run<A: BenchAllocator>(_ allocator: A.Type, operations: Int, seed: UInt64) -> Measurement {
        let pool = A.makePool(objectSize: objectSize)
        let objects = MappedArray<UnsafeMutableRawPointer?>(count: batch)
        let sums = MappedArray<UInt64>(count: 1)
        let rounds = operations / batch
        let elapsed = timeOnThreads(1) { _ in
            sums[0] = churn(pool, objects, rounds: rounds, seed: seed)
        }
        let checksum = sums[0]
        pool.destroy()
        objects.release()
        sums.release()
        return Measurement(elapsed: elapsed, operations: UInt64(rounds * batch), checksum: checksum)
    }

    static func churn<P: FixedSizePool>(_ pool: P, _ objects: MappedArray<UnsafeMutableRawPointer?>, rounds: Int, seed: UInt64) -> UInt64 {
        var sum: UInt64 = 0
        let n = objects.count
        for round in 0..<rounds {
            let tag = seed &+ UInt64(round)
            for i in 0..<n {
                let p = pool.allocate()
                p.storeBytes(of: tag ^ UInt64(i), as: UInt64.self)
                p.storeBytes(of: UInt8(truncatingIfNeeded: i), toByteOffset: objectSize - 1, as: UInt8.self)
                objects[i] = p
            }
            for i in 0..<n {
                let p = objects[i].unsafelyUnwrapped
                sum &+= p.load(as: UInt64.self) &+ UInt64(p.load(fromByteOffset: objectSize - 1, as: UInt8.self))
                pool.free(p)
            }
        }
        return sum
    }
}
