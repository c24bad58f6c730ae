// Platform — the only layer that talks to the kernel for memory, files and raw output.
//
// Everything above it gets typed results and never calls mmap/munmap/madvise/
// mprotect/write directly.  Nothing here allocates: results are plain values
// and pointers.  Its one piece of state is the table of slabguard's own mappings
// (MetadataMappings), under a leaf lock held only around edits.

import CSlabguardShim
import Glibc

/// The system page size slabguard is built around (x86_64 and arm64 Linux with 4 KiB pages).
let pageSize = 4096
let pageShift = 12

/// Thin wrappers over the kernel's memory calls.
enum Platform {
    /// Reserves `bytes` of address space, readable and writable but not committed
    /// (`MAP_NORESERVE`: pages cost memory only when touched).
    static func reserve(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if p == MAP_FAILED { return nil }
        MetadataMappings.add(p!, bytes)
        return p
    }

    /// Maps `bytes` (NORESERVE) at exactly `address`, failing rather than replacing
    /// anything there or placing it elsewhere.
    static func reserve(at address: UnsafeMutableRawPointer, _ bytes: Int) -> UnsafeMutableRawPointer? {
        guard let p = mapExactly(address, bytes) else { return nil }
        MetadataMappings.add(p, bytes)
        return p
    }

    /// Maps `bytes` right after a range mapped with `reserve(at:)` that ends at `end`,
    /// growing that range (it stays one range for the leak finder).
    static func extend(_ end: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        guard mapExactly(end, bytes) != nil else { return false }
        MetadataMappings.extend(end: end, by: bytes)
        return true
    }

    private static func mapExactly(_ address: UnsafeMutableRawPointer, _ bytes: Int) -> UnsafeMutableRawPointer? {
        let fixedNoReplace: Int32 = 0x100000   // MAP_FIXED_NOREPLACE (Linux 4.17)
        let p = mmap(address, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixedNoReplace, -1, 0)
        if p == MAP_FAILED { return nil }
        if p != address {   // an older kernel took the flag as a hint
            _ = munmap(p, bytes)
            return nil
        }
        return p
    }

    /// A random GiB-aligned address where a claim of `bytes` fits between 32 and 64 TiB:
    /// below PIE executables and their brk heaps (0x55…, about 85 TiB) and far below the
    /// kernel's mmap area (near 128 TiB, growing down).  nil without random bytes.
    static func farAddress(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let low = 32 << 40, window = 32 << 40
        guard bytes < window else { return nil }
        var random: UInt64 = 0
        guard sg_random_bytes(&random, 8) == 8 else { return nil }
        let slots = UInt64((window - bytes) >> 30)
        return UnsafeMutableRawPointer(bitPattern: low + Int(random % max(slots, 1)) << 30)
    }

    /// Maps fresh zeroed memory (used for metadata that must not live in the heap region).
    static func map(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let size = roundUp(bytes, pageSize)
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if p == MAP_FAILED { return nil }
        MetadataMappings.add(p!, size)
        return p
    }

    /// Maps `bytes` of an open file read-only (the ELF reader's view of a module).
    static func mapFile(_ fd: Int32, _ bytes: Int) -> UnsafeRawPointer? {
        let p = mmap(nil, bytes, PROT_READ, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED { return nil }
        MetadataMappings.add(p!, roundUp(bytes, pageSize))
        return UnsafeRawPointer(p!)
    }

    static func unmap(_ p: UnsafeMutableRawPointer, _ bytes: Int) {
        MetadataMappings.remove(p)
        _ = munmap(p, roundUp(bytes, pageSize))
    }

    /// Gives the physical pages back to the OS; the range stays mapped and reads as zero.
    static func release(_ p: UnsafeMutableRawPointer, _ bytes: Int) {
        _ = madvise(p, bytes, MADV_DONTNEED)
    }

    /// Marks a range as left out of core dumps (MADV_DONTDUMP) or put back in.  Guarded
    /// spans use it to keep their pages in kernel mappings of their own (GuardedAllocator).
    @discardableResult
    static func setLeftOutOfDumps(_ p: UnsafeMutableRawPointer, _ bytes: Int, _ leftOut: Bool) -> Bool {
        madvise(p, bytes, leftOut ? MADV_DONTDUMP : MADV_DODUMP) == 0
    }

    /// Makes a range inaccessible (guard pages) or accessible again.
    static func protect(_ p: UnsafeMutableRawPointer, _ bytes: Int, accessible: Bool) -> Bool {
        mprotect(p, bytes, accessible ? (PROT_READ | PROT_WRITE) : PROT_NONE) == 0
    }

    /// The one writer: all of `count` bytes to `fd`, partial writes continued, EINTR
    /// retried, EAGAIN waited out with poll(2) (5 s at a time).  False after any other
    /// error (EPIPE, EBADF, EIO, a full disk) or a descriptor stuck non-writable.
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = write(fd, bytes + done, count - done)
            if n > 0 { done += n; continue }
            let e = n < 0 ? errno : 0
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let r = poll(&pfd, 1, 5000)
                if r > 0 || (r < 0 && errno == EINTR) { continue }
            }
            return false
        }
        return true
    }

    /// Writes a static message to standard error (for fatal set-up problems).
    static func writeError(_ message: StaticString) {
        writeAll(2, message.utf8Start, message.utf8CodeUnitCount)
    }

    /// Prints a fatal allocator error and aborts without touching the heap.
    static func fatal(_ message: StaticString) -> Never {
        writeError("slabguard: fatal: ")
        writeError(message)
        writeError("\n")
        abort()
    }

    static func setErrno(_ value: Int32) { errno = value }

    /// Whether every page of [p, p + bytes) is mapped (mincore fails with ENOMEM on a hole).
    static func isMapped(_ p: UnsafeRawPointer, bytes: Int) -> Bool {
        let start = UInt(bitPattern: p) & ~UInt(pageSize - 1)
        let end = UInt(bitPattern: p) + UInt(bytes)
        var page = start
        while page < end {
            var resident: UInt8 = 0
            if mincore(UnsafeMutableRawPointer(bitPattern: page), pageSize, &resident) != 0 { return false }
            page += UInt(pageSize)
        }
        return true
    }

    /// Why `createFile` refused a path: an errno value, or one of these.
    static let notRegularFile: Int32 = -1
    static let ownedByAnotherUser: Int32 = -2
    static let cannotHoldData: Int32 = -3

    /// Opens `path` for writing under design §11's rules: never through a symbolic link
    /// (O_NOFOLLOW), created with mode 0600, an existing file replaced (truncated) only
    /// when it is a regular file owned by this user and able to hold data (not /proc).
    /// Returns the descriptor, or a negative errno / one of the reasons above in `error`.
    static func createFile(_ path: UnsafePointer<CChar>, error: inout Int32) -> Int32? {
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o600)
        guard fd >= 0 else { error = errno; return nil }
        var info = stat()
        var reason: Int32 = 0
        if fstat(fd, &info) != 0 {
            reason = errno
        } else if info.st_mode & S_IFMT != S_IFREG {
            reason = notRegularFile
        } else if info.st_uid != geteuid() {
            reason = ownedByAnotherUser
        } else if ftruncate(fd, off_t(pageSize)) != 0 {
            reason = errno
        } else if fstat(fd, &info) != 0 || info.st_size != off_t(pageSize) || ftruncate(fd, 0) != 0 {
            reason = cannotHoldData   // procfs and the like accept a truncate and ignore it
        }
        if reason != 0 {
            close(fd)
            error = reason
            return nil
        }
        return fd
    }

    /// The text for a `createFile` error.
    static func fileErrorText(_ error: Int32) -> UnsafePointer<CChar> {
        let text: StaticString
        switch error {
        case notRegularFile: text = "not a regular file"
        case ownedByAnotherUser: text = "the file belongs to another user (slabguard replaces only its user's files)"
        case cannotHoldData: text = "not a file that can hold data"
        case ELOOP: text = "a symbolic link (slabguard does not follow links)"
        default: return UnsafePointer(strerror(error))
        }
        return UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
    }
}

/// A pthread mutex living in raw memory (zeroed memory is an unlocked mutex on glibc).
/// It never allocates, so it is safe on the allocator's slow paths.
struct RawLock {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) { self.mutex = mutex }

    /// Never waits on a lock this thread holds (see sg_mutex_lock).
    @inline(__always) func lock() { sg_mutex_lock(mutex) }
    @inline(__always) func unlock() { sg_mutex_unlock(mutex) }
    @inline(__always) func tryLock() -> Bool { sg_mutex_trylock(mutex) != 0 }
    /// Re-initializes the mutex in a forked child, where the owning thread no longer exists.
    func reinitialize() { sg_mutex_reinit(mutex) }
}

@inline(__always) func roundUp(_ value: Int, _ alignment: Int) -> Int {
    (value &+ alignment &- 1) & ~(alignment &- 1)
}

@inline(__always) func isPowerOfTwo(_ value: Int) -> Bool {
    value > 0 && (value & (value &- 1)) == 0
}

/// The address ranges slabguard mapped for itself (metadata, page map, logs), so the
/// leak finder does not take them for the program's memory.  A fixed table; ranges
/// beyond its capacity are simply not remembered (the leak scan is then more conservative).
enum MetadataMappings {
    struct Table {
        var mutex = pthread_mutex_t()
        var count = 0
    }
    @inline(__always) static var capacity: Int { StateRegion.mappingRanges.bytes / 16 }

    @inline(__always) private static var table: UnsafeMutablePointer<Table> { StateRegion.mappings.bound(to: Table.self) }
    @inline(__always) private static var ranges: UnsafeMutablePointer<UInt> {
        StateRegion.mappingRanges.bound(to: UInt.self)
    }

    static func add(_ p: UnsafeMutableRawPointer, _ bytes: Int) {
        let t = table
        sg_mutex_lock(&t.pointee.mutex)
        if t.pointee.count < capacity {
            ranges[2 * t.pointee.count] = UInt(bitPattern: p)
            ranges[2 * t.pointee.count + 1] = UInt(bitPattern: p) + UInt(bytes)
            t.pointee.count += 1
        }
        sg_mutex_unlock(&t.pointee.mutex)
    }

    /// Grows the range ending at `end` by `bytes`.
    static func extend(end: UnsafeMutableRawPointer, by bytes: Int) {
        let t = table
        sg_mutex_lock(&t.pointee.mutex)
        for i in 0..<t.pointee.count where ranges[2 * i + 1] == UInt(bitPattern: end) {
            ranges[2 * i + 1] += UInt(bytes)
            break
        }
        sg_mutex_unlock(&t.pointee.mutex)
    }

    static func remove(_ p: UnsafeMutableRawPointer) {
        let t = table
        sg_mutex_lock(&t.pointee.mutex)
        for i in 0..<t.pointee.count where ranges[2 * i] == UInt(bitPattern: p) {
            t.pointee.count -= 1
            ranges[2 * i] = ranges[2 * t.pointee.count]
            ranges[2 * i + 1] = ranges[2 * t.pointee.count + 1]
            break
        }
        sg_mutex_unlock(&t.pointee.mutex)
    }

    /// The table's lock, for the leak scan, which reads it with the world stopped.
    static var mutex: UnsafeMutablePointer<pthread_mutex_t> { withUnsafeMutablePointer(to: &table.pointee.mutex) { $0 } }
    static func lock() { sg_mutex_lock(&table.pointee.mutex) }
    static func unlock() { sg_mutex_unlock(&table.pointee.mutex) }
    static func reinitializeLock() { sg_mutex_reinit(&table.pointee.mutex) }

    /// Copies the ranges (start, end pairs) into `out`, sorted by start; returns how many.
    /// The caller holds the lock (`lock()`).
    static func snapshotLocked(into out: UnsafeMutablePointer<UInt>, capacity: Int) -> Int {
        let t = table
        let n = min(t.pointee.count, capacity)
        for i in 0..<(2 * n) { out[i] = ranges[i] }
        // Insertion sort: a few hundred ranges at most.
        var i = 1
        while i < n {
            let start = out[2 * i], end = out[2 * i + 1]
            var j = i - 1
            while j >= 0 && out[2 * j] > start {
                out[2 * j + 2] = out[2 * j]; out[2 * j + 3] = out[2 * j + 1]
                j -= 1
            }
            out[2 * j + 2] = start; out[2 * j + 3] = end
            i += 1
        }
        return n
    }
}
