// `slabguard hunt` — the culprit (design §12): runs a program as `slabguard run`
// does; when the run reports damage found after the fact (a freed buffer's
// 0xdeadbeef changed, a redzone found damaged at free or verification, a fatal
// signal through a freed buffer), runs it again — same arguments, environment,
// working directory and standard input (HuntInput.swift), address randomization
// off — with SLABGUARD_HUNT naming the damaged buffer's allocation site and offset
// (HuntReport.swift).  The library then puts the CPU's watchpoints on the buffers
// allocated there and reports the write at the instruction, with the writing
// thread's stack ("written by thread").  Up to --tries replays (default 3) until
// one names the writer; that replay's reports are printed, then one line naming
// the writing function and file:line.  When none does, one line says so and the
// first run's report stands.
//
// Reports reach the CLI on the report channel as `run`'s do; the first run's are
// printed as they come, a replay's are kept and printed only when it names the
// writer.  Between runs, one line says what happens.  Exit status: as `run`'s, for
// the run whose reports stand (the replay that named the writer, else the first).

import ArgumentParser
import CSlabguardShim
import Glibc
import SlabguardCore

struct Hunt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a program on slabguard; when it finds damage after the fact, replay the program with CPU watchpoints to name the instruction that did it.",
        usage: "slabguard hunt [--tries <n>] [--debug <options>] [--log <path>] [--json] [--suppressions <file>] [--error-exitcode <n>] [--quiet] -- <program> [<args> ...]",
        discussion: """
            The program runs as under `slabguard run` (--debug default unless told \
            otherwise; the options are run's).  When its run reports damage found after \
            the fact -- "buffer modified after being freed", "redzone violation: write past \
            end of buffer" found at free or verification, a fatal signal through a freed \
            buffer -- it is run again with the same arguments, environment, working \
            directory and standard input, and with CPU watchpoints on the damaged offset of \
            the buffers allocated where the damaged one was (SLABGUARD_HUNT).  The replay \
            then reports the write when it happens ("use-after-free: write at ..." or \
            "redzone violation: write past end of buffer", "written by thread"), and the \
            hunt names the writing function and file:line.  Up to --tries replays (default \
            3): a bug that shows only on some runs may need several.  When none \
            reproduces, the first run's report stands.  Address randomization is off for \
            every run (personality ADDR_NO_RANDOMIZE), so that the replays' code is where \
            the first run's was.  Watchpoints need perf_event_open (hardware breakpoints): \
            where the kernel refuses them, the hunt says it cannot name the writer.

            Standard input: a pipe is read to its end before the first run (up to 64 MiB) \
            and every run gets the same bytes through a pipe; beyond 64 MiB the first run \
            gets all of it and there is no replay.  A regular file is given to every run \
            rewound to where it stood.  A terminal is the first run's only: a replay reads \
            /dev/null (said when it happens).  Anything else is passed as it is.

            --log: every run writes the log; use %p in the path to keep each run's.

            Exit status: as for `slabguard run`, of the run whose reports stand (the replay \
            that named the writer, else the first run): the program's own, 128+N for signal \
            N, --error-exitcode (default 1) when it would be 0 but something was reported.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Replays at most (default 3).", valueName: "n"))
    var tries = 3

    @OptionGroup var options: RunOptions

    mutating func validate() throws {
        try options.validateCommand("hunt", help: Hunt.self)
        if !(1...100).contains(tries) { throw ValidationError("--tries \(tries): expected a number of replays from 1 to 100") }
    }

    func run() throws {
        let prepared = try options.prepare()
        if !options.quiet {
            printError("hunting \(options.command[0]) (\(prepared.label); replays up to \(tries))")
        }
        let hunter = Hunter(command: options.command, environment: prepared.environment, tries: tries,
                            input: HuntInput.standardInput(), rewrite: !prepared.parsed.flags.contains(.jsonReport))
        let outcome = hunter.hunt()
        throw ExitCode(options.status(outcome.status, sawReports: outcome.sawReports, prepared.parsed))
    }
}

/// The hunt itself: the first run, the replays, the words between them (also `slabguard demo`'s).
struct Hunter {
    var command: [String]
    var environment: [String: String]   // LD_PRELOAD and SLABGUARD_DEBUG set
    var tries: Int
    var input: HuntInput
    var rewrite = true                  // text reports (false: JSON)

    struct Outcome {
        var status: Int32                // the program's status in the run whose reports stand
        var sawReports: Bool
        var headlines: [String]          // the first run's reports' headlines (without "slabguard: ")
        var target: HuntTarget?          // what the replays watched
        var replayHeadlines: [String] = []   // the replay that named the writer
        var writer: ReportFrame?
    }

    /// One run's status and its channel (nil: no channel could be made; the run was made without).
    private func run(_ environment: [String: String], firstRun: Bool) -> (status: Int32, channel: ReportChannel?) {
        let channel = ReportChannel(rewrite: rewrite)
        channel?.keepsMessages = true
        channel?.echo = firstRun
        var programInput = input.prepare(firstRun: firstRun)
        if channel == nil, case .feed? = programInput { programInput = .nullDevice }   // a feed needs the pump
        let status = ProgramRunner.run(command, environment: environment, channel: channel, input: programInput)
        return (status, channel)
    }

    func hunt() -> Outcome {
        if let problem = AddressRandomization.disable() {
            say("cannot turn address randomization off (\(problem)): a replay may miss the allocation site")
        }
        var environment = self.environment
        environment["SLABGUARD_HUNT"] = nil
        let (status, channel) = run(environment, firstRun: true)
        guard let channel else {
            say("no report channel could be made (in $TMPDIR): the run's reports are above, nothing to replay")
            return Outcome(status: status, sawReports: true, headlines: [])
        }
        let reports = channel.messages.compactMap { ParsedReport($0.shown) }
        var outcome = Outcome(status: status, sawReports: channel.sawReports, headlines: reports.map(\.headline))
        guard let target = reports.lazy.compactMap({ HuntTarget($0) }).first else {
            say(reports.isEmpty ? "no damage found: nothing to replay"
                                : "no damage found after the fact (what was reported was found as it happened): nothing to replay")
            return outcome
        }
        outcome.target = target
        let damage = "damage found after the fact in \(target.buffer)"
        guard target.hasSite else {
            say("\(damage), but its allocation stack is not known (the debug options lack audit): nothing to replay")
            return outcome
        }
        if let problem = input.replayProblem {
            say("\(damage); no replay: \(problem)")
            return outcome
        }
        if let refusal = WatchProbe.problem() {
            say("\(damage); cannot name the writer here: \(refusal); the first run's report stands")
            return outcome
        }
        environment["SLABGUARD_HUNT"] = target.environmentValue
        for attempt in 1...tries {
            let note = input.replayNote.map { "; \($0)" } ?? ""
            if attempt == 1 {
                say("\(damage); replaying with \(target.watch) (try 1 of \(tries))\(note)")
            } else {
                say("replaying again (try \(attempt) of \(tries))")
            }
            let replay = run(environment, firstRun: false)
            guard let replayChannel = replay.channel else { break }
            let replayReports = replayChannel.messages.compactMap { ParsedReport($0.shown) }
            if let writer = replayReports.lazy.compactMap(\.writer).first {
                for message in replayChannel.messages { writeToStandardError(message.shown) }
                let thread = replayReports.first { $0.writer != nil }?.threads["fault_stack"].map { ", thread \($0)" } ?? ""
                say("the write was made by \(writer.place)\(thread) (found on try \(attempt) of \(tries))")
                outcome.status = replay.status
                outcome.sawReports = true
                outcome.replayHeadlines = replayReports.map(\.headline)
                outcome.writer = writer
                return outcome
            }
            let reported = replayReports.isEmpty ? "nothing" : replayReports.map(\.headline).joined(separator: "; ")
            say("try \(attempt) of \(tries) did not catch the write (the replay reported \(reported); \(Hunter.describe(replay.status)))")
        }
        say("no replay reproduced the damage in \(tries) \(tries == 1 ? "try" : "tries"): the first run's report stands")
        return outcome
    }

    static func describe(_ status: Int32) -> String {
        status > 128 ? "killed by signal \(status - 128)" : "exit status \(status)"
    }

    /// One line of the hunt's own, on standard error.
    func say(_ text: String) {
        printError("hunt: " + text)
    }
}

/// Whether the replays can have the CPU's watchpoints: the library's own checks
/// (Watchpoints.setUp), made here before a replay, since the library says it on the
/// program's standard error, which is the program's and not read here.
enum WatchProbe {
    /// Why a replay would run without watchpoints, or nil.
    static func problem() -> String? {
        if sg_system_calls_filtered() != 0 {
            return "a seccomp filter is in force, and perf_event_open (the CPU's watchpoints) could kill the program"
        }
        if let tracer = statusField("TracerPid"), tracer != "0" {
            return "a debugger (pid \(tracer)) is tracing slabguard, and its programs would stop at each watchpoint's trap"
        }
        var error: Int32 = 0
        let opened = sg_watch_open(&error)
        sg_watch_forget()
        guard opened > 0 else {
            let paranoid = readText("/proc/sys/kernel/perf_event_paranoid").map { "; kernel.perf_event_paranoid is \($0)" } ?? ""
            return "the kernel refuses CPU watchpoints (perf_event_open: \(String(cString: strerror(error)))\(paranoid))"
        }
        return nil
    }

    /// A field of /proc/self/status ("TracerPid" → "0").
    static func statusField(_ name: String) -> String? {
        guard let text = readText("/proc/self/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.dropFirst(name.count + 1).trimmingPrefix { $0 == " " || $0 == "\t" }.description
        }
        return nil
    }

    /// A small file's text, its last newline dropped.
    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let (bytes, _) = HuntInput.readAll(fd, bound: 1 << 16)
        var text = String(decoding: bytes, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}
