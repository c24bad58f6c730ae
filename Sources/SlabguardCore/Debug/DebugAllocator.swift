// DebugAllocator — the checked allocation and free paths of debug caches
// (kmem_cache_alloc_debug / kmem_cache_free_debug).  See DebugLayer.swift.

import CSlabguardShim
import Glibc

enum DebugAllocator {
    // MARK: - Allocation

    /// A checked buffer of `size` bytes from `cache`, aligned to `alignment` inside its chunk
    /// (size + alignment slack ≤ the buffer size), zeroed when `zero`.
    static func allocate(_ cache: UnsafeMutablePointer<CacheCore>, size: Int, alignment: Int = 1, zero: Bool) -> UnsafeMutableRawPointer? {
        HeapVerifier.countOperation()
        var now = AuditClock.now()   // one clock reading per call: the live work's and the audit record's
        if FlightRecorder.isRecording && DebugLayer.liveWork(now: now) { now = AuditClock.now() }
        enterChecked()
        defer { leaveChecked() }
        guard let chunk = CacheOps.allocate(cache) else { return nil }
        let flags = DebugFlags(rawValue: cache.pointee.debugFlags)
        if Watchpoints.isOn { Watchpoints.unwatch(chunk: chunk, bytes: cache.pointee.tagOffset) }
        let tag = BufferTag(base: chunk + cache.pointee.tagOffset)
        let state = tag.state
        if flags.contains(.deadbeef) && state.isFree,
           let bad = Pattern.firstMismatch(chunk, cache.pointee.tagOffset, Pattern.freed) {
            DebugReport.modifiedAfterFree(cache: cache, chunk: chunk, tag: tag, at: bad, detected: .reuse)
            Pattern.fill(chunk, cache.pointee.tagOffset, Pattern.freed)
        } else if !state.isFree {
            // The tag itself was overwritten while the buffer sat free.
            DebugReport.modifiedAfterFree(cache: cache, chunk: chunk, tag: tag, at: UInt(bitPattern: tag.base) + UInt(TagLayout.stateWord),
                                          detected: .reuse)
        }
        tag.state = .busy
        let offset = roundUp(Int(bitPattern: chunk), alignment) - Int(bitPattern: chunk)
        let user = chunk + offset
        let layout = TagLayout(flags: flags)
        // Redzone: the slack after the requested size, then the redzone word.
        Pattern.fill(user + size, cache.pointee.tagOffset - offset - size, Pattern.redzone)
        tag.redzoneWord = Pattern.redzone
        let record = layout.auditDepth > 0 ? AuditRecords.record(forTag: tag) : nil
        var library: UInt16
        if let record {
            library = LibraryTags.value(capturedFrames: AuditEntry(base: record).recordCurrentStack(skip: 2, time: now))
            AuditRecords.setSize(size, offset: offset, in: record)
        } else {
            library = LibraryTags.valueOfCaller(skip: 2)
        }
        tag.owner = UInt64(library) << 32
        tag.state = .allocated(offset: offset, size: size)
        if zero {
            memset(user, 0, size)
        } else if flags.contains(.uninit) {
            Pattern.fill(user, size, Pattern.uninitialized)
        }
        if let constructor = cache.pointee.debugConstructor, runOutsideChecked({ constructor(user, cache.pointee.callbackArgument) }) != 0 {
            library = 0
            tag.owner = 0
            tag.state = .free(offset: offset, size: size)
            Pattern.fill(chunk, cache.pointee.tagOffset, Pattern.freed)
            CacheOps.free(cache, chunk)
            return nil
        }
        if let record { TransactionLog.record(.allocation, cache: cache, buffer: user, size: size, audit: AuditEntry(base: record)) }
        if Watchpoints.isOn { Watchpoints.allocated(user: user, size: size, tag: tag, layout: layout) }
        LibraryTags.chargeLibrary(library, bytes: size)
        if let record { StackDepot.charge(AuditEntry(base: record).stackId, bytes: size) }
        return user
    }

    // MARK: - Free

    /// Checks and frees `p`, a buffer of a debug cache.  `expectedSize` is the size a sized
    /// free (kmem_free, sg_free) claims, or nil for free(3).
    static func free(_ p: UnsafeMutableRawPointer, slab: UnsafeMutablePointer<Slab>, expectedSize: Int?) {
        HeapVerifier.countOperation()
        var now = AuditClock.now()   // one clock reading per call: the live work's and the audit record's
        if FlightRecorder.isRecording && DebugLayer.liveWork(now: now) { now = AuditClock.now() }
        enterChecked()
        defer { leaveChecked() }
        let cache = slab.objectCache
        guard let chunk = slab.pointee.chunk(containing: p) else {
            return DebugReport.invalidFree(p, expectedSize: expectedSize)
        }
        let tag = BufferTag(base: chunk + cache.pointee.tagOffset)
        let state = tag.state
        if state.isFree {
            if p == chunk + state.offset {
                return DebugReport.duplicateFree(cache: cache, chunk: chunk, tag: tag)
            }
            return DebugReport.invalidFree(p, expectedSize: expectedSize)
        }
        if !state.isAllocated {
            // A damaged state word: most often an overrun of this buffer through its redzone.
            // The out-of-line audit record still knows the size.
            if let bad = Pattern.firstMismatch(tag.base, 8, Pattern.redzone) {
                var known: Int? = nil
                if let record = AuditRecords.record(forTag: tag), AuditEntry(base: record).isRecorded,
                   chunk + AuditRecords.size(in: record).offset == p {
                    known = AuditRecords.size(in: record).size
                }
                DebugReport.redzoneViolation(cache: cache, chunk: chunk, tag: tag, user: p, size: known, at: bad)
            } else {
                DebugReport.invalidFree(p, expectedSize: expectedSize)
            }
            return
        }
        let user = chunk + state.offset
        if Watchpoints.isOn { Watchpoints.unwatch(chunk: chunk, bytes: cache.pointee.tagOffset) }
        if p != user {
            return DebugReport.badFreeAddress(cache: cache, chunk: chunk, tag: tag, given: p)
        }
        // Allocated by a C++ new (a delete clears the kind before it gets here): a mismatch.
        if tag.owner & AllocationKinds.mask != 0, let buffer = AllocationKinds.live(at: p) { AllocationKinds.freedByMalloc(buffer) }
        let size = state.size
        if let expected = expectedSize, expected != size {
            DebugReport.badFreeSize(cache: cache, chunk: chunk, tag: tag, given: expected)
        }
        let flags = DebugFlags(rawValue: cache.pointee.debugFlags)
        if flags.contains(.redzone),
           let bad = Pattern.firstMismatch(user + size, cache.pointee.tagOffset + 8 - state.offset - size, Pattern.redzone) {
            DebugReport.redzoneViolation(cache: cache, chunk: chunk, tag: tag, user: user, size: size, at: bad)
            tag.redzoneWord = Pattern.redzone
        }
        if flags.contains(.redzone), state.offset == 0, let bad = BufferTag.underflow(before: chunk, slab: slab) {
            DebugReport.underflow(cache: cache, chunk: chunk, tag: tag, size: size, at: bad)
            Pattern.fill(chunk - TagLayout.tailGuardBytes, TagLayout.tailGuardBytes, Pattern.redzone)
        }
        LibraryTags.discharge(owner: tag.owner, bytes: size)
        let layout = TagLayout(flags: flags)
        let record = layout.auditDepth > 0 ? AuditRecords.record(in: slab, chunk: chunk) : nil
        if let record { StackDepot.discharge(AuditEntry(base: record).stackId, bytes: size) }
        if let destructor = cache.pointee.debugDestructor { runOutsideChecked { destructor(user, cache.pointee.callbackArgument) } }
        if let record {
            let entry = AuditEntry(base: record + AuditRecords.halfBytes)
            entry.recordCurrentStack(skip: 2, time: now)
            TransactionLog.record(.free, cache: cache, buffer: user, size: size, audit: entry)
        }
        if let saved = tag.contents(layout: layout) { memcpy(saved, user, min(size, layout.contentsBytes)) }
        tag.state = .busy
        if flags.contains(.deadbeef) { Pattern.fill(chunk, cache.pointee.tagOffset, Pattern.freed) }
        tag.state = .free(offset: state.offset, size: size)
        if Watchpoints.isOn { Watchpoints.freed(chunk: chunk, user: user, tag: tag, layout: layout) }
        if flags.contains(.quarantine) {
            Quarantine.hold(chunk, cache: cache, tag: tag)
        } else {
            CacheOps.free(cache, chunk)
        }
    }

    // MARK: - Helpers

    /// Marks the thread as inside a checked allocation or free, which changes its magazine,
    /// quarantine batch and stack scratch without a lock: already inside is a signal
    /// handler's call (or a call after a siglongjmp out of one), reported with an abort.
    @inline(__always) static func enterChecked() {
        if sg_debug_depth() != 0 { sg_report_debug_reentry() }
        sg_set_debug_depth(1)
    }

    @inline(__always) static func leaveChecked() { sg_set_debug_depth(0) }

    /// A cache's constructor or destructor, which may allocate, runs outside the mark.
    @inline(__always) static func runOutsideChecked<R>(_ body: () -> R) -> R {
        leaveChecked()
        defer { enterChecked() }
        return body()
    }

    /// A chunk carved for the first time: poison it and mark it free (slab lock held).
    static func prepareFreshChunk(_ rawCache: UnsafeMutableRawPointer, _ chunk: UnsafeMutableRawPointer) {
        let cache = rawCache.assumingMemoryBound(to: CacheCore.self)
        let tag = BufferTag(base: chunk + cache.pointee.tagOffset)
        if DebugFlags(rawValue: cache.pointee.debugFlags).contains(.deadbeef) {
            Pattern.fill(chunk, cache.pointee.tagOffset, Pattern.freed)
        }
        tag.redzoneWord = Pattern.redzone
        tag.state = .free(offset: 0, size: 0)
        let layout = TagLayout(flags: DebugFlags(rawValue: cache.pointee.debugFlags))
        if layout.auditDepth > 0, let owner = StateRegion.arena.bound(to: PageArena.self).pointee.owner(of: chunk) {
            let slab = owner.assumingMemoryBound(to: Slab.self)
            if slab.pointee.base == chunk { AuditRecords.ensureSidecar(slab) }
        }
        Pattern.fill(tag.base + layout.tailGuardOffset, TagLayout.tailGuardBytes, Pattern.redzone)
    }

}

