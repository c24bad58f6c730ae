// Guard pages (`guards`, `sample=N`) and crash explanations, through
// `slabguard run` on small C programs (Tests/Integration/bugs, compiled here).
// The bug corpus (BugCorpusTests) checks headlines and stack functions for the
// guard-page bug shapes; this suite checks the details: the exact fault
// address and offset, the chaining to a program's own SIGSEGV handler, the
// fill-pattern note on a crash elsewhere, and the sampling rate.

import Foundation
import Testing

@Suite("Guard pages and crash explanations", .timeLimit(.minutes(5)))
struct GuardTests {
    private func run(_ name: String, debug: String?, arguments: [String] = [],
                     sources: URL = BugCorpusTests.bugSources) throws -> Subprocess.Outcome {
        let folder = try Subprocess.temporaryFolder(name)
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try BugCorpusTests.compile(name, into: folder, from: sources)
        return try BugCorpusTests.runDebug(program, in: folder, debug: debug, arguments: arguments)
    }

    /// The first match of `pattern`'s capture group 1 in `text`, as an address.
    private func address(_ pattern: String, in text: String) -> UInt? {
        guard let regex = try? NSRegularExpression(pattern: pattern),
              let m = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
              let r = Range(m.range(at: 1), in: text) else { return nil }
        return UInt(text[r], radix: 16)
    }

    @Test func useAfterFreeNamesTheAddressTheOffsetAndTheSize() throws {
        let result = try run("read_after_free", debug: "guards")
        #expect(result.status == 134, "stderr: \(result.stderr)")
        #expect(!result.stdout.contains("not reached"))
        let faulted = address(#"^slabguard: use-after-free: read at 0x([0-9a-f]+), offset 0x18 into buffer of 120 bytes\n"#,
                              in: result.stderr)
        let buffer = address(#"\n  buffer 0x([0-9a-f]+), cache guarded \(page arena\), size 120\n"#, in: result.stderr)
        #expect(faulted != nil && buffer != nil, "stderr: \(result.stderr)")
        if let faulted, let buffer { #expect(faulted == buffer + 0x18) }   // acct->balance
        // The faulting access, then where it was freed and allocated.
        let stderr = result.stderr
        let order = ["faulting access by thread", " peek_balance+0x", "freed by thread", " close_account+0x", "allocated by thread"]
            .map { stderr.range(of: $0)?.lowerBound }
        #expect(order.allSatisfy { $0 != nil }, "stderr: \(stderr)")
        let positions = order.compactMap { $0 }
        #expect(positions == positions.sorted(), "sections out of order: \(stderr)")
    }

    /// An overrun into the alignment slack before the guard page is found at free with the
    /// damaged byte's value and the redzone's, in `guards` as in `default` (before: only the
    /// offset under guards).
    @Test(arguments: ["guards", "default"])
    func anOverrunIntoTheAlignmentSlackShowsTheBytes(debug: String) throws {
        let folder = try Subprocess.temporaryFolder("overrun-slack")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try LogCommandTests.compile("overrun_slack", into: folder, sources: BugCorpusTests.bugSources)   // -O0: gcc keeps the overrun
        let result = try BugCorpusTests.runDebug(program, in: folder, debug: debug, arguments: [])
        #expect(result.stderr.contains("slabguard: redzone violation: write past end of buffer"), "\(result.stderr)")
        #expect(result.stderr.contains("first damaged byte at offset 0x28 (0 bytes past the end): 0x41 where the redzone has 0x"),
                "\(debug): \(result.stderr)")
    }

    /// A crash through a freed object names that buffer with its stacks (issue 20 item 2),
    /// at -O2 (the pointer in a register) and -O0 (on the stack), and ends with the summary.
    @Test(arguments: ["-O0", "-O2"])
    func aCrashThroughAFreedObjectNamesTheBuffer(optimization: String) throws {
        let folder = try Subprocess.temporaryFolder("freed-observer")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("freed_observer").path
        let cc = try Subprocess.run(try Subprocess.requireTool("cc"),
                                    [optimization, "-g", "-o", out, BugCorpusTests.bugSources.appendingPathComponent("freed_observer.c").path])
        try #require(cc.status == 0, "\(cc.stderr)")
        let result = try BugCorpusTests.runDebug(out, in: folder, debug: "default", arguments: [])
        let text = result.stderr
        #expect(text.contains("slabguard: fatal signal"), "\(text)")
        #expect(text.contains("into a freed buffer"), "\(text)")
        #expect(text.contains("  freed buffer 0x") && text.contains("size 16"), "\(text)")
        #expect(text.contains("last freed by thread") && text.contains("allocated by thread"), "\(text)")
        #expect(text.contains("slabguard: summary: 1 report (1 fatal signal)"), "\(text)")
    }

    @Test func aPointerOverwrittenWithTextIsShownAsText() throws {
        let folder = try Subprocess.temporaryFolder("text-pointer")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try LogCommandTests.compile("text_pointer", into: folder, sources: BugCorpusTests.bugSources)
        let result = try BugCorpusTests.runDebug(program, in: folder, debug: "default", arguments: [])
        #expect(result.stderr.contains("= 0x3f3f3f3f3f3f3f3f (\"????????\"): text where a pointer was expected"), "\(result.stderr)")
    }

    @Test func readingPastTheEndFaultsAtTheGuardPage() throws {
        let result = try run("read_overrun", debug: "guards")
        #expect(result.status == 134, "stderr: \(result.stderr)")
        // 32 longs end exactly at the guard page: the 33rd read faults.
        let faulted = address(#"\n  read at 0x([0-9a-f]+), 0 bytes past the end of the buffer \(its guard page\)\n"#, in: result.stderr)
        let buffer = address(#"\n  buffer 0x([0-9a-f]+), cache guarded \(page arena\), size 256\n"#, in: result.stderr)
        #expect(faulted != nil && buffer != nil, "stderr: \(result.stderr)")
        if let faulted, let buffer {
            #expect(faulted == buffer + 256)
            #expect(faulted % 4096 == 0, "the buffer does not end at a page boundary")
        }
        #expect(result.stdout.isEmpty, "the sum was printed: \(result.stdout)")
        #expect(result.stderr.hasPrefix("slabguard: redzone violation: read past end of buffer\n"), "stderr: \(result.stderr)")
        // A long is read: the size comes from the faulting instruction.
        #expect(result.stderr.contains("\n  access size: 8 bytes (a read, from the faulting instruction)\n"), "stderr: \(result.stderr)")
    }

    @Test func withoutGuardsTheSameReadGoesUnnoticed() throws {
        // The control for the test above: under `default` a read past the end is not an
        // error slabguard can see (the redzone is only checked for writes, at free).
        let result = try run("read_overrun", debug: "default")
        #expect(!result.stderr.contains("redzone violation"), "stderr: \(result.stderr)")
        #expect(result.stdout.contains("not reached"))
    }

    @Test func aFreedPointerFollowedIntoACrashIsExplained() throws {
        let result = try run("stale_pointer_crash", debug: "default")
        #expect(result.status == 128 + 11, "stderr: \(result.stderr)")   // it still dies of SIGSEGV
        #expect(result.stderr.hasPrefix("slabguard: fatal signal\n  in process "), "stderr: \(result.stderr)")
        #expect(result.stderr.contains("\n  SIGSEGV at address 0x"), "stderr: \(result.stderr)")
        #expect(result.stderr.range(of: #"note: register r[a-z0-9]+ = 0xdeadbeefdeadbe[0-9a-f]{2}: 0xdeadbeef\.\.\.: a pointer read from freed memory"#,
                                    options: .regularExpression) != nil, "stderr: \(result.stderr)")
        #expect(result.stderr.contains(" count_nodes"), "stderr: \(result.stderr)")   // (GCC may clone it: count_nodes.constprop.0)
        #expect(!result.stdout.contains("not reached"))
    }

    @Test func fastModeInstallsNoHandler() throws {
        // No debugging asked for: the kernel holds no SIGSEGV handler of ours (asked past
        // slabguard's sigaction), and a crash is the program's own, with no slabguard output.
        let fast = try run("own_segv_handler", debug: nil, arguments: ["kernel"])
        #expect(fast.status == 0 && fast.stdout == "kernel: default\n", "stderr: \(fast.stderr)")
        let guarded = try run("own_segv_handler", debug: "guards", arguments: ["kernel"])
        #expect(guarded.stdout == "kernel: installed\n", "the probe must see the explainer when it is there")
        let result = try run("own_segv_handler", debug: nil, arguments: ["null"])
        #expect(result.status == 3 && result.stdout == "own handler ran\n", "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("slabguard:"), "stderr: \(result.stderr)")
    }

    @Test func theProgramsHandlerRunsAfterTheReport() throws {
        // The program installs its SIGSEGV handler in main, after slabguard's: it is chained.
        let result = try run("own_segv_handler", debug: "guards,noabort", arguments: ["uaf"])
        #expect(result.status == 3, "stderr: \(result.stderr)")
        #expect(result.stdout == "own handler ran\n")
        #expect(result.stderr.hasPrefix("slabguard: use-after-free: read at 0x"), "stderr: \(result.stderr)")
    }

    @Test func aFaultThatIsNotAHeapErrorIsLeftToTheProgram() throws {
        let result = try run("own_segv_handler", debug: "guards", arguments: ["null"])
        #expect(result.status == 3 && result.stdout == "own handler ran\n", "stderr: \(result.stderr)")
        #expect(!result.stderr.contains("slabguard:"), "stderr: \(result.stderr)")
    }

    @Test(arguments: [("sample=1", 19_000...20_000), ("sample=10", 1_600...2_400), ("sample=100", 120...300)])
    func sampleGuardsAboutOneInN(debug: String, expected: ClosedRange<Int>) throws {
        let result = try run("sample_rate", debug: debug, sources: ReleaseBuild.integrationSources)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stderr.isEmpty, "stderr: \(result.stderr)")
        let count = result.stdout.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        #expect(count.map { expected.contains($0) } == true, "\(debug): \(result.stdout)")
    }

    /// sample=Nms guards one allocation per N ms, whatever the allocation rate: 600 ms of
    /// allocating at full speed and at a far lower rate both give about 600/N.
    @Test(arguments: [("sample=50ms", ["fast"]), ("sample=50ms", ["slow"]), ("sample=20ms", ["fast"])])
    func sampleByTimeFollowsTheClock(debug: String, mode: [String]) throws {
        let result = try run("sample_time", debug: debug, arguments: mode, sources: ReleaseBuild.integrationSources)
        #expect(result.status == 0 && result.stderr.isEmpty, "stderr: \(result.stderr)")
        let words = result.stdout.split(separator: " ")
        let guarded = words.dropFirst().first.flatMap { Int($0) } ?? -1
        let total = words.last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let expected = 600 / Int(debug.dropFirst("sample=".count).dropLast(2))!
        #expect((expected / 2...expected * 2 + 2).contains(guarded), "\(debug) \(mode): \(result.stdout)")
        #expect(total > 20 * guarded, "\(debug) \(mode): so few allocations that the count says nothing: \(result.stdout)")
    }

    /// A guarded buffer's data pages are a kernel mapping of their own, live and freed: its
    /// tag and guard pages are marked left out of core dumps, which no neighbour shares, so
    /// each mprotect of the data covers one whole mapping and splits or merges nothing
    /// (before, the live data merged into the mapping before it and the freed data into
    /// the guard page's; BENCHMARKS.md has what that cost).
    @Test func aGuardedBuffersPagesAreAMappingOfTheirOwn() throws {
        let result = try run("guard_mappings", debug: "guards", sources: ReleaseBuild.integrationSources)
        #expect(result.status == 0 && result.stderr.isEmpty, "stderr: \(result.stderr)")
        #expect(result.stdout == "live 0 4096 rw-p\nfreed 0 4096 ---p\nguard 1\n", "\(result.stdout)")
    }

    @Test func fastModeGuardsNothing() throws {
        let result = try run("sample_rate", debug: "none", sources: ReleaseBuild.integrationSources)
        #expect(result.status == 0 && result.stdout == "guarded 0 of 20000\n", "stdout: \(result.stdout) stderr: \(result.stderr)")
    }
}
