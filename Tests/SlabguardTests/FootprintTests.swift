// Footprint: what the leak scan's world stop leaves visible to a correct program
// (issue 18, items 3 and 4).  The scan stops the other threads with ptrace through a
// helper task (sg_world_ptrace.c), signals only where ptrace is refused.  Each program
// in Tests/Integration/footprint runs first without slabguard (it is correct), then
// preloaded under `default`; each test failed with the signal-only stop.

import Foundation
import Testing

@Suite("Footprint of the world stop", .timeLimit(.minutes(5)))
struct FootprintTests {
    static let sources = ReleaseBuild.integrationSources.appendingPathComponent("footprint")

    /// Compiles footprint/NAME.c at -O0 into `folder` (a library with `shared`).
    static func compile(_ name: String, into folder: URL, shared: Bool = false) throws -> String {
        let cc = try Subprocess.requireTool("cc")
        let output = folder.appendingPathComponent(shared ? "lib\(name).so" : name).path
        let flags = shared ? ["-shared", "-fPIC"] : ["-pthread"]
        let result = try Subprocess.run(cc, ["-O0", "-g"] + flags + ["-o", output, sources.appendingPathComponent("\(name).c").path, "-ldl"])
        guard result.status == 0 else { throw ReleaseBuild.Failure(description: "cc \(name).c failed:\n\(result.stderr)") }
        return output
    }

    struct Run {
        var outcome: Subprocess.Outcome
        var seconds: Double
    }

    /// The program without slabguard, then preloaded under `default`: both runs.
    static func runBoth(_ program: String, _ arguments: [String] = [], folder: URL) throws -> (plain: Run, checked: Run) {
        func timed(_ environment: [String: String]) throws -> Run {
            let start = Date()
            let outcome = try Subprocess.run(program, arguments, environment: environment, directory: folder.path, timeout: 60)
            return Run(outcome: outcome, seconds: Date().timeIntervalSince(start))
        }
        let plain = try timed(Subprocess.cleanEnvironment())
        var environment = Subprocess.cleanEnvironment()
        environment["LD_PRELOAD"] = try ReleaseBuild.library()
        environment["SLABGUARD_DEBUG"] = "default"
        return (plain, try timed(environment))
    }

    static func expectOK(_ name: String, _ run: Run, clean: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = run.outcome
        #expect(!r.timedOut && !r.signaled, "\(name) hung or was killed: \(r.stderr.prefix(2000))", sourceLocation: sourceLocation)
        #expect(r.stdout.contains("ok \(name)"), "\(name) stdout: \(r.stdout) stderr: \(r.stderr.prefix(2000))", sourceLocation: sourceLocation)
        if clean {
            #expect(r.status == 0 && !r.stderr.contains("slabguard:"), "\(name): exit \(r.status), stderr: \(r.stderr.prefix(3000))",
                    sourceLocation: sourceLocation)
        }
    }

    /// Threads asleep in poll, select, nanosleep and epoll_wait (2 s) while main exits
    /// and while main unloads a library: every call returns 0 at its timeout.  The signal
    /// stop made all four return EINTR at 0.3 s.
    @Test(arguments: ["exit", "dlclose"]) func blockedCallsSeeNoEINTR(_ mode: String) throws {
        let folder = try Subprocess.temporaryFolder("footprint-calls")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("blocked_calls", into: folder)
        let library = try Self.compile("lib", into: folder, shared: true)
        let runs = try Self.runBoth(program, mode == "exit" ? ["exit"] : ["dlclose", library], folder: folder)
        Self.expectOK("blocked_calls", runs.plain)
        Self.expectOK("blocked_calls", runs.checked)
    }

    /// A thread that blocks every signal keeps the only pointer to a buffer in r12 while
    /// main exits: no leak (the signal stop parked it, its registers out of sight: a
    /// false `leak: 1 buffer, 777 bytes`).
    @Test func aPointerHeldOnlyInARegisterIsARoot() throws {
        let folder = try Subprocess.temporaryFolder("footprint-register")
        defer { try? FileManager.default.removeItem(at: folder) }
        let runs = try Self.runBoth(try Self.compile("register_only", into: folder), folder: folder)
        Self.expectOK("register_only", runs.plain)
        Self.expectOK("register_only", runs.checked)
    }

    /// A thread created with every signal blocked just before a dlclose: dlclose returns
    /// at once and the scan is done (the signal stop waited 1.6 s for it, never signalled).
    @Test func aThreadBornWithSignalsBlockedDoesNotStallDlclose() throws {
        let folder = try Subprocess.temporaryFolder("footprint-newthread")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("new_thread_dlclose", into: folder)
        let library = try Self.compile("lib", into: folder, shared: true)
        let runs = try Self.runBoth(program, [library], folder: folder)
        Self.expectOK("new_thread_dlclose", runs.plain)
        Self.expectOK("new_thread_dlclose", runs.checked)
        let took = runs.checked.outcome.stdout.split(separator: " ").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(took != nil && took! < 1000, "dlclose took \(took ?? -1) ms")
        #expect(!runs.checked.outcome.stderr.contains("leak check skipped"), "\(runs.checked.outcome.stderr)")
    }

    /// main ends with pthread_exit, a worker exits the process 0.2 s later: the exit
    /// checks run (the deliberate 1234-byte leak is reported, nothing else) without a
    /// stall (the signal stop waited 2 s for the zombie leader, then skipped the check).
    @Test func mainEndingWithPthreadExitKeepsTheExitChecks() throws {
        let folder = try Subprocess.temporaryFolder("footprint-leader")
        defer { try? FileManager.default.removeItem(at: folder) }
        let runs = try Self.runBoth(try Self.compile("leader_exit", into: folder), folder: folder)
        Self.expectOK("leader_exit", runs.plain)
        Self.expectOK("leader_exit", runs.checked, clean: false)
        let headlines = runs.checked.outcome.stderr.split(separator: "\n").filter { $0.hasPrefix("slabguard:") }
        #expect(headlines.first == "slabguard: leak: 1 buffer, 1234 bytes not freed", "\(runs.checked.outcome.stderr)")
        #expect(headlines.count == 2 && headlines.last?.hasPrefix("slabguard: summary: ") == true, "\(headlines)")
        #expect(runs.checked.seconds < 1.5, "took \(runs.checked.seconds) s")
    }

    /// A program that ignores SIGPWR still reads SIG_IGN after a scan at dlclose, and a
    /// child it execs inherits SIG_IGN — with ptrace, and with a tracer attached (a
    /// debugger: the signal fallback, which puts the program's action back).  The signal stop
    /// left its handler installed: "handled", and "default" in the child.
    @Test(arguments: ["", "traced"]) func aProgramsIgnoredSIGPWRStaysIgnored(_ mode: String) throws {
        let folder = try Subprocess.temporaryFolder("footprint-sigpwr")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("sigpwr_ign", into: folder)
        let library = try Self.compile("lib", into: folder, shared: true)
        let runs = try Self.runBoth(program, mode.isEmpty ? [library] : [library, mode], folder: folder)
        for run in [runs.plain, runs.checked] {
            Self.expectOK("sigpwr_ign", run)
            #expect(run.outcome.stdout == "after dlclose: SIGPWR ignored\nchild: SIGPWR ignored\nok sigpwr_ign\n", "\(run.outcome.stdout)")
        }
    }

    /// With a tracer attached (a debugger: no ptrace stop possible), the leak check still
    /// runs, through signals: the deliberate 4321-byte leak is reported.
    @Test func theSignalFallbackStillFindsLeaks() throws {
        let folder = try Subprocess.temporaryFolder("footprint-fallback")
        defer { try? FileManager.default.removeItem(at: folder) }
        let runs = try Self.runBoth(try Self.compile("fallback_leak", into: folder), folder: folder)
        Self.expectOK("fallback_leak", runs.plain)
        Self.expectOK("fallback_leak", runs.checked, clean: false)
        let headlines = runs.checked.outcome.stderr.split(separator: "\n").filter { $0.hasPrefix("slabguard:") }
        #expect(headlines.first == "slabguard: leak: 1 buffer, 4321 bytes not freed", "\(runs.checked.outcome.stderr)")
        #expect(headlines.count == 2, "\(headlines)")
    }
}
