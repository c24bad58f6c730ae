// The two workloads whose frees happen on another thread than the allocation:
// producer/consumer (every free is remote) and the Larson-style server loop
// (slot arrays change hands).  See Workloads.swift for the common rules.

import Glibc

// MARK: - (c) producer / consumer

enum ProducerConsumer {
    static let ringCapacity = 1024

    static func run<A: BenchAllocator>(_ allocator: A.Type, items: Int, seed base: UInt64) -> Measurement {
        let ring = SPSCRing(capacity: ringCapacity)
        let sums = MappedArray<UInt64>(count: 2)
        let elapsed = timeOnThreads(2) { t in
            if t == 0 {
                produce(A.self, ring, items: items, seed: seed(base, thread: 0))
            } else {
                sums[1] = consume(A.self, ring, items: items)
            }
        }
        let checksum = sums[1]
        sums.release()
        return Measurement(elapsed: elapsed, operations: UInt64(items), checksum: checksum)
    }

    static func produce<A: BenchAllocator>(_ allocator: A.Type, _ ring: SPSCRing, items: Int, seed: UInt64) {
        var rng = WyRand(seed: seed)
        var producer = SPSCRing.Producer(ring: ring)
        for i in 0..<items {
            let s = RandomChurn.size(rng.next())
            let p = A.allocate(s)
            touch(p, s, UInt64(truncatingIfNeeded: i))
            producer.push(p, size: s)
        }
    }

    static func consume<A: BenchAllocator>(_ allocator: A.Type, _ ring: SPSCRing, items: Int) -> UInt64 {
        var consumer = SPSCRing.Consumer(ring: ring)
        var sum: UInt64 = 0
        for _ in 0..<items {
            let item = consumer.pop()
            let p = item.buffer.unsafelyUnwrapped
            sum &+= readBack(p, item.size)
            A.deallocate(p, size: item.size)
        }
        return sum
    }
}

// MARK: - (d) Larson-style server loop

enum Larson {
    static let slots = 1000
    static let operationsPerRound = 10_000

    /// 8…8192 B; one time in 128, 8193…65536 B.
    @inline(__always) static func size(_ r: UInt64) -> Int {
        if r & 0x7F == 0 { return 8193 &+ below(65536 - 8192, r) }
        return 8 &+ below(8185, r)
    }

    static func run<A: BenchAllocator>(_ allocator: A.Type, operations: Int, seed base: UInt64) -> Measurement {
        let arrays = [SlotArray(count: slots), SlotArray(count: slots)]
        let sums = MappedArray<UInt64>(count: 2)
        let roundEnd = Barrier(parties: 2)
        let rounds = operations / operationsPerRound
        let elapsed = timeOnThreads(2) { t in
            sums[t] = serve(A.self, thread: t, arrays, rounds: rounds, roundEnd: roundEnd, seed: seed(base, thread: t))
        }
        let checksum = sums[0] &+ sums[1]
        roundEnd.release()
        for a in arrays { a.release() }
        sums.release()
        return Measurement(elapsed: elapsed, operations: UInt64(2 * rounds * operationsPerRound), checksum: checksum)
    }

    /// Thread `t` fills array `t`, then in round r works on array (t + r) mod 2: after
    /// each round the two threads meet and trade arrays.  At the end each frees the
    /// array it holds.
    static func serve<A: BenchAllocator>(_ allocator: A.Type, thread t: Int, _ arrays: [SlotArray],
                                          rounds: Int, roundEnd: Barrier, seed: UInt64) -> UInt64 {
        var rng = WyRand(seed: seed)
        var sum: UInt64 = 0
        let own = arrays[t]
        for i in 0..<own.count {
            let s = size(rng.next())
            let p = A.allocate(s)
            touch(p, s, UInt64(i))
            own.buffers[i] = p
            own.sizes[i] = s
        }
        roundEnd.wait()
        for round in 0..<rounds {
            let slots = arrays[(t &+ round) & 1]
            let n = slots.count
            for op in 0..<operationsPerRound {
                let r = rng.next()
                sum &+= slots.replace(below(n, r >> 32), size: size(r), stamp: UInt64(truncatingIfNeeded: op), A.self)
            }
            roundEnd.wait()
        }
        let last = arrays[(t &+ rounds) & 1]
        for i in 0..<last.count {
            let p = last.buffers[i].unsafelyUnwrapped
            sum &+= readBack(p, last.sizes[i])
            A.deallocate(p, size: last.sizes[i])
        }
        return sum
    }
}
