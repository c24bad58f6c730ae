// `slabguard stat PID` and `slabguard top PID` (issue 21 item 1): a running process's
// statistics, read from the live table its flight recorder rewrites about once a second,
// while it runs, without disturbing it.

import Foundation
import Testing

// Serialized: a grower started while another test's subprocess pipes are open would hold them.
@Suite("Live statistics: stat and top against a running process", .serialized, .timeLimit(.minutes(5)))
struct LiveTests {
    /// Starts the grower with a log; returns its pid and a closure that kills it.
    static func startGrower(debug: String = "default", log: Bool = true, program name: String = "grower", arguments: [String] = [],
                            wrapper: String? = nil) throws -> (pid: pid_t, stop: () -> Void, stderr: () -> String, process: Process) {
        let folder = try Subprocess.temporaryFolder("live")
        let program = try LogCommandTests.compile(name, into: folder, flags: ["-pthread"],
                                                  sources: ReleaseBuild.integrationSources.appendingPathComponent("live"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: wrapper ?? program)
        process.arguments = (wrapper == nil ? [] : [program]) + arguments
        var environment = try PreloadTests.preloaded()
        environment["SLABGUARD_DEBUG"] = debug + (log ? ",log=\(folder.appendingPathComponent("grower.log").path)" : "")
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        let errors = folder.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        _ = out.fileHandleForReading.availableData   // "ready"
        // SIGKILL: the test runner may block SIGTERM, and children inherit the mask.
        return (process.processIdentifier, { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() },
                { (try? String(contentsOf: errors, encoding: .utf8)) ?? "" }, process)
    }

    static func stat(_ pid: pid_t, json: Bool = true) throws -> Subprocess.Outcome {
        try Subprocess.run(try ReleaseBuild.cli(), ["stat", "\(pid)"] + (json ? ["--json"] : []), timeout: 20)
    }

    /// The growing cache's buffers in use, from `stat --json`.
    static func inUse(_ outcome: Subprocess.Outcome) throws -> Int {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stdout)\(outcome.stderr)")
        let caches = try #require(object["caches"] as? [[String: Any]])
        let grown = try #require(caches.first { $0["buffer_size"] as? Int == 112 }, "\(caches)")
        return try #require(grown["in_use"] as? Int)
    }

    /// stat reads the table twice, a second and a half apart: the growing cache grew,
    /// the library tag charged with it too, and the text form has the ::kmastat header.
    @Test func statSeesTheCacheGrow() throws {
        let grower = try Self.startGrower()
        defer { grower.stop() }
        usleep(1_300_000)
        var first = try Self.stat(grower.pid)
        for _ in 0..<20 where first.status != 0 { usleep(200_000); first = try Self.stat(grower.pid) }   // the first table
        #expect(first.status == 0, "\(first.stderr)")
        let before = try Self.inUse(first)
        usleep(1_500_000)
        let second = try Self.stat(grower.pid)
        let after = try Self.inUse(second)
        #expect(before >= 50 && after > before + 1000, "\(before) then \(after)")
        // The top allocation site (the depot's counters): the grower's malloc, holding every
        // buffer of the growing cache (the table is written by the grower's own thread).
        let object = try #require(try JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any])
        let sites = try #require(object["sites"] as? [[String: Any]], "\(second.stdout)")
        let top = try #require(sites.first, "\(second.stdout)")
        #expect((top["frames"] as? [String])?.first?.contains("main") == true && (top["frames"] as? [String])?.first?.contains("grower.c") == true, "\(top)")
        #expect(top["live_buffers"] as? Int == after && top["live_bytes"] as? Int == after * 100, "\(top) against \(after) in use")
        #expect(!second.stdout.contains("libstdc++") && !second.stdout.contains("strdup"), "slabguard's own sites left out: \(sites)")
        let text = try Self.stat(grower.pid, json: false)
        #expect(text.stdout.contains("cache                          buf size   in use"), "\(text.stdout)")
        #expect(text.stdout.contains("grower") && text.stdout.contains("library"), "the library tag: \(text.stdout)")
    }

    /// top, not on a terminal: two refreshes, the growing cache first with a positive change.
    @Test func topSortsByGrowth() throws {
        let grower = try Self.startGrower()
        defer { grower.stop() }
        usleep(1_300_000)
        let top = try Subprocess.run(try ReleaseBuild.cli(), ["top", "\(grower.pid)", "-n", "2", "--interval", "1"], timeout: 30)
        #expect(top.status == 0, "\(top.stderr)")
        let screens = top.stdout.components(separatedBy: "slabguard top: process")
        #expect(screens.count == 3, "\(top.stdout)")
        let firstRow = screens.last?.split(separator: "\n").first { $0.hasPrefix("sg_alloc_") } ?? ""
        #expect(firstRow.hasPrefix("sg_alloc_112") && firstRow.contains(" +"), "\(top.stdout)")
    }

    /// top on a terminal (a pty): q quits at once, with status 0.
    @Test func topQuitsOnQ() throws {
        let grower = try Self.startGrower()
        defer { grower.stop() }
        usleep(1_300_000)
        let script = """
            import os, pty, sys, time, select
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(sys.argv[1], [sys.argv[1], "top", sys.argv[2], "--interval", "1"])
            out = b""
            end = time.time() + 10
            while time.time() < end and b"sg_alloc_112" not in out:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r: out += os.read(fd, 65536)
            os.write(fd, b"q")
            t = time.time()
            _, status = os.waitpid(pid, 0)
            print("screen" if b"sg_alloc_112" in out else "no screen", "status", os.waitstatus_to_exitcode(status), "after %.1f" % (time.time() - t))
            """
        let run = try Subprocess.run(try Subprocess.requireTool("python3"), ["-c", script, try ReleaseBuild.cli(), "\(grower.pid)"], timeout: 30)
        #expect(run.stdout.hasPrefix("screen status 0 after 0."), "\(run.stdout)\(run.stderr)")
    }

    /// Without log=, a debug run publishes the same table from a memory file (kept open
    /// for this at descriptor 890 or above): stat reads it, says it is in memory, and a
    /// leak check is answered through it.
    @Test func statAndLeaksWithoutALog() throws {
        let grower = try Self.startGrower(log: false)
        defer { grower.stop() }
        usleep(1_300_000)
        var first = try Self.stat(grower.pid)
        for _ in 0..<20 where first.status != 0 { usleep(200_000); first = try Self.stat(grower.pid) }
        #expect(first.status == 0 && first.stdout.contains("\"log\":null"), "\(first.stdout)\(first.stderr)")
        let before = try Self.inUse(first)
        usleep(1_500_000)
        let text = try Self.stat(grower.pid, json: false)
        #expect(text.stdout.contains("(live recorder in memory)"), "\(text.stdout)")
        #expect(try Self.inUse(try Self.stat(grower.pid)) > before + 1000)
        let live = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(grower.pid)/fd").filter {
            ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(grower.pid)/fd/\($0)")) ?? "").hasPrefix("/memfd:slabguard-live")
        }
        #expect(live.count == 1 && Int(live[0])! >= 890, "one descriptor, no low number taken: \(live)")
        let leaks = try Self.leaks(grower.pid)
        #expect(leaks.status == 0 && leaks.stdout.contains("leaked buffers"), "\(leaks.stdout)\(leaks.stderr)")
    }

    /// A pid that runs no slabguard debug mode, or no process at all: one line, status 2.
    @Test func processesWithoutALogAreOneLine() throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: try Subprocess.requireTool("sleep"))
        sleeper.arguments = ["20"]
        try sleeper.run()
        defer { kill(sleeper.processIdentifier, SIGKILL); sleeper.waitUntilExit() }
        let plain = try Self.stat(sleeper.processIdentifier)
        #expect(plain.status == 2 && plain.stdout.isEmpty)
        #expect(plain.stderr.hasPrefix("slabguard: process \(sleeper.processIdentifier) does not run slabguard") && plain.stderr.split(separator: "\n").count == 1, "\(plain.stderr)")
        let fast = try Self.startGrower(debug: "none", log: false)
        defer { fast.stop() }
        let fastMode = try Self.stat(fast.pid)
        #expect(fastMode.status == 2 && fastMode.stderr.contains("runs slabguard in fast mode") && fastMode.stderr.split(separator: "\n").count == 1,
                "\(fastMode.stderr)")
        let none = try Subprocess.run(try ReleaseBuild.cli(), ["top", "999999999"], timeout: 20)
        #expect(none.status == 2 && none.stderr == "slabguard: no process 999999999\n", "\(none.stderr)")
    }

    // MARK: - leaks PID (issue 21 item 2)

    static func leaks(_ pid: pid_t, _ extra: [String] = [], timeout: Double = 30) throws -> Subprocess.Outcome {
        try Subprocess.run(try ReleaseBuild.cli(), ["leaks", "\(pid)"] + extra, timeout: timeout)
    }

    /// The buffers leaked so far, grouped by stack and symbolized; --new lists only those
    /// no earlier check listed; the reachable buffer is never listed; the program's own
    /// standard error gets nothing; the process goes on.  Also with three threads inside
    /// malloc and free all the while (with every signal blocked, too), and with a thread
    /// forking without pause.
    @Test(arguments: ["", "busy", "blocked", "forks", "nolog", "forks nolog"])
    func leaksNowAndNewSinceTheLastCheck(mode: String) throws {
        let leaker = try Self.startGrower(log: !mode.hasSuffix("nolog"), program: "leaker",
                                          arguments: [String(mode.split(separator: " ").first.map { $0 == "nolog" ? "" : $0 } ?? "")])
        defer { leaker.stop() }
        usleep(1_200_000)
        let first = try Self.leaks(leaker.pid, ["--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let summary = try #require(first.stdout.split(separator: "\n").last.flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }, "\(first.stdout)")
        let before = try #require(summary["buffers"] as? Int)
        #expect(before >= 30, "\(first.stdout)")   // the newest may still sit in a register of the thread that serves
        #expect(first.stdout.contains("leak: \(before) buffers, \(before * 64) bytes not freed"), "\(first.stdout)")
        #expect(first.stdout.contains("leak_three"), "symbolized: \(first.stdout)")
        usleep(600_000)
        let second = try Self.leaks(leaker.pid, ["--new"])
        #expect(second.status == 0, "\(second.stderr)")
        let line = second.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let newCount = Int(line.split(separator: " ").dropFirst(3).first ?? "") ?? -1
        #expect(line.contains("new leaked buffers") && newCount > 0 && newCount < before, "\(second.stdout)")
        let all = try Self.leaks(leaker.pid)
        let total = Int(all.stdout.split(separator: "\n").last?.split(separator: " ").dropFirst(3).first ?? "") ?? -1
        #expect(total >= before + newCount, "\(all.stdout)")
        #expect(kill(leaker.pid, 0) == 0, "the process runs on")
        #expect(!leaker.stderr().contains("slabguard: leak"), "nothing on the program's stderr: \(leaker.stderr())")
    }

    /// A process in the middle of its exit (its exit handler allocating, three threads
    /// still in malloc, then the exit check): the check is answered or said in one line
    /// ("exited before it answered"), in time; the process ends by its own exit, not a signal.
    @Test(arguments: [true, false])
    func exitingProcessAnswersOrSaysSo(log: Bool) throws {
        let leaker = try Self.startGrower(log: log, program: "leaker", arguments: ["exiting"])
        defer { leaker.stop() }
        usleep(1_400_000)
        for _ in 0..<3 {
            let check = try Self.leaks(leaker.pid, ["--timeout", "5"], timeout: 20)
            if check.status == 0 {
                #expect(check.stdout.contains("leaked buffers"), "\(check.stdout)")
            } else {
                #expect(check.status == 2 && check.stderr.split(separator: "\n").count == 1 &&
                        (check.stderr.contains("exited") || check.stderr.contains("no process")), "\(check.stderr)")
            }
            usleep(300_000)
        }
        var waited = 0
        while leaker.process.isRunning && waited < 100 { usleep(100_000); waited += 1 }
        #expect(waited < 100, "the process finished its exit")
        #expect(leaker.process.terminationReason == .exit, "ended by exit, not by signal \(leaker.process.terminationStatus): \(leaker.stderr())")
    }

    /// A process that makes no allocator call cannot answer: one line, status 2, in time.
    @Test func idleProcessIsOneLineAfterTheTimeout() throws {
        let leaker = try Self.startGrower(program: "leaker", arguments: ["idle"])
        defer { leaker.stop() }
        usleep(1_500_000)
        let idle = try Self.leaks(leaker.pid, ["--timeout", "2"])
        #expect(idle.status == 2 && idle.stderr.contains("did not answer within 2 s") && idle.stderr.split(separator: "\n").count == 1, "\(idle.stderr)")
        #expect(kill(leaker.pid, 0) == 0)
    }

    /// Under a seccomp filter the scan is not made (its system calls could kill the
    /// process): said in one line, status 2, and the process runs on.
    @Test func sandboxedProcessSaysSo() throws {
        let folder = try Subprocess.temporaryFolder("live-sandbox")
        let wrapper = try WatchTests.compile("no_perf", into: folder)
        let leaker = try Self.startGrower(program: "leaker", wrapper: wrapper)
        defer { leaker.stop() }
        usleep(1_200_000)
        let sandboxed = try Self.leaks(leaker.pid)
        #expect(sandboxed.status == 2 && sandboxed.stderr.contains("seccomp filter"), "\(sandboxed.stderr)")
        #expect(kill(leaker.pid, 0) == 0)
    }

    // MARK: - The heap over time (issue 21 item 3)

    /// A sample a second in the log, kept after the process is killed: the growing cache
    /// grows sample to sample, the resident set is there, and the HTML page charts the same
    /// samples.
    @Test func timelineSamplesTheHeapEverySecond() throws {
        let grower = try Self.startGrower()
        usleep(3_600_000)
        let path = try #require(try? Self.logPath(of: grower.pid))
        grower.stop()
        let timeline = try LogCommandTests.log(["timeline", path, "--json"])
        #expect(timeline.status == 0, "\(timeline.stderr)")
        let samples = timeline.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(samples.count >= 3, "\(timeline.stdout)")
        let grown = samples.map { sample -> Int in
            ((sample["caches"] as? [[String: Any]]) ?? []).first { ($0["cache"] as? String) == "sg_alloc_112" }?["bytes"] as? Int ?? 0
        }
        #expect(zip(grown, grown.dropFirst()).allSatisfy { $0 < $1 } && grown.last! > 100_000, "\(grown)")
        #expect(samples.allSatisfy { ($0["resident_bytes"] as? Int ?? 0) > 1_000_000 })
        let html = URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("html").path
        let report = try LogCommandTests.log(["report", path, "-o", html])
        #expect(report.status == 0, "\(report.stderr)")
        let page = try String(contentsOfFile: html, encoding: .utf8)
        #expect(page.contains("data-samples=\"\(samples.count)\""), "the chart has the same samples")
    }

    /// The log's path, found as stat finds it (from /proc/PID/maps).
    static func logPath(of pid: pid_t) throws -> String {
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        guard let line = maps.split(separator: "\n").first(where: { $0.hasSuffix("grower.log") }),
              let path = line.split(separator: " ").last else { throw ReleaseBuild.Failure(description: "no log mapped") }
        return String(path)
    }
}
