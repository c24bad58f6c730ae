// `slabguard hunt` (issue 20 item 5): the first run's damage found after the fact read from
// its report into SLABGUARD_HUNT, replays with address randomization off and the same
// standard input, the writing instruction named from the replay's report.  Programs in
// Tests/Integration/hunt, compiled at -O0 -g during the test; each marks the line the hunt
// must name with a comment in capitals (STALE WRITE, TIMER WRITE, ...).
//
// The parsing tests use fake_report.c, which stands in for the library: it sends a
// report written by hand here on the report channel, and in a replay prints the
// SLABGUARD_HUNT it was given.

import Foundation
import Testing

@Suite("hunt: the writer named by a replay", .timeLimit(.minutes(5)))
struct HuntTests {
    static let sources = ReleaseBuild.integrationSources.appendingPathComponent("hunt")

    static func compile(_ name: String, into folder: URL) throws -> String {
        try LogCommandTests.compile(name, into: folder, flags: ["-pthread"], sources: sources)
    }

    /// "file.c:LINE" of the line holding `marker` in the program's source.
    static func location(of marker: String, in name: String) throws -> String {
        let text = try String(contentsOf: sources.appendingPathComponent("\(name).c"), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let index = try #require(lines.firstIndex { $0.contains(marker) }, "\(marker) in \(name).c")
        return "\(name).c:\(index + 1)"
    }

    static func hunt(_ arguments: [String], input: String? = nil, directory: String? = nil) throws -> Subprocess.Outcome {
        try Subprocess.run(try ReleaseBuild.cli(), ["hunt"] + arguments, input: input, timeout: 120)
    }

    /// `command` run by /bin/sh (for a pipe into slabguard hunt), with SLABGUARD set to the CLI.
    static func shell(_ command: String) throws -> Subprocess.Outcome {
        var environment = Subprocess.cleanEnvironment()
        environment["SLABGUARD"] = try ReleaseBuild.cli()
        return try Subprocess.run("/bin/sh", ["-c", command], environment: environment, timeout: 120)
    }

    /// The hunt's closing line naming the writer, or "".
    static func writerLine(_ stderr: String) -> String {
        stderr.split(separator: "\n").last { $0.hasPrefix("slabguard: hunt: the write was made by ") }.map(String.init) ?? ""
    }

    // MARK: Reading a report (no watchpoints needed)

    static let frames = """
        [{"address":"0x401136","function":"open_session","offset":18,"module":"/nonexistent/prog","module_offset":"0x1136","file":"prog.c","line":18},\
        {"address":"0x4011f2","function":"main","offset":82,"module":"/nonexistent/prog","module_offset":"0x11f2","file":"prog.c","line":40},\
        {"address":"0x7ffff7829d90","function":"__libc_start_call_main","offset":128,"module":"/nonexistent/libc.so.6","module_offset":"0x29d90"},\
        {"address":"0x7ffff7829e40","function":"__libc_start_main","offset":128,"module":"/nonexistent/libc.so.6","module_offset":"0x29e40"},\
        {"address":"0x401065","function":"_start","offset":37,"module":"/nonexistent/prog","module_offset":"0x1065"}]
        """
    static let site = "0x401136,0x4011f2,0x7ffff7829d90,0x7ffff7829e40"

    /// Reports written by hand, and the SLABGUARD_HUNT each gives (nil: none, no replay).
    static let reports: [(String, String?)] = [
        // A freed buffer's word changed, found at reuse (JSON): the word's offset, the first 4 frames.
        ("""
         {"report":"buffer modified after being freed","schema":1,"pid":7,"process":"prog","thread":7,"message":"modification occurred at offset 0x10 (0xdeadbeefdeadbeef replaced by 0xdeadbeefdeadbe41)","offset":16,"expected":"0xdeadbeefdeadbeef","found":"0xdeadbeefdeadbe41","buffer":{"address":"0x3c000b8e20","cache":"sg_alloc_64","size":64},"current_stack":{"thread":7,"time_ns":9000,"frames":[{"address":"0x401222","function":"main","offset":3,"module":"/nonexistent/prog","module_offset":"0x1222"}]},"free_stack":{"thread":7,"time_ns":5000,"frames":[{"address":"0x4011e0","function":"main","offset":64,"module":"/nonexistent/prog","module_offset":"0x11e0"}]},"allocation_stack":{"thread":7,"time_ns":4000,"frames":\(frames)}}

         """, "freed:0x10:\(site)"),
        // An overrun found at free (JSON): the first damaged byte's offset.
        ("""
         {"report":"redzone violation: write past end of buffer","schema":1,"pid":7,"process":"prog","thread":7,"message":"first damaged byte at offset 0xd (0 bytes past the end): 0x00 where the redzone has 0xfe","offset":13,"buffer":{"address":"0x3c000b8e20","cache":"sg_alloc_16","size":13},"current_stack":{"thread":7,"time_ns":9000,"frames":[]},"allocation_stack":{"thread":7,"time_ns":4000,"frames":\(frames)}}

         """, "overrun:0xd:\(site)"),
        // An overrun reported at the instruction (a fault stack): nothing to hunt.
        ("""
         {"report":"redzone violation: write past end of buffer","schema":1,"pid":7,"process":"prog","thread":7,"access":"write","address":"0x3c000b8e2d","offset":13,"buffer":{"address":"0x3c000b8e20","cache":"sg_alloc_16","size":13},"fault_stack":{"thread":7,"time_ns":9000,"frames":[{"address":"0x401300","function":"fill","offset":9,"module":"/nonexistent/prog","module_offset":"0x1300"}]},"allocation_stack":{"thread":7,"time_ns":4000,"frames":\(frames)}}

         """, nil),
        // The same modification as text, as the library prints it by default.
        ("""
         slabguard: buffer modified after being freed
           in process 7 (prog), thread 7
           modification occurred at offset 0x28 (0xdeadbeefdeadbeef replaced by 0x0000000000000007)
           buffer 0x3818800b8e20, cache sg_alloc_48, size 48
           detected when the buffer was reused by thread 7 at 0.001320s:
             #0 0x000000401222 main+0x3 (/nonexistent/prog+0x1222)
           last freed by thread 7 at 0.001187s:
             #0 0x0000004011e0 main+0x40 (/nonexistent/prog+0x11e0)
           allocated by thread 7 at 0.001083s:
             #0 0x000000401136 open_session+0x12 (/nonexistent/prog+0x1136)
             #1 0x0000004011f2 main+0x52 (/nonexistent/prog+0x11f2)
             #2 0x7ffff7829d90 __libc_start_call_main+0x80 (/nonexistent/libc.so.6+0x29d90)
             #3 0x7ffff7829e40 __libc_start_main+0x80 (/nonexistent/libc.so.6+0x29e40)
             #4 0x000000401065 _start+0x25 (/nonexistent/prog+0x1065)

         """, "freed:0x28:\(site)"),
        // A fatal signal through a freed buffer (text): the offset its note gives.
        ("""
         slabguard: fatal signal
           in process 7 (prog), thread 7
           SIGSEGV at address 0xdeadbeefdeadbeef (NULL, or a non-canonical address such as a fill pattern)
           note: the fault address holds 0xdeadbeef... (the fill of freed memory)
           note: rax = 0x00003c000b8e38: points at offset 0x18 into a freed buffer (a pointer kept after its free)
           crashed in thread 7 at 0.002000s:
             #0 0x000000401400 walk+0x10 (/nonexistent/prog+0x1400)
           freed buffer 0x3c000b8e20, cache sg_alloc_64, size 64
           last freed by thread 7 at 0.001187s:
             #0 0x0000004011e0 main+0x40 (/nonexistent/prog+0x11e0)
           allocated by thread 7 at 0.001083s:
             #0 0x000000401136 open_session+0x12 (/nonexistent/prog+0x1136)
             #1 0x0000004011f2 main+0x52 (/nonexistent/prog+0x11f2)
             #2 0x7ffff7829d90 __libc_start_call_main+0x80 (/nonexistent/libc.so.6+0x29d90)
             #3 0x7ffff7829e40 __libc_start_main+0x80 (/nonexistent/libc.so.6+0x29e40)

         """, "freed:0x18:\(site)"),
    ]

    @Test(arguments: 0..<reports.count)
    func aReportBecomesTheHuntsValue(_ index: Int) throws {
        let (report, expected) = Self.reports[index]
        let folder = try Subprocess.temporaryFolder("hunt-parse")
        defer { try? FileManager.default.removeItem(at: folder) }
        let fake = try Self.compile("fake_report", into: folder)
        let file = folder.appendingPathComponent("report")
        try report.write(to: file, atomically: true, encoding: .utf8)
        let result = try Self.hunt(["--tries", "2", "--", fake, file.path])
        #expect(!result.timedOut)
        guard let expected else {
            #expect(result.stdout.isEmpty, "no replay: \(result.stdout)")
            #expect(result.stderr.contains("slabguard: hunt: no damage found after the fact"), "\(result.stderr)")
            return
        }
        // Each replay got it; neither reported the write, so the first report stands.
        #expect(result.stdout == "SLABGUARD_HUNT=\(expected)\n" + "SLABGUARD_HUNT=\(expected)\n", "\(result.stderr)")
        #expect(result.stderr.contains("slabguard: hunt: damage found after the fact in buffer of "), "\(result.stderr)")
        #expect(result.stderr.contains(" allocated at open_session ("), "\(result.stderr)")
        #expect(result.stderr.contains("slabguard: hunt: no replay reproduced the damage in 2 tries: the first run's report stands"))
        #expect(result.status == 1, "the program exited 0, a report was made: \(result.status)")
    }

    /// The programs hunt starts run without address randomization (so return addresses
    /// mean the same code in every run); a clean run is not replayed.
    @Test func programsRunWithoutAddressRandomization() throws {
        let result = try Self.hunt(["--", "/bin/cat", "/proc/self/personality"])
        #expect(result.status == 0, "\(result.stderr)")
        let persona = try #require(UInt32(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16), "\(result.stdout)")
        #expect(persona & 0x0040000 != 0, "ADDR_NO_RANDOMIZE: \(result.stdout)")
        #expect(result.stderr.hasPrefix("slabguard: hunting /bin/cat (deadbeef,redzone,"), "\(result.stderr)")
        #expect(result.stderr.hasSuffix("slabguard: hunt: no damage found: nothing to replay\n"), "\(result.stderr)")
    }

    @Test func usageErrors() throws {
        let zero = try Self.hunt(["--tries", "0", "--", "/bin/true"])
        #expect(zero.status == 64 && zero.stderr.contains("--tries 0: expected a number of replays from 1 to 100"), "\(zero.stderr)")
        let none = try Self.hunt([])
        #expect(none.status == 64 && none.stderr.contains("no program given: slabguard hunt [options] -- PROGRAM"), "\(none.stderr)")
        let bad = try Self.hunt(["--debug", "bogus", "--", "/bin/true"])
        #expect(bad.status == 2 && bad.stderr.hasPrefix("slabguard: unknown debug option 'bogus' in --debug"), "\(bad.stderr)")
    }

    /// More than 64 MiB on a pipe: the first run gets all of it, and there is no replay.
    @Test func aPipeBeyondTheBoundGetsNoReplay() throws {
        let folder = try Subprocess.temporaryFolder("hunt-bound")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("input_bug", into: folder)
        let result = try Self.shell("{ printf stale; head -c 67108865 /dev/zero; } | \"$SLABGUARD\" hunt -- '\(program)'")
        #expect(result.stdout == "read 67108870 bytes\n", "one run, all of the input: \(result.stdout)")
        #expect(result.stderr.contains("slabguard: buffer modified after being freed"), "\(result.stderr)")
        #expect(result.stderr.contains("; no replay: its standard input (a pipe) was more than the 64 MiB a replay can be given again"),
                "\(result.stderr)")
        #expect(result.status == 134)
    }

    // MARK: Naming the writer (the library's watchpoints)

    /// (a) A stale write after free found at reuse: named at its line.
    @Test func aStaleWriteFoundAtReuseIsNamed() throws {
        let folder = try Subprocess.temporaryFolder("hunt-reuse")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("stale_reuse", into: folder)
        let result = try Self.hunt(["--", program])
        #expect(result.stderr.contains("detected when the buffer was reused by thread"), "\(result.stderr)")
        #expect(result.stderr.contains("; replaying with a watchpoint on offset 0x8 of buffers allocated there, once freed (try 1 of 3)"))
        #expect(result.stderr.contains("slabguard: use-after-free: write at 0x"), "\(result.stderr)")
        let line = Self.writerLine(result.stderr)
        let place = try Self.location(of: "STALE WRITE", in: "stale_reuse")
        #expect(line.contains("mark_stale (") && line.contains(place), "\(result.stderr)")
        #expect(line.hasSuffix("(found on try 1 of 3)"))
        #expect(result.status == 134, "the replay's report aborts it")
    }

    /// (b) A timer thread's deferred write, found at exit: named in the timer's function.
    @Test func aTimerThreadsWriteFoundAtExitIsNamed() throws {
        let folder = try Subprocess.temporaryFolder("hunt-timer")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("timer_write", into: folder)
        let result = try Self.hunt(["--", program])
        #expect(result.stderr.contains("detected at exit (heap verification)"), "\(result.stderr)")
        #expect(result.stderr.contains("in buffer of 64 bytes allocated at main ("), "\(result.stderr)")
        #expect(result.stderr.contains("  written by thread "), "\(result.stderr)")
        let line = Self.writerLine(result.stderr)
        let place = try Self.location(of: "TIMER WRITE", in: "timer_write")
        #expect(line.contains("timer_fires (") && line.contains(place), "\(result.stderr)")
    }

    /// (c) A one-byte overrun found at free: named at the instruction, with --json reports.
    @Test(arguments: [false, true])
    func anOverrunFoundAtFreeIsNamed(json: Bool) throws {
        let folder = try Subprocess.temporaryFolder("hunt-overrun")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("overrun_free", into: folder)
        let result = try Self.hunt((json ? ["--json"] : []) + ["--", program])
        #expect(result.stderr.contains("damage found after the fact in buffer of 13 bytes allocated at new_name ("), "\(result.stderr)")
        #expect(result.stderr.contains("replaying with a watchpoint on offset 0xd (past the end) of buffers allocated there"))
        #expect(result.stderr.contains(json ? "\"fault_stack\":" : "slabguard: redzone violation: write past end of buffer"))
        let line = Self.writerLine(result.stderr)
        let place = try Self.location(of: "OVERRUN", in: "overrun_free")
        #expect(line.contains("copy_name (") && line.contains(place), "\(result.stderr)")
        #expect(result.status == 134)
    }

    /// (d) A bug that shows on some runs only: the replays go on until one shows it; when
    /// none does within --tries, the hunt says so and the first run's report stands.
    @Test func aBugOnSomeRunsIsHuntedUpToTheTries() throws {
        let folder = try Subprocess.temporaryFolder("hunt-some")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("some_runs", into: folder)
        let counter = folder.appendingPathComponent("runs").path
        // Runs 1 and 3 write after free: the first replay (run 2) misses, the second hits.
        let hit = try Self.hunt(["--", program, counter, "1,3"])
        #expect(hit.stdout == "run 1\nrun 2\n", "run 3 stopped at the write, before its line: \(hit.stdout)")
        #expect(hit.stderr.contains("slabguard: hunt: try 1 of 3 did not catch the write (the replay reported nothing; exit status 0)"),
                "\(hit.stderr)")
        #expect(hit.stderr.contains("slabguard: hunt: replaying again (try 2 of 3)"))
        let line = Self.writerLine(hit.stderr)
        let place = try Self.location(of: "SOMETIMES WRITE", in: "some_runs")
        #expect(line.contains("finish_late (") && line.contains(place), "\(hit.stderr)")
        #expect(line.hasSuffix("(found on try 2 of 3)"))
        #expect(hit.status == 134)

        // Only the first run writes: two replays, neither shows it.
        try FileManager.default.removeItem(atPath: counter)
        let miss = try Self.hunt(["--tries", "2", "--", program, counter, "1"])
        #expect(miss.stdout == "run 1\nrun 2\nrun 3\n", "\(miss.stdout)")
        #expect(miss.stderr.contains("slabguard: hunt: no replay reproduced the damage in 2 tries: the first run's report stands"),
                "\(miss.stderr)")
        #expect(Self.writerLine(miss.stderr).isEmpty)
        #expect(miss.status == 134, "the first run's status: it aborted at its report")
    }

    /// Where the kernel refuses watchpoints (here a seccomp filter, the one in
    /// Tests/Integration/watch/no_perf.c): one line says the writer cannot be named and
    /// why, no replay is made, and the first run's report and status stand.
    @Test func refusedWatchpointsAreSaidInOneLine() throws {
        let folder = try Subprocess.temporaryFolder("hunt-refused")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("timer_write", into: folder)
        let launcher = folder.appendingPathComponent("no_perf").path
        let cc = try Subprocess.run(try Subprocess.requireTool("cc"),
                                    ["-O0", "-o", launcher, ReleaseBuild.integrationSources.appendingPathComponent("watch/no_perf.c").path],
                                    timeout: 60)
        try #require(cc.status == 0, "\(cc.stderr)")
        let result = try Subprocess.run(launcher, [try ReleaseBuild.cli(), "hunt", "--", program], timeout: 120)
        #expect(result.stderr.components(separatedBy: "slabguard: summary:").count == 2, "one run only: \(result.stderr)")
        #expect(result.stderr.contains("slabguard: buffer modified after being freed"), "\(result.stderr)")
        #expect(result.stderr.contains("; cannot name the writer here: a seccomp filter is in force"), "\(result.stderr)")
        #expect(Self.writerLine(result.stderr).isEmpty)
        #expect(result.status == 134)
    }

    /// (e) A bug that depends on standard input: a pipe's bytes, and a file's, given again
    /// to the replay, which names the write.
    @Test(arguments: [true, false])
    func anInputDependentBugIsReplayedWithTheSameInput(pipe: Bool) throws {
        let folder = try Subprocess.temporaryFolder("hunt-input")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("input_bug", into: folder)
        let result = try pipe ? Self.shell("printf 'stale command\\n' | \"$SLABGUARD\" hunt -- '\(program)'")
                          : Self.hunt(["--", program], input: "stale command\n")
        #expect(result.stdout == "read 14 bytes\nread 14 bytes\n", "both runs read the same: \(result.stdout)")
        let line = Self.writerLine(result.stderr)
        let place = try Self.location(of: "INPUT WRITE", in: "input_bug")
        #expect(line.contains("apply_command (") && line.contains(place), "\(result.stderr)")
        // Other input, no bug: nothing to replay.
        let clean = try Self.shell("printf 'fresh command\\n' | \"$SLABGUARD\" hunt -- '\(program)'")
        #expect(clean.status == 0 && clean.stdout == "read 14 bytes\n", "\(clean.stdout) \(clean.stderr)")
        #expect(clean.stderr.hasSuffix("slabguard: hunt: no damage found: nothing to replay\n"), "\(clean.stderr)")
    }
}
