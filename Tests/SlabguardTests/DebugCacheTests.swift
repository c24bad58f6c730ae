// Debug object caches in this process: per-cache flags, with `noabort` so reports are
// captured through a pipe instead of ending the test process.  Serialized: they share
// the report destination.

import CSlabguardShim
import Glibc
@testable import Slabguard
import SlabguardRuntime
import Testing

final class ReportCapture {
    let read: Int32, write: Int32
    init() {
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        read = fds[0]; write = fds[1]
        _ = fcntl(read, F_SETFL, fcntl(read, F_GETFL) | O_NONBLOCK)
        Debug.setReportFileDescriptor(write)
    }
    func text() -> String {
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(read, &buf, buf.count)
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
    deinit { Debug.setReportFileDescriptor(2); close(read); close(write) }
}

@Suite("Debug object caches", .serialized, .timeLimit(.minutes(5)))
struct DebugCacheTests {
    @Test func uninitializedBuffersHoldBaddcafe() throws {
        let cache = try #require(ObjectCache(name: "uninit-test", size: 40, debug: "uninit,noabort"))
        let p = try #require(cache.allocate())
        for i in stride(from: 0, to: 40, by: 4) {
            #expect(p.load(fromByteOffset: i, as: UInt32.self) == 0xbaddcafe)
        }
        cache.free(p)
        #expect(cache.destroy() == 0)
    }

    @Test func plainCachesAreNotFilled() throws {
        let cache = try #require(ObjectCache(name: "plain-test", size: 64))
        let p = try #require(cache.allocate())
        p.storeBytes(of: 0x1234, as: UInt32.self)
        cache.free(p)
        let q = try #require(cache.allocate())
        #expect(q == p)                                           // LIFO magazine
        #expect(q.load(as: UInt32.self) == 0x1234)                 // no poisoning in fast mode
        cache.free(q)
        cache.destroy()
    }

    @Test func freedBuffersAreFilledWithDeadbeef() throws {
        let cache = try #require(ObjectCache(name: "deadbeef-test", size: 48, debug: "deadbeef,noabort"))
        let p = try #require(cache.allocate())
        memset(p, 0x11, 48)
        cache.free(p)
        for i in stride(from: 0, to: 48, by: 8) { #expect(p.load(fromByteOffset: i, as: UInt64.self) == 0xdeadbeefdeadbeef) }
        cache.destroy()
    }

    @Test func writeAfterFreeInADebugCacheIsReportedAndTheBufferRepaired() throws {
        let capture = ReportCapture()
        let before = Debug.reportCount
        // default without its quarantine, so that the freed buffer is handed out again at once
        let cache = try #require(ObjectCache(name: "uaf-test", size: 32, debug: "deadbeef,redzone,uninit,audit,leaks,noabort"))
        let p = try #require(cache.allocate())
        cache.free(p)
        p.storeBytes(of: 0x99, toByteOffset: 3, as: UInt8.self)
        let q = try #require(cache.allocate())
        #expect(q == p)
        #expect(Debug.reportCount == before + 1)
        let text = capture.text()
        #expect(text.contains("buffer modified after being freed"))
        #expect(text.contains("cache uaf-test"))
        cache.free(q)
        #expect(Debug.reportCount == before + 1)
        cache.destroy()
    }

    /// A debug cache destroyed while freed buffers of it wait in quarantine gets them back
    /// first: nothing is outstanding, and nothing is freed into it afterwards.
    @Test func destroyingACacheTakesItsBuffersOutOfQuarantine() throws {
        let cache = try #require(ObjectCache(name: "quarantined", size: 40, debug: "default"))
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<100 { buffers.append(try #require(cache.allocate())) }
        for p in buffers { cache.free(p) }
        #expect(cache.destroy() == 0)
        #expect(Debug.verifyHeap() == 0)
    }

    @Test func quarantineDelaysReuseAndVerifyFindsDamageThere() throws {
        let capture = ReportCapture()
        let held = try #require(ObjectCache(name: "quarantine-test", size: 64, debug: "deadbeef,quarantine=1M,noabort"))
        let p = try #require(held.allocate())
        held.free(p)
        let q = try #require(held.allocate())
        #expect(q != p)                          // p waits in quarantine
        p.storeBytes(of: 5, toByteOffset: 40, as: UInt8.self)
        let before = Debug.reportCount
        #expect(Debug.verifyHeap() >= 1)
        #expect(Debug.reportCount > before)
        #expect(capture.text().contains("buffer modified after being freed"))
        held.free(q)
        held.destroy()
    }

    @Test func constructorsRunOnEveryAllocationInDebugCaches() throws {
        final class Counter: @unchecked Sendable { var constructed = 0, destructed = 0 }
        let counter = Counter()
        let made = ObjectCache(name: "ctor-debug", size: 16, debug: "deadbeef,noabort",
                               constructor: { p in counter.constructed += 1; p.storeBytes(of: 7, as: Int.self); return true },
                               destructor: { _ in counter.destructed += 1 })
        let cache = try #require(made)
        for _ in 0..<3 {
            let p = try #require(cache.allocate())
            #expect(p.load(as: Int.self) == 7)
            cache.free(p)
        }
        #expect(counter.constructed == 3)
        #expect(counter.destructed == 3)
        cache.destroy()
    }

    /// A constructor may allocate from another debug cache: it runs outside the mark that
    /// tells a signal handler's call into a checked allocation (DESIGN.md), so the nested
    /// allocation is served, not reported as a re-entry.
    @Test func aConstructorMayAllocateFromAnotherDebugCache() throws {
        let inner = try #require(ObjectCache(name: "ctor-inner", size: 24, debug: "default,noabort"))
        final class Box: @unchecked Sendable { var inner: ObjectCache?; var made: [UnsafeMutableRawPointer] = [] }
        let box = Box()
        box.inner = inner
        let made = ObjectCache(name: "ctor-outer", size: 32, debug: "default,noabort",
                               constructor: { p in
                                   guard let q = box.inner?.allocate() else { return false }
                                   box.made.append(q)
                                   p.storeBytes(of: q, as: UnsafeMutableRawPointer.self)
                                   return true
                               },
                               destructor: { p in box.inner?.free(p.load(as: UnsafeMutableRawPointer.self)) })
        let outer = try #require(made)
        for _ in 0..<3 {
            let p = try #require(outer.allocate())
            #expect(p.load(as: UnsafeMutableRawPointer.self) == box.made.last)
            outer.free(p)
        }
        #expect(box.made.count == 3)
        outer.destroy()
        inner.destroy()
    }

    /// A checked allocation that finds the thread already inside one (a signal handler's
    /// call, or one after a siglongjmp out of it) is reported and aborts, instead of
    /// popping a magazine that is half changed.  Set by hand in a forked child, where the
    /// report's write to stderr goes to a pipe.
    @Test func aCallFromInsideACheckedAllocationIsReported() throws {
        let cache = try #require(ObjectCache(name: "reentry-test", size: 40, debug: "deadbeef,redzone"))
        defer { cache.destroy() }
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let pid = fork()
        if pid == 0 {
            alarm(20)
            dup2(fds[1], 2)
            sg_set_debug_depth(1)
            _ = cache.allocate()
            _exit(0)
        }
        close(fds[1])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = max(0, Glibc.read(fds[0], &bytes, bytes.count))
        close(fds[0])
        let text = String(decoding: bytes[0..<n], as: UTF8.self)
        #expect(status & 0x7F == SIGABRT, "child status \(status), stderr: \(text)")
        #expect(text.hasPrefix("slabguard: malloc re-entered from a signal handler\n"), "\(text)")
        #expect(text.contains("The checked path was"), "\(text)")
    }

    @Test func multithreadedChurnWithDefaultChecksReportsNothing() throws {
        let capture = ReportCapture()
        let before = Debug.reportCount
        let cache = try #require(ObjectCache(name: "stress-debug", size: 96, debug: "default,noabort"))
        let box = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 4096)
        box.initialize(repeating: nil, count: 4096)
        let locks = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(locks, nil)
        let threads = 4
        DispatchLikeThreads.run(threads) { t in
            var seed = UInt64(t + 1) &* 0x9E37_79B9_7F4A_7C15
            for _ in 0..<20_000 {
                seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
                let slot = Int(seed % 4096)
                pthread_mutex_lock(locks)
                let old = box[slot]
                box[slot] = nil
                pthread_mutex_unlock(locks)
                if let old {
                    #expect(old.load(as: UInt64.self) == UInt64(UInt(bitPattern: old)))
                    cache.free(old)                           // often freed by another thread
                }
                if let p = cache.allocate() {
                    p.storeBytes(of: UInt64(UInt(bitPattern: p)), as: UInt64.self)
                    pthread_mutex_lock(locks)
                    if box[slot] == nil { box[slot] = p; pthread_mutex_unlock(locks) } else { pthread_mutex_unlock(locks); cache.free(p) }
                }
            }
        }
        for i in 0..<4096 { if let p = box[i] { cache.free(p) } }
        #expect(Debug.verifyHeap() == 0)
        #expect(Debug.reportCount == before)
        #expect(capture.text().isEmpty)
        #expect(cache.destroy() == 0)
    }

    @Test func cAPIVerifyCountsDamagedFreeBuffers() throws {
        let capture = ReportCapture()
        let cache = try #require(ObjectCache(name: "c-verify", size: 64, debug: "deadbeef,noabort"))
        #expect(sg_verify() == 0)
        let p = try #require(cache.allocate())
        cache.free(p)
        p.storeBytes(of: 0x77, toByteOffset: 9, as: UInt8.self)
        #expect(sg_verify() == 1)
        #expect(capture.text().contains("cache c-verify"))
        #expect(sg_verify() == 0)        // the report repaired the pattern
        cache.destroy()
    }

    @Test func badDebugWordsRejectTheCache() {
        #expect(ObjectCache(name: "bad", size: 8, debug: "redzone,nonsense") == nil)
        #expect(Debug.validate("redzone,nonsense")?.contains("'nonsense'") == true)
        #expect(Debug.validate("default") == nil)
    }
}

/// Runs `body(index)` on `count` pthreads and joins them.
enum DispatchLikeThreads {
    final class Job: @unchecked Sendable {
        let body: (Int) -> Void
        let index: Int
        init(_ body: @escaping (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
    }
    static func run(_ count: Int, _ body: @escaping (Int) -> Void) {
        var threads: [pthread_t] = []
        for i in 0..<count {
            var t = pthread_t()
            let job = Unmanaged.passRetained(Job(body, i)).toOpaque()
            pthread_create(&t, nil, { arg in
                let job = Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue()
                job.body(job.index)
                return nil
            }, job)
            threads.append(t)
        }
        for t in threads { pthread_join(t, nil) }
    }
}
