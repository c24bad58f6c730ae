// How a debug buffer was allocated (the malloc family or a C++ operator new), kept in
// bits 48–50 of its tag's owner word, and a live buffer as a report names it.  The
// checks that compare a release with it are Checks/AllocationKinds.swift's.

/// An allocator (as allocated) or its deallocator (as freed): the same index on both sides.
enum AllocationKind: UInt8 {
    case malloc = 0, new = 1, newArray = 2, alignedNew = 3, alignedNewArray = 4

    /// Design §4's words; the aligned array forms, which §4 leaves out, as `aligned new[]`.
    var allocatorName: StaticString {
        switch self {
        case .malloc: "malloc"
        case .new: "new"
        case .newArray: "new[]"
        case .alignedNew: "aligned new"
        case .alignedNewArray: "aligned new[]"
        }
    }

    var deallocatorName: StaticString {
        switch self {
        case .malloc: "free"
        case .new: "delete"
        case .newArray: "delete[]"
        case .alignedNew: "aligned delete"
        case .alignedNewArray: "aligned delete[]"
        }
    }

    /// The kind in an owner word (an unknown value reads as malloc: never reported).
    init(ownerWord word: UInt64) { self = AllocationKind(rawValue: UInt8((word >> AllocationKind.ownerShift) & 7)) ?? .malloc }

    /// Where the kind is in the tag's owner word: bits 48–50.
    static let ownerShift: UInt64 = 48
    static let ownerMask: UInt64 = 7 << 48
}

/// A live debug buffer found from its address, with what a report names it by.
struct LiveBuffer {
    var tag: BufferTag
    var user: UnsafeMutableRawPointer
    var size: Int
    var name: UnsafePointer<CChar>
    var flags: UInt32
    var layout: TagLayout
    var kind: AllocationKind { AllocationKind(ownerWord: tag.owner) }
}
