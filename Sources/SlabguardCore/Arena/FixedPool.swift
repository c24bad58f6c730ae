// FixedPool — fixed-size metadata records (span descriptors, slabs, magazines,
// thread records) carved from memory mapped outside the heap region, so heap
// overruns cannot reach allocator metadata.  Free records go on an intrusive
// list.  Records are never returned to the OS (metadata is small and bounded
// by the peak number of slabs/magazines).
//
// A pool made `keepingSpare` maps its next chunk when it starts on one, so that at an
// address-space limit (`ulimit -v`, where no mapping is left) it still has records
// for a while: the arena's free-span records, without which a freed span could not
// be listed and its pages were lost to the heap for good (after freeing everything
// under `default` at the limit, malloc(600000) failed and the exit leak scan found no
// memory).
//
// Locking: none of its own; the owner serializes calls (arena lock, depot lock…).

struct FixedPool {
    var recordSize: Int = 0
    var freeList: UnsafeMutableRawPointer? = nil
    var bump: UnsafeMutableRawPointer? = nil
    var bumpEnd: UnsafeMutableRawPointer? = nil
    var recordsInUse: Int = 0
    var bytesMapped: Int = 0
    var keepsSpare = false
    var spare: UnsafeMutableRawPointer? = nil   // the next chunk, mapped ahead (keepsSpare)

    static let chunkBytes = 256 * 1024

    init(recordSize: Int, keepingSpare: Bool = false) {
        self.recordSize = roundUp(max(recordSize, 16), 16)
        self.keepsSpare = keepingSpare
    }

    /// Maps the first chunk (and, keeping a spare, the next) now, before any limit is met:
    /// a program that allocates to its address-space limit before its first free must
    /// still be able to free.
    mutating func prepare() {
        guard bump == nil, let chunk = Platform.map(FixedPool.chunkBytes) else { return }
        bytesMapped += FixedPool.chunkBytes
        bump = chunk
        bumpEnd = chunk + FixedPool.chunkBytes
        if keepsSpare, spare == nil, let next = Platform.map(FixedPool.chunkBytes) {
            spare = next
            bytesMapped += FixedPool.chunkBytes
        }
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
            guard let chunk = spare ?? Platform.map(FixedPool.chunkBytes) else { return nil }
            if spare != nil { spare = nil } else { bytesMapped += FixedPool.chunkBytes }
            bump = chunk
            bumpEnd = chunk + FixedPool.chunkBytes
            if keepsSpare, let next = Platform.map(FixedPool.chunkBytes) {
                spare = next
                bytesMapped += FixedPool.chunkBytes
            }
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
