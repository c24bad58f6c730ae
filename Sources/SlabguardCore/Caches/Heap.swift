// Heap lifecycle — lazy set-up on the first slow-path call, fork safety, and
// the default heap that malloc, sg_alloc and the Swift API use.
//
// Set-up runs in two phases under `initMutex`: phase 1 builds the core (arena,
// registries, the default heap's caches) without calling anything that could
// allocate; phase 2 creates the thread-exit key and the fork handlers, which
// might call malloc: such a re-entrant call on the initializing thread finds
// phase 1 done and is served without magazines.
//
// Fork: the prepare handler takes every lock slabguard has, in the global order
// of DESIGN.md (the debug layer's first, through its hook, then registry,
// threads, each cache's depot and slab locks, large spans, pools, arena, the
// mapping table), so that no lock is held by a thread that will not exist in
// the child; the parent releases them; the child re-initializes them and
// reclaims the magazines of the other threads.

import CSlabguardShim
import Glibc

struct HeapLifecycle {
    var state: UInt64 = 0            // 0 nothing, 1 core ready, 2 ready
    var initMutex = pthread_mutex_t()
    var failed = false
    /// Set by the debug layer: called at the end of phase 1 to pick cache flags
    /// (returns the default heap's debug flags and tag bytes), and around fork.
    var configure: (@convention(c) (UnsafeMutablePointer<UInt32>, UnsafeMutablePointer<Int>) -> Void)? = nil
    /// Set by the debug layer: runs at the end of phase 2 (exit handlers, logs).
    var ready: (@convention(c) () -> Void)? = nil
    /// Set by the debug layer: prepares freshly carved chunks of debug caches.
    var freshChunkHook: (@convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Void)? = nil
    /// Set by the debug layer: a debug cache's slab is being destroyed (its sidecar goes back).
    var slabRetireHook: (@convention(c) (UnsafeMutableRawPointer) -> Void)? = nil
    /// Called (no lock held) before a cache is destroyed: the debug layer hands back the
    /// buffers of it that wait in quarantine.
    var cacheDestroyHook: (@convention(c) (UnsafeMutableRawPointer) -> Void)? = nil
    /// Called (no allocator lock held) when the arena has no room for a large span: the
    /// debug layer gives back the freed spans it keeps out of reuse; true when it gave any.
    var reclaimHook: (@convention(c) () -> Bool)? = nil
    /// Where a debug cache's slab free-list link lives in its tag (set by the debug layer,
    /// which owns the tag's layout).
    var tagLinkOffset = 0
    /// Set by the debug layer: its state to reset in a forked child (its locks are in the
    /// lock table, `lockOrder`).
    var forkChild: (@convention(c) () -> Void)? = nil
    /// Every allocator mutex, in DESIGN.md's order (LockOrder.swift).
    var lockOrder = LockOrder.Table()

    @inline(__always) static var shared: UnsafeMutablePointer<HeapLifecycle> { StateRegion.lifecycle.bound(to: HeapLifecycle.self) }
}

public enum Heap {
    /// True once the heap is usable by this thread (sets it up on first call).
    @inline(__always) static func ensureReady() -> Bool {
        let life = HeapLifecycle.shared
        if sg_atomic_load_u64(&life.pointee.state) == 2 { return true }
        return setUp()
    }

    @inline(never) static func setUp() -> Bool {
        let life = HeapLifecycle.shared
        if sg_reentry() != 0 { return sg_atomic_load_u64(&life.pointee.state) >= 1 }
        sg_mutex_lock(&life.pointee.initMutex)
        defer { sg_mutex_unlock(&life.pointee.initMutex) }
        if life.pointee.failed { return false }
        sg_set_reentry(1)
        defer { sg_set_reentry(0) }
        if sg_atomic_load_u64(&life.pointee.state) == 0 {
            guard setUpCore() else {
                life.pointee.failed = true
                Platform.writeError("slabguard: cannot reserve the heap's address space; allocations will fail\n")
                return false
            }
            sg_atomic_store_u64(&life.pointee.state, 1)
        }
        if sg_atomic_load_u64(&life.pointee.state) == 1 {
            ThreadRegistry.setUp()
            LockOrder.registerHeapRows()
            pthread_atfork({ Heap.forkPrepare() }, { Heap.forkParent() }, { Heap.forkChild() })
            if let ready = life.pointee.ready { ready() }
            sg_atomic_store_u64(&life.pointee.state, 2)
        }
        return true
    }

    private static func setUpCore() -> Bool {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard arena.pointee.setUp() else { return false }
        // Each layer's part of a cache at offset 0 of the next (CacheCore.swift).
        precondition(CacheCore.checkLayout(), "slabguard: cache record layout")
        guard MagazineIds.setUp() else { return false }
        CacheRegistry.shared.pointee.pool = FixedPool(recordSize: MemoryLayout<CacheCore>.stride)
        var flags: UInt32 = 0
        var tagBytes = 0
        if let configure = HeapLifecycle.shared.pointee.configure { configure(&flags, &tagBytes) }
        // Caches are created with the state still 1-less; CacheOps.create calls ensureReady,
        // which sees the re-entry mark and the core state.  Mark core ready first.
        sg_atomic_store_u64(&HeapLifecycle.shared.pointee.state, 1)
        return SizeClassHeap.defaultHeap.setUp(debugFlags: flags, tagBytes: tagBytes, fixedIds: true, namePrefix: "sg_alloc_")
    }

    // MARK: - Fork

    // Fork: every lock of the table, in its order; while the gate is closed a thread about to
    // take its first lock waits (sg_locks.c).  The parent releases them in the exact
    // reverse; the child re-initializes them (their holders do not exist there).
    private static func forkPrepare() {
        sg_fork_gate_close()   // threads not yet holding a lock wait, rather than win every race for one
        LockOrder.forEachMutex { sg_mutex_lock($0) }
        sg_fork_gate_open()
    }

    private static func forkParent() {
        LockOrder.forEachMutex(reversed: true) { sg_mutex_unlock($0) }
    }

    private static func forkChild() {
        sg_fork_gate_reset()
        LockOrder.forEachMutex(reversed: true) { sg_mutex_reinit($0) }
        sg_held_locks_reset()   // every lock is fresh: the child's one thread holds none
        ThreadRegistry.lock.lock()
        ThreadRegistry.reclaimAfterFork()
        ThreadRegistry.lock.unlock()
        if let hook = HeapLifecycle.shared.pointee.forkChild { hook() }
    }
}
