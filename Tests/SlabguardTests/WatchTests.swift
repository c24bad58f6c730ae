// `watch[=N]` and hunt's site watchpoints (issue 20 items 4 and 5's library side): the
// CPU's debug registers through perf_event_open, a write into a watched freed buffer
// reported at the instruction in the writing thread.  Programs in Tests/Integration/watch,
// compiled at -O0 during the test.

import Foundation
import Testing

@Suite("watch: CPU watchpoints on freed buffers", .timeLimit(.minutes(5)))
struct WatchTests {
    static let sources = ReleaseBuild.integrationSources.appendingPathComponent("watch")

    static func compile(_ name: String, into folder: URL) throws -> String {
        try LogCommandTests.compile(name, into: folder, flags: ["-pthread"], sources: sources)
    }

    static func preloaded(_ debug: String, hunt: String? = nil) throws -> [String: String] {
        var environment = try PreloadTests.preloaded()
        environment["SLABGUARD_DEBUG"] = debug
        if let hunt { environment["SLABGUARD_HUNT"] = hunt }
        return environment
    }

    /// The line of `text` after the line containing `label`: a stack's first frame.
    static func firstFrame(after label: String, in text: String) -> String? {
        let lines = text.split(separator: "\n").map(String.init)
        guard let i = lines.firstIndex(where: { $0.contains(label) }), i + 1 < lines.count else { return nil }
        return lines[i + 1]
    }

    /// A worker writes into a buffer main freed 40 ms earlier, whether the worker existed
    /// at the free or was created after it: the write is reported at the instruction, in
    /// the worker's function, with the buffer's free and allocation stacks.  Without
    /// `watch` the same write is found only at exit, with no line for the writer.
    @Test(arguments: ["before", "after"])
    func staleWriteFromAnotherThreadIsNamed(when: String) throws {
        let folder = try Subprocess.temporaryFolder("watch-late")
        let program = try Self.compile("late_writer", into: folder)
        let watched = try Subprocess.run(program, [when], environment: try Self.preloaded("default,watch,noabort"), timeout: 30)
        #expect(watched.stdout.contains("done"), "\(watched.stderr)")
        #expect(watched.stderr.contains("slabguard: use-after-free: write at 0x"), "\(watched.stderr)")
        #expect(watched.stderr.contains(", offset 0x0 into buffer of 48 bytes"), "\(watched.stderr)")
        let writer = Self.firstFrame(after: "written by thread", in: watched.stderr) ?? ""
        #expect(writer.contains("bump_later"), "the first frame of the write is the worker's: \(watched.stderr)")
        #expect(Self.firstFrame(after: "last freed by thread", in: watched.stderr)?.contains("main") == true)
        let plain = try Subprocess.run(program, [when], environment: try Self.preloaded("default,noabort"), timeout: 30)
        #expect(!plain.stderr.contains("use-after-free"), "\(plain.stderr)")
        #expect(plain.stderr.contains("buffer modified after being freed"), "found later without watch: \(plain.stderr)")
        #expect(!plain.stderr.contains("written by thread"))
    }

    /// A correct program that frees and reuses buffers in four threads, every register
    /// moving every millisecond: nothing is reported (a reused buffer is never watched),
    /// and the output is glibc's.
    @Test func correctProgramIsNotReported() throws {
        let folder = try Subprocess.temporaryFolder("watch-churn")
        let program = try Self.compile("churn", into: folder)
        let plain = try Subprocess.run(program, [], timeout: 60)
        let watched = try Subprocess.run(program, [], environment: try Self.preloaded("default,watch=1"), timeout: 120)
        #expect(watched.status == 0 && !watched.signaled, "\(watched.stderr)")
        #expect(watched.stdout == plain.stdout)
        #expect(!watched.stderr.contains("slabguard: "), "\(watched.stderr)")
    }

    /// The program's own SIGTRAP handler keeps its traps (the drop-in's sigaction keeps it
    /// behind ours; a trap that is not a watchpoint's goes to it).
    @Test func programsOwnTrapHandlerStillRuns() throws {
        let folder = try Subprocess.temporaryFolder("watch-trap")
        let program = try Self.compile("own_trap", into: folder)
        let plain = try Subprocess.run(program, [], timeout: 20)
        let watched = try Subprocess.run(program, [], environment: try Self.preloaded("default,watch=1"), timeout: 20)
        #expect(plain.stdout == "traps 4\n")
        #expect(watched.stdout == plain.stdout, "\(watched.stderr)")
        #expect(watched.status == 0 && !watched.stderr.contains("slabguard: "), "\(watched.stderr)")
    }

    /// Where perf_event_open is refused (a seccomp filter here, as a sandbox or
    /// perf_event_paranoid 3 would): one line, and the run goes on as `default`.
    @Test func refusedWatchpointsAreOneLineAndTheRunGoesOn() throws {
        let folder = try Subprocess.temporaryFolder("watch-refused")
        let program = try Self.compile("late_writer", into: folder)
        let wrapper = try Self.compile("no_perf", into: folder)
        let refused = try Subprocess.run(wrapper, [program, "before"], environment: try Self.preloaded("default,watch,noabort"), timeout: 30)
        #expect(refused.stdout.contains("done"), "\(refused.stderr)")
        let lines = refused.stderr.split(separator: "\n").filter { $0.hasPrefix("slabguard: watch is off") }
        #expect(lines.count == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("buffer modified after being freed"), "still found at exit: \(refused.stderr)")
        #expect(!refused.stderr.contains("use-after-free"))
    }

    /// Hunt's overrun site: the first run (ASLR off) finds a 1-byte overrun at free, with
    /// the buffer's allocation stack; a replay with SLABGUARD_HUNT=overrun:OFFSET:ADDRS
    /// names the instruction that wrote it.
    @Test func huntedOverrunIsNamedAtTheInstruction() throws {
        let folder = try Subprocess.temporaryFolder("watch-hunt")
        let program = try Self.compile("overrun_site", into: folder)
        let setarch = try Subprocess.requireTool("setarch")
        let first = try Subprocess.run(setarch, ["-R", program], environment: try Self.preloaded("default,noabort,report=json"), timeout: 30)
        let report = try #require(first.stderr.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.first { ($0["report"] as? String)?.hasPrefix("redzone violation") == true }, "\(first.stderr)")
        let offset = try #require(report["offset"] as? Int)
        let frames = try #require((report["allocation_stack"] as? [String: Any])?["frames"] as? [[String: Any]])
        let addresses = frames.prefix(2).compactMap { $0["address"] as? String }
        #expect(addresses.count == 2)
        let site = "overrun:0x\(String(offset, radix: 16)):\(addresses.joined(separator: ","))"
        let replay = try Subprocess.run(setarch, ["-R", program], environment: try Self.preloaded("default,noabort", hunt: site), timeout: 30)
        #expect(replay.stderr.contains("(a CPU watchpoint, at the instruction)"), "\(site)\n\(replay.stderr)")
        let writer = Self.firstFrame(after: "written by thread", in: replay.stderr) ?? ""
        #expect(writer.contains(" main+"), "\(replay.stderr)")
        // The instruction is the store on the overrun's line.
        let moduleOffset = writer.components(separatedBy: "+0x").last?.components(separatedBy: ")").first ?? ""
        let store = try #require(UInt(moduleOffset, radix: 16), "\(writer)") - 1   // the frame is the instruction after the store
        let line = try Subprocess.run(try Subprocess.requireTool("addr2line"), ["-e", program, "0x" + String(store, radix: 16)])
        #expect(line.stdout.contains("overrun_site.c:13"), "\(line.stdout) for \(writer)")
    }

    /// Hunt's freed site: the worker's write is watched at the free of that site's buffer,
    /// whatever the time since the last move.
    @Test func huntedFreedSiteIsWatchedAtEveryFree() throws {
        let folder = try Subprocess.temporaryFolder("watch-hunt-freed")
        let program = try Self.compile("late_writer", into: folder)
        let setarch = try Subprocess.requireTool("setarch")
        let first = try Subprocess.run(setarch, ["-R", program, "before"], environment: try Self.preloaded("default,noabort,report=json"), timeout: 30)
        let report = try #require(first.stderr.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.first { ($0["report"] as? String) == "buffer modified after being freed" }, "\(first.stderr)")
        let frames = try #require((report["allocation_stack"] as? [String: Any])?["frames"] as? [[String: Any]])
        let site = "freed:0x\(String(report["offset"] as? Int ?? -1, radix: 16)):\(frames.prefix(1).compactMap { $0["address"] as? String }.joined())"
        let replay = try Subprocess.run(setarch, ["-R", program, "before"], environment: try Self.preloaded("default,noabort", hunt: site), timeout: 30)
        #expect(replay.stderr.contains("slabguard: use-after-free: write at"), "\(site)\n\(replay.stderr)")
        #expect(Self.firstFrame(after: "written by thread", in: replay.stderr)?.contains("bump_later") == true)
    }
}
