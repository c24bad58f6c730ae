// Run conventions (issue 8, design §10): what users of ASan, LeakSanitizer and Valgrind
// expect of `slabguard run` and of the preloaded library.  The programs are the modes of
// Tests/Integration/conventions/conventions.c, compiled at -O0.
//
// - checks on by default; `--debug none` is fast mode
// - exit status: the program's, or exitcode (1, --error-exitcode N, exitcode=N) when it
//   would be 0 but something was reported — with the CLI and with the bare preload
// - every report names its process and thread; one summary line at exit
// - identical reports are printed once and counted
// - suppressions, for each report kind that exists today (a suppressed fault still
//   kills: the access cannot go on); malformed files
// - the program's standard streams are its own (no pipe on fd 2)
// - options are checked before the program starts
// - `default` finds stale writes into buffers never reused before exit (its quarantine,
//   the heap verification at exit)

import Foundation
import Testing

@Suite("Run conventions", .timeLimit(.minutes(5)))
struct RunConventionTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Integration/conventions")

    /// The conventions program, compiled once per test into `folder`.
    static func program(in folder: URL) throws -> String {
        let cc = try Subprocess.requireTool("cc")
        let output = folder.appendingPathComponent("conventions").path
        let result = try Subprocess.run(cc, ["-O0", "-g", "-o", output, sources.appendingPathComponent("conventions.c").path])
        guard result.status == 0 else { throw ReleaseBuild.Failure(description: "cc conventions.c failed:\n\(result.stderr)") }
        return output
    }

    /// `slabguard run OPTIONS -- conventions MODE...` in a fresh folder.
    static func run(_ options: [String], _ mode: [String], environment: [String: String]? = nil) throws -> Subprocess.Outcome {
        let folder = try Subprocess.temporaryFolder("conventions")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try program(in: folder)
        return try Subprocess.run(try ReleaseBuild.cli(), ["run"] + options + ["--", program] + mode,
                                  environment: environment, directory: folder.path, timeout: 120)
    }

    /// The program preloaded directly (no CLI), with SLABGUARD_DEBUG=`debug`.
    static func preloaded(_ debug: String, _ mode: [String]) throws -> Subprocess.Outcome {
        let folder = try Subprocess.temporaryFolder("conventions")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try program(in: folder)
        var environment = Subprocess.cleanEnvironment()
        environment["LD_PRELOAD"] = try ReleaseBuild.library()
        environment["SLABGUARD_DEBUG"] = debug
        return try Subprocess.run(program, mode, environment: environment, directory: folder.path, timeout: 120)
    }

    static func headlines(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("slabguard:") && !$0.hasPrefix("slabguard: checking ") }
    }

    // MARK: 1. Checks on by default

    @Test func runChecksByDefault() throws {
        let checked = try Self.run([], ["double-free"])
        #expect(checked.signaled && checked.status == SIGABRT || checked.status == 134, "\(checked.status) \(checked.stderr)")
        #expect(checked.stderr.contains("slabguard: duplicate free: buffer freed twice"), "\(checked.stderr)")
        // Fast mode checks nothing but what glibc would (a double free aborts there too):
        // a write after free passes silently.
        let checkedModified = try Self.run([], ["modified"])
        #expect(checkedModified.stderr.contains("slabguard: buffer modified after being freed"), "\(checkedModified.stderr)")
        let fast = try Self.run(["--debug", "none"], ["modified"])
        #expect(!fast.stderr.contains("slabguard:"), "\(fast.stderr)")
        #expect(fast.status == 0)
    }

    /// On a terminal, a clean run says that slabguard is there (one line; --quiet: none).
    @Test func aTerminalSeesOneLineSayingWhatIsChecked() throws {
        let folder = try Subprocess.temporaryFolder("tty")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.program(in: folder)
        let script = try Subprocess.requireTool("script")
        let cli = try ReleaseBuild.cli()
        let shown = try Subprocess.run(script, ["-qec", "'\(cli)' run -- '\(program)' clean", "/dev/null"])
        #expect(shown.stdout.replacingOccurrences(of: "\r", with: "")
                == "slabguard: checking \(program) (deadbeef,redzone,uninit,audit=16,quarantine=1M,leaks,modules)\n", "\(shown.stdout)")
        let fast = try Subprocess.run(script, ["-qec", "'\(cli)' run --debug none -- '\(program)' clean", "/dev/null"])
        #expect(fast.stdout.contains("(none: fast mode, no checks)"), "\(fast.stdout)")
        let quiet = try Subprocess.run(script, ["-qec", "'\(cli)' run --quiet -- '\(program)' clean", "/dev/null"])
        #expect(quiet.stdout.isEmpty, "\(quiet.stdout)")
        let tty = try Subprocess.run(script, ["-qec", "'\(cli)' run --quiet -- '\(program)' fd2", "/dev/null"])
        #expect(tty.stdout.contains("isatty=1"), "\(tty.stdout)")   // the terminal is the program's, too
    }

    // MARK: 2. Exit status

    @Test func leaksMakeTheExitStatusOne() throws {
        let leak = try Self.run([], ["leak"])
        #expect(leak.status == 1 && !leak.signaled, "\(leak.status) \(leak.stderr)")
        #expect(leak.stderr.contains("slabguard: leak: 1 buffer, 77 bytes not freed"))
        #expect(try Self.run(["--error-exitcode", "7"], ["leak"]).status == 7)
        #expect(try Self.run(["--error-exitcode", "0"], ["leak"]).status == 0)
        #expect(try Self.run([], ["leak-exit3"]).status == 3)          // the program's own status stays
        #expect(try Self.run([], ["clean"]).status == 0)
        let badCode = try Self.run(["--error-exitcode", "300"], ["clean"])
        #expect(badCode.status == 2 && badCode.stderr.contains("--error-exitcode 300"), "\(badCode.stderr)")
    }

    @Test func thePreloadedLibraryAppliesExitcodeToo() throws {
        #expect(try Self.preloaded("default", ["leak"]).status == 1)
        #expect(try Self.preloaded("default,exitcode=9", ["leak"]).status == 9)
        #expect(try Self.preloaded("default,exitcode=0", ["leak"]).status == 0)
        #expect(try Self.preloaded("default", ["clean"]).status == 0)
        #expect(try Self.preloaded("default,noabort", ["double-free"]).status == 1)
    }

    // MARK: 3. Identity and summary

    @Test func reportsNameTheirProcessAndThreadAndEndWithASummary() throws {
        let result = try Self.run(["--debug", "default,noabort"], ["fork-double"])
        #expect(result.status == 1, "\(result.stderr)")
        let ids = result.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try #require(ids.count == 2, "\(result.stdout)")
        let (parent, child) = (ids[0], ids[1])
        #expect(result.stderr.contains("  in process \(parent) (conventions), thread \(parent)\n"), "\(result.stderr)")
        #expect(result.stderr.contains("  in process \(child) (conventions), thread \(child)\n"), "\(result.stderr)")
        // Each process its own summary, counting only its own reports.
        #expect(result.stderr.contains("slabguard: summary: 1 report (1 duplicate free) in process \(parent) (conventions)\n"))
        #expect(result.stderr.contains("slabguard: summary: 1 report (1 duplicate free) in process \(child) (conventions)\n"))
        let clean = try Self.run([], ["clean"])
        #expect(!clean.stderr.contains("summary"), "\(clean.stderr)")
    }

    // MARK: 4. Folded repeats

    @Test func identicalReportsArePrintedOnceAndCounted() throws {
        let result = try Self.run(["--debug", "default,noabort"], ["double-free", "1000"])
        let lines = Self.headlines(result.stderr)
        #expect(lines == ["slabguard: duplicate free: buffer freed twice",
                          "slabguard: summary: 1000 reports (1000 duplicate free) in process \(lines.last.flatMap { Self.pid(in: $0) } ?? 0) (conventions); 999 repeats folded"],
                "\(lines)")
    }

    /// Report times are seconds since the program started, on one clock (the audit clock's
    /// ticks scaled to nanoseconds): 0.2 s between allocation and first free, 0.3 s more to
    /// the second free, as the program slept them.
    @Test func reportTimesAreSecondsOnOneClock() throws {
        let result = try Self.run(["--debug", "default"], ["timed-double-free"])
        let times = result.stderr.matches(of: /(?:free|allocated) by thread \d+ at (\d+\.\d+)s:/).compactMap { Double($0.output.1) }
        #expect(times.count == 3, "stderr: \(result.stderr)")
        guard times.count == 3 else { return }
        let (second, first, allocated) = (times[0], times[1], times[2])   // the report's order
        #expect(allocated >= 0 && allocated < 1, "allocated at \(allocated) s")
        #expect((0.19...0.35).contains(first - allocated), "first free \(first - allocated) s after the allocation")
        #expect((0.29...0.5).contains(second - first), "second free \(second - first) s after the first")
    }

    static func pid(in line: String) -> Int? {
        guard let range = line.range(of: "in process ") else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    // MARK: 8. What default used to miss

    /// Writes into freed buffers that are never handed out again before exit: the
    /// quarantine `default` brings and the heap verification at exit find them.  A write
    /// before the start of a buffer damages the tail guard of the tag before it.
    @Test(arguments: [(["realloc"], "buffer modified after being freed"), (["stray"], "buffer modified after being freed"),
                      (["patch"], "buffer modified after being freed"), (["reused"], "buffer modified after being freed"),
                      (["underflow"], "redzone violation: write before start of buffer"),
                      (["underflow", "large"], "redzone violation: write before start of buffer")])
    func defaultCatchesAStaleWriteNotReusedBeforeExit(mode: [String], headline: String) throws {
        let folder = try Subprocess.temporaryFolder("stale")
        defer { try? FileManager.default.removeItem(at: folder) }
        let cc = try Subprocess.requireTool("cc")
        let program = folder.appendingPathComponent("stale_writes").path
        let built = try Subprocess.run(cc, ["-O0", "-g", "-o", program, Self.sources.appendingPathComponent("stale_writes.c").path])
        try #require(built.status == 0, "\(built.stderr)")
        let result = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--", program] + mode, directory: folder.path, timeout: 120)
        #expect(result.stderr.contains("slabguard: \(headline)\n"), "\(mode): \(result.stderr)")
        #expect(result.status == 134, "\(mode): \(result.status)")
        let fast = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--debug", "none", "--", program] + mode, directory: folder.path)
        #expect(fast.status == 0 && fast.stderr.isEmpty)   // the program itself runs to its end
    }

    // MARK: 5. Suppressions

    @Test(arguments: [
        ("leak", ["leak"], "default", "leak: 1 buffer,"),
        ("free", ["double-free"], "default", "duplicate free"),
        ("redzone", ["overrun"], "default", "redzone violation"),
        ("modified", ["modified"], "default", "buffer modified after being freed"),
        ("use-after-free", ["use-after-free"], "default,guards", "use-after-free"),
    ])
    func aSuppressionSilencesItsKind(kind: String, mode: [String], debug: String, headline: String) throws {
        let folder = try Subprocess.temporaryFolder("suppress")
        defer { try? FileManager.default.removeItem(at: folder) }
        // Without the file: reported.  With a line for the program's main: silent, counted,
        // no abort and the program's own exit status.  A line for another kind: reported.
        let reported = try Self.run(["--debug", debug], mode)
        #expect(reported.stderr.contains("slabguard: \(headline)"), "\(reported.stderr)")
        let matching = folder.appendingPathComponent("match.supp")
        try "# the program's own bug, known\n\n\(kind):ma?n\n".write(to: matching, atomically: true, encoding: .utf8)
        let silent = try Self.run(["--debug", debug, "--suppressions", matching.path], mode)
        #expect(!silent.stderr.contains("slabguard: \(headline)"), "\(silent.stderr)")
        if kind == "use-after-free" {
            // A faulting access cannot go on: the process dies of the signal, unexplained.
            #expect(silent.status == 128 + SIGSEGV, "\(silent.status) \(silent.stderr)")
        } else {
            #expect(silent.status == 0 && !silent.signaled, "\(silent.status) \(silent.stderr)")
            #expect(silent.stderr.contains("1 suppressed"), "\(silent.stderr)")
        }
        let byLibrary = folder.appendingPathComponent("library.supp")
        try "\(kind):conventions\n".write(to: byLibrary, atomically: true, encoding: .utf8)
        let silentByLibrary = try Self.run(["--debug", debug, "--suppressions", byLibrary.path], mode)
        #expect(!silentByLibrary.stderr.contains("slabguard: \(headline)"), "\(silentByLibrary.stderr)")
        let other = folder.appendingPathComponent("other.supp")
        try "\(kind == "leak" ? "free" : "leak"):*\n".write(to: other, atomically: true, encoding: .utf8)
        let notSilenced = try Self.run(["--debug", debug, "--suppressions", other.path], mode)
        #expect(notSilenced.stderr.contains("slabguard: \(headline)"), "\(notSilenced.stderr)")
    }

    @Test func aMalformedSuppressionsFileIsOneLineNamingTheFileAndLine() throws {
        let folder = try Subprocess.temporaryFolder("suppress")
        defer { try? FileManager.default.removeItem(at: folder) }
        let bad = folder.appendingPathComponent("bad.supp")
        try "leak:ok\n# fine\nleek:main\n".write(to: bad, atomically: true, encoding: .utf8)
        let marker = folder.appendingPathComponent("started").path
        let cli = try Self.run(["--suppressions", bad.path], ["marker", marker])
        #expect(cli.status == 2)
        #expect(cli.stderr == "slabguard: --suppressions \(bad.path): line 3: unknown kind (expected leak, modified, redzone, free, use-after-free, mismatch, unload, stale, tag or *)\n", "\(cli.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        let library = try Self.preloaded("default,suppressions=\(bad.path)", ["clean"])
        #expect(library.status == 2)
        #expect(library.stderr.hasPrefix("slabguard: suppressions file '\(bad.path)', line 3: unknown kind"), "\(library.stderr)")
        let missing = try Self.run(["--suppressions", folder.appendingPathComponent("none").path], ["marker", marker])
        #expect(missing.status == 2 && missing.stderr.contains("cannot read it: No such file or directory"), "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        try "free:main\n".write(to: bad, atomically: true, encoding: .utf8)
        let noPattern = folder.appendingPathComponent("empty.supp")
        try "leak:   \n".write(to: noPattern, atomically: true, encoding: .utf8)
        #expect(try Self.run(["--suppressions", noPattern.path], ["clean"]).stderr.contains("line 1: empty pattern"))
    }

    // MARK: 6. The program's streams are its own

    @Test func theProgramKeepsItsStandardError() throws {
        let result = try Self.run([], ["fd2"])
        #expect(result.stdout.hasSuffix("/err isatty=0\n"), "fd 2 is \(result.stdout)")   // the caller's file, not a pipe
    }

    /// A child started with every descriptor above 2 closed (Python's subprocess does that)
    /// still reaches run's channel: its report is printed by run and counts for the status.
    @Test func aChildWithItsDescriptorsClosedReachesTheChannel() throws {
        let folder = try Subprocess.temporaryFolder("close-fds")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.program(in: folder)
        let python = try Subprocess.requireTool("python3", preferring: "/usr/bin/python3")
        let script = "import subprocess, sys; sys.exit(subprocess.run([sys.argv[1], 'double-free'], close_fds=True).returncode)"
        let result = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--debug", "default,noabort", "--", python, "-c", script, program],
                                        directory: folder.path, timeout: 120)
        #expect(result.stderr.contains("slabguard: duplicate free: buffer freed twice"), "\(result.stderr)")
        #expect(result.stderr.contains("/conventions.c:"), "symbolized by run: \(result.stderr)")
        #expect(result.status == 1, "\(result.status)")   // the child exited 0 (under run), python too
    }

    /// With report_path= the reports go to the file, and still the program and its
    /// children keep their exit statuses under run; run's own status changes (each process
    /// sends run its summary).
    @Test(arguments: ["", ",report=json"]) func underRunWithAReportPathChildrenKeepTheirStatus(format: String) throws {
        let folder = try Subprocess.temporaryFolder("report-path-run")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.program(in: folder)
        let python = try Subprocess.requireTool("python3", preferring: "/usr/bin/python3")
        let script = "import subprocess, sys; print(subprocess.run([sys.argv[1], 'double-free']).returncode)"
        let reports = folder.appendingPathComponent("reports.%p").path
        let result = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--debug", "default,noabort,report_path=\(reports)\(format)", "--",
                                                                 python, "-c", script, program], directory: folder.path, timeout: 120)
        #expect(result.stdout == "0\n", "the child's status: \(result.stdout) \(result.stderr)")
        // run hears the child's summary, so the run's own status says something was reported.
        #expect(result.status == 1, "\(result.status)")
        #expect(result.stderr.contains(format.isEmpty ? "slabguard: summary: 1 report (1 duplicate free) in process "
                                                       : "{\"report\":\"summary\",\"schema\":1,"), "\(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("reports.") }
        let texts = try files.map { try String(contentsOfFile: folder.appendingPathComponent($0).path, encoding: .utf8) }
        #expect(texts.contains { $0.contains(format.isEmpty ? "slabguard: duplicate free: buffer freed twice" : "\"report\":\"duplicate free") },
                "\(files)")
    }

    @Test func bytesThatLookLikeReportsPassUnchanged() throws {
        let result = try Self.run(["--quiet"], ["fake-report"])
        #expect(result.stderr == "slabguard: buffer modified after being freed\n    #0 0x1234 main+0x1 (/bin/true+0x10)\n\tend\u{01}\n")
        #expect(result.status == 0)
    }

    @Test func fortyMegabytesWithoutANewlineGoStraightThrough() throws {
        let result = try Self.run(["--quiet"], ["big-stderr"])
        #expect(result.status == 0)
        #expect(result.stderr.utf8.count == 40 << 20)
    }

    @Test func aBackgroundChildOutlivesRun() throws {
        let folder = try Subprocess.temporaryFolder("background")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.program(in: folder)
        let log = folder.appendingPathComponent("stderr").path
        let sh = try Subprocess.requireTool("sh")
        let result = try Subprocess.run(sh, ["-c", "'\(try ReleaseBuild.cli())' run --quiet -- '\(program)' background 2>'\(log)'"])
        #expect(result.status == 0)
        var text = ""
        for _ in 0..<50 where !text.contains("late line") {
            usleep(100_000)
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        }
        #expect(text == "late line\n", "\(text)")
    }

    @Test func outputOrderIsKept() throws {
        let folder = try Subprocess.temporaryFolder("order")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.program(in: folder)
        let sh = try Subprocess.requireTool("sh")
        let result = try Subprocess.run(sh, ["-c", "'\(try ReleaseBuild.cli())' run --quiet -- '\(program)' order 2>&1"])
        #expect(result.stdout == "abc")
    }

    // MARK: 7. Options checked first

    @Test func badOptionsStopBeforeTheProgramStarts() throws {
        let folder = try Subprocess.temporaryFolder("options")
        defer { try? FileManager.default.removeItem(at: folder) }
        let marker = folder.appendingPathComponent("started").path
        let word = try Self.run(["--debug", "default,redzon"], ["marker", marker])
        #expect(word.status == 2)
        #expect(word.stderr.hasPrefix("slabguard: unknown debug option 'redzon' in --debug; valid options: "), "\(word.stderr)")
        let log = try Self.run(["--log", "/nonexistent/dir/log"], ["marker", marker])
        #expect(log.status == 2 && log.stderr.hasPrefix("slabguard: --log /nonexistent/dir/log: cannot write it: "), "\(log.stderr)")
        let reportPath = try Self.run(["--debug", "default,report_path=/proc/version"], ["marker", marker])
        #expect(reportPath.status == 2 && reportPath.stderr.hasPrefix("slabguard: --debug report_path=/proc/version: cannot write it"), "\(reportPath.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        let typo = try Subprocess.run(try ReleaseBuild.cli(), ["rnu", "--", "/bin/true"])
        #expect(typo.status == 64 && typo.stderr.hasPrefix("slabguard: unknown subcommand 'rnu'"), "\(typo.stderr)")
        let version = try Subprocess.run(try ReleaseBuild.cli(), ["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("slabguard "), "\(version.stdout)")
    }

    @Test func reportPathWritesReportsToAFile() throws {
        let folder = try Subprocess.temporaryFolder("report-path")
        defer { try? FileManager.default.removeItem(at: folder) }
        let target = folder.appendingPathComponent("reports.%p").path
        let result = try Self.preloaded("default,report_path=\(target)", ["leak"])
        #expect(result.status == 1)
        #expect(!result.stderr.contains("leak:"), "\(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("reports.") }
        try #require(files.count == 1, "\(files)")
        let text = try String(contentsOfFile: folder.appendingPathComponent(files[0]).path, encoding: .utf8)
        #expect(text.hasPrefix("slabguard: leak: 1 buffer, 77 bytes not freed\n"), "\(text)")
        #expect(files[0] == "reports.\(Self.pid(in: text) ?? -1)")
    }
}
