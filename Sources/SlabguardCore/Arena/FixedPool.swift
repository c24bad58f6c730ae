// FixedPool — fixed-size metadata records (span descriptors, slabs, magazines,
// thread records) carved from memory mapped outside the heap region, so heap
// overruns cannot reach allocator metadata.  Free records go on an intrusive
// list.  Records are never returned to the OS (metadata is small and bounded
// by the peak number of slabs/magazines).
//
// Locking: none of its own; the owner serializes calls (arena lock, depot lock…).

struct FixedPool {
    var recordSize: Int = 0
    var freeList: UnsafeMutableRawPointer? = nil
    var bump: UnsafeMutableRawPointer? = nil
    var bumpEnd: UnsafeMutableRawPointer? = nil
    var recordsInUse: Int = 0
    var bytesMapped: Int = 0

    static let chunkBytes = 256 * 1024

    init(recordSize: Int) {
        self.recordSize = roundUp(max(recordSize, 16), 16)
    }

    /// A zeroed record, or nil when the OS refuses memory.
    mutating func allocate() -> UnsafeMutableRawPointer? {
        if let record = freeList {
            freeList = record.load(as: UnsafeMutableRawPointer?.self)
            record.initializeMemory(as: UInt8.self, repeating: 0, count: recordSize)
            recordsInUse += 1
            return record
        }
        if bump == nil || bump! + recordSize > bumpEnd! {
            guard let chunk = Platform.map(FixedPool.chunkBytes) else { return nil }
            bytesMapped += FixedPool.chunkBytes
            bump = chunk
            bumpEnd = chunk + FixedPool.chunkBytes
        }
        let record = bump!
        bump = record + recordSize
        recordsInUse += 1
        return record  // fresh mmap memory is zero
    }

    mutating func free(_ record: UnsafeMutableRawPointer) {
        record.storeBytes(of: freeList, as: UnsafeMutableRawPointer?.self)
        freeList = record
        recordsInUse -= 1
    }
}
