// Audit records — kmem's bufctl, out of line: who allocated and who freed each debug
// buffer, when, from which stack (a StackDepot id), and its requested size.  They used
// to sit in the buffer's tag, right after the buffer, where an overrun destroys exactly
// the evidence its report needs; and `audit=16` made every 8-byte buffer ~330 bytes.
//
// Where a buffer's record is, found from the buffer's address, never from its tag:
//   slab chunk    the slab's sidecar (pages from the arena, one 40-byte record per
//                 chunk, by chunk index), made when the slab's first chunk is carved
//                 and given back when the slab is destroyed (the slab layer's hooks);
//   large or guarded span   the span's LargeSpan record (`debugRecord`), out of line too.
//
// A record: +0 allocation (stack id u32, thread u32, time u64), +16 free (the same),
// +32 requested size u32, +36 offset of the buffer in its chunk u32.  Zero: never.

import CSlabguardShim
import Glibc

enum AuditRecords {
    static let recordBytes = 40
    static let halfBytes = 16

    /// The record of the buffer whose tag is `tag`, or nil (audit off, no sidecar).
    static func record(forTag tag: BufferTag) -> UnsafeMutableRawPointer? {
        let arena = StateRegion.arena.bound(to: PageArena.self)
        guard let owner = arena.pointee.owner(of: tag.base) else { return nil }
        if owner.load(as: UInt32.self) == OwnerKind.slab.rawValue {
            let slab = owner.assumingMemoryBound(to: Slab.self)
            guard let chunk = slab.pointee.chunk(containing: tag.base) else { return nil }
            return record(in: slab, chunk: chunk)
        }
        let span = owner.assumingMemoryBound(to: LargeSpan.self)
        return UnsafeMutableRawPointer(span.field(\.debugRecord))
    }

    /// The record of `chunk`, a chunk of `slab`, or nil (no sidecar).
    @inline(__always) static func record(in slab: UnsafeMutablePointer<Slab>, chunk: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        guard let sidecar = slab.pointee.sidecar else { return nil }
        return sidecar + slab.pointee.index(of: chunk) * recordBytes
    }

    /// Gives a slab its sidecar, zeroed (the first carve of a debug cache with audit; slab
    /// lock held, which orders before the arena's).
    static func ensureSidecar(_ slab: UnsafeMutablePointer<Slab>) {
        guard slab.pointee.sidecar == nil else { return }
        let pages = (slab.pointee.capacity * recordBytes + pageSize - 1) >> pageShift
        var zeroed = false
        guard let memory = StateRegion.arena.bound(to: PageArena.self).pointee.allocate(pages: pages, zeroed: &zeroed) else { return }
        if !zeroed { memset(memory, 0, pages << pageShift) }
        slab.pointee.sidecar = memory
        slab.pointee.sidecarPages = pages
    }

    /// The slab layer's retire hook: the slab is being destroyed (slab lock held).
    static func releaseSidecar(_ rawSlab: UnsafeMutableRawPointer) {
        let slab = rawSlab.assumingMemoryBound(to: Slab.self)
        guard let memory = slab.pointee.sidecar else { return }
        StateRegion.arena.bound(to: PageArena.self).pointee.free(memory, pages: slab.pointee.sidecarPages)
        slab.pointee.sidecar = nil
        slab.pointee.sidecarPages = 0
    }

    /// The requested size and offset kept with the record (the tag's copy may be damaged).
    static func size(in record: UnsafeMutableRawPointer) -> (size: Int, offset: Int) {
        (Int(record.load(fromByteOffset: 32, as: UInt32.self)), Int(record.load(fromByteOffset: 36, as: UInt32.self) & ~(reportedAtUnload | listedByCheck)))
    }

    /// Bit 31 of the offset word: the buffer was reported as leaked when its library was
    /// unloaded (the exit check does not report it again).
    static let reportedAtUnload: UInt32 = 1 << 31

    /// Bit 30: a leak check on demand listed the buffer (`slabguard leaks PID --new` then
    /// leaves it out).
    static let listedByCheck: UInt32 = 1 << 30

    static func isListedByCheck(_ record: UnsafeMutableRawPointer) -> Bool {
        record.load(fromByteOffset: 36, as: UInt32.self) & listedByCheck != 0
    }

    static func markListedByCheck(_ record: UnsafeMutableRawPointer) {
        let word = record.load(fromByteOffset: 36, as: UInt32.self)
        record.storeBytes(of: word | listedByCheck, toByteOffset: 36, as: UInt32.self)
    }

    static func isReportedAtUnload(_ record: UnsafeMutableRawPointer) -> Bool {
        record.load(fromByteOffset: 36, as: UInt32.self) & reportedAtUnload != 0
    }

    static func markReportedAtUnload(_ record: UnsafeMutableRawPointer) {
        let word = record.load(fromByteOffset: 36, as: UInt32.self)
        record.storeBytes(of: word | reportedAtUnload, toByteOffset: 36, as: UInt32.self)
    }

    static func setSize(_ size: Int, offset: Int, in record: UnsafeMutableRawPointer) {
        record.storeBytes(of: UInt32(truncatingIfNeeded: size), toByteOffset: 32, as: UInt32.self)
        record.storeBytes(of: UInt32(truncatingIfNeeded: offset), toByteOffset: 36, as: UInt32.self)
    }
}

extension BufferTag {
    /// The audit entry for the buffer's last allocation (0) or free (1), out of line.
    func auditEntry(_ which: Int, layout: TagLayout) -> AuditEntry? {
        guard layout.auditDepth > 0, let record = AuditRecords.record(forTag: self) else { return nil }
        return AuditEntry(base: record + which * AuditRecords.halfBytes)
    }
}
