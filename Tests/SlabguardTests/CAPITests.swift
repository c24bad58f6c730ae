// C API tests (slabguard.h): the sg_cache_* object caches with C constructor and
// destructor callbacks, the sg_alloc family, errno on failure, and sg_stats_print
// writing a ::kmastat-style table to a file descriptor.  The functions are the
// @_cdecl exports themselves, called by name.
//
// sg_cache_create is never called inside #require(...): the macro passes each
// argument separately, and a string literal converted to a C string there can
// dangle by the time the function runs (the cache then gets a garbage name).

import Glibc
import Testing
@testable import SlabguardCore
import SlabguardRuntime

/// Constructor/destructor call counts kept in the callbacks' argument.
private struct CCounts {
    var constructed = 0
    var destructed = 0
    var failing = false
}

private let cMagic: UInt64 = 0x5147_C0DE

private let countingConstructor: @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Int32 = { buffer, argument in
    let counts = argument!.assumingMemoryBound(to: CCounts.self)
    counts.pointee.constructed += 1
    if counts.pointee.failing { return -1 }
    buffer.storeBytes(of: cMagic, as: UInt64.self)
    return 0
}

private let countingDestructor: @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer?) -> Void = { buffer, argument in
    let counts = argument!.assumingMemoryBound(to: CCounts.self)
    if buffer.load(as: UInt64.self) == cMagic { counts.pointee.destructed += 1 }
}

/// Reads everything written to a pipe by `write` (a reader thread drains it, so output
/// larger than the pipe's buffer cannot block the writer).
private func captureOutput(_ write: (Int32) -> Void) -> String {
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0)
    let readEnd = fds[0]
    var bytes: [UInt8] = []
    let reader = startThread {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(readEnd, $0.baseAddress!, 4096) }
            if n > 0 { bytes += chunk[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
    }
    write(fds[1])
    close(fds[1])
    join(reader)
    close(readEnd)
    return String(decoding: bytes, as: UTF8.self)
}

@Suite(.timeLimit(.minutes(5))) struct CAPITests {
    @Test func objectCacheLifecycle() throws {
        let counts = UnsafeMutablePointer<CCounts>.allocate(capacity: 1)
        counts.initialize(to: CCounts())
        defer { counts.deallocate() }
        let created = sg_cache_create("capi.test.cache", 40, 8, countingConstructor, countingDestructor, counts)
        let cache = try #require(created)
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<500 {
            let b = try #require(sg_cache_alloc(cache))
            #expect(Int(bitPattern: b) % 8 == 0)
            #expect(b.load(as: UInt64.self) == cMagic, "constructed")
            buffers.append(b)
        }
        #expect(Set(buffers).count == 500)
        #expect(counts.pointee.constructed >= 500)
        for b in buffers { sg_cache_free(cache, b) }
        let constructed = counts.pointee.constructed
        // A freed buffer comes back constructed, without another constructor call.
        let again = try #require(sg_cache_alloc(cache))
        #expect(again.load(as: UInt64.self) == cMagic)
        #expect(counts.pointee.constructed == constructed)
        sg_cache_free(cache, again)
        sg_cache_reap(cache)
        #expect(counts.pointee.destructed == counts.pointee.constructed, "reap destructs every cached buffer")
        // Destroy reports buffers never freed.
        let kept = (0..<3).compactMap { _ in sg_cache_alloc(cache) }
        #expect(kept.count == 3)
        sg_cache_free(cache, kept[0])
        #expect(sg_cache_destroy(cache) == 2)
    }

    @Test func cacheAlignment() throws {
        let created = sg_cache_create("capi.test.aligned", 100, 256, nil, nil, nil)
        let cache = try #require(created)
        for _ in 0..<50 {
            let b = try #require(sg_cache_alloc(cache))
            #expect(Int(bitPattern: b) % 256 == 0)
            sg_cache_free(cache, b)
        }
        #expect(sg_cache_destroy(cache) == 0)
    }

    @Test func badArgumentsSetEINVAL() throws {
        for (size, align) in [(0, 0), (-1, 8), (16, 3), (16, 8192), (16, -8), ((1 << 30) + 1, 8)] {
            errno = 0
            let created = sg_cache_create("capi.bad", size, align, nil, nil, nil)
            #expect(created == nil, "size \(size), align \(align)")
            #expect(errno == EINVAL, "size \(size), align \(align): errno \(errno)")
        }
        // A nil name gets a default; nil caches and buffers are ignored.
        let createdUnnamed = sg_cache_create(nil, 16, 0, nil, nil, nil)
        let unnamed = try #require(createdUnnamed)
        #expect(sg_cache_destroy(unnamed) == 0)
        #expect(sg_cache_alloc(nil) == nil)
        sg_cache_free(nil, nil)
        sg_cache_reap(nil)
        #expect(sg_cache_destroy(nil) == 0)
    }

    @Test func failingConstructorSetsENOMEM() throws {
        let counts = UnsafeMutablePointer<CCounts>.allocate(capacity: 1)
        counts.initialize(to: CCounts(failing: true))
        defer { counts.deallocate() }
        let created = sg_cache_create("capi.test.ctorfail", 64, 0, countingConstructor, countingDestructor, counts)
        let cache = try #require(created)
        errno = 0
        #expect(sg_cache_alloc(cache) == nil)
        #expect(errno == ENOMEM)
        #expect(counts.pointee.constructed >= 1)
        #expect(sg_cache_destroy(cache) == 0)
        #expect(counts.pointee.destructed == 0)
    }

    @Test func sizeClassFunctions() throws {
        let p = try #require(sg_alloc(100))
        memset(p, 0xAB, 100)
        let q = try #require(sg_realloc(p, 100, 5000))
        #expect(isStamped(q, 100, seed: 0xAB))
        let r = try #require(sg_realloc(q, 5000, 70_000))
        #expect(isStamped(r, 100, seed: 0xAB))
        sg_free(r, 70_000)
        for size in [1, 24, 1000, 32768, 100_000] {
            let d = try #require(sg_alloc(size))
            memset(d, 0xEE, size)
            sg_free(d, size)
            let z = try #require(sg_zalloc(size))
            #expect(isStamped(z, size, seed: 0), "sg_zalloc(\(size)) is zeroed")
            sg_free(z, size)
        }
        let fresh = try #require(sg_realloc(nil, 0, 64))
        sg_free(fresh, 64)
        sg_free(nil, 0)
        // size_t arguments arrive as Int: SIZE_MAX is -1 and must fail, not allocate.
        let sizeMax = Int(bitPattern: UInt.max)
        errno = 0
        #expect(sg_alloc(sizeMax) == nil)
        #expect(errno == ENOMEM)
        errno = 0
        #expect(sg_zalloc(sizeMax) == nil)
        #expect(errno == ENOMEM)
        #expect(sg_alloc(1 << 50) == nil)
        let keep = try #require(sg_alloc(32))
        errno = 0
        #expect(sg_realloc(keep, 32, sizeMax) == nil)
        #expect(errno == ENOMEM)
        sg_free(keep, 32)
    }

    @Test func statsPrintListsTheCache() throws {
        let created = sg_cache_create("capi.stats.cache", 24, 0, nil, nil, nil)
        let cache = try #require(created)
        let held = try #require(sg_cache_alloc(cache))
        let small = try #require(sg_alloc(16))      // a size-class cache with a buffer out
        defer { sg_free(small, 16) }
        let output = captureOutput { sg_stats_print($0) }
        let lines = output.split(separator: "\n")
        #expect(lines.first?.hasPrefix("cache") == true, "header line: \(lines.first ?? "")")
        let line = try #require(lines.first { $0.hasPrefix("capi.stats.cache ") }, "no line for the cache in:\n\(output)")
        let fields = line.split(separator: " ")
        #expect(fields.count == 7)
        if fields.count == 7 {
            #expect(fields[1] == "24", "buffer size")
            #expect(fields[2] == "1", "buffers in use")
            #expect(Int(fields[3]).map { $0 >= 1 } == true, "buffers in total")
        }
        #expect(lines.contains { $0.hasPrefix("sg_alloc_") }, "size-class caches are listed")
        #expect(lines.contains { $0.hasPrefix("arena: ") })
        sg_cache_free(cache, held)
        #expect(sg_cache_destroy(cache) == 0)
    }
}
