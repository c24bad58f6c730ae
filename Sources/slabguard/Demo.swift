// `slabguard demo` — shows slabguard catching the classic heap bugs, with no
// compiler needed: for each bug it runs this very executable again
// (/proc/self/exe) as `slabguard demo-victim BUG`, with libslabguard_rt.so
// preloaded and SLABGUARD_DEBUG=default, so the victim's malloc/free (Glibc's
// names, hence slabguard's under the preload) are checked.  The victim's
// reports come through the same channel and rewriting as `slabguard run`'s.
//
// Two cases are not victims run once: the timer's write after free is hunted
// (Hunter, HuntCommand.swift: the first run's report, then the replay naming the
// writing line), and the C++ mismatch is a program compiled here with g++ (skipped,
// not missed, without a compiler).
//
// Each case prints a short explanation, then the report.  The demo exits 0
// when every bug was caught (its report headline seen) or, for the
// uninitialized counter, shown (slabguard does not detect an uninitialized read:
// it fills new buffers with 0xbaddcafe, and the victim printed that pattern + 1),
// 1 otherwise.  The words say which: "caught" only where slabguard reported.

import ArgumentParser
import Glibc

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show slabguard catching classic memory bugs (no compiler needed).",
        discussion: """
            Runs nine small buggy programs on slabguard with --debug default: a write after \
            free, an overrun by one byte, a double free, an uninitialized counter, a leak, a \
            plugin (libslabguard_demo_plugin.so, beside the library) unloaded with memory it \
            never freed and with a hook of the program still pointing into it, a timer thread \
            writing into a freed session (hunted: the replay names the timer's writing line, \
            where the CPU's watchpoints are available), and a C++ new[] released with delete \
            (compiled with g++ when there is one, else skipped). Exit status 0 when every bug \
            was caught by a report, or for the uninitialized counter shown (new buffers are \
            filled with 0xbaddcafe, not checked: the wrong value is visible in the program's \
            output, but slabguard reports nothing).
            """
    )

    struct Case {
        var bug: String
        var title: String
        var explanation: String
        var expected: String   // headline, or "" when the victim's own exit status tells
        var mode = Mode.victim
    }

    enum Mode {
        case victim                  // `slabguard demo-victim BUG`, run once
        case hunt(writer: String)    // the victim hunted: the replay's headline naming the writer
        case cxx(source: String)     // a C++ program compiled here (skipped without a compiler)
    }

    static let cases: [Case] = [
        Case(bug: "write-after-free", title: "Write after free",
             explanation: "The program frees a 64-byte buffer, then writes into it and allocates again. Freed buffers are filled with 0xdeadbeef and held back a while (the quarantine); the pattern is checked when the buffer leaves the quarantine, when it is reused, and at exit.",
             expected: "slabguard: buffer modified after being freed"),
        Case(bug: "overrun", title: "Overrun by one byte",
             explanation: "The program asks for 13 bytes and writes 14. A 0xfeedface redzone follows the exact requested size and is checked at free.",
             expected: "slabguard: redzone violation: write past end of buffer"),
        Case(bug: "double-free", title: "Double free",
             explanation: "The program frees the same buffer twice. The buffer tag records its state, so the second free is caught.",
             expected: "slabguard: duplicate free: buffer freed twice"),
        Case(bug: "uninitialized", title: "Uninitialized counter",
             explanation: "The program mallocs a counter, forgets to set it to zero, and increments it. New buffers are filled with 0xbaddcafe, so the bug shows as a wild value in the program's output instead of a lucky 0 or 1. slabguard reports nothing here: the fill makes the bug visible, it does not detect the read.",
             expected: ""),
        Case(bug: "leak", title: "Leak at exit",
             explanation: "The program allocates 3 buffers, drops every pointer to them and exits. At exit, buffers no longer reachable from anywhere are reported with their allocating stacks.",
             expected: "slabguard: leak: "),
        Case(bug: "leak-at-unload", title: "Leak at unload",
             explanation: "A kernel driver was once unloaded with memory it never freed, and only a hand-written reference counter panicking at memck time noticed. Here the program loads a plugin, which keeps two buffers in its own data, and unloads it: at that dlclose, the buffers the plugin allocated that nothing outside it references are reported, with the plugin's function names.",
             expected: "slabguard: leak at unload: "),
        Case(bug: "stale-pointer", title: "Stale pointer into an unloaded plugin",
             explanation: "A tracer once kept pointers into a module's discarded init code in its patch list, and later wrote through them into memory another driver had been given. Here the program lets a plugin put its callback into the program's hook list, then unloads the plugin: at that dlclose, every place still pointing into it is named, with the function it points at, before anything calls it.",
             expected: "slabguard: stale pointer: "),
        Case(bug: "timer-write-after-free", title: "A timer writes into a freed session (the hunt)",
             explanation: "The bug behind this project: the main thread allocates a 64-byte session and starts a timer thread that writes into it 50 ms later, then frees it before the timer fires. The write lands in freed memory and is found later, at exit, by the 0xdeadbeef check: but which code wrote? slabguard hunt replays the program with the CPU's watchpoints on that word of the sessions allocated there, and names the instruction: the timer's function.",
             expected: "slabguard: buffer modified after being freed", mode: .hunt(writer: "slabguard: use-after-free: write at")),
        Case(bug: "cxx-mismatch", title: "C++: new[] released with delete",
             explanation: "A C++ program (compiled now with g++) allocates an array with new int[10] and releases it with delete instead of delete[]. slabguard records how each buffer was allocated, so the wrong release is caught at the delete.",
             expected: "slabguard: alloc-dealloc mismatch: buffer allocated by new[], freed by delete",
             mode: .cxx(source: """
                 #include <cstdio>
                 int main() {
                     int *counts = new int[10];
                     counts[0] = 1;
                     std::printf("counts[0] = %d\\n", counts[0]);
                     delete counts;   // BUG: new[] is released with delete[]
                     return 0;
                 }

                 """)),
    ]

    func run() throws {
        let library = try LibraryLocator.require()
        guard let exe = LibraryLocator.executablePath() else {
            printError("cannot read /proc/self/exe")
            throw ExitCode.failure
        }
        var environment = ProgramRunner.currentEnvironment()
        environment["LD_PRELOAD"] = Run.preloadValue(library: library, existing: environment["LD_PRELOAD"])
        environment["SLABGUARD_DEBUG"] = "default"
        environment["SWIFT_BACKTRACE"] = "enable=no"   // the victim is a Swift program: no crash dump after the report

        var missed: [String] = []
        var skipped: [String] = []
        for (index, demo) in Demo.cases.enumerated() {
            say("\n=== \(index + 1). \(demo.title) ===\n\(demo.explanation)\n")
            let victim = [exe, "demo-victim", demo.bug, Demo.pluginPath(besides: library)]
            switch demo.mode {
            case .victim: break
            case .hunt(let writer):
                if !hunt(demo, victim: victim, writer: writer, environment: environment) { missed.append(demo.title) }
                continue
            case .cxx(let source):
                switch compiled(source) {
                case .failure(let why):
                    say("--> skipped: \(why)\n")
                    skipped.append("\(demo.title) (\(why))")
                case .success(let program):
                    defer { Demo.remove(folderOf: program) }
                    say("$ slabguard run -- ./mismatch\n")
                    let channel = ReportChannel(rewrite: true)
                    let status = ProgramRunner.run([program], environment: environment, channel: channel)
                    let caught = (channel?.headlines ?? []).contains { $0.hasPrefix(demo.expected) }
                    say(caught ? "--> caught (\(Hunter.describe(status)))\n" : "--> NOT caught (\(Hunter.describe(status)))\n")
                    if !caught { missed.append(demo.title) }
                }
                continue
            }
            say("$ slabguard run -- victim \(demo.bug)\n")
            let channel = ReportChannel(rewrite: true)
            let status = ProgramRunner.run(victim, environment: environment, channel: channel)
            let reportHeadlinesSeen = channel?.headlines ?? []
            let caught: Bool
            if demo.expected.isEmpty {
                caught = status == 0 && reportHeadlinesSeen.isEmpty
            } else {
                caught = reportHeadlinesSeen.contains { $0.hasPrefix(demo.expected) }
            }
            let how = Hunter.describe(status)
            if demo.expected.isEmpty {
                // Nothing is reported for an uninitialized read: the fill makes it visible.
                say(caught ? "--> shown, not reported: the counter read 0xbaddcaff, the 0xbaddcafe fill plus one (\(how))\n"
                           : "--> NOT shown (\(how))\n")
            } else {
                say(caught ? "--> caught (\(how))\n" : "--> NOT caught (\(how))\n")
            }
            if !caught { missed.append(demo.title) }
        }
        if missed.isEmpty {
            let shown = Demo.cases.count - skipped.count
            let skips = skipped.isEmpty ? "" : " (skipped: \(skipped.joined(separator: ", ")))"
            say("\nAll \(shown) bugs shown: \(shown - 1) caught by a report, the uninitialized counter made visible "
                + "by the 0xbaddcafe fill\(skips). Try it on your own program: slabguard run -- PROGRAM ARGS..., "
                + "and slabguard hunt -- PROGRAM ARGS... to name the code behind damage found after the fact.\n")
        } else {
            say("\nMissed: \(missed.joined(separator: ", "))\n")
            throw ExitCode.failure
        }
    }

    /// The hunt case: the report of the first run, then the replay naming the writer (where
    /// the CPU's watchpoints are available: elsewhere the first report alone is the catch).
    func hunt(_ demo: Case, victim: [String], writer: String, environment: [String: String]) -> Bool {
        say("$ slabguard hunt -- victim \(demo.bug)\n")
        let outcome = Hunter(command: victim, environment: environment, tries: 3, input: .nullDevice).hunt()
        let how = Hunter.describe(outcome.status)
        let caught = outcome.headlines.contains { ("slabguard: " + $0).hasPrefix(demo.expected) }
        guard caught else { say("--> NOT caught (\(how))\n"); return false }
        if let frame = outcome.writer, outcome.replayHeadlines.contains(where: { ("slabguard: " + $0).hasPrefix(writer) }) {
            say("--> caught, and the hunt named the writer: \(frame.place) (\(how))\n")
            return true
        }
        if let problem = WatchProbe.problem() {
            say("--> caught (\(how)); the writer cannot be named on this machine: \(problem)\n")
            return true
        }
        say("--> caught, but the hunt did NOT name the writer (\(how))\n")
        return false
    }

    /// `source` compiled with g++ into a folder of its own (removed by the caller), or why not.
    func compiled(_ source: String) -> Result<String, CompileFailure> {
        guard let compiler = Tools.find("g++") ?? Tools.find("c++") else {
            return .failure(CompileFailure(description: "no C++ compiler (g++ or c++) on PATH"))
        }
        var template = Array("/tmp/slabguard-demo-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            return .failure(CompileFailure(description: "cannot make a folder in /tmp"))
        }
        let folder = String(cString: made)
        let file = folder + "/mismatch.cpp", program = folder + "/mismatch"
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            var text = source
            _ = text.withUTF8 { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        guard fd >= 0, Tools.capture(compiler, ["-O0", "-g", "-o", program, file]) != nil, access(program, X_OK) == 0 else {
            Demo.remove(folderOf: program)
            return .failure(CompileFailure(description: "\(compiler) could not compile the example"))
        }
        return .success(program)
    }

    struct CompileFailure: Error, CustomStringConvertible { var description: String }

    /// Removes the compiled example's folder (its source and program).
    static func remove(folderOf program: String) {
        let folder = String(program[..<(program.lastIndex(of: "/") ?? program.endIndex)])
        unlink(folder + "/mismatch.cpp")
        unlink(folder + "/mismatch")
        rmdir(folder)
    }

    /// The demo plugin, installed beside libslabguard_rt.so (a SwiftPM build folder, or PREFIX/lib).
    static func pluginPath(besides library: String) -> String {
        LibraryLocator.directory(of: library) + "/libslabguard_demo_plugin.so"
    }

    /// Writes to stdout at once (the victims write to the same terminal).
    func say(_ text: String) {
        print(text, terminator: "")
        fflush(nil)
    }
}

/// The buggy side of the demo; hidden.  Uses Glibc's malloc/free, which are
/// slabguard's when the demo runs it under the preload.
struct DemoVictim: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo-victim", shouldDisplay: false)

    @Argument var bug: String
    @Argument var plugin: String = ""

    // Called through pointers from dlsym so the optimizer cannot see (and fold away)
    // the undefined behaviour these bugs are made of.
    typealias MallocFunction = @convention(c) (Int) -> UnsafeMutableRawPointer?
    typealias FreeFunction = @convention(c) (UnsafeMutableRawPointer?) -> Void

    func function<T>(_ name: String, as type: T.Type) -> T {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { fatalError("no \(name)") }
        return unsafeBitCast(symbol, to: type)
    }

    func run() throws {
        let malloc = function("malloc", as: MallocFunction.self)
        let free = function("free", as: FreeFunction.self)
        switch bug {
        case "write-after-free":
            let p = malloc(64)!.assumingMemoryBound(to: UInt8.self)
            memset(p, 0x41, 64)
            free(p)
            p[8] = 0x42                        // BUG: the buffer was freed
            for _ in 0..<4 { keep(malloc(64)) } // reuse checks the 0xdeadbeef fill
        case "overrun":
            let p = malloc(13)!.assumingMemoryBound(to: UInt8.self)
            memset(p, 0x61, 14)                // BUG: one byte past the end
            free(p)
        case "double-free":
            let p = malloc(48)
            memset(p!, 0, 48)
            free(p)
            free(p)                            // BUG: second free
        case "uninitialized":
            let counter = malloc(4)!.assumingMemoryBound(to: UInt32.self)
            counter.pointee &+= 1              // BUG: never set to zero
            let value = counter.pointee
            print("counter = 0x\(String(value, radix: 16)) (expected 1)")
            free(counter)
            // 0xbaddcafe + 1: the fill shows through; exit 1 if it did not.
            throw ExitCode(value == 0xbaddcaff ? 0 : 1)
        case "timer-write-after-free":
            let session = malloc(64)!
            memset(session, 0, 64)
            var timer = pthread_t()
            pthread_create(&timer, nil, { DemoVictim.timerFires($0!); return nil }, session)
            free(session)                      // BUG: the timer still holds the session
            pthread_join(timer, nil)           // the write is found at exit
        case "leak":
            leakThree(malloc)
            scrubStack()
        case "leak-at-unload":
            let library = try open(plugin)
            try call(library, "demo_plugin_start")
            dlclose(library)                   // BUG: demo_plugin_stop never called
            print("plugin unloaded")
        case "stale-pointer":
            let library = try open(plugin)
            try call(library, "demo_plugin_start")
            demoHooks = malloc(16)             // the program's hook list, one slot
            memset(demoHooks!, 0, 16)
            typealias Register = @convention(c) (UnsafeMutableRawPointer?) -> Void
            guard let register = dlsym(library, "demo_plugin_register") else { throw ValidationError("no demo_plugin_register") }
            unsafeBitCast(register, to: Register.self)(demoHooks)
            try call(library, "demo_plugin_stop")
            dlclose(library)                   // BUG: the hook list still holds demo_plugin_tick
            print("plugin unloaded")
        default:
            throw ValidationError("unknown bug '\(bug)'")
        }
    }

    func open(_ path: String) throws -> UnsafeMutableRawPointer {
        guard let library = dlopen(path, RTLD_NOW) else {
            throw ValidationError("cannot load the demo plugin \(path): \(String(cString: dlerror()))")
        }
        return library
    }

    func call(_ library: UnsafeMutableRawPointer, _ name: String) throws {
        typealias Entry = @convention(c) () -> Void
        guard let entry = dlsym(library, name) else { throw ValidationError("no \(name) in the demo plugin") }
        unsafeBitCast(entry, to: Entry.self)()
    }

    /// The timer thread: 50 ms later, it marks the session expired.
    @inline(never) static func timerFires(_ session: UnsafeMutableRawPointer) {
        usleep(50_000)
        session.storeBytes(of: 0, toByteOffset: 8, as: Int.self)   // BUG: the session was freed
    }

    @inline(never) func keep(_ p: UnsafeMutableRawPointer?) {
        if let p { memset(p, 0, 1) }
    }

    @inline(never) func leakThree(_ malloc: MallocFunction) {
        for size in [100, 200, 300] {
            let p = malloc(size)!
            memset(p, 0x5a, size)             // BUG: the pointer is dropped, never freed
        }
    }

    /// Overwrites the dead stack below us, so stale copies of the pointers do not keep them reachable.
    @inline(never) func scrubStack() {
        var junk = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &junk) { _ = memset($0.baseAddress!, 0, $0.count) }
        withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 16) { _ = memset($0.baseAddress!, 0, $0.count) }
    }
}

/// The stale-pointer victim's hook list (a heap buffer the program keeps).
nonisolated(unsafe) var demoHooks: UnsafeMutableRawPointer?
