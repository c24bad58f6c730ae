// `slabguard run` — runs a program on slabguard, with the checks on.
//
// The options, their checks and the program's environment (LD_PRELOAD,
// SLABGUARD_DEBUG) are RunOptions.swift's, shared with `slabguard hunt`.
// SLABGUARD_REPORT_SOCKET names the report channel.
//
// The program's standard streams are its own, exactly as given to slabguard.
// Reports come on a channel of their own (ReportChannel.swift) and are printed
// on slabguard's standard error, text reports symbolized (demangled names,
// file:line).  Exit status: the program's own, or 128+N for signal N; when
// that is 0 but slabguard reported something, --error-exitcode (default 1).

import ArgumentParser
import Glibc
import SlabguardCore

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a program with slabguard as its malloc, every check on.",
        usage: "slabguard run [--debug <options>] [--log <path>] [--json] [--suppressions <file>] [--error-exitcode <n>] [--quiet] -- <program> [<args> ...]",
        discussion: """
            Checks are on by default (--debug default: use-after-free, overruns, double and \
            invalid frees, leaks; new buffers are filled with 0xbaddcafe so that a read of \
            memory never written shows as a wrong value: it is not reported); --debug none \
            runs on the fast allocator with no checks.  --debug may be given more than once: \
            the values are joined with ','.

            Exit status: the program's own, or 128+N when signal N killed it (134 for an \
            abort after a slabguard report); when it would be 0 but slabguard reported \
            something (leaks, noabort reports), 1 or --error-exitcode N (0 keeps the \
            program's status).  2 for a bad option, 127 when the program cannot be found, \
            126 when it cannot be executed, 64 for a usage error.

            Debug options (comma-separated):
            \(DebugOptions.wordHelp)

            Suppressions: one KIND:PATTERN per line (# comments), KIND one of leak, \
            modified, redzone, free, use-after-free, mismatch, unload, stale, tag or *, PATTERN a \
            glob matched against the function and library names in the report's stacks.
            """
    )

    @OptionGroup var options: RunOptions

    mutating func validate() throws {
        try options.validateCommand("run", help: Run.self)
    }

    func run() throws {
        let prepared = try options.prepare()
        if !options.quiet && isatty(2) != 0 {   // a terminal: say that slabguard is there (a clean run prints nothing else)
            writeToStandardError("slabguard: checking \(options.command[0]) (\(prepared.label))\n")
        }
        let channel = ReportChannel(rewrite: !prepared.parsed.flags.contains(.jsonReport))
        let status = ProgramRunner.run(options.command, environment: prepared.environment, channel: channel)
        throw ExitCode(options.status(status, sawReports: channel?.sawReports ?? false, prepared.parsed))
    }

    /// The program may change directory: files named for the library are made absolute.
    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + path
    }

    /// `library` first, then whatever was preloaded before (without a second copy of ours).
    static func preloadValue(library: String, existing: String?) -> String {
        let others = (existing ?? "")
            .split(whereSeparator: { $0 == ":" || $0 == " " })
            .map(String.init)
            .filter { $0 != library }
        return ([library] + others).joined(separator: ":")
    }
}
