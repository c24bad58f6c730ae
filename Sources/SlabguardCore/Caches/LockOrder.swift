// The lock order as one table — DESIGN.md's "Lock order", in code.  Every allocator mutex
// belongs to one row; rows are numbered as DESIGN.md numbers them.  The layers at and
// below this one fill their rows when the heap is set up; the debug layer above fills its
// own (2–7) through `register`, as it installs its hooks: no layer names another above it.
// A row yields its mutexes one by one (the per-cache row yields each cache's depot lock
// then its slab lock, caches in registry order; a row whose state was never created yields
// none).  The fork handlers walk this table — prepare takes every mutex in table order,
// the parent releases them in exactly the reverse order, the child re-initializes each —
// and TrustTests compares the table's names with DESIGN.md's, row by row.

import CSlabguardShim
import Glibc

/// One row: its name and file as DESIGN.md's table writes them, and its `index`-th mutex
/// (nil past the last).
struct LockRow {
    var name: StaticString
    var file: StaticString
    var mutex: @convention(c) (Int) -> UnsafeMutablePointer<pthread_mutex_t>?
}

enum LockOrder {
    static let rowCount = 15   // DESIGN.md's rows 1–16, the per-cache pair (10, 11) as one row

    /// The table, in HeapLifecycle's static region; `present` says which rows are filled.
    struct Table {
        var rows: (LockRow?, LockRow?, LockRow?, LockRow?, LockRow?, LockRow?, LockRow?, LockRow?,
                   LockRow?, LockRow?, LockRow?, LockRow?, LockRow?, LockRow?, LockRow?) =
            (nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil)
    }

    @inline(__always) static var table: UnsafeMutablePointer<Table> {
        withUnsafeMutablePointer(to: &HeapLifecycle.shared.pointee.lockOrder) { $0 }
    }

    /// Fills row `rank` (0-based position in the table).
    static func register(_ rank: Int, _ row: LockRow) {
        precondition(rank >= 0 && rank < rowCount)
        withUnsafeMutableBytes(of: &table.pointee.rows) { raw in
            raw.baseAddress!.assumingMemoryBound(to: LockRow?.self)[rank] = row
        }
    }

    static func row(_ rank: Int) -> LockRow? {
        withUnsafeBytes(of: &table.pointee.rows) { raw in raw.baseAddress!.assumingMemoryBound(to: LockRow?.self)[rank] }
    }

    /// The rows of this layer and the ones below, filled at heap set-up.
    static func registerHeapRows() {
        register(0, LockRow(name: "initMutex", file: "Heap.swift") { i in
            i == 0 ? withUnsafeMutablePointer(to: &HeapLifecycle.shared.pointee.initMutex) { $0 } : nil })
        register(7, LockRow(name: "mutex", file: "CacheCore.swift") { i in i == 0 ? CacheRegistry.lock.mutex : nil })
        register(8, LockRow(name: "mutex", file: "ThreadRegistry.swift") { i in i == 0 ? ThreadRegistry.lock.mutex : nil })
        register(9, LockRow(name: "depotMutex, slabMutex", file: "MagazineCache.swift, SlabCache.swift") { i in
            // Cache i/2: its depot lock (even i), then its slab lock (odd i).
            var c = CacheRegistry.shared.pointee.first
            var k = i >> 1
            while k > 0, let cache = c { c = cache.pointee.nextCache; k -= 1 }
            guard let cache = c else { return nil }
            return i & 1 == 0 ? cache.depotLock.mutex : cache.slabLock.mutex
        })
        register(10, LockRow(name: "largeMutex", file: "SizeClassHeap.swift") { i in
            i == 0 ? SizeClassHeap.defaultHeap.largeLock.mutex : nil })
        register(11, LockRow(name: "mutex", file: "Magazine.swift") { i in i == 0 ? MagazinePool.lock.mutex : nil })
        register(12, LockRow(name: "mutex", file: "Slab.swift") { i in
            i == 0 ? withUnsafeMutablePointer(to: &SlabRecords.state.pointee.mutex) { $0 } : nil })
        register(13, LockRow(name: "mutex", file: "PageArena.swift") { i in
            i == 0 ? StateRegion.arena.bound(to: PageArena.self).pointee.lockHandle.mutex : nil })
        register(14, LockRow(name: "mutex", file: "Platform.swift") { i in i == 0 ? MetadataMappings.mutex : nil })
    }

    /// Every mutex of the table, in order (`reversed`: the exact reverse).
    static func forEachMutex(reversed: Bool = false, _ body: (UnsafeMutablePointer<pthread_mutex_t>) -> Void) {
        var r = reversed ? rowCount - 1 : 0
        while r >= 0 && r < rowCount {
            if let row = row(r) {
                var n = 0
                while row.mutex(n) != nil { n += 1 }
                var i = reversed ? n - 1 : 0
                while i >= 0 && i < n {
                    if let m = row.mutex(i) { body(m) }
                    i += reversed ? -1 : 1
                }
            }
            r += reversed ? -1 : 1
        }
    }
}
