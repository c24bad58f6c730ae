// Allocator — the entry points every front end calls (Swift API, C API, the
// malloc interposer): malloc-style requests on the default heap and object
// cache operations.  This is where the one debug-flag test sits: when the
// word is zero (fast mode) a request is a few loads and stores on the calling
// thread's magazine slot; otherwise it goes to the debug layer.
//
// Errors: out of memory returns nil and sets errno = ENOMEM; a size that
// overflows returns nil, never wraps.  A pointer that is not ours given to
// free goes to `InvalidFree.report`.

import CSlabguardShim
import Glibc

package enum Allocator {
    // MARK: - malloc family

    /// `kind`: the C++ allocator calling (AllocationKind: 0 malloc, 1 new, 2 new[]), recorded
    /// in the buffer's tag by the slow path — the only one debug and sampled buffers take —
    /// so the fast path does not see it.
    @inline(__always) package static func malloc(_ size: Int, kind: UInt8 = 0) -> UnsafeMutableRawPointer? {
        // Unsigned compare: a negative size (a huge C size_t) must reach mallocSlow's check.
        guard UInt(bitPattern: size) <= UInt(SG_SMALL_MAX) else { return mallocSlow(size, kind) }
        return mallocSmall(size) { mallocSlow($0, kind) }
    }

    /// A small malloc (size ≤ SG_SMALL_MAX): the hit path — one mode word (debug flags and
    /// sampling side by side), the class from a table, a pop from the thread's slot — or
    /// `miss`.  In sample mode (the mode word's sampling half only), out of line:
    /// sample=N counts down to the next guarded buffer (GuardedAllocator.swift),
    /// sample=Nms lets every 1024th allocation of a class (by the slot's own counter)
    /// ask the slow path whether N ms have passed.
    @inline(__always) static func mallocSmall(_ size: Int, miss: (Int) -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        let mode = sg_mode_any()
        let slot = sg_thread_slots() + Int(sg_size_class(size))
        let n = slot.pointee.count
        if n > 0 && (mode == 0 || sampleAllows(slot)) {
            slot.pointee.count = n &- 1
            slot.pointee.allocations &+= 1
            let q = slot.pointee.rounds.unsafelyUnwrapped[Int(n &- 1)]
            q.unsafelyUnwrapped.storeBytes(of: 0, as: UInt.self)   // no longer free (DuplicateFree)
            return q
        }
        return miss(size)
    }

    /// With a mode word set: whether the hit path may serve anyway (sample mode, no sample due).
    @inline(__always) static func sampleAllows(_ slot: UnsafeMutablePointer<sg_magazine_slot>) -> Bool {
        guard sg_debug_flags() == 0 else { return false }
        return sg_sampling() == GuardedAllocator.timeSampling ? slot.pointee.allocations & 1023 != 1023
                                                              : !GuardedAllocator.countdownExpired()
    }

    @inline(never) static func mallocSlow(_ size: Int, _ kind: UInt8 = 0) -> UnsafeMutableRawPointer? {
        guard size >= 0, ensureReady() else { return outOfMemory() }
        if sg_debug_flags() != 0 {
            guard let p = DebugAllocator.malloc(size, zero: false) else { return outOfMemory() }
            if kind != 0 { AllocationKinds.mark(p, kind) }
            return p
        }
        // Sample mode: the fast path counted this allocation down only when it hit.  In
        // time mode the fast path's every 1024th allocation of a class (or a magazine miss
        // that falls on it) looks at the clock.
        let sampling = sg_sampling()
        if sampling != 0 && size <= SizeClasses.maxSize
            && (sampling == GuardedAllocator.timeSampling ? GuardedAllocator.timeCheckDue(size)
                                                          : sg_sample_countdown() < 0 || GuardedAllocator.countdownExpired()),
           let p = GuardedAllocator.sampled(size, zero: false) {
            if kind != 0 { AllocationKinds.mark(p, kind) }
            return p
        }
        let heap = SizeClassHeap.defaultHeap
        let p = heap.allocate(size)
        return p ?? outOfMemory()
    }

    /// `kind`: the C++ deallocator calling (0: free(3); AllocationKind's index), checked
    /// against the buffer's allocator on the slow path (debug and sampled buffers), with
    /// the `alignment` an aligned delete names (where its new[] put the array cookie).
    @inline(__always) package static func free(_ pointer: UnsafeMutableRawPointer?, kind: UInt8 = 0, alignment: UInt = 0) {
        guard let p = pointer else { return }
        if sg_debug_flags() == 0 {
            // A slab page's map word carries its cache's magazine id + 1 (0: not a slab
            // with magazines): no load of the slab record.
            let mark = StateRegion.arena.bound(to: PageArena.self).pointee.entryWord(of: p) >> PageArena.markShift
            if mark != 0 {
                let slot = sg_thread_slots() + Int(mark &- 1)
                let n = slot.pointee.count
                let first = p.assumingMemoryBound(to: UInt.self)
                // A buffer that looks free already goes the slow way, which checks it (a
                // call here would make every free save registers for it).
                if n < slot.pointee.capacity && first.pointee != DuplicateFree.mark {
                    first.pointee = DuplicateFree.mark
                    slot.pointee.rounds.unsafelyUnwrapped[Int(n)] = p
                    slot.pointee.count = n &+ 1
                    slot.pointee.frees &+= 1
                    return
                }
            }
        }
        freeSlow(p, kind, alignment)
    }

    @inline(never) static func freeSlow(_ p: UnsafeMutableRawPointer, _ kind: UInt8 = 0, _ alignment: UInt = 0) {
        if sg_debug_flags() != 0 || isSampled(p) {
            if kind == 0 { return DebugAllocator.free(p, expectedSize: nil) }
            return DebugAllocator.free(AllocationKinds.release(p, by: kind, alignment: alignment).pointer, expectedSize: nil)
        }
        // A full magazine: the free goes on to the magazine layer, checked as on the fast path.
        let mark = StateRegion.arena.bound(to: PageArena.self).pointee.entryWord(of: p) >> PageArena.markShift
        if mark != 0 {
            let first = p.assumingMemoryBound(to: UInt.self)
            if first.pointee == DuplicateFree.mark { DuplicateFree.check(p, sg_thread_slots() + Int(mark &- 1)) }
            first.pointee = DuplicateFree.mark
        }
        if !SizeClassHeap.defaultHeap.free(p) && sg_free_foreign(p) == 0 { InvalidFree.report(p) }
    }

    /// In sample mode (fast paths, debug word 0): whether `p` is one of the guarded buffers.
    @inline(__always) static func isSampled(_ p: UnsafeRawPointer) -> Bool {
        OptionsState.shared.pointee.options.flags.contains(.sample) && GuardedAllocator.isGuarded(p)
    }

    /// Sets the heap up on first use, with the debug layer's configuration hook in place.
    @inline(__always) static func ensureReady() -> Bool {
        if HeapLifecycle.shared.pointee.configure == nil { DebugLayer.install() }
        return Heap.ensureReady()
    }

    /// calloc: count·size zeroed bytes; nil (ENOMEM) when the product overflows.
    package static func calloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
        let (total, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow, count >= 0, size >= 0, ensureReady() else { return outOfMemory() }
        if sg_debug_flags() != 0 { return DebugAllocator.malloc(total, zero: true) ?? outOfMemory() }
        if sg_sampling() != 0 && total <= SizeClasses.maxSize && GuardedAllocator.countdownExpired(),
           let p = GuardedAllocator.sampled(total, zero: true) {
            return p
        }
        return SizeClassHeap.defaultHeap.zeroAllocate(total) ?? outOfMemory()
    }

    package static func realloc(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
        guard let p = pointer else { return malloc(size) }
        guard size >= 0, ensureReady() else { return outOfMemory() }
        if sg_debug_flags() != 0 { return DebugAllocator.realloc(p, size) ?? outOfMemory() }
        if isSampled(p) {
            // Always moves (like debug realloc): a stale pointer then faults.
            guard let old = DebugAllocator.liveSize(p) else { DebugAllocator.free(p, expectedSize: nil); return nil }
            guard let q = malloc(size) else { return nil }
            memcpy(q, p, min(size, old))
            DebugAllocator.free(p, expectedSize: nil)
            return q
        }
        var invalid = false
        let q = SizeClassHeap.defaultHeap.reallocate(p, to: size, invalid: &invalid)
        if invalid { InvalidFree.report(p); return nil }
        return q ?? outOfMemory()
    }

    /// posix_memalign/aligned_alloc/memalign core: `alignment` must be a power of two.
    /// `kind`: as for `malloc` (3 aligned new, 4 aligned new[]).
    package static func alignedAlloc(_ alignment: Int, _ size: Int, kind: UInt8 = 0) -> UnsafeMutableRawPointer? {
        guard isPowerOfTwo(alignment), size >= 0, ensureReady() else { return outOfMemory() }
        if sg_debug_flags() != 0 {
            guard let p = DebugAllocator.aligned(alignment, size) else { return outOfMemory() }
            if kind != 0 { AllocationKinds.mark(p, kind) }
            return p
        }
        return SizeClassHeap.defaultHeap.allocate(size, alignment: alignment) ?? outOfMemory()
    }

    /// malloc_usable_size: 0 for nil or a pointer that is not ours.
    package static func usableSize(_ pointer: UnsafeRawPointer?) -> Int {
        guard let p = pointer else { return 0 }
        if sg_debug_flags() != 0 || isSampled(p) { return DebugAllocator.liveSize(p) ?? 0 }
        return SizeClassHeap.defaultHeap.usableSize(p) ?? 0
    }

    /// kmem_free-style sized free.  In fast mode the size is not checked; in debug mode a
    /// size different from the allocation's is reported.
    /// `kind`, `alignment`: a C++ sized delete's (see `free(_:kind:alignment:)`); after a
    /// mismatch the size is not checked.
    @inline(__always) package static func free(_ pointer: UnsafeMutableRawPointer?, size: Int, kind: UInt8 = 0, alignment: UInt = 0) {
        if sg_debug_flags() != 0, let p = pointer {
            if kind == 0 { return DebugAllocator.free(p, expectedSize: size) }
            let released = AllocationKinds.release(p, by: kind, alignment: alignment)
            return DebugAllocator.free(released.pointer, expectedSize: released.checkSize ? size : nil)
        }
        free(pointer, kind: kind, alignment: alignment)
    }

    package static func zalloc(_ size: Int) -> UnsafeMutableRawPointer? { calloc(1, size) }

    package static func setErrno(_ value: Int32) { Platform.setErrno(value) }

    @inline(__always) static func outOfMemory() -> UnsafeMutableRawPointer? {
        Platform.setErrno(ENOMEM)
        return nil
    }
}

/// What happens when free gets a pointer the allocator never handed out.
enum InvalidFree {
    static func report(_ p: UnsafeMutableRawPointer) {
        var w = RawLine()
        w.append("slabguard: invalid free: buffer not in cache\n  address ")
        w.appendHex(UInt(bitPattern: p))
        w.append(" was not allocated by slabguard\n")
        w.flush(to: 2)
        abort()
    }
}

/// glibc's tcache check, done the same way on the fast path (fast mode, `sample=`): a
/// buffer pushed on a magazine gets a mark in its first word, cleared when the fast path
/// hands it out again.  A free that finds the mark looks for the buffer in the thread's
/// loaded and previous magazines; found there, it is free already: a double free, which
/// would otherwise make the next two mallocs return the same buffer.  Not found (the
/// program stored that value, or the buffer moved on to the depot), the free goes on: the
/// check never reports a buffer that is not free.  Cost: one load, compare and store per
/// free, one store per malloc (BENCHMARKS.md).
enum DuplicateFree {
    static let mark: UInt = 0x51AB_6A4D_F4EE_D0DE

    @inline(never) static func check(_ p: UnsafeMutableRawPointer, _ slot: UnsafeMutablePointer<sg_magazine_slot>) {
        let n = Int(slot.pointee.count)
        for i in 0..<n where slot.pointee.rounds[i] == p { report(p) }
        if let previous = slot.previousMagazine {
            let rounds = previous.rounds
            for i in 0..<min(previous.pointee.count, previous.pointee.capacity) where rounds[i] == p { report(p) }
        }
    }

    private static func report(_ p: UnsafeMutableRawPointer) -> Never {
        var w = RawLine()
        w.append("slabguard: duplicate free: buffer freed twice\n  address ")
        w.appendHex(UInt(bitPattern: p))
        w.append(" is free already (fast mode:\n")
        w.flush(to: 2)
        w.append("  --debug default names its allocation and frees)\n")
        w.flush(to: 2)
        abort()
    }
}

/// A tiny fixed-buffer line builder for messages written before the debug layer exists.
struct RawLine {
    var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                  UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var length = 0

    mutating func append(_ s: StaticString) {
        for i in 0..<s.utf8CodeUnitCount { appendByte(s.utf8Start[i]) }
    }

    mutating func appendByte(_ b: UInt8) {
        guard length < 128 else { return }
        withUnsafeMutableBytes(of: &storage) { $0[length] = b }
        length += 1
    }

    mutating func appendHex(_ v: UInt) {
        append("0x")
        var started = false
        for shift in stride(from: 60, through: 0, by: -4) {
            let d = UInt8((v >> UInt(shift)) & 0xF)
            if d != 0 || started || shift == 0 {
                started = true
                appendByte(d < 10 ? 48 + d : 87 + d)
            }
        }
    }

    mutating func flush(to fd: Int32) {
        let n = length
        withUnsafeBytes(of: &storage) { _ = Platform.writeAll(fd, $0.baseAddress!, n) }
        length = 0
    }
}
