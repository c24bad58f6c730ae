// Invisible to a correct program (issue 18): slabguard's signals, system calls, entry
// points and lock bookkeeping must not change what a correct program does.  Each C
// program in Tests/Integration/invisible is run without slabguard first (to show what
// the program does on glibc), then under the preload; each test failed before its fix.
//
// ReleaseBuild and Subprocess are in PreloadTests.swift.

import CSlabguardShim
import Foundation
import Testing
@testable import SlabguardCore

@Suite("Invisible: slabguard's machinery does not change a correct program", .timeLimit(.minutes(5)))
struct InvisibleTests {
    static let sources = ReleaseBuild.integrationSources.appendingPathComponent("invisible")

    static func compile(_ name: String, into folder: URL, extra: [String] = []) throws -> String {
        let out = folder.appendingPathComponent(name).path
        let cc = try Subprocess.run(try Subprocess.requireTool("cc"),
                                    ["-O0", "-g", "-pthread", "-o", out, sources.appendingPathComponent("\(name).c").path] + extra)
        guard cc.status == 0 else { throw ReleaseBuild.Failure(description: "cc \(name).c failed:\n\(cc.stderr)") }
        return out
    }

    static func preloaded(_ debug: String) throws -> [String: String] {
        var environment = try PreloadTests.preloaded()
        environment["SLABGUARD_DEBUG"] = debug
        return environment
    }

    /// A one-shot SIGSEGV handler (SA_RESETHAND) runs once and the fault then kills the
    /// process; its sa_mask is blocked in it, and the signal itself unless SA_NODEFER.
    /// Before: chained behind slabguard's handler, it ran forever at 100% CPU.
    @Test(arguments: ["default", "deadbeef,redzone", "guards"])
    func oneShotCrashHandlerRunsOnceWithItsMask(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("resethand")
        let program = try Self.compile("resethand", into: folder)
        for variant in ["", "nodefer"] {
            let arguments = variant.isEmpty ? [] : [variant]
            let plain = try Subprocess.run(program, arguments, timeout: 20)
            let checked = try Subprocess.run(program, arguments, environment: try Self.preloaded(debug), timeout: 20)
            #expect(plain.signaled && plain.status == SIGSEGV, "glibc: \(plain.stdout)")
            #expect(!checked.timedOut, "\(debug) \(variant): the handler looped")
            #expect(checked.signaled && checked.status == SIGSEGV, "\(debug) \(variant): \(checked.stdout)\n\(checked.stderr)")
            #expect(checked.stdout == plain.stdout, "\(debug) \(variant): the handler saw another mask")
            #expect(plain.stdout.contains(variant.isEmpty ? "SIGSEGV blocked" : "SIGSEGV not blocked"))
        }
    }

    /// A double free in the production modes aborts, as glibc's tcache check does, instead
    /// of handing the next two mallocs one buffer.
    @Test(arguments: ["none", "sample=100", "sample=10ms"])
    func doubleFreeIsCaughtWithoutChecks(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("double-free")
        let program = try Self.compile("double_free", into: folder)
        let plain = try Subprocess.run(program, [], timeout: 20)
        #expect(plain.signaled && plain.status == SIGABRT, "glibc catches it: \(plain.stderr)")
        let checked = try Subprocess.run(program, [], environment: try Self.preloaded(debug), timeout: 20)
        #expect(checked.signaled && checked.status == SIGABRT, "\(debug): \(checked.stdout)")
        #expect(checked.stderr.contains("slabguard: duplicate free: buffer freed twice"), "\(checked.stderr)")
        #expect(!checked.stdout.contains("same buffer twice"))
    }

    /// glibc's __libc_malloc family and the standard names are one allocator under the
    /// drop-in (before: `invalid free` in fast mode), and posix_memalign with a valid but
    /// huge alignment says ENOMEM, as glibc does.
    @Test(arguments: ["none", "default"])
    func glibcsOwnNamesAreReplaced(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("libc-names")
        let program = try Self.compile("libc_names", into: folder)
        let plain = try Subprocess.run(program, [], timeout: 20)
        #expect(plain.status == 0 && plain.stdout.contains("ENOMEM"), "glibc: \(plain.stdout)")
        let checked = try Subprocess.run(program, [], environment: try Self.preloaded(debug), timeout: 60)
        #expect(checked.status == 0 && !checked.signaled, "\(debug): \(checked.stderr)")
        #expect(checked.stdout == plain.stdout, "\(debug): \(checked.stdout)")
        #expect(!checked.stderr.contains("slabguard:"), "\(checked.stderr)")
    }

    /// A program that sandboxes itself with an allow-list fit for glibc's malloc (no gettid,
    /// no rt_sigaction) is not killed by SIGSYS: no gettid on the allocation path, no
    /// rt_sigaction at exit, and the exit scan skipped with one line.
    @Test(arguments: ["none", "sample=100", "sample=10ms", "default", "guards"])
    func sandboxedProgramIsNotKilled(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("sandbox")
        let program = try Self.compile("sandbox_threads", into: folder)
        let plain = try Subprocess.run(program, [], timeout: 30)
        #expect(plain.status == 0 && !plain.signaled, "glibc: \(plain.stderr)")
        let checked = try Subprocess.run(program, [], environment: try Self.preloaded(debug), timeout: 60)
        #expect(!checked.signaled && checked.status == 0, "\(debug): status \(checked.status) \(checked.stderr)")
        #expect(checked.stdout == plain.stdout)
        if debug == "default" {   // the one mode here with `leaks`
            #expect(checked.stderr.contains("the leak check at exit was skipped: a seccomp filter"), "\(checked.stderr)")
        }
    }

    /// dlopen/dlclose of system libraries: ld.so's own dead pointer to its unmapped cache
    /// file is not a stale pointer of the program's (before: about 40% of runs reported one).
    @Test func reloadingSystemLibrariesReportsNothing() throws {
        let folder = try Subprocess.temporaryFolder("reload")
        let program = try Self.compile("reload_system_libs", into: folder, extra: ["-ldl"])
        #expect(try Subprocess.run(program, [], timeout: 30).status == 0)
        for _ in 0..<6 {
            let checked = try Subprocess.run(program, [], environment: try Self.preloaded("default"), timeout: 60)
            #expect(checked.status == 0 && !checked.stderr.contains("stale pointer"), "\(checked.stderr)")
        }
    }

    @Test func loaderAndCLibraryDataAreNotPlaces() {
        func module(_ path: String) -> ModuleInfo {
            var m = ModuleInfo()
            withUnsafeMutableBytes(of: &m.path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
                raw[path.utf8.count] = 0
            }
            return m
        }
        #expect(ModuleMap.isLoaderOrCLibrary(module("/lib64/ld-linux-x86-64.so.2")))
        #expect(ModuleMap.isLoaderOrCLibrary(module("/lib/x86_64-linux-gnu/libc.so.6")))
        #expect(!ModuleMap.isLoaderOrCLibrary(module("/usr/lib/x86_64-linux-gnu/libcrypt.so.1")))
        #expect(!ModuleMap.isLoaderOrCLibrary(module("/opt/plugins/libc.so.plugin/libfoo.so")))
        #expect(!ModuleMap.isLoaderOrCLibrary(module("/opt/app/plugin.so")))
    }

    /// The held-lock bookkeeping (sg_locks.c) with more locks than its 16 slots, released in
    /// every order: the count comes back to zero, a lock released is not held, a lock held is.
    /// Before, releases past 16 left holes and stale entries, and a forked child could "hold"
    /// a lock it had just re-initialized (a false `malloc re-entered` abort in test_threading).
    @Test func heldLockBookkeepingSurvivesDeepNestingInAnyOrder() {
        let n = 40
        let locks = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: n)
        defer { locks.deallocate() }
        var orders: [[Int]] = [Array(0..<n), Array((0..<n).reversed())]
        orders.append((0..<n).filter { $0 % 2 == 0 } + (0..<n).filter { $0 % 2 == 1 })
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 { orders.append(Array(0..<n).shuffled(using: &generator)) }
        for order in orders {
            for i in 0..<n { pthread_mutex_init(locks + i, nil) }
            for i in 0..<n { sg_mutex_lock(locks + i) }
            #expect(sg_held_lock_count() == UInt32(n))
            for (released, i) in order.enumerated() {
                sg_mutex_unlock(locks + i)
                #expect(sg_holds_lock(locks + i) == 0, "lock \(i) still held after its release")
                #expect(sg_held_lock_count() == UInt32(n - released - 1))
                if released == n / 2 {
                    for j in order[(released + 1)...] { #expect(sg_holds_lock(locks + j) != 0, "lock \(j) not held") }
                }
            }
            #expect(sg_held_lock_count() == 0)
        }
        // The fork child's way: every lock re-initialized, then the list reset.
        for i in 0..<n { sg_mutex_lock(locks + i) }
        for i in order(n) { sg_mutex_reinit(locks + i) }
        sg_held_locks_reset()
        #expect(sg_held_lock_count() == 0)
        for i in 0..<n { #expect(sg_holds_lock(locks + i) == 0) }
        // and trylock of a held lock fails without waiting, leaving the count alone
        sg_mutex_lock(locks)
        #expect(sg_mutex_trylock(locks) == 0)
        #expect(sg_held_lock_count() == 1)
        sg_mutex_unlock(locks)
        #expect(sg_held_lock_count() == 0)
    }

    /// A program that closes every descriptor and opens its data file gets fd 3, which
    /// slabguard once kept for `log=` and `report_path=`: the exit statistics or the leak
    /// report then landed in the program's file.  Now no descriptor is kept: the data file
    /// holds exactly what the program wrote, the report file the report, the log its tables.
    @Test func closedDescriptorsAreNotReused() throws {
        let folder = try Subprocess.temporaryFolder("closefds")
        let program = try Self.compile("closefds", into: folder)
        let expected = folder.appendingPathComponent("plain.dat").path
        #expect(try Subprocess.run(program, [expected], timeout: 20).status == 0)
        let data = folder.appendingPathComponent("checked.dat").path
        let report = folder.appendingPathComponent("report.txt").path, log = folder.appendingPathComponent("run.log").path
        let checked = try Subprocess.run(program, [data], environment: try Self.preloaded("default,report_path=\(report),log=\(log)"),
                                         timeout: 60)
        #expect(checked.stdout == "data file on fd 3\n" && !checked.signaled, "\(checked.stderr)")
        #expect(FileManager.default.contentsEqual(atPath: data, andPath: expected), "the program's data file was written into")
        let reported = (try? String(contentsOfFile: report, encoding: .utf8)) ?? ""
        #expect(reported.contains("slabguard: leak: 1 buffer"), "report file: \(reported)")
        let info = try LogCommandTests.log(["info", log])
        #expect(info.status == 0 && info.stdout.contains("exited with status"), "\(info.stdout)\(info.stderr)")
        let kmastat = try LogCommandTests.log(["kmastat", log])
        #expect(kmastat.status == 0 && kmastat.stdout.contains("sg_alloc_80"), "\(kmastat.stdout)\(kmastat.stderr)")
    }

    /// With only fd 3 free (RLIMIT_NOFILE 4), the program's own open gets it: slabguard holds
    /// none between reports, whatever the mode.
    @Test(arguments: ["none", "default", "default,log=LOG,report_path=REPORT"])
    func aProgramWithFewDescriptorsKeepsThemAll(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("fewfds")
        let program = try Self.compile("closefds", into: folder)
        let data = folder.appendingPathComponent("data").path
        let plain = try Subprocess.run(program, [data, "limit"], timeout: 20)
        #expect(plain.status == 0 && plain.stdout == "data file on fd 3\n")
        let options = debug.replacingOccurrences(of: "LOG", with: folder.appendingPathComponent("run.log").path)
            .replacingOccurrences(of: "REPORT", with: folder.appendingPathComponent("report.txt").path)
        let checked = try Subprocess.run(program, [data, "limit"], environment: try Self.preloaded(options), timeout: 60)
        #expect(checked.stdout == plain.stdout, "\(options): \(checked.stderr)")
        #expect(!checked.signaled, "\(options): \(checked.stderr)")
        // With no descriptor left for the exit scan, it says why it was skipped, truly.
        #expect(!checked.stderr.contains("did not stop"), "\(options): \(checked.stderr)")
    }

    /// A FIFO named as slabguard's file (log=, suppressions=, report_path=) is refused with one
    /// line, never opened waiting for a writer (before: log= and suppressions= hung in open).
    @Test(arguments: ["log", "suppressions", "report_path"])
    func aFifoIsRefusedWithoutWaiting(option: String) throws {
        let folder = try Subprocess.temporaryFolder("fifo")
        let fifo = folder.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let run = try Subprocess.run("/bin/true", [], environment: try Self.preloaded("default,\(option)=\(fifo)"), timeout: 20)
        #expect(!run.timedOut, "\(option)=FIFO hung")
        #expect(run.stderr.contains("not a regular file"), "\(run.stderr)")
    }

    /// Under an address-space limit, memory freed is memory the program can have again:
    /// freed large and guarded spans kept out of reuse (to catch a late access) go back to
    /// the arena when it runs out.  Before: `guards` gave 0 MiB back, `default` 65%.
    @Test(arguments: ["none", "default", "guards", "default,guards"])
    func freedMemoryIsAllocatableAgainUnderALimit(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("refill")
        let program = try Self.compile("refill", into: folder)
        let checked = try Subprocess.run(program, ["1200"], environment: try Self.preloaded(debug), timeout: 120)
        #expect(checked.status == 0 && !checked.signaled, "\(debug): \(checked.stderr)")
        let rounds = checked.stdout.split(separator: "\n").compactMap { Int($0.split(separator: " ")[2]) }
        #expect(rounds.count == 3, "\(checked.stdout)")
        guard let first = rounds.first else { return }
        #expect(first >= 600, "\(debug): only \(first) MiB of 1200 at first")
        for (i, n) in rounds.enumerated().dropFirst() {
            #expect(n * 100 >= first * 95, "\(debug): round \(i) got \(n) MiB, round 0 \(first) MiB")
        }
    }

    /// A thread whose first allocator call comes after its key destructors ran (glibc's
    /// clean-up frees thread state then) is not remembered after it ends: a forked child
    /// once read its unmapped slots, faulted, and the fault handler's lock gave the false
    /// `malloc re-entered` abort of CPython's test_threading.
    @Test(arguments: ["none", "default", "sample=100"])
    func aThreadSeenOnlyAfterItsDestructorsIsForgotten(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("late-thread")
        let program = try Self.compile("late_thread", into: folder)
        let plain = try Subprocess.run(program, [], timeout: 20)
        #expect(plain.stdout == "rounds 4, child ok\n")
        let checked = try Subprocess.run(program, [], environment: try Self.preloaded(debug), timeout: 60)
        #expect(checked.stdout == plain.stdout && !checked.stderr.contains("slabguard:"), "\(debug): \(checked.stdout)\(checked.stderr)")
    }

    /// A buffer of glibc's own heap freed with free goes back to glibc (before: `invalid free`
    /// and an abort, in fast mode too); a pointer no allocator made is still reported.
    @Test(arguments: ["none", "default"])
    func glibcsOwnBuffersGoBackToGlibc(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("glibc-heap")
        let program = try Self.compile("glibc_heap_free", into: folder, extra: ["-ldl"])
        let plain = try Subprocess.run(program, [], timeout: 20)
        #expect(plain.status == 0 && plain.stdout == "freed 1000 of glibc's buffers\n")
        let checked = try Subprocess.run(program, [], environment: try Self.preloaded(debug), timeout: 60)
        #expect(checked.status == 0 && checked.stdout == plain.stdout && !checked.stderr.contains("slabguard:"),
                "\(debug): \(checked.stderr)")
        let bad = try Subprocess.run(program, ["bad"], environment: try Self.preloaded(debug), timeout: 60)
        #expect(bad.signaled && bad.stderr.contains("slabguard: invalid free: buffer not in cache"), "\(debug): \(bad.stderr)")
    }

    private func order(_ n: Int) -> [Int] { (0..<n).map { ($0 * 7) % n } }
}
