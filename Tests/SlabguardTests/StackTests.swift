import Glibc
import Synchronization
import Testing
@testable import SlabguardCore

// Tests for Debug/Capture: StackUnwinder (DWARF CFI capture), ModuleMap, ElfSymbols.
// The helpers below are @inline(never) @_optimize(none) and do work after their call so that,
// even in release builds, calls are neither inlined nor tail calls, identical helper bodies are
// not merged into one function, and loops are not peeled (which would change call sites).

private let frameCapacity = 64

/// Mangled name of the function containing `address` (a return address: we look up address - 1).
private func symbolName(_ address: UInt) -> String? {
    var name = [CChar](repeating: 0, count: 512)
    var offset: UInt = 0
    let ok = name.withUnsafeMutableBufferPointer { buf in
        ElfSymbols.symbolize(address &- 1, name: buf.baseAddress!, capacity: buf.count, offset: &offset)
    }
    guard ok else { return nil }
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func captureFrames(skip: Int = 0) -> [UInt] {
    var frames = [UInt](repeating: 0, count: frameCapacity)
    let n = frames.withUnsafeMutableBufferPointer { StackUnwinder.capture(into: $0.baseAddress!, capacity: $0.count, skip: skip) }
    return Array(frames.prefix(n))
}

/// Index of the first frame after `start` whose symbol contains `needle`.
private func indexOfFrame(_ frames: [UInt], containing needle: String, after start: Int = -1) -> Int? {
    var i = start + 1
    while i < frames.count {
        if let s = symbolName(frames[i]), s.contains(needle) { return i }
        i += 1
    }
    return nil
}

private func modulePath(_ address: UInt) -> String? {
    var info = ModuleInfo()
    guard ModuleMap.lookup(address, into: &info) else { return nil }
    return withUnsafeBytes(of: &info.path) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}

// MARK: call chains

/// Written after each call below so that no call is in tail position. Every helper updates it
/// with a different operation: Swift's function-merging pass would otherwise fold helpers that
/// differ only in constants or callees into one function (one symbol name for all of them).
nonisolated(unsafe) var stackTestSink = 0
let stackThreadSink = Atomic<Int>(0)

/// The independent reference: glibc's backtrace() (libgcc's unwinder) at the same place as
/// the capture in stackChainLeaf.  Its entry 0 is a different return address in the leaf
/// (a different call); from entry 1 on, the callers, it must equal ours.
nonisolated(unsafe) var stackReference = [UInt]()
/// glibc's backtrace(3) (execinfo.h is not in the Glibc module).
let glibcBacktrace = unsafeBitCast(dlsym(nil, "backtrace"),
                                   to: (@convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32) -> Int32).self)

@inline(never) @_optimize(none) func stackChainLeaf(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int) -> Int {
    let n = StackUnwinder.capture(into: out, capacity: capacity, skip: 0)
    var raw = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
    let m = glibcBacktrace(&raw, 64)
    stackReference = raw.prefix(Int(m)).map { UInt(bitPattern: $0) }
    stackTestSink &+= n
    return n
}

/// Our capture's callers (entries 1…4: middle, outer, stackCaptureRepeatedly, the test)
/// against libgcc's.
func matchesReference(_ frames: [UInt]) -> Bool {
    frames.count >= 5 && stackReference.count >= 5 && Array(frames[1...4]) == Array(stackReference[1...4])
}
@inline(never) @_optimize(none) func stackChainMiddle(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int) -> Int {
    let n = stackChainLeaf(out, capacity)
    stackTestSink ^= n
    return n
}
@inline(never) @_optimize(none) func stackChainOuter(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int) -> Int {
    let n = stackChainMiddle(out, capacity)
    stackTestSink &-= n
    return n
}

@inline(never) @_optimize(none) private func stackFilePrivateHelper(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int) -> Int {
    let n = StackUnwinder.capture(into: out, capacity: capacity, skip: 0)
    stackTestSink |= n
    return n
}

@inline(never) @_optimize(none) func stackSkipInner(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int, _ skip: Int) -> Int {
    let n = StackUnwinder.capture(into: out, capacity: capacity, skip: skip)
    stackTestSink &*= n
    return n
}
@inline(never) @_optimize(none) func stackSkipOuter(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int, _ skip: Int) -> Int {
    let n = stackSkipInner(out, capacity, skip)
    stackTestSink &= n
    return n
}

@inline(never) @_optimize(none) func stackThreadChainLeaf(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int) -> Int {
    let n = StackUnwinder.capture(into: out, capacity: capacity, skip: 0)
    stackThreadSink.wrappingAdd(n, ordering: .relaxed)
    return n
}
@inline(never) @_optimize(none) func stackThreadChainOuter(_ out: UnsafeMutablePointer<UInt>, _ capacity: Int) -> Int {
    let n = stackThreadChainLeaf(out, capacity)
    stackThreadSink.bitwiseXor(n, ordering: .relaxed)
    return n
}

nonisolated(unsafe) var stackMissesPerRun = [Int]()

/// Captures the same stack `times` times from a single call site; with `fallbacks`, run 1 uses
/// a cleared cache and the dl_iterate_phdr path, run 2 additionally a linear .eh_frame scan.
@inline(never) @_optimize(none) func stackCaptureRepeatedly(_ times: Int, fallbacks: Bool = false) -> [[UInt]] {
    var runs = [[UInt]]()
    stackMissesPerRun = []
    for i in 0..<times {
        if fallbacks && i > 0 {
            StackUnwinder.invalidateCache()
            StackUnwinder.setUsesIteratePhdr(true, linearScan: i == 2)
        }
        var buffer = [UInt](repeating: 0, count: frameCapacity)
        let before = StackUnwinder.cacheMisses
        let n = buffer.withUnsafeMutableBufferPointer { stackChainOuter($0.baseAddress!, $0.count) }
        stackMissesPerRun.append(StackUnwinder.cacheMisses - before)
        runs.append(Array(buffer.prefix(n)))
    }
    return runs
}

// MARK: qsort (glibc, no frame pointers) calling back into Swift

nonisolated(unsafe) private var qsortFrames = UnsafeMutablePointer<UInt>.allocate(capacity: frameCapacity)
nonisolated(unsafe) private var qsortFrameCount = 0

private let qsortComparator: @convention(c) (UnsafeRawPointer?, UnsafeRawPointer?) -> Int32 = { a, b in
    if qsortFrameCount == 0 {
        qsortFrameCount = StackUnwinder.capture(into: qsortFrames, capacity: frameCapacity, skip: 0)
    }
    let x = a!.load(as: Int32.self), y = b!.load(as: Int32.self)
    return x < y ? -1 : (x > y ? 1 : 0)
}

@inline(never) @_optimize(none) func stackSortCaller() -> Int32 {
    var values: [Int32] = [5, 3, 9, 1, 7, 2, 8, 6, 4, 0]
    qsortFrameCount = 0
    values.withUnsafeMutableBufferPointer { buf in
        qsort(buf.baseAddress!, buf.count, MemoryLayout<Int32>.stride, qsortComparator)
    }
    return values[0] &+ values[9]
}

// MARK: signal handler

nonisolated(unsafe) private var signalFrames = UnsafeMutablePointer<UInt>.allocate(capacity: frameCapacity)
nonisolated(unsafe) private var signalFrameCount = -1

@inline(never) @_optimize(none) func stackRaiseSignal() -> Int32 {
    let rc = raise(SIGUSR2)
    stackTestSink = stackTestSink &<< 1
    return rc
}

// MARK: threads

struct StackTestThreadJob {
    var expected: [UInt] = []
    var failures = 0
}

@inline(never) @_optimize(none) func stackThreadBody(_ job: UnsafeMutablePointer<StackTestThreadJob>) {
    let frames = UnsafeMutablePointer<UInt>.allocate(capacity: frameCapacity)
    defer { frames.deallocate() }
    for i in 0..<2000 {
        let n = stackThreadChainOuter(frames, frameCapacity)
        let current = UnsafeBufferPointer(start: frames, count: n)
        if i == 0 {
            job.pointee.expected = Array(current)
        } else if !job.pointee.expected.elementsEqual(current) {
            job.pointee.failures += 1
        }
    }
}

@Suite("Stack capture and symbolization", .serialized, .timeLimit(.minutes(5)))
struct StackTests {
    init() { StackUnwinder.warmUp() }

    @Test func chainOfFunctionsIsCapturedAndSymbolizedInOrder() {
        var buffer = [UInt](repeating: 0, count: frameCapacity)
        let n = buffer.withUnsafeMutableBufferPointer { stackChainOuter($0.baseAddress!, $0.count) }
        let frames = Array(buffer.prefix(n))
        #expect(n >= 4)
        let leaf = indexOfFrame(frames, containing: "stackChainLeaf")
        #expect(leaf == 0)
        let middle = indexOfFrame(frames, containing: "stackChainMiddle", after: leaf ?? 0)
        #expect(middle == 1)
        let outer = indexOfFrame(frames, containing: "stackChainOuter", after: middle ?? 1)
        #expect(outer == 2)
        // ... and the walk continues into this test function.
        #expect(indexOfFrame(frames, containing: "chainOfFunctionsIsCaptured", after: outer ?? 2) == 3)
    }

    @Test func skipDropsInnermostFrames() {
        var runs = [[UInt]]()
        for skip in 0..<3 {   // same call site every time
            var buffer = [UInt](repeating: 0, count: frameCapacity)
            let n = buffer.withUnsafeMutableBufferPointer { stackSkipOuter($0.baseAddress!, $0.count, skip) }
            runs.append(Array(buffer.prefix(n)))
        }
        #expect(runs[0].count >= 3)
        #expect(runs[1] == Array(runs[0].dropFirst()))
        #expect(runs[2] == Array(runs[0].dropFirst(2)))
        #expect(symbolName(runs[0][0])?.contains("stackSkipInner") == true)
        #expect(symbolName(runs[1][0])?.contains("stackSkipOuter") == true)
        var one: [UInt] = [0, 0xDEAD]
        #expect(stackSkipOuter(&one, 1, 0) == 1)   // capacity is honoured
        #expect(one[1] == 0xDEAD && symbolName(one[0])?.contains("stackSkipInner") == true)
    }

    @Test func unwindsThroughGlibcQsortWithoutFramePointers() throws {
        _ = stackSortCaller()
        let frames = Array(UnsafeBufferPointer(start: qsortFrames, count: qsortFrameCount))
        #expect(frames.count >= 3)
        let libcFrames = frames.indices.filter { modulePath(frames[$0])?.contains("libc.so") == true }
        #expect(!libcFrames.isEmpty, "no frame inside glibc's qsort")
        // The comparator (and its @convention(c) thunk) come first, then glibc's qsort frames
        // (msort_with_tmp, qsort_r: built without frame pointers), then the Swift caller.
        let firstLibc = try #require(libcFrames.first, "no frame inside glibc's qsort")
        #expect(firstLibc >= 1)
        #expect(frames[0..<firstLibc].allSatisfy { symbolName($0)?.contains("qsortComparator") == true })
        let caller = try #require(indexOfFrame(frames, containing: "stackSortCaller"), "walk did not get past qsort")
        #expect(caller > firstLibc)
        #expect((firstLibc..<caller).allSatisfy { libcFrames.contains($0) })
        // ... and the walk goes on through the Swift caller into this test.
        #expect(indexOfFrame(frames, containing: "unwindsThroughGlibcQsort", after: caller) != nil)
    }

    @Test func fallbackLookupPathsFindTheSameFrames() {
        defer { StackUnwinder.setUsesIteratePhdr(false) }
        let runs = stackCaptureRepeatedly(3, fallbacks: true)
        // The rules were recomputed: via dl_iterate_phdr, then via a linear .eh_frame scan. (At
        // least the 4 steps through our own helpers, which no concurrent test can have re-cached.)
        #expect(stackMissesPerRun[1] >= 4 && stackMissesPerRun[2] >= 4)
        #expect(runs[0].count >= 4)
        #expect(runs[0] == runs[1] && runs[0] == runs[2])
        #expect(runs.allSatisfy(matchesReference), "a lookup path's frames differ from libgcc's: \(runs) vs \(stackReference)")
    }

    @Test func repeatedCaptureIsIdenticalAndServedFromCache() {
        let runs = stackCaptureRepeatedly(3)
        #expect(runs.count == 3 && runs[0].count >= 4)
        #expect(runs[0] == runs[1] && runs[1] == runs[2])
        #expect(runs.allSatisfy(matchesReference), "cached frames differ from libgcc's: \(runs) vs \(stackReference)")
        // Every step's rule (looked up at return address - 1) is in the cache. (Not the global
        // miss counter: other suites may capture stacks concurrently.)
        #expect(runs[0].allSatisfy { StackUnwinder.isCached($0 - 1) }, "rules were not cached")
    }

    @Test func concurrentCapturesFromManyThreads() {
        StackUnwinder.invalidateCache()   // make the threads race on cache misses too
        let threadCount = 8
        let jobs = UnsafeMutablePointer<StackTestThreadJob>.allocate(capacity: threadCount)
        jobs.initialize(repeating: StackTestThreadJob(), count: threadCount)
        defer { jobs.deinitialize(count: threadCount); jobs.deallocate() }
        var threads = [pthread_t](repeating: 0, count: threadCount)
        for i in 0..<threadCount {
            let rc = pthread_create(&threads[i], nil, { arg in
                stackThreadBody(arg!.assumingMemoryBound(to: StackTestThreadJob.self))
                return nil
            }, jobs + i)
            #expect(rc == 0)
        }
        for t in threads { pthread_join(t, nil) }
        let reference = jobs[0].expected
        for i in 0..<threadCount {
            #expect(jobs[i].failures == 0)
            #expect(jobs[i].expected == reference)   // same code path on every thread
        }
        #expect(reference.count >= 4)
        #expect(indexOfFrame(reference, containing: "stackThreadChainLeaf") == 0)
        #expect(indexOfFrame(reference, containing: "stackThreadChainOuter") == 1)
        #expect(indexOfFrame(reference, containing: "stackThreadBody") == 2)
        // The walk reaches glibc's thread start: the outermost frame is in libc.
        #expect(modulePath(reference[reference.count - 1])?.contains("libc.so") == true)
    }

    @Test func moduleMapKnowsExecutableAndLibc() throws {
        let frames = captureFrames()
        let here = try #require(frames.first)
        var exe = ModuleInfo()
        #expect(ModuleMap.lookup(here, into: &exe))
        #expect(exe.isLoaded && here >= exe.start && here < exe.end && exe.base <= exe.start)
        let exePath = try #require(modulePath(here))
        var link = [CChar](repeating: 0, count: 4096)
        let len = readlink("/proc/self/exe", &link, 4095)
        #expect(len > 0 && exePath == String(decoding: link.prefix(len).map { UInt8(bitPattern: $0) }, as: UTF8.self))

        let qsortAddress = UInt(bitPattern: dlsym(UnsafeMutableRawPointer(bitPattern: 0), "qsort"))
        var libc = ModuleInfo()
        #expect(ModuleMap.lookup(qsortAddress, into: &libc))
        let libcPath = try #require(modulePath(qsortAddress))
        #expect(libcPath.contains("libc.so"))
        #expect(libc.buildIdLength >= 16)
        #expect((0..<libc.buildIdLength).contains { libc.buildId[$0] != 0 })

        // write(to:) output: START END BIAS BUILDID PATH, one line per module.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        ModuleMap.write(to: fds[1])
        close(fds[1])
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &chunk, chunk.count)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk.prefix(n))
        }
        close(fds[0])
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        #expect(lines.count >= 3)
        var sawExe = false, sawLibc = false
        for line in lines {
            // START END BIAS BUILDID LOADED PATH
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: false)
            try #require(fields.count == 6 && UInt64(fields[4]) != nil, "bad line: \(line)")
            let start = try #require(UInt(fields[0], radix: 16)), end = try #require(UInt(fields[1], radix: 16))
            let bias = try #require(UInt(fields[2], radix: 16))
            #expect(start < end && bias <= start)
            #expect(fields[3] == "-" || (fields[3].count % 2 == 0 && UInt8(fields[3].prefix(2), radix: 16) != nil))
            if String(fields[5]) == exePath && start <= here && here < end { sawExe = true }
            if String(fields[5]) == libcPath {
                sawLibc = true
                let hex = (0..<libc.buildIdLength).map { i -> String in
                    let s = String(libc.buildId[i], radix: 16)
                    return s.count == 1 ? "0" + s : s
                }.joined()
                #expect(String(fields[3]) == hex)
                #expect(start <= qsortAddress && qsortAddress < end && bias == libc.base)
            }
        }
        #expect(sawExe && sawLibc)
    }

    @Test func filePrivateFunctionIsSymbolizedFromSymtab() {
        var buffer = [UInt](repeating: 0, count: 8)
        let n = buffer.withUnsafeMutableBufferPointer { stackFilePrivateHelper($0.baseAddress!, $0.count) }
        #expect(n >= 1)
        let name = symbolName(buffer[0])
        #expect(name?.contains("stackFilePrivateHelper") == true, "got \(name ?? "nil")")
        var offset: UInt = 0
        var small = [CChar](repeating: 0x41, count: 8)
        #expect(ElfSymbols.symbolize(buffer[0] - 1, name: &small, capacity: 8, offset: &offset))
        #expect(small[7] == 0 && strlen(small) == 7)   // truncated and NUL-terminated
        #expect(offset > 0 && offset < 4096)
    }

    @Test func libcExportedFunctionIsSymbolized() {
        let address = UInt(bitPattern: dlsym(UnsafeMutableRawPointer(bitPattern: 0), "qsort"))
        var name = [CChar](repeating: 0, count: 128)
        var offset: UInt = 1
        #expect(ElfSymbols.symbolize(address + 1, name: &name, capacity: name.count, offset: &offset))
        #expect(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).contains("qsort"))
        #expect(offset == 1)
    }

    @Test func unloadedModuleStaysInTheMapAndSymbolizes() throws {
        let path = "libBrokenLocale.so.1"   // shipped with glibc, normally not loaded
        let wasLoaded = dlopen(path, RTLD_LAZY | RTLD_NOLOAD) != nil
        let handle = try #require(dlopen(path, RTLD_LAZY))
        let address = UInt(bitPattern: dlsym(handle, "__ctype_get_mb_cur_max"))
        try #require(address != 0)
        ModuleMap.refresh()   // as the allocator would after seeing dlopen
        var info = ModuleInfo()
        #expect(ModuleMap.lookup(address, into: &info) && info.isLoaded)
        let countBefore = ModuleMap.count
        dlclose(handle)
        ModuleMap.refresh()
        #expect(ModuleMap.count == countBefore)   // records are never dropped
        #expect(ModuleMap.lookup(address, into: &info))
        if !wasLoaded { #expect(!info.isLoaded) }
        #expect(modulePath(address)?.contains("libBrokenLocale") == true)
        // Not symbolized before the unload: the file is read from the snapshot's path now.
        var name = [CChar](repeating: 0, count: 64)
        var offset: UInt = 1
        #expect(ElfSymbols.symbolize(address, name: &name, capacity: name.count, offset: &offset))
        #expect(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .contains("__ctype_get_mb_cur_max"))
        #expect(offset == 0)
    }

    @Test func captureInSignalHandlerStopsAtTheTrampoline() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            signalFrameCount = StackUnwinder.capture(into: signalFrames, capacity: frameCapacity, skip: 0)
        }
        var old = sigaction()
        #expect(sigaction(SIGUSR2, &action, &old) == 0)
        defer { sigaction(SIGUSR2, &old, nil) }
        signalFrameCount = -1
        // On a thread of our own with SIGUSR2 unblocked (test runner threads block signals), so
        // raise() delivers it synchronously to that thread.
        var thread: pthread_t = 0
        #expect(pthread_create(&thread, nil, { _ in
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR2)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            _ = stackRaiseSignal()
            return nil
        }, nil) == 0)
        pthread_join(thread, nil)
        // The handler's frames are reported; glibc's sigreturn trampoline (CFA given by a DWARF
        // expression) ends the walk cleanly: nothing beyond it, no garbage, no crash.
        #expect(signalFrameCount >= 1)
        let frames = Array(UnsafeBufferPointer(start: signalFrames, count: max(signalFrameCount, 0)))
        #expect(indexOfFrame(frames, containing: "stackRaiseSignal") == nil)
        #expect(frames.allSatisfy { modulePath($0) != nil })
    }

    @Test func unmappedAddressesAreNotSymbolized() {
        var name = [CChar](repeating: 0, count: 64)
        var offset: UInt = 0
        #expect(!ElfSymbols.symbolize(0x1000, name: &name, capacity: name.count, offset: &offset))
        #expect(!ElfSymbols.symbolize(UInt.max - 4096, name: &name, capacity: name.count, offset: &offset))
        // Far from every module (a plain mmap may reuse the range of a module unloaded by another
        // test, and lookups deliberately keep answering for unloaded modules).
        let page = mmap(UnsafeMutableRawPointer(bitPattern: 0x2000_0000_0000), 4096, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        defer { munmap(page, 4096) }
        #expect(!ElfSymbols.symbolize(UInt(bitPattern: page) + 16, name: &name, capacity: name.count, offset: &offset))
        var info = ModuleInfo()
        #expect(!ModuleMap.lookup(UInt(bitPattern: page) + 16, into: &info))
        // Inside the test executable, but in its data segment: no function contains it.
        let data = withUnsafeMutablePointer(to: &stackTestSink) { UInt(bitPattern: $0) }
        #expect(ModuleMap.lookup(data, into: &info))
        #expect(!ElfSymbols.symbolize(data, name: &name, capacity: name.count, offset: &offset))
    }
}
