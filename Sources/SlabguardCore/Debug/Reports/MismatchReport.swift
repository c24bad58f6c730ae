// The alloc-dealloc mismatch report (design §4): a buffer released through a
// deallocator that does not match its allocator — malloc'd memory deleted, new'd
// memory freed, new[] deleted with delete (also past its array cookie), aligned new
// with a plain delete.  The kinds and the checks are Checks/AllocationKinds.swift.
//
//   slabguard: alloc-dealloc mismatch: buffer allocated by new[], freed by delete
//     in process PID (NAME), thread TID
//     buffer 0x…, cache sg_alloc_48, size 40
//     freed by thread TID at T:        (the current stack: the delete)
//     allocated by thread TID at T:    (with `audit`)
//
// JSON: "report": "alloc-dealloc mismatch", "allocated_by", "freed_by", the buffer and
// the stacks as in every report; "address" and "message" when the pointer freed is not
// the buffer's start (delete past new[]'s cookie).  Suppression kind `mismatch`.

import CSlabguardShim
import Glibc

/// The two sides of a mismatch, for the headline and its JSON fields.
struct AllocationMismatch {
    var allocatedBy: AllocationKind
    var freedBy: AllocationKind

    /// ": buffer allocated by ALLOCATOR, freed by DEALLOCATOR" after the headline.
    func appendHeadline(_ w: inout ReportWriter) {
        w.append(": buffer allocated by ")
        w.append(allocatedBy.allocatorName)
        w.append(", freed by ")
        w.append(freedBy.deallocatorName)
    }

    func appendJSON(_ w: inout ReportWriter) {
        w.jsonField("allocated_by", string: allocatedBy.allocatorName)
        w.jsonField("freed_by", string: freedBy.deallocatorName)
    }
}

extension DebugReport {
    /// `buffer`, made by `allocatedBy`, released by `freedBy`'s deallocator at `given` (its
    /// start, or past new[]'s array cookie).
    static func mismatch(_ buffer: LiveBuffer, allocatedBy: AllocationKind, freedBy: AllocationKind, given: UnsafeMutableRawPointer) {
        var r = ReportBuilder(.mismatch, cacheFlags: buffer.flags, mismatch: AllocationMismatch(allocatedBy: allocatedBy, freedBy: freedBy))
        if given != buffer.user {
            r.line { w in
                w.append("address freed ")
                w.append(hex: UInt(bitPattern: given))
                w.append(" is ")
                w.append(decimal: UInt(bitPattern: given) &- UInt(bitPattern: buffer.user))
                w.append(" bytes into the buffer: past the array cookie (the element count) new[] puts before objects with a destructor")
            }
            r.fieldHex("address", UInt(bitPattern: given))
        }
        r.buffer(name: buffer.name, user: buffer.user, size: buffer.size)
        r.currentStack("freed by thread")
        r.auditStacks(layout: buffer.layout, tag: buffer.tag, freeFirst: false, allocationOnly: true)
        r.finish()
    }
}
