// The debug layer's reports, one test per report kind, through the public Swift API
// in a child process (exit tests): the default action is to abort, and the default
// heap's options can only be set before its first allocation, which a fresh process
// gives.  Each test checks the headline, the offsets and values, and that the audit
// stacks name the functions that allocated and freed the buffer.

import Foundation
import Glibc
import Slabguard
import Testing

// Distinctive, never-inlined functions so the stacks can be checked by name.
@inline(never) func sgTestAllocate(_ size: Int) -> UnsafeMutableRawPointer { Slabguard.alloc(size)! }
@inline(never) func sgTestRelease(_ p: UnsafeMutableRawPointer, _ size: Int) { Slabguard.free(p, size: size) }
@inline(never) func sgTestReleaseAgain(_ p: UnsafeMutableRawPointer, _ size: Int) { Slabguard.free(p, size: size) }

func stderrText(_ result: ExitTest.Result?) -> String {
    String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
}

// A process that reported anything (leaks, noabort reports) and would exit 0 exits 1:
// the library's `exitcode` default (design §3).
@Suite("Debug reports (exit tests)", .timeLimit(.minutes(5)))
struct DebugReportTests {
    @Test func writeAfterFreeIsReportedAtReuse() async throws {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("deadbeef,redzone,uninit,audit,leaks")   // default without its quarantine: reused at once
            let p = sgTestAllocate(64)
            sgTestRelease(p, 64)
            p.storeBytes(of: 0x41, toByteOffset: 17, as: UInt8.self)
            _ = Slabguard.alloc(64)
        }
        let text = stderrText(result)
        #expect(text.contains("slabguard: buffer modified after being freed"))
        #expect(text.contains("modification occurred at offset 0x10 (0xdeadbeefdeadbeef replaced by 0xdeadbeefdead41ef)"))
        #expect(text.contains("cache sg_alloc_64, size 64"))
        #expect(text.contains("last freed by thread"))
        #expect(text.contains("sgTestRelease"))
        #expect(text.contains("allocated by thread"))
        #expect(text.contains("sgTestAllocate"))
        // The free stack comes before the allocation stack in this report.
        let free = try #require(text.range(of: "last freed by thread")), alloc = try #require(text.range(of: "allocated by thread"))
        #expect(free.lowerBound < alloc.lowerBound)
    }

    @Test func overrunByOneByteIsAReportedRedzoneViolation() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            let p = sgTestAllocate(50)                       // class 64: 14 bytes of slack
            p.storeBytes(of: 0, toByteOffset: 50, as: UInt8.self)
            sgTestRelease(p, 50)
        }
        let text = stderrText(result)
        #expect(text.contains("slabguard: redzone violation: write past end of buffer"))
        #expect(text.contains("first damaged byte at offset 0x32 (0 bytes past the end)"))
        #expect(text.contains("where the redzone has 0xed (a byte of its 0xfeedface pattern)"), "\(text)")
        #expect(text.contains("size 50"))
        #expect(text.contains("sgTestAllocate"))
    }

    @Test func overrunPastTheClassSizeHitsTheRedzoneWord() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("redzone")
            let p = sgTestAllocate(64)
            p.storeBytes(of: 0x1122_3344, toByteOffset: 64, as: UInt32.self)
            sgTestRelease(p, 64)
        }
        #expect(stderrText(result).contains("redzone violation: write past end of buffer"))
        #expect(stderrText(result).contains("offset 0x40"))
    }

    @Test func doubleFreeNamesBothFrees() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            let p = sgTestAllocate(40)
            sgTestRelease(p, 40)
            sgTestReleaseAgain(p, 40)
        }
        let text = stderrText(result)
        #expect(text.contains("slabguard: duplicate free: buffer freed twice"))
        #expect(text.contains("second free by thread"))
        #expect(text.contains("first free by thread"))
        #expect(text.contains("sgTestReleaseAgain"))
        #expect(text.contains("sgTestRelease"))
    }

    @Test func doubleFreeAfterTheBufferSatInAMagazine() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("deadbeef,redzone")
            let p = sgTestAllocate(40)
            sgTestRelease(p, 40)
            // Churn other buffers of the same class so p moves between magazines and the depot.
            var others: [UnsafeMutableRawPointer] = []
            for _ in 0..<1000 { others.append(Slabguard.alloc(200)!) }
            for o in others { Slabguard.free(o, size: 200) }
            sgTestReleaseAgain(p, 40)
        }
        #expect(stderrText(result).contains("duplicate free: buffer freed twice"))
    }

    @Test func freeingAForeignPointerIsInvalid() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            _ = Slabguard.alloc(16)
            let foreign = Glibc.malloc(32)!
            Slabguard.free(foreign, size: 32)
        }
        #expect(stderrText(result).contains("slabguard: invalid free: buffer not in cache"))
        #expect(stderrText(result).contains("is not the start of a buffer allocated by slabguard"))
    }

    @Test func freeingAnInteriorPointerIsABadFreeAddress() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            let p = sgTestAllocate(100)
            Slabguard.free(p + 24, size: 100)
        }
        #expect(stderrText(result).contains("slabguard: bad free: free address != alloc address"))
        #expect(stderrText(result).contains("is 0x18 bytes into the buffer"))
        #expect(stderrText(result).contains("sgTestAllocate"))
    }

    @Test func freeWithTheWrongSizeIsABadFreeSize() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            let p = sgTestAllocate(100)
            Slabguard.free(p, size: 96)
        }
        #expect(stderrText(result).contains("slabguard: bad free: free size != alloc size"))
        #expect(stderrText(result).contains("free size 96 != alloc size 100"))
    }

    @Test func largeBuffersAreCheckedToo() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            let p = sgTestAllocate(100_000)
            p.storeBytes(of: 7, toByteOffset: 100_000, as: UInt8.self)
            sgTestRelease(p, 100_000)
        }
        #expect(stderrText(result).contains("redzone violation: write past end of buffer"))
        #expect(stderrText(result).contains("large"))
    }

    @Test func largeDoubleFree() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            let p = sgTestAllocate(200_000)
            sgTestRelease(p, 200_000)
            sgTestReleaseAgain(p, 200_000)
        }
        #expect(stderrText(result).contains("duplicate free: buffer freed twice"))
    }

    @Test func jsonReportsAreOneObjectWithTheSameFields() async throws {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("default,report=json")
            let p = sgTestAllocate(40)
            sgTestRelease(p, 40)
            sgTestReleaseAgain(p, 40)
        }
        let line = try #require(stderrText(result).split(separator: "\n").first { $0.hasPrefix("{") })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["report"] as? String == "duplicate free: buffer freed twice")
        let buffer = try #require(object["buffer"] as? [String: Any])
        #expect(buffer["size"] as? Int == 40)
        #expect(buffer["cache"] as? String == "sg_alloc_48")
        let free = try #require(object["free_stack"] as? [String: Any])
        let frames = try #require(free["frames"] as? [[String: Any]])
        #expect(frames.contains { ($0["function"] as? String)?.contains("sgTestRelease") == true })
    }

    /// Three buffers leaked from one stack are one report; a buffer a global holds is not a
    /// leak.  A C program (in this process the Swift runtime's own threads and heap keep
    /// copies of pointers that a conservative scan rightly counts as references).
    @Test func leaksAreGroupedByStackAndReachableBuffersAreNot() throws {
        let folder = try Subprocess.temporaryFolder("leak-grouped")
        let program = try TagTests.compileLinked("leak_grouped", from: ReleaseBuild.integrationSources, into: folder)
        var environment = Subprocess.cleanEnvironment()
        environment["SLABGUARD_DEBUG"] = "default"
        let run = try Subprocess.run(program, [], environment: environment, timeout: 60)
        #expect(run.stdout == "found 3\n", "\(run.stdout)\(run.stderr)")
        #expect(run.stderr.components(separatedBy: "slabguard: leak: 3 buffers, 300 bytes not freed\n").count == 2,
                "one report, from the check (the exit check does not report them again): \(run.stderr)")
        #expect(run.stderr.contains("leak_three"), "\(run.stderr)")
        #expect(!run.stderr.contains("70 bytes"), "\(run.stderr)")
    }

    /// Damage found after the fact says where and by which thread it was found (design §4),
    /// apart from the stacks of the buffer's life: at reuse, by sg_verify, at exit.
    @Test(arguments: [("reuse", "deadbeef,redzone,audit", "detected when the buffer was reused by thread "),
                      ("verify", "default", "detected by heap verification in thread "),
                      ("exit", "default", "detected at exit (heap verification) by thread ")])
    func damageFoundLaterSaysWhereAndByWhom(mode: String, debug: String, label: String) throws {
        let folder = try Subprocess.temporaryFolder("found-at")
        let program = try TagTests.compileLinked("found_at", from: ReleaseBuild.integrationSources, into: folder)
        var environment = Subprocess.cleanEnvironment()
        environment["SLABGUARD_DEBUG"] = debug
        let run = try Subprocess.run(program, [mode], environment: environment, timeout: 60)
        let text = run.stderr
        #expect(text.contains("slabguard: buffer modified after being freed"), "\(mode): \(text)")
        #expect(text.contains("  " + label), "\(mode): \(text)")
        // The finder's line comes before the buffer's own stacks.
        if let found = text.range(of: label), let freed = text.range(of: "last freed by thread") {
            #expect(found.lowerBound < freed.lowerBound, "\(text)")
        }
    }

    @Test func leaksAreReportedAtExit() async {
        let result = await #expect(processExitsWith: .exitCode(1), observing: [\.standardErrorContent]) {
            try Debug.configure("default")
            sgTestLeakThreeOnOwnThread()
            exit(0)                         // leaks are checked by the exit handler
        }
        // In this process the exit check runs after the Swift runtime's and Foundation's exit
        // work, whose freed glibc heap may still hold copies of some of the three pointers (a
        // conservative scan rightly takes them for references; the exact count at exit is
        // RunConventionTests' and the C programs'): here, the headline, its stack, and a
        // summary that agrees with it.
        let text = stderrText(result)
        let headline = text.firstMatch(of: /slabguard: leak: ([123]) buffers?, (\d+) bytes not freed\n/)
        #expect(headline != nil, "\(text)")
        if let headline {
            let n = Int(headline.output.1)!
            #expect(Int(headline.output.2) == 100 * n, "\(text)")
            #expect(text.contains("slabguard: summary: 1 report (1 leak) in process ") && text.contains("; \(100 * n) bytes leaked in \(n) buffer"),
                    "\(text)")
        }
        #expect(text.contains("sgTestLeakThree"), "\(text)")
    }

    @Test func badOptionsExitWithStatus2AndSayWhy() async {
        let result = await #expect(processExitsWith: .exitCode(2), observing: [\.standardErrorContent]) {
            setenv("SLABGUARD_DEBUG", "deadbeef,dedbeef", 1)
            _ = Slabguard.alloc(10)
        }
        let text = stderrText(result)
        #expect(text.contains("'dedbeef'"))
        #expect(text.contains("SLABGUARD_DEBUG"))
        #expect(text.contains("valid options"))
        #expect(text.split(separator: "\n").count == 1)
    }

    @Test func environmentTurnsChecksOn() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            setenv("SLABGUARD_DEBUG", "deadbeef", 1)
            let p = sgTestAllocate(64)
            sgTestRelease(p, 64)
            p.storeBytes(of: 1, as: UInt8.self)
            _ = Slabguard.alloc(64)
        }
        #expect(stderrText(result).contains("buffer modified after being freed"))
    }

    @Test func withoutDebugTheSameBugIsNotCaught() async {
        await #expect(processExitsWith: .success) {
            let p = sgTestAllocate(64)
            sgTestRelease(p, 64)
            p.storeBytes(of: 1, as: UInt8.self)
            _ = Slabguard.alloc(64)
        }
    }

    @Test func verifyEveryNCallsFindsCorruptionOfAnUnusedBuffer() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("deadbeef,verify=1")
            let p = sgTestAllocate(64)
            sgTestRelease(p, 64)
            p.storeBytes(of: 1, toByteOffset: 8, as: UInt8.self)
            _ = Slabguard.alloc(300)   // another class: only verification can see the damage
        }
        #expect(stderrText(result).contains("buffer modified after being freed"))
        #expect(stderrText(result).contains("offset 0x8"))
    }

    @Test func contentsShowTheBufferAtItsLastFree() async {
        let result = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try Debug.configure("deadbeef,audit,contents=32")
            let p = sgTestAllocate(32)
            "hello, slabguard".withCString { _ = memcpy(p, $0, 16) }
            sgTestRelease(p, 32)
            p.storeBytes(of: 1, as: UInt8.self)
            _ = Slabguard.alloc(32)
        }
        let text = stderrText(result)
        #expect(text.contains("contents at last free (first 32 bytes)"))
        #expect(text.contains("|hello, slabguard"))
    }

    @Test func transactionLogIsWrittenToTheLogPath() async throws {
        let path = "/tmp/slabguard-test-transaction-\(getpid()).log"
        unlink(path)
        defer { unlink(path) }
        await #expect(processExitsWith: .success) {
            try Debug.configure("audit,log=/tmp/slabguard-test-transaction-\(getppid()).log")
            let p = sgTestAllocate(24)
            sgTestRelease(p, 24)
            exit(0)
        }
        // The flight recorder, read back by the CLI.
        let kmalog = try Subprocess.run(try ReleaseBuild.cli(), ["log", "kmalog", path], timeout: 120)
        #expect(kmalog.status == 0, "\(kmalog.stderr)")
        let lines = kmalog.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("T-") && $0.contains("alloc buffer ") && $0.contains(" size 24 cache sg_alloc_32 ") }, "\(kmalog.stdout)")
        #expect(lines.contains { $0.hasPrefix("T-") && $0.contains("free  buffer ") }, "\(kmalog.stdout)")
        #expect(kmalog.stdout.contains("sgTestAllocate") || kmalog.stdout.contains("SlabguardTests"), "\(kmalog.stdout)")
        let info = try Subprocess.run(try ReleaseBuild.cli(), ["log", "info", path], timeout: 120)
        #expect(info.stdout.contains("ended:         exited with status 0 after "), "\(info.stdout)")
    }

    @Test func unwritableLogPathSaysSo() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            try Debug.configure("audit,log=/nonexistent-dir/x.log")
            _ = sgTestAllocate(24)
            exit(0)
        }
        #expect(stderrText(result).contains("slabguard: cannot write the log file '/nonexistent-dir/x.log': No such file or directory"))
    }

    @Test func noabortReportsAndContinues() async {
        let result = await #expect(processExitsWith: .exitCode(1), observing: [\.standardErrorContent]) {
            try Debug.configure("default,noabort")
            let p = sgTestAllocate(40)
            sgTestRelease(p, 40)
            sgTestReleaseAgain(p, 40)
            let q = sgTestAllocate(40)
            sgTestRelease(q, 40)
            if Debug.reportCount != 1 { exit(3) }
        }
        #expect(stderrText(result).contains("duplicate free: buffer freed twice"))
    }

    @Test func configuringAfterTheFirstAllocationIsRefused() async {
        await #expect(processExitsWith: .success) {
            _ = Slabguard.alloc(8)
            do { try Debug.configure("default"); exit(4) } catch let error as Debug.ConfigurationError {
                if error != .heapAlreadyInUse { exit(5) }
            } catch { exit(6) }
        }
    }
}

nonisolated(unsafe) var sgTestKeep: UnsafeMutableRawPointer? = nil

/// Allocates three 100-byte buffers and keeps only their addresses XOR a mask, so no word
/// in memory points at them.
@inline(never) func sgTestLeakThree() {
    let hidden = UnsafeMutablePointer<UInt>.allocate(capacity: 3)
    for i in 0..<3 { hidden[i] = UInt(bitPattern: sgTestAllocate(100)) ^ 0x5555_5555_5555_5555 }
}

/// sgTestLeakThree on a thread of its own that scrubs 64 KiB of its stack before it ends:
/// no register and no dead frame anywhere still holds a copy of the three pointers (a
/// conservative scan rightly takes such a copy for a reference), so exactly 3 leak.
func sgTestLeakThreeOnOwnThread() {
    var thread = pthread_t()
    _ = pthread_create(&thread, nil, { _ in
        sgTestLeakThree()
        sgTestScrubDeep()
        return nil
    }, nil)
    pthread_join(thread, nil)
}

/// Zeroes about 64 KiB of stack below the caller, frame by frame (a large temporary
/// allocation would come from the heap, not the stack).
@inline(never) func sgTestScrubDeep(_ depth: Int = 400) {
    var zeros = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0),
                 UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
    withUnsafeMutableBytes(of: &zeros) { _ = memset($0.baseAddress!, 0, $0.count) }
    if depth > 0 { sgTestScrubDeep(depth - 1) }
    withUnsafeBytes(of: &zeros) { _ = $0.first }   // keeps the frame and its zeros
}

/// Overwrites dead stack below the caller, where stale copies of pointers linger.
@inline(never) func sgTestScrubStack() {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 512) { _ = memset($0.baseAddress!, 0, 512) }
    var zeros = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
    withUnsafeMutableBytes(of: &zeros) { _ = memset($0.baseAddress!, 0, $0.count) }
}
