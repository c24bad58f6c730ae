// Allocators under test, and the configurations the benchmark compares.
//
// Fairness: each workload is written once, generic over `BenchAllocator`, a
// protocol of static functions.  The runner picks the concrete type once per
// measurement (`AllocatorKind.measure`), so the optimiser specialises the
// whole workload for each allocator and the inner loop calls `malloc`/`free`
// or `Slabguard.alloc`/`Slabguard.free(_:size:)` directly — no witness-table
// call, no closure, nothing else that differs between the two versions.
// (Checked: `objdump -d` of the release binary shows two specialisations of
// each workload loop, one calling `malloc@plt`/`free@plt`, the other calling
// `Slabguard.alloc(_:)`/`Slabguard.free(_:size:)`; see BENCHMARKS.md.)
//
// Configurations: a measurement runs in a freshly forked child, which applies
// the configuration's environment (a nil value unsets the variable) and its
// `configure` hook before the allocator is first used.  The first selected
// configuration is the baseline every ratio is taken against.  A new column
// is one more entry in `AllocatorConfig.all` (and in `defaultSelection` to run
// it without --allocator); the runner, the table and the machine-readable
// lines pick it up with no other change.

import Glibc
import Slabguard

/// The two operations a workload needs, plus a fixed-size pool for the object-cache workload.
protocol BenchAllocator {
    associatedtype Pool: FixedSizePool
    /// First use of the allocator, done before any clock starts (heap set-up is a one-off).
    static func prepare()
    static func allocate(_ size: Int) -> UnsafeMutableRawPointer
    static func deallocate(_ buffer: UnsafeMutableRawPointer, size: Int)
    /// A source of `objectSize`-byte objects (an `ObjectCache` for slabguard).
    static func makePool(objectSize: Int) -> Pool
}

/// Fixed-size objects: kmem_cache_alloc/free, or malloc/free of one size.
protocol FixedSizePool {
    func allocate() -> UnsafeMutableRawPointer
    func free(_ object: UnsafeMutableRawPointer)
    func destroy()
}

@inline(never) func allocationFailed(_ size: Int) -> Never {
    fatalError("slabguard-bench: allocation of \(size) bytes failed")
}

// MARK: - glibc

enum GlibcMalloc: BenchAllocator {
    static func prepare() {
        if let p = Glibc.malloc(16) { Glibc.free(p) }
    }

    @inline(__always) static func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        guard let p = Glibc.malloc(size) else { allocationFailed(size) }
        return p
    }

    @inline(__always) static func deallocate(_ buffer: UnsafeMutableRawPointer, size: Int) {
        Glibc.free(buffer)
    }

    struct Pool: FixedSizePool {
        let size: Int

        @inline(__always) func allocate() -> UnsafeMutableRawPointer {
            guard let p = Glibc.malloc(size) else { allocationFailed(size) }
            return p
        }

        @inline(__always) func free(_ object: UnsafeMutableRawPointer) { Glibc.free(object) }

        func destroy() {}
    }

    static func makePool(objectSize: Int) -> Pool { Pool(size: objectSize) }
}

// MARK: - slabguard (public Swift API)

enum SlabguardHeap: BenchAllocator {
    static func prepare() {
        if let p = Slabguard.alloc(16) { Slabguard.free(p, size: 16) }
    }

    @inline(__always) static func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        guard let p = Slabguard.alloc(size) else { allocationFailed(size) }
        return p
    }

    @inline(__always) static func deallocate(_ buffer: UnsafeMutableRawPointer, size: Int) {
        Slabguard.free(buffer, size: size)
    }

    struct Pool: FixedSizePool {
        let cache: ObjectCache

        @inline(__always) func allocate() -> UnsafeMutableRawPointer {
            guard let p = cache.allocate() else { allocationFailed(cache.bufferSize) }
            return p
        }

        @inline(__always) func free(_ object: UnsafeMutableRawPointer) { cache.free(object) }

        func destroy() {
            let leaked = cache.destroy()
            if leaked != 0 { fatalError("slabguard-bench: object cache destroyed with \(leaked) buffers out") }
        }
    }

    /// Debug words for the object caches the workloads create (set in the child from
    /// the configuration; nil: a fast cache).
    nonisolated(unsafe) static var objectCacheDebug: String? = nil

    static func makePool(objectSize: Int) -> Pool {
        guard let cache = ObjectCache(name: "bench_object_\(objectSize)", size: objectSize, debug: objectCacheDebug) else {
            fatalError("slabguard-bench: cannot create an object cache of \(objectSize)-byte objects")
        }
        return Pool(cache: cache)
    }
}

// MARK: - Configurations

enum AllocatorKind: String {
    case glibc
    case slabguard

    /// First use of the allocator (heap set-up), outside any timed region.
    func prepare() {
        switch self {
        case .glibc: GlibcMalloc.prepare()
        case .slabguard: SlabguardHeap.prepare()
        }
    }

    /// Runs `workload` on this allocator: the one place a kind becomes a type.
    func measure(_ workload: Workload, _ parameters: WorkloadParameters) -> Measurement {
        switch self {
        case .glibc: return workload.run(GlibcMalloc.self, parameters)
        case .slabguard: return workload.run(SlabguardHeap.self, parameters)
        }
    }
}

struct AllocatorConfig: Sendable {
    /// Column name in the table and in the machine-readable lines.
    var name: String
    var kind: AllocatorKind
    /// Set (or, with nil, unset) in the measurement's child before the allocator is first used.
    var environment: [(String, String?)] = []
    /// Debug words for the workloads' `ObjectCache`s (slabguard only).
    var objectCacheDebug: String? = nil
    /// Run in the child after the environment is set, before the allocator is first used.
    var configure: (@Sendable () -> Void)? = nil

    static let glibc = AllocatorConfig(name: "glibc", kind: .glibc)
    /// Fast mode, whatever SLABGUARD_DEBUG the benchmark itself was started with.
    static let slabguard = AllocatorConfig(name: "slabguard", kind: .slabguard,
                                           environment: [("SLABGUARD_DEBUG", nil)])
    /// The `default` debug words (deadbeef,redzone,uninit,audit,leaks) on the heap and on
    /// the object caches.  (Leaks are reported at exit; the measurement children end with
    /// _exit, so none are — the workloads free everything anyway.)
    static let slabguardDefault = AllocatorConfig(name: "slabguard-default", kind: .slabguard,
                                                  environment: [("SLABGUARD_DEBUG", "default")],
                                                  objectCacheDebug: "default")

    /// One debug word alone, on the heap and the object caches (`slabguard-WORD`).
    static func slabguardDebug(_ words: String, name: String) -> AllocatorConfig {
        AllocatorConfig(name: "slabguard-\(name)", kind: .slabguard,
                        environment: [("SLABGUARD_DEBUG", words)], objectCacheDebug: words)
    }

    /// Each debug flag alone, to show where the time of `default` goes.
    static let perFlag: [AllocatorConfig] = [
        slabguardDebug("deadbeef", name: "deadbeef"),
        slabguardDebug("redzone", name: "redzone"),
        slabguardDebug("uninit", name: "uninit"),
        slabguardDebug("audit", name: "audit"),
        slabguardDebug("audit=4", name: "audit4"),
        slabguardDebug("deadbeef,quarantine=16M", name: "quarantine"),
    ]

    /// Production sampling: 1 in N malloc-family allocations guarded, the rest (and the
    /// object caches) on the fast paths.  Target (design §5): within 5% of fast mode.
    static func slabguardSample(_ n: Int, name: String) -> AllocatorConfig {
        AllocatorConfig(name: "slabguard-\(name)", kind: .slabguard, environment: [("SLABGUARD_DEBUG", "sample=\(n)")])
    }
    static let sampling: [AllocatorConfig] = [slabguardSample(1000, name: "sample1k"), slabguardSample(10_000, name: "sample10k"),
                                              slabguardSample(100_000, name: "sample100k")]

    /// Every configuration --allocator accepts.
    static let all: [AllocatorConfig] = [.glibc, .slabguard, .slabguardDefault] + sampling + perFlag
    /// What runs without --allocator, the baseline first.
    static let defaultSelection: [AllocatorConfig] = [.glibc, .slabguard]

    /// Applies the configuration in a measurement child.
    func apply() {
        for (name, value) in environment {
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
        SlabguardHeap.objectCacheDebug = objectCacheDebug
        configure?()
    }
}
