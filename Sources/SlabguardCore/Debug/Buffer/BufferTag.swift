// Buffer tags and fill patterns — the debug layer's per-buffer metadata.
//
// A debug cache's chunk is  [ body | tag ] :
//   body  roundUp(bufferSize, align) bytes; the user's buffer starts at
//         `chunk + offset` (offset > 0 only for aligned requests) and is
//         `size` bytes long; the slack after it is filled with the redzone
//         pattern.
//   tag   +0  redzone word 0xfeedfacefeedface
//         +8  state word: magic (bits 48–63: allocated, free or busy), offset of the
//             user buffer in the chunk (bits 32–47), requested size (bits 0–31)
//         +16 link word (slab free list, quarantine FIFO)
//         +24 owner word: the buffer's explicit tag and library tag (Tags/TagTable.swift),
//             and how it was allocated (bits 48–50, AllocationKinds.swift)
//         +32 the contents area (with `contents`): first N bytes at the last free
//         last 16 bytes: the tail guard, 0xfeedface — right before the next chunk's
//         body, so a write before the start of that buffer (an underflow) damages it
//
// Patterns are laid down by address, so any byte's expected value is known
// without knowing where the buffer starts: 0xdeadbeef (freed), 0xbaddcafe
// (allocated, not yet written), 0xfeedface (redzone).  Every 8-byte-aligned
// word of a freed body reads 0xdeadbeefdeadbeef.
//
// The audit record (who allocated and freed the buffer, with stacks) is not here:
// it is out of line, found from the buffer's address (AuditRecord.swift), so an
// overrun through the tag leaves it whole.
//
// Invariants: a chunk in a magazine, the depot, the slab layer or quarantine
// has a free state word and (with `deadbeef`) a fully poisoned body; a chunk
// with the user has an allocated state word and an intact redzone from the
// end of the requested size to the end of the redzone word.

import CSlabguardShim
import Glibc

enum Pattern {
    static let freed: UInt64 = 0xdead_beef_dead_beef
    static let uninitialized: UInt64 = 0xbadd_cafe_badd_cafe
    static let redzone: UInt64 = 0xfeed_face_feed_face

    /// The pattern's byte at address `a`.
    @inline(__always) static func byte(_ pattern: UInt64, at a: UInt) -> UInt8 {
        UInt8(truncatingIfNeeded: pattern >> ((UInt64(a) & 7) << 3))
    }

    /// Fills [p, p+count) with `pattern` laid down by address.  Every pattern repeats
    /// every 4 bytes, so the aligned middle is one vectorized wmemset.
    static func fill(_ p: UnsafeMutableRawPointer, _ count: Int, _ pattern: UInt64) {
        guard count > 0 else { return }
        var a = UInt(bitPattern: p)
        let end = a + UInt(count)
        while a < end && a & 3 != 0 { UnsafeMutablePointer<UInt8>(bitPattern: a)!.pointee = byte(pattern, at: a); a += 1 }
        let words = Int((end - a) / 4)
        if words > 0 {
            sg_fill_words32(UnsafeMutableRawPointer(bitPattern: a)!, UInt32(truncatingIfNeeded: pattern), words)
            a += UInt(words * 4)
        }
        while a < end { UnsafeMutablePointer<UInt8>(bitPattern: a)!.pointee = byte(pattern, at: a); a += 1 }
    }

    /// The address of the first byte of [p, p+count) that differs from `pattern`, or nil.
    /// The aligned middle is compared with memcmp against a page of the pattern.
    static func firstMismatch(_ p: UnsafeRawPointer, _ count: Int, _ pattern: UInt64) -> UInt? {
        guard count > 0 else { return nil }
        var a = UInt(bitPattern: p)
        let end = a + UInt(count)
        while a < end && a & 7 != 0 {
            if UnsafePointer<UInt8>(bitPattern: a)!.pointee != byte(pattern, at: a) { return a }
            a += 1
        }
        if let page = patternPage(pattern) {
            while end - a >= 8 {
                let n = min(Int(end - a) & ~7, pageSize)
                if memcmp(UnsafeRawPointer(bitPattern: a)!, page, n) != 0 { break }   // locate below
                a += UInt(n)
            }
        }
        while a + 8 <= end {
            if UnsafePointer<UInt64>(bitPattern: a)!.pointee != pattern {
                var b = a
                while UnsafePointer<UInt8>(bitPattern: b)!.pointee == byte(pattern, at: b) { b += 1 }
                return b
            }
            a += 8
        }
        while a < end {
            if UnsafePointer<UInt8>(bitPattern: a)!.pointee != byte(pattern, at: a) { return a }
            a += 1
        }
        return nil
    }

    /// A page filled with `pattern` (mapped once per pattern; nil if mapping fails).
    private static func patternPage(_ pattern: UInt64) -> UnsafeRawPointer? {
        let slot: Int
        switch pattern {
        case freed: slot = 0
        case redzone: slot = 1
        default: slot = 2
        }
        let pages = StateRegion.fillPages.bound(to: UnsafeMutableRawPointer?.self)
        if let page = pages[slot] { return UnsafeRawPointer(page) }
        guard let page = Platform.map(pageSize) else { return nil }
        fill(page, pageSize, pattern)
        if sg_atomic_cas_u64(UnsafeMutableRawPointer(pages + slot).assumingMemoryBound(to: UInt64.self), 0,
                              UInt64(UInt(bitPattern: page))) == 0 {
            Platform.unmap(page, pageSize)
        }
        return UnsafeRawPointer(pages[slot]!)
    }
}

/// The state word of a buffer tag.
struct TagState: Equatable {
    var raw: UInt64

    static let allocatedMagic: UInt64 = 0xA110
    static let freeMagic: UInt64 = 0xF4EE
    /// Between the magazine and the user, while the debug layer lays patterns down.
    static let busyMagic: UInt64 = 0xB057
    static let busy = TagState(raw: busyMagic << 48)

    static func allocated(offset: Int, size: Int) -> TagState {
        TagState(raw: allocatedMagic << 48 | UInt64(offset) << 32 | UInt64(UInt32(truncatingIfNeeded: size)))
    }

    static func free(offset: Int, size: Int) -> TagState {
        TagState(raw: freeMagic << 48 | UInt64(offset) << 32 | UInt64(UInt32(truncatingIfNeeded: size)))
    }

    var isAllocated: Bool { raw >> 48 == TagState.allocatedMagic }
    var isFree: Bool { raw >> 48 == TagState.freeMagic }
    var isBusy: Bool { raw >> 48 == TagState.busyMagic }
    var offset: Int { Int((raw >> 32) & 0xFFFF) }
    var size: Int { Int(raw & 0xFFFF_FFFF) }
}

/// Where the tag's parts are for one cache.
struct TagLayout {
    static let headerBytes = 32
    static let redzoneWord = 0
    static let stateWord = 8
    static let linkWord = 16
    static let ownerWord = 24

    var auditDepth: Int        // frames per audit stack (0: no audit); the record is out of line
    var contentsBytes: Int     // 0: no contents area

    var contentsOffset: Int { TagLayout.headerBytes }
    /// The tail guard (16 bytes of the redzone pattern) ends the tag.
    static let tailGuardBytes = 16
    var tailGuardOffset: Int { TagLayout.headerBytes + roundUp(contentsBytes, 16) }
    var totalBytes: Int { tailGuardOffset + TagLayout.tailGuardBytes }
}

extension TagLayout {
    /// The layout of a cache whose debug flags are `flags`, with the options' audit depth
    /// and contents size.
    init(flags: DebugFlags) {
        let options = OptionsState.shared.pointee.options
        self.init(auditDepth: flags.contains(.audit) ? options.auditDepth : 0,
                  contentsBytes: flags.contains(.contents) ? options.contentsBytes : 0)
    }

    /// The layout of guarded spans (guards, sample=): audit always, contents when asked.
    static func guarded() -> TagLayout {
        let options = OptionsState.shared.pointee.options
        return TagLayout(auditDepth: options.auditDepth,
                         contentsBytes: options.flags.contains(.contents) ? options.contentsBytes : 0)
    }

    /// The layout of a large span's tag: a guarded one's, else the default heap's.
    static func of(_ span: UnsafeMutablePointer<LargeSpan>) -> TagLayout {
        span.pointee.guarded ? guarded() : TagLayout(flags: DebugFlags(rawValue: SizeClassHeap.defaultHeap.pointee.debugFlags))
    }
}

/// A buffer tag in place.
struct BufferTag {
    let base: UnsafeMutableRawPointer      // the tag's first byte (chunk + cache.tagOffset)

    @inline(__always) var redzoneWord: UInt64 {
        get { base.load(as: UInt64.self) }
        nonmutating set { base.storeBytes(of: newValue, as: UInt64.self) }
    }
    @inline(__always) var state: TagState {
        get { TagState(raw: base.load(fromByteOffset: TagLayout.stateWord, as: UInt64.self)) }
        nonmutating set { base.storeBytes(of: newValue.raw, toByteOffset: TagLayout.stateWord, as: UInt64.self) }
    }
    @inline(__always) var link: UnsafeMutableRawPointer? {
        get { base.load(fromByteOffset: TagLayout.linkWord, as: UnsafeMutableRawPointer?.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: TagLayout.linkWord, as: UnsafeMutableRawPointer?.self) }
    }

    /// Who the buffer is charged to (Tags/TagTable.swift); written at every allocation.
    @inline(__always) var owner: UInt64 {
        get { base.load(fromByteOffset: TagLayout.ownerWord, as: UInt64.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: TagLayout.ownerWord, as: UInt64.self) }
    }

    /// A write before the start of the buffer at `chunk` (not the first of its slab) lands
    /// in the tail guard of the chunk before it: the address of the first damaged byte.
    static func underflow(before chunk: UnsafeMutableRawPointer, slab: UnsafeMutablePointer<Slab>) -> UInt? {
        guard chunk > slab.pointee.base else { return nil }
        return Pattern.firstMismatch(chunk - TagLayout.tailGuardBytes, TagLayout.tailGuardBytes, Pattern.redzone)
    }

    func contents(layout: TagLayout) -> UnsafeMutableRawPointer? {
        layout.contentsBytes > 0 ? base + layout.contentsOffset : nil
    }
}

extension UnsafeMutablePointer where Pointee == CacheCore {
    /// Calls `body` with every allocated chunk of this debug cache (its partial and full
    /// slabs: where live buffers are), the chunk's tag and its state.  The caller holds
    /// the cache's slab lock (or has stopped the world with it held).
    func forEachAllocatedChunk(_ body: (UnsafeMutableRawPointer, BufferTag, TagState) -> Void) {
        for list in Int32(0)...Int32(1) {
            var slab = slabs.listHead(SlabList(rawValue: list)!).pointee
            while let s = slab {
                for i in 0..<s.pointee.carved {
                    let chunk = s.pointee.base + i * pointee.chunkSize
                    let tag = BufferTag(base: chunk + pointee.tagOffset)
                    let state = tag.state
                    if state.isAllocated { body(chunk, tag, state) }
                }
                slab = s.pointee.next
            }
        }
    }
}
