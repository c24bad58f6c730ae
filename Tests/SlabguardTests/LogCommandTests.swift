// The flight recorder (log=PATH, written as the program runs) read back with
// `slabguard log` (design §7): after an abort, after a SIGKILL, and the bad-file cases.
// Programs: Tests/Integration/bugs/double_free.c, Tests/Integration/log/killed.c.

import Foundation
import Glibc
import Testing

@Suite("Flight recorder and slabguard log", .timeLimit(.minutes(5)))
struct LogCommandTests {
    static let logSources = ReleaseBuild.integrationSources.appendingPathComponent("log")

    /// NAME.c of `sources` (Tests/Integration/log by default) compiled at -O0 (at -O2
    /// one-line helpers become tail calls and leave no frame) into `folder`, as NAME, or
    /// as a shared library when `output` ends in .so; `flags` are added (-pthread, -ldl),
    /// and `programFlags` only when it is a program.
    static func compile(_ name: String, into folder: URL, output: String? = nil, flags: [String] = [],
                        sources: URL = logSources, programFlags: [String] = []) throws -> String {
        let out = folder.appendingPathComponent(output ?? name).path
        let shared = out.hasSuffix(".so") ? ["-shared", "-fPIC"] : []
        let cc = try Subprocess.run(try Subprocess.requireTool("cc"),
                                    ["-O0", "-g"] + shared + ["-o", out, sources.appendingPathComponent("\(name).c").path]
                                    + (shared.isEmpty ? programFlags : []) + flags)
        guard cc.status == 0 else { throw ReleaseBuild.Failure(description: "cc \(name).c failed:\n\(cc.stderr)") }
        return out
    }

    static func log(_ arguments: [String]) throws -> Subprocess.Outcome {
        try Subprocess.run(try ReleaseBuild.cli(), ["log"] + arguments, timeout: 120)
    }

    /// double_free under `slabguard run --log`: the run aborts at the second free.
    static func crashedLog(in folder: URL) throws -> (log: String, report: String) {
        let program = try BugCorpusTests.compile("double_free", into: folder)
        let path = folder.appendingPathComponent("run.log").path
        let result = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", program],
                                        directory: folder.path, timeout: 120)
        #expect(result.status == 134, "stderr: \(result.stderr)")
        return (path, result.stderr)
    }

    /// `log msgbuf`: every report in full as the run wrote it (the run's stderr has the same
    /// lines, `run` adding file:line to frames where it can), and one JSON object per report.
    @Test func msgbufGivesEveryReportInFull() throws {
        let folder = try Subprocess.temporaryFolder("log-msgbuf")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, report) = try Self.crashedLog(in: folder)
        let msgbuf = try Self.log(["msgbuf", path])
        #expect(msgbuf.status == 0, "\(msgbuf.stderr)")
        let lines = msgbuf.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "slabguard: duplicate free: buffer freed twice", "\(msgbuf.stdout)")
        #expect(lines.contains { $0.hasPrefix("  second free by thread ") } && lines.contains { $0.hasPrefix("slabguard: summary: ") },
                "\(msgbuf.stdout)")
        // Every line the log holds is a line the run printed (frames up to their file:line).
        for line in lines {
            let stem = line.components(separatedBy: " (/").first ?? line
            #expect(report.contains(stem), "not in the run's output: \(line)")
        }
        let json = try Self.log(["msgbuf", path, "--json"])
        let objects = json.stdout.split(separator: "\n")
        #expect(objects.count == 2 && objects[0].hasPrefix("{\"headline\":\"slabguard: duplicate free: buffer freed twice\",\"report\":\""),
                "\(json.stdout)")
    }

    @Test func aCrashedRunAnswersInfoAndKmalog() throws {
        let folder = try Subprocess.temporaryFolder("log-crash")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, report) = try Self.crashedLog(in: folder)
        let info = try Self.log(["info", path])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(info.stdout.contains("ended:         killed by signal 6 after 0."), "\(info.stdout)")
        #expect(info.stdout.contains("  slabguard: duplicate free: buffer freed twice"), "\(info.stdout)")
        #expect(info.stdout.contains("double_free"), "the command line: \(info.stdout)")

        // The buffer the report names: its transactions, newest first, symbolized offline.
        let buffer = try #require(report.firstMatch(of: /buffer (0x[0-9a-f]+), cache/)?.output.1)
        let inside = "0x" + String(UInt(buffer.dropFirst(2), radix: 16)! + 8, radix: 16)
        let kmalog = try Self.log(["kmalog", path, inside])
        #expect(kmalog.status == 0, "\(kmalog.stderr)")
        let headers = kmalog.stdout.split(separator: "\n").filter { $0.hasPrefix("T-") }
        #expect(headers.count == 2, "\(kmalog.stdout)")
        #expect(headers.first?.contains("free  buffer \(buffer) size 48 cache sg_alloc_48") == true, "\(kmalog.stdout)")
        #expect(headers.last?.contains("alloc buffer \(buffer) size 48") == true, "\(kmalog.stdout)")
        #expect(kmalog.stdout.contains("release_twice") && kmalog.stdout.contains("double_free.c:"), "\(kmalog.stdout)")

        let unique = try Self.log(["kmalog", path, inside, "--unique"])
        #expect(unique.stdout.contains("1 free\n") && unique.stdout.contains("1 alloc\n"), "\(unique.stdout)")
        let json = try Self.log(["kmalog", path, inside, "--json"])
        let lines = json.stdout.split(separator: "\n")
        #expect(lines.count == 2 && lines.allSatisfy { $0.hasPrefix("{\"ago\":\"T-") && $0.hasSuffix("]}") }, "\(json.stdout)")
        let infoJSON = try Self.log(["info", path, "--json"])
        #expect(infoJSON.stdout.hasPrefix("{\"program\":") && infoJSON.stdout.contains("\"status\":134"), "\(infoJSON.stdout)")

        // whatis: a heap address, then a code address from a stack.
        let whatis = try Self.log(["whatis", path, inside])
        #expect(whatis.stdout.hasPrefix("\(inside) is 0x8 bytes into buffer \(buffer) (size 48, cache sg_alloc_48), free at the end of the log"),
                "\(whatis.stdout)")
        #expect(whatis.stdout.contains("  last freed by thread") && whatis.stdout.contains("  allocated by thread"), "\(whatis.stdout)")
        let code = try #require(kmalog.stdout.firstMatch(of: /#0 (0x[0-9a-f]+) release_twice/)?.output.1)
        let inCode = try Self.log(["whatis", path, String(code)])
        #expect(inCode.stdout.contains(" is in ") && inCode.stdout.contains("/double_free at +0x") && inCode.stdout.contains("release_twice"),
                "\(inCode.stdout)")
        // kmastat: the table the run wrote on its way to the abort.
        let kmastat = try Self.log(["kmastat", path])
        #expect(kmastat.stdout.hasPrefix("cache ") && kmastat.stdout.contains("\nsg_alloc_48 "), "\(kmastat.stdout)")
    }

    /// findleaks after a run whose exit check found leaks: that check's reports (it knew
    /// which buffers were unreachable).
    @Test func findleaksGivesTheRunsOwnLeakCheck() throws {
        let folder = try Subprocess.temporaryFolder("log-leaks")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try BugCorpusTests.compile("leak", into: folder)
        let path = folder.appendingPathComponent("leak.log").path
        let result = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", program], directory: folder.path, timeout: 120)
        #expect(result.status == 1, "\(result.stderr)")
        let leaks = try Self.log(["findleaks", path])
        #expect(leaks.stdout.hasPrefix("the run's leak check at exit (unreachable buffers only):\nslabguard: leak: 8 buffers, 800 bytes not freed"),
                "\(leaks.stdout)")
        #expect(leaks.stdout.contains("leak_buffer"), "\(leaks.stdout)")
    }

    @Test func aProcessKilledWithSIGKILLLeavesALogThatAnswers() throws {
        let folder = try Subprocess.temporaryFolder("log-kill")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("killed", into: folder)
        let path = folder.appendingPathComponent("killed.log").path
        // Only the program runs on slabguard (the shell, grep and sleep would each write the log).
        let script = "env LD_PRELOAD=\"$1\" SLABGUARD_DEBUG=\"default,log=$2\" \"$0\" > out & p=$!; n=0; "
            + "until grep -q ready out 2>/dev/null; do sleep 0.05; n=$((n+1)); [ $n -gt 400 ] && exit 3; done; "
            + "kill -9 $p; wait $p; echo status $?"
        let run = try Subprocess.run("/bin/sh", ["-c", script, program, try ReleaseBuild.library(), path],
                                     directory: folder.path, timeout: 120)
        #expect(run.stdout.contains("status 137"), "stdout: \(run.stdout) stderr: \(run.stderr)")

        let info = try Self.log(["info", path])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(info.stdout.contains("ended:         did not exit: last transaction at "), "\(info.stdout)")
        let count = info.stdout.firstMatch(of: /transactions:  (\d+) in the ring/).flatMap { Int($0.output.1) } ?? 0
        #expect(count > 100_000, "\(info.stdout)")
        let unique = try Self.log(["kmalog", path, "--unique"])
        #expect(unique.stdout.contains("make_record") && unique.stdout.contains("drop_record"), "\(unique.stdout)")
        #expect(unique.stdout.contains("killed.c:"), "\(unique.stdout)")
        // What is live at the end: the 64 records of the program's ring.
        let leaks = try Self.log(["findleaks", path])
        #expect(leaks.stdout.contains("the process did not exit") && leaks.stdout.contains("\n64 buffers, "), "\(leaks.stdout)")
        let kmastat = try Self.log(["kmastat", path])
        #expect(kmastat.stdout.hasPrefix("the process did not exit: last transaction at "), "\(kmastat.stdout)")
        // One story of the end, told by all three.
        let ending = try #require(info.stdout.firstMatch(of: /ended:         (did not exit: [^\n]*)/)?.output.1)
        #expect(kmastat.stdout.contains(ending) && leaks.stdout.contains(ending), "\(ending): \(kmastat.stdout) \(leaks.stdout)")
    }

    /// A program started by a logging program, with the same environment: without %p it
    /// leaves its parent's log alone and says so; with %p each process writes its own.
    @Test func childProcessesDoNotReplaceTheParentsLog() throws {
        let folder = try Subprocess.temporaryFolder("log-children")
        defer { try? FileManager.default.removeItem(at: folder) }
        var environment = Subprocess.cleanEnvironment()
        environment["LD_PRELOAD"] = try ReleaseBuild.library()
        let shared = folder.appendingPathComponent("shared.log").path
        environment["SLABGUARD_DEBUG"] = "audit,log=\(shared)"
        let one = try Subprocess.run("/bin/sh", ["-c", "/bin/true; /bin/true; echo done"], environment: environment, timeout: 120)
        #expect(one.stdout == "done\n" && one.status == 0, "\(one.stderr)")
        #expect(one.stderr.contains("belongs to running process") && one.stderr.contains("put %p in the path"), "\(one.stderr)")
        let info = try Self.log(["info", shared])
        #expect(info.stdout.contains("program:       /bin/sh -c"), "the shell's log survived: \(info.stdout)")

        environment["SLABGUARD_DEBUG"] = "audit,log=\(folder.path)/each.%p.log"
        let two = try Subprocess.run("/bin/sh", ["-c", "/bin/true; echo done"], environment: environment, timeout: 120)
        #expect(two.stdout == "done\n" && two.stderr.isEmpty, "\(two.stderr)")
        let logs = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("each.") }
        #expect(logs.count == 2, "\(logs)")
        let programs = try logs.map { try Self.log(["info", folder.appendingPathComponent($0).path]).stdout }
        #expect(programs.contains { $0.contains("program:       /bin/true") } && programs.contains { $0.contains("program:       /bin/sh") }, "\(programs)")
    }

    /// `%p` with a program that forks: the child gets a log of its own, with its own
    /// transactions, and the parent's stays the parent's.
    @Test func aForkedChildWritesItsOwnLogWithPid() throws {
        let folder = try Subprocess.temporaryFolder("log-fork")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("forker", into: folder)
        var environment = Subprocess.cleanEnvironment()
        environment["LD_PRELOAD"] = try ReleaseBuild.library()
        environment["SLABGUARD_DEBUG"] = "audit,log=\(folder.path)/f.%p.log"
        let run = try Subprocess.run(program, [], environment: environment, directory: folder.path, timeout: 120)
        let child = try #require(run.stdout.firstMatch(of: /child (\d+)/)?.output.1, "\(run.stdout) \(run.stderr)")
        let childLog = folder.appendingPathComponent("f.\(child).log").path
        let logs = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".log") }
        #expect(logs.count == 2, "\(logs)")
        let parentLog = folder.appendingPathComponent(try #require(logs.first { !$0.contains(".\(child).") })).path
        let childSites = try Self.log(["kmalog", childLog, "--unique"]).stdout
        let parentSites = try Self.log(["kmalog", parentLog, "--unique"]).stdout
        #expect(childSites.contains("child_work") && !childSites.contains("parent_work"), "\(childSites)")
        #expect(parentSites.contains("parent_work") && !parentSites.contains("child_work"), "\(parentSites)")
        #expect(try Self.log(["info", childLog]).stdout.contains("pid:           \(child)\n"))
    }

    /// Offline symbolization reads a module's file only when its build id is the one the
    /// run recorded: rebuilt since, its frames say so and keep module+offset.
    @Test func aRebuiltProgramIsSaidNotGuessed() throws {
        let folder = try Subprocess.temporaryFolder("log-rebuilt")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, _) = try Self.crashedLog(in: folder)
        let before = try Self.log(["kmalog", path]).stdout
        #expect(before.contains("release_twice") && !before.contains("build id differs"), "\(before)")
        // The same program, rebuilt from a changed source: another build id.
        let source = folder.appendingPathComponent("changed.c")
        let original = try String(contentsOf: BugCorpusTests.bugSources.appendingPathComponent("double_free.c"), encoding: .utf8)
        try (original + "\nint rebuilt_since_the_run = 1;\n").write(to: source, atomically: true, encoding: .utf8)
        let cc = try Subprocess.run(try Subprocess.requireTool("cc"),
                                    ["-g", "-O2", "-o", folder.appendingPathComponent("double_free").path, source.path])
        try #require(cc.status == 0, "\(cc.stderr)")
        let after = try Self.log(["kmalog", path]).stdout
        #expect(after.contains("/double_free+0x") && after.contains("[build id differs: the file was rebuilt since the run]"), "\(after)")
        #expect(!after.contains("release_twice"), "names read from a file that is not the one that ran: \(after)")
    }

    /// README's hunt: a buffer written after a timer thread freed it early.  The buffer's
    /// history, distinct call sites rarest first, puts the timer's free on top.
    @Test func theRareFreeOfABufferComesFirst() throws {
        let folder = try Subprocess.temporaryFolder("log-timer")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("timer_uaf", into: folder, flags: ["-pthread"])
        let path = folder.appendingPathComponent("timer.log").path
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", program], directory: folder.path, timeout: 120)
        #expect(run.stderr.hasPrefix("slabguard: buffer modified after being freed"), "\(run.stderr)")
        let buffer = try #require(run.stderr.firstMatch(of: /buffer (0x[0-9a-f]+), cache/)?.output.1)
        let unique = try Self.log(["kmalog", path, String(buffer), "--unique"]).stdout
        let groups = unique.split(separator: "\n").filter { $0.first?.isNumber == true }
        #expect(groups.first == "1 free", "\(unique)")
        let firstStack = unique.components(separatedBy: "\n").dropFirst().prefix { !($0.first?.isNumber ?? false) }.joined(separator: "\n")
        #expect(firstStack.contains("expire_session") && firstStack.contains("timer"), "\(unique)")
        #expect(groups.contains { $0.hasSuffix(" free") && $0 != "1 free" } && unique.contains("close_session"), "\(unique)")
    }

    /// A plugin loaded, used and unloaded during the run, its file then deleted: its frames
    /// in the leak report stay named, from the symbols the recorder kept at its dlclose.
    @Test func aDeletedPluginsFramesStayNamed() throws {
        let folder = try Subprocess.temporaryFolder("log-plugin")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try Self.compile("plugin", into: folder, output: "libplugin.so")
        let host = try Self.compile("plugin_host", into: folder, flags: ["-ldl"])
        let path = folder.appendingPathComponent("plugin.log").path
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", host, plugin], directory: folder.path, timeout: 120)
        // At the dlclose: the plugin's three buffers, not the one the host holds; not again at exit.
        #expect(run.stdout == "unloaded\n" && run.stderr.contains("slabguard: leak at unload: 3 buffers, 303 bytes allocated by \(plugin) not freed"),
                "\(run.stderr)")
        #expect(!run.stderr.contains("slabguard: leak: "), "reported twice: \(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: plugin), "the host deletes the plugin")
        // The live report at the dlclose already says the frames are in a library now gone.
        #expect(run.stderr.contains(" plugin_make_buffer+0x1b (\(plugin), unloaded)"), "\(run.stderr)")
        let leaks = try Self.log(["findleaks", path]).stdout
        #expect(leaks.contains(" plugin_make_buffer+0x") && leaks.contains("libplugin.so, unloaded)"), "\(leaks)")
        #expect(leaks.contains("plugin_host.c:"), "the host's frames from its file: \(leaks)")
        // The module map knows when the plugin came and went.
        let info = try Self.log(["info", path]).stdout
        #expect(info.contains("(1 loaded and 1 unloaded during the run)") && info.contains("  \(plugin): loaded at 0.")
                && info.contains("s, unloaded at 0."), "\(info)")
    }

    @Test func badFilesAreOneLineAndStatusTwo() throws {
        let folder = try Subprocess.temporaryFolder("log-bad")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, _) = try Self.crashedLog(in: folder)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))

        let notALog = folder.appendingPathComponent("not-a-log").path
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: notALog))
        let truncated = folder.appendingPathComponent("truncated.log").path
        try data.prefix(100_000).write(to: URL(fileURLWithPath: truncated))
        let newer = folder.appendingPathComponent("newer.log").path
        var bumped = data
        bumped[8] = 9   // format version 9
        try bumped.write(to: URL(fileURLWithPath: newer))

        for (file, message) in [(notALog, "is not a slabguard log"), (truncated, "is truncated: 100000 of its"),
                                (newer, "was written by a newer slabguard (log format 9)"),
                                (folder.appendingPathComponent("missing").path, "cannot read")] {
            let result = try Self.log(["info", file])
            #expect(result.status == 2, "\(file): \(result.stdout) \(result.stderr)")
            #expect(result.stderr.hasPrefix("slabguard: ") && result.stderr.contains(message)
                    && result.stderr.split(separator: "\n").count == 1, "\(file): \(result.stderr)")
        }
        let absent = try Self.log(["kmalog", path, "0x1234"])
        #expect(absent.status == 0 && absent.stdout == "no transactions for 0x1234\n", "\(absent.stdout) \(absent.stderr)")
    }

    /// A FIFO (open would block forever), a directory, an empty file: every subcommand
    /// says what it is in one line, status 2, at once.
    @Test func aFIFOADirectoryOrAnEmptyFileIsOneLineNeverAHang() throws {
        let folder = try Subprocess.temporaryFolder("log-fifo")
        defer { try? FileManager.default.removeItem(at: folder) }
        let fifo = folder.appendingPathComponent("fifo").path
        try #require(mkfifo(fifo, 0o600) == 0)
        let empty = folder.appendingPathComponent("empty").path
        try Data().write(to: URL(fileURLWithPath: empty))
        for (file, message) in [(fifo, "is a FIFO (named pipe), not a slabguard log"), (folder.path, "is a directory, not a slabguard log"),
                                (empty, "is empty, not a slabguard log")] {
            for command in [["info"], ["kmalog"], ["kmalog", "--unique"], ["findleaks"], ["kmastat"], ["info", "--json"]] {
                let result = try Subprocess.run(try ReleaseBuild.cli(), ["log", command[0], file] + command.dropFirst(), timeout: 20)
                #expect(!result.timedOut && result.status == 2, "\(command) \(file): \(result.status) \(result.stderr)")
                #expect(result.stderr.hasPrefix("slabguard: '\(file)' \(message)") && result.stderr.split(separator: "\n").count == 1, "\(command) \(file): \(result.stderr)")
            }
            let whatis = try Subprocess.run(try ReleaseBuild.cli(), ["log", "whatis", file, "0x10"], timeout: 20)
            #expect(!whatis.timedOut && whatis.status == 2 && whatis.stderr.contains(message), "\(whatis.stderr)")
        }
    }

    /// A log of format 0 (no slabguard writes one) or with a damaged ring count: one line.
    @Test func aFormatMismatchOrADamagedHeaderIsOneLine() throws {
        let folder = try Subprocess.temporaryFolder("log-format")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, _) = try Self.crashedLog(in: folder)
        for (offset, value, message) in [(8, UInt64(0), "has log format 0, which no slabguard writes (this one reads format 2)"),
                                         (80, 0, "is damaged: its transaction ring has 0 entries"),
                                         (144, UInt64.max, "is damaged: its module map region says"),
                                         (72, UInt64(1) << 63, "is damaged: its transaction region")] {
            let copy = folder.appendingPathComponent("damaged.log").path
            try? FileManager.default.removeItem(atPath: copy)
            let cp = try Subprocess.run("/bin/cp", ["--sparse=always", path, copy])
            try #require(cp.status == 0, "\(cp.stderr)")
            let fd = open(copy, O_WRONLY)
            var v = value
            _ = withUnsafeBytes(of: &v) { pwrite(fd, $0.baseAddress, offset == 8 ? 4 : 8, off_t(offset)) }
            close(fd)
            for command in ["info", "kmalog", "findleaks", "kmastat"] {
                let result = try Self.log([command, copy])
                #expect(result.status == 2 && !result.signaled && result.stderr.hasPrefix("slabguard: '\(copy)' \(message)")
                        && result.stderr.split(separator: "\n").count == 1, "\(command) \(offset)=\(value): \(result.status) \(result.stderr)")
            }
        }
    }

    /// A run killed by its abort made no leak check at exit: findleaks says so (never that a
    /// check found everything reachable), lists no buffer of slabguard's own (its strdup
    /// copies, its constructor's buffers), and info, kmastat and findleaks tell one end.
    @Test func findleaksAfterAnAbortClaimsNoExitCheck() throws {
        let folder = try Subprocess.temporaryFolder("log-abort-leaks")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("double_free", into: folder, sources: BugCorpusTests.bugSources)
        let path = folder.appendingPathComponent("run.log").path
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", program], directory: folder.path, timeout: 120)
        #expect(run.status == 134, "\(run.stderr)")
        let leaks = try Self.log(["findleaks", path])
        #expect(leaks.status == 0 && !leaks.stdout.contains("leak check at exit found"), "\(leaks.stdout)")
        #expect(leaks.stdout.contains("no leak check at exit ran: the run was killed by signal 6 after "), "\(leaks.stdout)")
        #expect(!leaks.stdout.contains("libslabguard_rt.so") && !leaks.stdout.contains("strdup") && !leaks.stdout.contains("_dl_init"),
                "slabguard's own buffers listed as the program's: \(leaks.stdout)")
        #expect(leaks.stdout.contains("(not listed: ") && leaks.stdout.contains("allocated by slabguard itself or the dynamic loader"), "\(leaks.stdout)")
        #expect(!leaks.stdout.contains(" 1 buffers") && !leaks.stdout.hasPrefix("1 buffers"), "\(leaks.stdout)")
        let json = try Self.log(["findleaks", path, "--json"])
        #expect(!json.stdout.contains("libslabguard_rt.so") && !json.stdout.contains("strdup"), "\(json.stdout)")
        let info = try Self.log(["info", path]).stdout
        let ending = try #require(info.firstMatch(of: /ended:         (killed by signal 6 after [0-9.]+s)/)?.output.1, "\(info)")
        let kmastat = try Self.log(["kmastat", path]).stdout
        #expect(kmastat.contains(ending) && leaks.stdout.contains(ending), "\(ending): \(kmastat) \(leaks.stdout)")
    }
}
