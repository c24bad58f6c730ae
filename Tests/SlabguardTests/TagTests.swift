// Tags (design §9): the C API (Tests/Integration/tags/tag_api.c, linked against
// libslabguard_rt.so) in fast and debug mode — counts, checks with and without stacks,
// destroy with buffers outstanding, use after destroy, a free to the wrong tag, other
// threads allocating during a check, statistics — the Swift `Tag`, and the implicit
// library tags (a plugin's strdup'd buffers are the plugin's; leak at unload without audit).
// Also dlopen's interposition: a name found through the caller's DT_RUNPATH still loads.

import Foundation
import Glibc
import Testing
import Slabguard

@Suite("Tags and library attribution", .timeLimit(.minutes(5)))
struct TagTests {
    static let sources = ReleaseBuild.packageRoot.appendingPathComponent("Tests/Integration/tags")

    /// Compiles Tests/Integration/tags/NAME.c at -O0 (LogCommandTests.compile); a program
    /// is linked against libslabguard_rt.so.
    static func compile(_ name: String, into folder: URL, output: String? = nil, flags: [String] = []) throws -> String {
        try compileLinked(name, from: sources, into: folder, output: output, flags: flags)
    }

    /// Compiles a C program of `sources` at -O0 against slabguard.h, linked with the built
    /// libslabguard_rt.so (the API's users: tag programs, sg_verify, sg_find_leaks).
    static func compileLinked(_ name: String, from sources: URL, into folder: URL, output: String? = nil,
                              flags: [String] = []) throws -> String {
        let lib = URL(fileURLWithPath: try ReleaseBuild.library()).deletingLastPathComponent().path
        let include = ReleaseBuild.packageRoot.appendingPathComponent("Sources/CSlabguardPreload/include").path
        return try LogCommandTests.compile(name, into: folder, output: output, flags: ["-I", include] + flags, sources: sources,
                                           programFlags: ["-L", lib, "-lslabguard_rt", "-Wl,-rpath," + lib, "-pthread", "-ldl"])
    }

    static func run(_ program: String, _ arguments: [String], debug: String?, directory: URL) throws -> Subprocess.Outcome {
        var environment = Subprocess.cleanEnvironment()
        environment["SLABGUARD_DEBUG"] = debug
        return try Subprocess.run(program, arguments, environment: environment, directory: directory.path, timeout: 120)
    }

    /// The statistics line of tag NAME: kind, in use, bytes in use, peak, allocations, frees.
    static func statisticsLine(_ output: String, _ name: String) -> [String]? {
        let line = output.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.map { $0.split(separator: " ").dropFirst().map(String.init) }
    }

    @Test(arguments: [nil, "default"] as [String?])
    func checksCountWhatIsOutstanding(_ debug: String?) throws {
        let folder = try Subprocess.temporaryFolder("tags")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("tag_api", into: folder)
        let run = try Self.run(program, ["basic"], debug: debug, directory: folder)
        // In debug mode a run that reported anything exits with `exitcode` (1).
        #expect(run.status == (debug == nil ? 0 : 1), "\(run.stderr)")
        #expect(run.stdout.contains("check net 4\ncheck disk 0\n") && run.stdout.contains("destroy net 4\ndestroy disk 0\n"), "\(run.stdout)")
        // Statistics: 4 × 100 bytes in use in net; disk's 5000 came and went (its peak stays).
        #expect(Self.statisticsLine(run.stdout, "net") == ["tag", "4", "400", "400", "4", "0"], "\(run.stdout)")
        #expect(Self.statisticsLine(run.stdout, "disk") == ["tag", "0", "0", "5000", "1", "1"], "\(run.stdout)")
        // The check and the destroy each report; the clean check does not.
        let reports = run.stderr.components(separatedBy: "slabguard: tag check: 4 buffers, 400 bytes outstanding in tag net\n")
        #expect(reports.count == 3, "\(run.stderr)")
        #expect(!run.stderr.contains("in tag disk"), "\(run.stderr)")
        if debug == nil {
            #expect(run.stderr.contains("run with SLABGUARD_DEBUG=default for each buffer"), "\(run.stderr)")
        } else {
            // Listed with their allocation stack, through the function that asked.
            #expect(reports[1].contains("4 buffers, 400 bytes from one allocation stack:") && reports[1].contains("net_buffer+0x"),
                    "\(run.stderr)")
            // In debug mode the executable is a library tag too: the tagged buffers and the rest.
            let library = try #require(Self.statisticsLine(run.stdout, "tag_api"), "\(run.stdout)")
            #expect(library.first == "library" && Int(library[1])! >= 4, "\(run.stdout)")
        }
    }

    @Test(arguments: [nil, "default"] as [String?])
    func aTagUsedAfterDestroyIsReported(_ debug: String?) throws {
        let folder = try Subprocess.temporaryFolder("tag-after")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("tag_api", into: folder)
        let run = try Self.run(program, ["after"], debug: debug, directory: folder)
        #expect(run.status == SIGABRT && run.stdout.isEmpty, "status \(run.status): \(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("slabguard: invalid tag: tag net used after destroy\n"), "\(run.stderr)")
        #expect(run.stderr.contains("main+0x"), "the stack of the use: \(run.stderr)")
        // With stacks kept, also where it was destroyed.
        #expect(run.stderr.contains("destroyed by thread") == (debug != nil), "\(run.stderr)")
        // With noabort the call fails harmlessly.
        let lenient = try Self.run(program, ["after"], debug: (debug.map { $0 + "," } ?? "") + "noabort", directory: folder)
        #expect(lenient.status == 1 && lenient.stdout == "survived 1\n", "\(lenient.stdout) \(lenient.stderr)")
    }

    /// report=json: one object per tag report, with the tag, the counts and the problem.
    @Test func tagReportsInJSON() throws {
        let folder = try Subprocess.temporaryFolder("tag-json")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("tag_api", into: folder)
        let basic = try Self.run(program, ["basic"], debug: "default,report=json", directory: folder)
        let objects = basic.stderr.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let checks = objects.filter { $0["report"] as? String == "tag check" }
        #expect(checks.count == 2 && checks.allSatisfy { $0["tag"] as? String == "net" && $0["buffers"] as? Int == 4 && $0["bytes"] as? Int == 400 },
                "\(basic.stderr)")
        let after = try Self.run(program, ["after"], debug: "default,report=json,noabort", directory: folder)
        let invalid = after.stderr.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.first { $0["report"] as? String == "invalid tag" }
        #expect(invalid?["tag"] as? String == "net" && invalid?["problem"] as? String == "used after destroy", "\(after.stderr)")
    }

    @Test func aFreeToAnotherTagIsReported() throws {
        let folder = try Subprocess.temporaryFolder("tag-wrong")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("tag_api", into: folder)
        let run = try Self.run(program, ["wrong"], debug: "default", directory: folder)
        #expect(run.status == SIGABRT, "\(run.stderr)")
        #expect(run.stderr.contains("slabguard: invalid tag: buffer 0x") && run.stderr.contains(" was allocated from tag net, freed to tag disk\n"),
                "\(run.stderr)")
    }

    /// Two threads allocate and free on the tag while main checks it 40 times: every
    /// check's count is the one its report states, in fast mode never more than the 8
    /// the threads can hold at once; when both hold four (they wait for main's check there)
    /// the check says exactly 8; at the end the tag is clean.
    @Test(arguments: [nil, "default"] as [String?])
    func checksStayConsistentWhileOtherThreadsAllocate(_ debug: String?) throws {
        let folder = try Subprocess.temporaryFolder("tag-threads")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("tag_api", into: folder)
        let run = try Self.run(program, ["threads"], debug: debug, directory: folder)
        // In debug mode the check while both threads hold four is a report: status 1 (exitcode);
        // fast mode counts without reporting.
        #expect(run.status == (debug == nil ? 0 : 1), "\(run.stderr)")
        let fields = run.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        try #require(fields.count == 8, "\(run.stdout)")
        #expect(fields[3] == "0" && fields[5] == "0", "\(run.stdout)")
        #expect(fields[7] == "8", "the check while both threads held four buffers: \(run.stdout)")
        if debug != nil {
            #expect(run.stderr.contains("slabguard: tag check: 8 buffers, 512 bytes outstanding in tag shared"), "\(run.stderr)")
        }
        if debug == nil { #expect(Int(fields[1])! <= 8, "\(run.stdout)") }
        // Each report's buffers: its headline's N is the sum of its groups.
        for report in run.stderr.components(separatedBy: "slabguard: tag check: ").dropFirst() {
            let n = Int(report.prefix { $0.isNumber })!
            #expect(n > 0 && (debug == nil || n <= 16), "\(report)")
            if debug != nil {
                let groups = report.matches(of: /\n  (\d+) buffers?, \d+ bytes from one allocation stack/).map { Int($0.output.1)! }
                if !report.contains("not shown") { #expect(groups.reduce(0, +) == n, "\(report)") }
            }
        }
    }

    /// Swift's Tag: counts, check, destroy with buffers outstanding (in fast mode, in this
    /// process).  Use after destroy cannot be written: destroy() consumes the tag.
    @Test func swiftTagCountsChecksAndDestroys() throws {
        // (Tag is non-copyable: the expectation macros get plain values, not calls on it.)
        guard let tag = Tag(name: "swift-tag") else { Issue.record("no tag"); return }
        var buffers: [UnsafeMutableRawPointer] = []
        for _ in 0..<3 { if let p = tag.allocate(64) { buffers.append(p) } }
        guard buffers.count == 3, let zeroed = tag.zeroAllocate(256) else { Issue.record("allocation failed"); return }
        #expect(UnsafeRawBufferPointer(start: zeroed, count: 256).allSatisfy { $0 == 0 })
        tag.free(zeroed, size: 256)
        let s = tag.statistics
        #expect(s.buffersInUse == 3 && s.bytesInUse == 192 && s.peakBytes == 448 && s.allocations == 4 && s.frees == 1, "\(s)")
        tag.free(buffers.removeLast(), size: 64)
        let checked = tag.check()
        #expect(checked == 2)
        let outstanding = tag.destroy()
        #expect(outstanding == 2)
        for b in buffers { Slabguard.free(b, size: 64) }
        guard let clean = Tag(name: "clean") else { Issue.record("no tag"); return }
        if let p = clean.allocate(10) { clean.free(p, size: 10) }
        let cleanCheck = clean.check()
        let cleanDestroy = clean.destroy()
        #expect(cleanCheck == 0 && cleanDestroy == 0)
    }

    /// In debug mode a plugin's buffers are charged to the plugin even when libc made them
    /// (strdup), and without `audit` its leaks at unload are still found and named.
    /// `modules` alone (design §3) turns the unload checks on; `leaks` alone does not.
    @Test(arguments: ["default", "deadbeef,redzone,leaks,modules", "modules"])
    func aPluginsBuffersAreChargedToThePlugin(_ debug: String) throws {
        let folder = try Subprocess.temporaryFolder("tag-library")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try Self.compile("lib_plugin", into: folder, output: "libtagplugin.so")
        let host = try Self.compile("lib_host", into: folder)
        let run = try Self.run(host, [plugin], debug: debug, directory: folder)
        #expect(run.status == 1 && run.stdout.hasSuffix("unloaded\n"), "\(run.stdout) \(run.stderr)")
        #expect(Self.statisticsLine(run.stdout, "libtagplugin.so") == ["library", "2", "18", "18", "2", "0"], "\(run.stdout)")
        let leaks = run.stderr.components(separatedBy: "slabguard: leak at unload: 1 buffer, ").count - 1
        #expect(leaks == 2 && run.stderr.contains("bytes allocated by \(plugin) not freed"), "\(run.stderr)")
        #expect(!run.stderr.contains("stale pointer"), "the loader's own records are not stale pointers: \(run.stderr)")
        if debug == "default" { #expect(run.stderr.contains("plugin_start+0x"), "\(run.stderr)") }
    }

    @Test func leaksAloneLeavesUnloadsUnchecked() throws {
        let folder = try Subprocess.temporaryFolder("tag-library-leaks-only")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try Self.compile("lib_plugin", into: folder, output: "libtagplugin.so")
        let host = try Self.compile("lib_host", into: folder)
        let run = try Self.run(host, [plugin], debug: "leaks", directory: folder)
        #expect(run.stdout.hasSuffix("unloaded\n") && !run.stderr.contains("leak at unload"), "\(run.stderr)")
    }

    /// Library counters are per thread: 40 threads (more than the 16 own slots, with
    /// slots given back and taken again as threads end) leave them exact.
    @Test func libraryCountersStayExactAcrossManyThreads() throws {
        let folder = try Subprocess.temporaryFolder("tag-library-threads")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try Self.compile("lib_plugin", into: folder, output: "libtagplugin.so")
        let host = try Self.compile("lib_host", into: folder)
        let run = try Self.run(host, [plugin, "threads"], debug: "deadbeef,redzone,leaks,modules", directory: folder)
        #expect(run.stdout.hasSuffix("unloaded\n"), "\(run.stdout) \(run.stderr)")
        let line = try #require(Self.statisticsLine(run.stdout, "libtagplugin.so"), "\(run.stdout)")
        #expect(line.count == 6 && line[0] == "library" && line[1] == "2" && line[2] == "18" && line[4] == "40002" && line[5] == "40000",
                "\(run.stdout)")
        // The peak is sampled: at least the 18 bytes and one 32-byte buffer, at most 8 threads' worth.
        #expect(line.count == 6 && (50...(18 + 8 * 32)).contains(Int(line[3]) ?? 0), "\(run.stdout)")
    }

    /// dlopen is interposed without changing what it finds: a bare file name is still
    /// searched in the host's DT_RUNPATH ($ORIGIN/lib), which glibc takes from the caller.
    @Test func dlopenStillSearchesTheCallersRunpath() throws {
        let folder = try Subprocess.temporaryFolder("tag-runpath")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("lib"), withIntermediateDirectories: true)
        _ = try Self.compile("lib_plugin", into: folder, output: "lib/libtagplugin.so")
        let host = try Self.compile("lib_host", into: folder, flags: ["-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib"])
        for name in ["libtagplugin.so", "$ORIGIN/lib/libtagplugin.so"] {
            let run = try Self.run(host, [name], debug: "default", directory: folder)
            // (It loads, runs, and leaks at unload: status 1.)
            #expect(run.status == 1 && run.stdout.hasSuffix("unloaded\n") && run.stderr.contains("leak at unload"),
                    "\(name): \(run.stdout) \(run.stderr)")
        }
    }

    /// The flight recorder learns of a library at its dlopen: a process killed right after
    /// loading a plugin leaves a log whose module map has it (nothing ran at exit).
    @Test func aLibraryIsInTheLogFromItsDlopen() throws {
        let folder = try Subprocess.temporaryFolder("tag-dlopen-log")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try Self.compile("lib_plugin", into: folder, output: "libtagplugin.so")
        let host = try Self.compile("open_and_die", into: folder)
        let log = folder.appendingPathComponent("run.log").path
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", log, "--", host, plugin], directory: folder.path, timeout: 120)
        #expect(run.status == 137, "\(run.stderr)")
        let info = try LogCommandTests.log(["info", log])
        #expect(info.status == 0 && info.stdout.contains("1 loaded and 0 unloaded during the run") && info.stdout.contains(plugin),
                "\(info.stdout) \(info.stderr)")
    }

    /// Per-tag statistics reach the log's kmastat (written at exit): the plugin's library tag.
    @Test func libraryTagsAreInTheLogsKmastat() throws {
        let folder = try Subprocess.temporaryFolder("tag-kmastat")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try Self.compile("lib_plugin", into: folder, output: "libtagplugin.so")
        let host = try Self.compile("lib_host", into: folder)
        let log = folder.appendingPathComponent("run.log").path
        _ = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", log, "--", host, plugin], directory: folder.path, timeout: 120)
        let kmastat = try LogCommandTests.log(["kmastat", log])
        #expect(kmastat.status == 0, "\(kmastat.stderr)")
        #expect(Self.statisticsLine(kmastat.stdout, "libtagplugin.so")?.first == "library", "\(kmastat.stdout)")
        let json = try LogCommandTests.log(["kmastat", "--json", log])
        let tags = json.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["tag"] != nil }
        #expect(tags.contains { $0["tag"] as? String == "libtagplugin.so" && $0["kind"] as? String == "library"
                                && $0["in_use"] as? Int == 2 && $0["bytes_in_use"] as? Int == 18 }, "\(json.stdout)")
    }
}
