// Guard pages (`guards`: every buffer; `sample=N`: about 1 in N) — the
// electric-fence half of the debug layer: a bad access faults at the
// instruction instead of being found later by a pattern check.
//
// A guarded buffer is a span of its own from the page arena:
//
//     [ tag page(s) | pad ... buffer | guard page ]
//                                  ^ the buffer ends where the guard page starts
//
// The buffer is end-aligned: placed at the highest address its alignment
// allows below the guard page.  malloc owes a request of n bytes the alignment
// of any type that fits in it; slabguard gives 16 from 16 bytes up and 8 below,
// so the end is exact when n is a multiple of that alignment, and otherwise up to 15
// bytes of slack lie between the end and the guard page: the slack and the pad
// before the buffer hold the redzone pattern and are checked at free, so an
// overrun by one byte is caught either at the instruction or at free.  The tag page holds the usual buffer tag
// (state, audit stacks always — a guarded buffer is rare or asked for —, and
// contents when asked); the span's LargeSpan record keeps the requested size
// and is the owner of every page, so a fault address finds its buffer.
//
// Free goes through DebugAllocator.freeLarge (DebugMalloc.swift), as for any
// large span: the same state, size and redzone checks.  The data pages are
// then made inaccessible and the span is retired: kept
// out of reuse in a FIFO (`retiredGuarded`: the last 4096 with `guards`, 512
// sampled ones) so a stale pointer faults for a while.  The oldest span then becomes "warm" (`warmGuarded`, up to 256): its
// pages stay as they are — guard page and data inaccessible, still resident —
// so the next guarded buffer of the same page count costs one mprotect, and its
// free one more: no arena work, no page faults, no madvise.  Past the warm
// list's capacity a span is unprotected and returned to the arena.
//
// Each mprotect costs microseconds, most of it splitting and merging the kernel's
// mappings (VMAs): data pages made accessible merge with the tag page and the
// arena before it, made inaccessible again they split off and merge with the
// guard page.  So a guarded span's tag page(s) and guard page are marked
// MADV_DONTDUMP when it is made (and put back when it returns to the arena): a
// mapping differing in that flag never merges, so the data pages are a mapping of
// their own and each change of their protection covers exactly one, splitting
// and merging nothing (a third less time per mprotect, measured in
// BENCHMARKS.md).  Core dumps keep the buffers, not their tags and guard pages.
// It costs a third mapping per span, so at most `ownMappingLimit` spans get it:
// all of sample mode's, the first two thousand of `guards`.
//
// Small guarded spans keep their pages resident while retired; spans of more than
// `residentPages` pages release them (madvise).  Freed plain large spans in debug
// mode go through the same retirement (`retiredLarge`, 64 spans), their pages kept
// up to `retiredResidentPages` and released above (they can be huge).
//
// Limits: each guarded span costs the kernel two mappings, and Linux allows
// 65530 per process by default; beyond `liveLimit` live guarded spans, or when
// mprotect fails, buffers are served unguarded (still checked by the other
// flags).  Alignments above a page are never guarded.
//
// Sampling: a per-thread countdown (sg_sample_countdown, C shim TLS) counts
// the allocations left before the next guarded one.  The fast path decrements
// it and takes the slow path when it goes negative, so sample mode costs fast
// mode one thread-local decrement; outside sample mode the slow path sets it to
// a value that never runs out.
//
// Locking: the arena and the heap's large-span lock for the span; the retired
// lists under `retiredMutex`; nothing on the fault path (it only reads).

import CSlabguardShim
import Glibc

/// A FIFO of retired spans, linked through LargeSpan.retiredNext, oldest first.
/// Guards' state: the retired and warm spans and the counts that bound them (its own
/// region of the static map, `debug_faults`).
struct GuardState {
    var retiredMutex = pthread_mutex_t()
    var retiredLarge = RetiredList()      // freed large spans, pages inaccessible
    var retiredGuarded = RetiredList()    // freed guarded spans
    var warmGuarded = RetiredList()       // guarded spans past retirement, kept for reuse
    var guardedLive: UInt64 = 0           // guarded spans allocated and not freed
    var guardedOwnMappings: UInt64 = 0    // guarded spans whose data pages are a mapping of their own
    var lastSampleNanoseconds: UInt64 = 0 // sample=Nms: when the last guarded buffer was made
    var watch = WatchState()              // watch, hunt's replays (Watchpoints.swift)

    @inline(__always) static var shared: UnsafeMutablePointer<GuardState> {
        StateRegion.debugFaults.bound(to: GuardState.self)
    }
}

struct RetiredList {
    var oldest: UnsafeMutablePointer<LargeSpan>? = nil
    var newest: UnsafeMutablePointer<LargeSpan>? = nil
    var count = 0
}

enum GuardedAllocator {
    /// Live guarded spans beyond this are served unguarded (two kernel mappings each).
    static let liveLimit: UInt64 = 20_000
    /// Spans with a mapping of their own (one more each, and some arena fragmentation):
    /// a program with `liveLimit` live guarded buffers in a fragmented arena has 58,000
    /// mappings without them, 64,000 with 4096 of them — too close to Linux's 65,530.
    /// 2048 covers sample mode's spans (512 retired, 256 warm, the live ones).
    static let ownMappingLimit: UInt64 = 2048

    /// The alignment a guarded malloc buffer gets: 16 from 16 bytes up, 8 below — what
    /// fast mode gives (its 8-byte class), and at least what C17 7.22.3 asks (the
    /// alignment of any type that fits; CPython, for one, relies on it).
    @inline(__always) static func naturalAlignment(_ size: Int) -> Int {
        size >= 16 || size == 0 ? 16 : 8
    }

    // MARK: - Sampling

    /// Counts one allocation down on this thread's sampling countdown; true when it ran out.
    @inline(__always) static func countdownExpired() -> Bool {
        let budget = sg_sample_countdown() &- 1
        sg_set_sample_countdown(budget)
        return budget < 0
    }

    /// In debug mode: whether the next buffer should be guarded.
    @inline(__always) static func wanted() -> Bool {
        let flags = OptionsState.shared.pointee.options.flags
        if flags.contains(.guards) { return true }
        guard flags.contains(.sample), countdownExpired() else { return false }
        return due()
    }

    /// The sampling word (sg_sampling): 0 off, `countSampling` for sample=N (the fast path
    /// counts down), `timeSampling` for sample=Nms with the fast paths on.
    static let countSampling: UInt32 = 1
    static let timeSampling: UInt32 = 2

    /// sample=Nms: in debug mode the countdown runs over this many allocations; when it
    /// runs out, the clock says whether N ms have passed since the process's last guarded
    /// buffer.  With the fast paths on there is no countdown: every slow allocation and
    /// every 1024th of a size class on the fast path (the magazine slot's own allocation
    /// counter, already kept) reads the clock.  Either way the number of guarded buffers
    /// follows the time, not the allocation rate.
    static let timeCheckAllocations: Int64 = 256

    /// sample=Nms with the fast paths on: whether this allocation (of `size` bytes, in the
    /// size classes) is its class's 1024th on this thread, the one that reads the clock.
    @inline(__always) static func timeCheckDue(_ size: Int) -> Bool {
        (sg_thread_slots() + SizeClasses.index(size)).pointee.allocations & 1023 == 1023
    }

    /// The countdown ran out: whether this allocation is to be guarded (and the next
    /// countdown set).
    private static func due() -> Bool {
        let milliseconds = OptionsState.shared.pointee.options.sampleMilliseconds
        guard milliseconds > 0 else {
            resetCountdown()
            return true
        }
        sg_set_sample_countdown(timeCheckAllocations)
        let state = GuardState.shared
        let now = AuditClock.monotonicNanoseconds()
        let last = sg_atomic_load_u64(&state.pointee.lastSampleNanoseconds)
        guard now &- last >= UInt64(milliseconds) &* 1_000_000 else { return false }
        return sg_atomic_cas_u64(&state.pointee.lastSampleNanoseconds, last, now) != 0
    }

    /// The fast path's countdown ran out (it is negative): in sample mode, a guarded
    /// buffer (nil if that fails: the caller serves it unguarded); otherwise the
    /// countdown is set so that it never runs out again.
    @inline(never) static func sampled(_ size: Int, zero: Bool) -> UnsafeMutableRawPointer? {
        guard OptionsState.shared.pointee.options.flags.contains(.sample) else {
            sg_set_sample_countdown(Int64.max)
            return nil
        }
        guard due() else { return nil }
        return allocate(size, alignment: naturalAlignment(size), zero: zero)
    }

    /// Next countdown: uniform in 0...2(N-1), so about 1 allocation in N is guarded.
    private static func resetCountdown() {
        let rate = OptionsState.shared.pointee.options.sampleRate
        guard rate > 1 else { return sg_set_sample_countdown(0) }
        var x = AuditClock.now() ^ (UInt64(AuditThread.id()) &* 0x9E37_79B9_7F4A_7C15)
        x ^= x >> 33; x &*= 0xFF51_AFD7_ED55_8CCD; x ^= x >> 33
        sg_set_sample_countdown(Int64(x % UInt64(2 * rate - 1)))
    }

    // MARK: - Allocation and free

    /// A guarded buffer of `size` bytes aligned to `alignment` (≤ a page), or nil when
    /// it cannot be guarded (the caller then serves the request another way).
    static func allocate(_ size: Int, alignment: Int, zero: Bool) -> UnsafeMutableRawPointer? {
        let state = GuardState.shared
        guard alignment <= pageSize, size <= Int.max / 4,
              sg_atomic_load_u64(&state.pointee.guardedLive) < liveLimit else { return nil }
        let layout = TagLayout.guarded()
        let tagPages = (layout.totalBytes + pageSize - 1) >> pageShift
        let dataPages = max(1, (size + alignment - 1 + pageSize - 1) >> pageShift)
        let pages = tagPages + dataPages + 1
        let guardOffset = (tagPages + dataPages) << pageShift
        let userOffset = (guardOffset - size) & ~(alignment - 1)
        let span: UnsafeMutablePointer<LargeSpan>
        if let warm = Retirement.takeWarm(pages: pages) {
            // Guard page still inaccessible; the data pages were made so at retirement.
            let dataStart = warm.pointee.base + (tagPages << pageShift)
            guard Platform.protect(dataStart, dataPages << pageShift, accessible: true) else {
                Retirement.release(warm)
                return nil
            }
            span = warm
        } else {
            let heap = SizeClassHeap.defaultHeap
            guard let user = heap.allocateLarge(pages << pageShift, alignment: pageSize, zero: false, userOffset: userOffset) else {
                return nil
            }
            let arena = StateRegion.arena.bound(to: PageArena.self)
            span = arena.pointee.owner(of: user - userOffset)!.assumingMemoryBound(to: LargeSpan.self)
            guard Platform.protect(user - userOffset + guardOffset, pageSize, accessible: false) else {
                _ = heap.freeLarge(span, user)
                return nil
            }
            // The data pages' own mapping (see above); without it, only slower.
            if sg_atomic_load_u64(&state.pointee.guardedOwnMappings) < ownMappingLimit,
               Platform.setLeftOutOfDumps(user - userOffset, tagPages << pageShift, true),
               Platform.setLeftOutOfDumps(user - userOffset + guardOffset, pageSize, true) {
                span.pointee.ownMapping = true
                _ = sg_atomic_add_u64(&state.pointee.guardedOwnMappings, 1)
            }
            span.pointee.guarded = true
            arena.pointee.setOwner(user - userOffset, pages: pages, UnsafeMutableRawPointer(span))   // faults find the span
        }
        span.pointee.userOffset = userOffset
        span.pointee.requestedSize = size
        let base = span.pointee.base
        let user = base + userOffset
        _ = sg_atomic_add_u64(&state.pointee.guardedLive, 1)
        let tag = BufferTag(base: base)
        tag.redzoneWord = Pattern.redzone
        // Charged to its library only in debug mode (sampled buffers alone would make
        // misleading statistics).
        let debug = sg_debug_flags() != 0
        var library: UInt16 = 0
        if let entry = tag.auditEntry(0, layout: layout) {
            let n = entry.recordCurrentStack(skip: 1)
            StackDepot.charge(entry.stackId, bytes: size)
            if debug { library = LibraryTags.value(capturedFrames: n) }
        } else if debug {
            library = LibraryTags.valueOfCaller(skip: 1)
        }
        tag.owner = UInt64(library) << 32
        if let entry = tag.auditEntry(1, layout: layout) { entry.clear() }
        let dataStart = base + (tagPages << pageShift)
        Pattern.fill(dataStart, user - dataStart, Pattern.redzone)
        Pattern.fill(user + size, base + guardOffset - (user + size), Pattern.redzone)
        if zero {
            memset(user, 0, size)
        } else if OptionsState.shared.pointee.options.flags.contains(.uninit) {
            Pattern.fill(user, size, Pattern.uninitialized)
        }
        tag.state = .allocated(offset: 0, size: 0)
        LibraryTags.chargeLibrary(library, bytes: size)
        return user
    }

    /// Whether `p` is inside a guarded span (live or retired).
    static func isGuarded(_ p: UnsafeRawPointer) -> Bool {
        guard let owner = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: p),
              owner.load(as: UInt32.self) == OwnerKind.large.rawValue else { return false }
        return owner.assumingMemoryBound(to: LargeSpan.self).pointee.guarded
    }

    /// The guarded or retired large span whose pages contain `address`, or nil.  Runs in
    /// a signal handler: reads only, no locks (a list being changed may be missed).
    static func span(containing address: UInt) -> UnsafeMutablePointer<LargeSpan>? {
        guard let p = UnsafeRawPointer(bitPattern: address) else { return nil }
        if let owner = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: p),
           owner.load(as: UInt32.self) == OwnerKind.large.rawValue {
            let span = owner.assumingMemoryBound(to: LargeSpan.self)
            if span.pointee.guarded || BufferTag(base: span.pointee.base).state.isFree { return span }
        }
        // A retired plain large span: only its boundary pages have an owner.
        var s = GuardState.shared.pointee.retiredLarge.oldest
        var steps = 0
        while let x = s, steps < 1024 {
            let start = UInt(bitPattern: x.pointee.base)
            if address >= start && address < start + UInt(x.pointee.pages << pageShift) { return x }
            s = x.pointee.retiredNext
            steps += 1
        }
        return nil
    }
}

/// Freed spans in debug mode: data pages released and made inaccessible, the span kept
/// out of reuse until `capacity` younger spans of its kind have been retired.
enum Retirement {
    static let largeCapacity = 64
    /// Retired guarded spans kept: with `guards` every buffer is one, so more; for sampled
    /// buffers fewer (their pages stay resident: about 8 KiB each).
    static var guardedCapacity: Int { OptionsState.shared.pointee.options.flags.contains(.guards) ? 4096 : 512 }
    static let warmCapacity = 256
    /// Guarded spans up to this many pages keep their pages resident while retired.
    static let residentPages = 8
    /// Plain large spans up to this many pages (256 KiB) too: releasing them cost a madvise
    /// at free and a page fault per page at their next use (at most 64 × 256 KiB resident).
    static let retiredResidentPages = 64

    /// Releases a freed span's data pages (unless it is a small guarded one) and makes
    /// them inaccessible.  Called once the span is marked free (see DebugMalloc.swift freeLarge).
    static func closeData(_ span: UnsafeMutablePointer<LargeSpan>) {
        let (start, bytes) = protectedRange(span)
        if span.pointee.pages > (span.pointee.guarded ? residentPages : retiredResidentPages) { Platform.release(start, bytes) }
        _ = Platform.protect(start, bytes, accessible: false)
    }

    /// Keeps a freed span, its data closed (closeData), out of reuse for a while.
    static func retire(_ span: UnsafeMutablePointer<LargeSpan>) {
        let guarded = span.pointee.guarded
        let state = GuardState.shared
        span.pointee.retiredNext = nil
        sg_mutex_lock(&state.pointee.retiredMutex)
        var victim = guarded ? push(span, &state.pointee.retiredGuarded, capacity: guardedCapacity)
                             : push(span, &state.pointee.retiredLarge, capacity: largeCapacity)
        if let v = victim, guarded, v.pointee.pages <= residentPages, state.pointee.warmGuarded.count < warmCapacity {
            // Served its time: kept, protections and pages as they are, for the next guarded buffer.
            v.pointee.retiredNext = state.pointee.warmGuarded.oldest
            state.pointee.warmGuarded.oldest = v
            state.pointee.warmGuarded.count += 1
            victim = nil
        }
        sg_mutex_unlock(&state.pointee.retiredMutex)
        if let v = victim { release(v) }
    }

    /// Every retired and warm span back to the arena (it is out of address space: freed
    /// memory must be allocatable again).  True when there was any.
    static func releaseAll() -> Bool {
        let state = GuardState.shared
        var all: UnsafeMutablePointer<LargeSpan>? = nil
        sg_mutex_lock(&state.pointee.retiredMutex)
        take(&state.pointee.retiredLarge, onto: &all)
        take(&state.pointee.retiredGuarded, onto: &all)
        take(&state.pointee.warmGuarded, onto: &all)
        sg_mutex_unlock(&state.pointee.retiredMutex)
        let any = all != nil
        while let x = all {
            all = x.pointee.retiredNext
            release(x)
        }
        return any
    }

    /// Empties `list` onto the chain `all` (linked through retiredNext).
    private static func take(_ list: inout RetiredList, onto all: inout UnsafeMutablePointer<LargeSpan>?) {
        var s = list.oldest
        while let x = s {
            s = x.pointee.retiredNext
            x.pointee.retiredNext = all
            all = x
        }
        list = RetiredList()
    }

    /// A warm guarded span of exactly `pages` pages (among the most recent few), or nil.
    static func takeWarm(pages: Int) -> UnsafeMutablePointer<LargeSpan>? {
        let state = GuardState.shared
        guard state.pointee.warmGuarded.count > 0 else { return nil }   // racy peek: only a hint
        sg_mutex_lock(&state.pointee.retiredMutex)
        defer { sg_mutex_unlock(&state.pointee.retiredMutex) }
        var previous: UnsafeMutablePointer<LargeSpan>? = nil
        var s = state.pointee.warmGuarded.oldest
        var looked = 0
        while let x = s, looked < 16 {
            if x.pointee.pages == pages {
                if let p = previous { p.pointee.retiredNext = x.pointee.retiredNext } else { state.pointee.warmGuarded.oldest = x.pointee.retiredNext }
                state.pointee.warmGuarded.count -= 1
                x.pointee.retiredNext = nil
                return x
            }
            previous = x
            s = x.pointee.retiredNext
            looked += 1
        }
        return nil
    }

    /// Appends `span`; returns the oldest span when the list is over `capacity`.
    private static func push(_ span: UnsafeMutablePointer<LargeSpan>, _ list: inout RetiredList,
                             capacity: Int) -> UnsafeMutablePointer<LargeSpan>? {
        if let n = list.newest { n.pointee.retiredNext = span } else { list.oldest = span }
        list.newest = span
        list.count += 1
        guard list.count > capacity, let victim = list.oldest else { return nil }
        list.oldest = victim.pointee.retiredNext
        if list.oldest == nil { list.newest = nil }
        list.count -= 1
        return victim
    }

    /// The pages made inaccessible at retirement: from the buffer's first page to the end.
    private static func protectedRange(_ span: UnsafeMutablePointer<LargeSpan>) -> (UnsafeMutableRawPointer, Int) {
        let start = span.pointee.base + pageSize * (span.pointee.userOffset >> pageShift)
        return (start, (span.pointee.pages << pageShift) - (start - span.pointee.base))
    }

    /// Returns a span that has served its time to the arena.
    static func release(_ span: UnsafeMutablePointer<LargeSpan>) {
        let (start, bytes) = protectedRange(span)
        _ = Platform.protect(start, bytes, accessible: true)
        let base = span.pointee.base
        if span.pointee.guarded {
            if span.pointee.ownMapping {
                // Back into core dumps, so the pages merge into the arena's mapping again.
                Platform.setLeftOutOfDumps(base, span.pointee.pages << pageShift, false)
                span.pointee.ownMapping = false
                _ = sg_atomic_add_u64(&GuardState.shared.pointee.guardedOwnMappings, UInt64.max)   // - 1
            }
            // Every page had an owner; the heap clears only the ones it set.
            StateRegion.arena.bound(to: PageArena.self).pointee.setOwner(base, pages: span.pointee.pages, nil)
            span.pointee.guarded = false
        }
        _ = SizeClassHeap.defaultHeap.freeLarge(span, base + span.pointee.userOffset)
    }
}
