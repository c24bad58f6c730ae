// Platform: the environment, files read whole, and the report socket — the system calls
// the debug layer's report output and suppressions need, kept at the platform boundary
// (design §2).  Nothing here allocates from the heap.

import CSlabguardShim
import Glibc

extension Platform {
    /// The environment variable `name`, or nil (getenv: fine in secure execution, for
    /// variables that make slabguard write no file).
    static func environment(_ name: StaticString) -> UnsafeMutablePointer<CChar>? {
        getenv(UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self))
    }

    /// Secure execution (setuid/setgid, file capabilities: AT_SECURE), where glibc's
    /// secure_getenv sees nothing: the environment may not make slabguard write files.
    static var isSecureExecution: Bool { sg_secure_execution() != 0 }

    /// A regular file read whole into fresh mapped memory, a zero byte after its end:
    /// (memory, bytes read, bytes mapped), or nil with an errno in `error` (EINVAL: not a
    /// regular file).  The caller unmaps it (or keeps it for the process's life).
    static func readFile(_ path: UnsafePointer<CChar>, error: inout Int32) -> (UnsafeMutableRawPointer, Int, Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { error = errno; return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { error = errno; return nil }
        guard info.st_mode & S_IFMT == S_IFREG else { error = EINVAL; return nil }
        let size = Int(info.st_size)
        let mapped = roundUp(size + 1, pageSize)
        guard let memory = map(mapped) else { error = ENOMEM; return nil }
        var done = 0
        while done < size {
            let n = read(fd, memory + done, size - done)
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { error = errno; unmap(memory, mapped); return nil }
            break
        }
        return (memory, done, mapped)
    }

    /// A regular file of at least `minimum` bytes mapped read-only (recorded as slabguard's
    /// own): (address, size), or nil.
    static func mapFile(_ path: UnsafePointer<CChar>, minimum: Int) -> (UnsafeRawPointer, Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int(info.st_size) >= minimum else { return nil }
        guard let p = mapFile(fd, Int(info.st_size)) else { return nil }
        return (p, Int(info.st_size))
    }

    /// Reads up to `capacity` bytes of a file into `buffer` (nothing mapped: usable while
    /// other threads are stopped); the byte count, or nil when it cannot be opened.
    static func readFile(_ path: UnsafePointer<CChar>, into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var length = 0
        while length < capacity {
            let r = read(fd, buffer + length, capacity - length)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { break }
            length += r
        }
        return length
    }

    /// Calls `body(buffer, start, end)` for each line of a file (its bytes buffer[start..<end],
    /// without the newline), read in pieces through `buffer` of `capacity` bytes: a file of
    /// any length — /proc/self/maps with tens of thousands of mappings — and nothing
    /// mapped (usable while other threads are stopped).  False when it cannot be opened or
    /// read, or a line is longer than the buffer.
    static func forEachLine(ofFile path: UnsafePointer<CChar>, buffer: UnsafeMutablePointer<UInt8>, capacity: Int,
                            _ body: (UnsafeMutablePointer<UInt8>, Int, Int) -> Void) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var filled = 0
        var ended = false
        while !ended {
            let r = read(fd, buffer + filled, capacity - filled)
            if r < 0 && errno == EINTR { continue }
            if r < 0 { return false }
            if r == 0 { ended = true }
            let scanned = filled
            filled += max(r, 0)
            var start = 0
            var i = scanned
            while i < filled {
                if buffer[i] == 10 { body(buffer, start, i); start = i + 1 }
                i += 1
            }
            if ended && start < filled { body(buffer, start, filled); start = filled }
            if start == 0 && filled == capacity { return false }   // a line longer than the buffer
            if start > 0 {
                memmove(buffer, buffer + start, filled - start)
                filled -= start
            }
        }
        return true
    }

    /// Empties a file slabguard writes, to be written again from its start.
    static func rewind(_ fd: Int32) {
        _ = ftruncate(fd, 0)
        _ = lseek(fd, 0, SEEK_SET)
    }

    /// Sets an open file's size (the flight recorder's file: sparse, filled as it is written).
    static func setFileSize(_ fd: Int32, _ bytes: Int) -> Bool { ftruncate(fd, off_t(bytes)) == 0 }

    /// Maps `bytes` of an open file shared and writable: stores reach the file even if the
    /// process is killed (the flight recorder).  Recorded in the mapping table.
    static func mapFileShared(_ fd: Int32, _ bytes: Int) -> UnsafeMutableRawPointer? {
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED { return nil }
        MetadataMappings.add(p!, roundUp(bytes, pageSize))
        return p
    }

    /// Maps another file shared at exactly `p`, replacing the mapping there (a forked
    /// child's own flight recorder file, in place of its parent's).
    static func remapFileShared(_ p: UnsafeMutableRawPointer, _ fd: Int32, _ bytes: Int) -> Bool {
        mmap(p, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != MAP_FAILED
    }

    /// Turns a shared file mapping made by mapFileShared into a private copy in place: a
    /// forked child's stores then stay its own (the parent's file is left alone).
    static func privatizeFileMapping(_ p: UnsafeMutableRawPointer, _ fd: Int32, _ bytes: Int) -> Bool {
        mmap(p, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) != MAP_FAILED
    }

    /// Moves a descriptor's file position to `offset`.
    static func seek(_ fd: Int32, to offset: Int) -> Bool { lseek(fd, off_t(offset), SEEK_SET) == off_t(offset) }

    /// A descriptor's file position (-1 when it has none).
    static func position(_ fd: Int32) -> Int { Int(lseek(fd, 0, SEEK_CUR)) }

    /// Whether a process `pid` exists (kill with signal 0).
    static func processExists(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

    /// Closes a descriptor slabguard opened.
    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// The device and inode of `fd` when it is a socket, else nil.
    static func socketIdentity(_ fd: Int32) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// An open file's identity (device, inode).
    static func fileIdentity(_ fd: Int32) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// Opens an existing file for reading: never through a symbolic link, never waiting (a FIFO).
    static func openForReading(_ path: UnsafePointer<CChar>) -> Int32? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        return fd >= 0 ? fd : nil
    }

    /// Opens an existing file to append to it, under design §11's rules (a regular file
    /// owned by this user, never through a symbolic link); nil with an errno otherwise.
    static func openForAppend(_ path: UnsafePointer<CChar>, error: inout Int32) -> Int32? {
        let fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { error = errno; return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid() else {
            close(fd)
            error = notRegularFile
            return nil
        }
        return fd
    }

    /// Replaces the mapping at `p` with private anonymous memory holding the same bytes
    /// (when the file behind a shared mapping cannot be reopened).
    static func replaceWithPrivateCopy(_ p: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        guard let copy = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), copy != MAP_FAILED else {
            return false
        }
        defer { munmap(copy, bytes) }
        memcpy(copy, p, bytes)
        guard mmap(p, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED else {
            return false
        }
        memcpy(p, copy, bytes)
        return true
    }

    /// A new Unix datagram socket (close-on-exec), or nil.
    static func datagramSocket() -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        return fd >= 0 ? fd : nil
    }

    /// Sends `count` bytes as one datagram to the socket bound at `address` (no SIGPIPE);
    /// false when nothing is bound there any more.
    static func sendDatagram(_ fd: Int32, to address: UnsafePointer<sockaddr_un>, _ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        while true {
            let n = address.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, count, Int32(MSG_NOSIGNAL), $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
            if n == count { return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }
}
