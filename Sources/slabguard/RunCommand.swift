// `slabguard run` — runs a program on slabguard.
//
// The program inherits this process's environment with two changes:
// LD_PRELOAD gets libslabguard_rt.so in front (any libraries already there
// stay preloaded after it), and SLABGUARD_DEBUG is set from --debug, --log
// and --json (each adds words to the option string; without any of them an
// inherited SLABGUARD_DEBUG is passed on unchanged).  The option string is
// checked by the library when the program starts: a bad word there is one
// line on stderr and exit status 2 (design §3).
//
// Standard input and output are the program's own (inherited file
// descriptors).  Standard error goes through a pipe read line by line
// (StderrFilter.swift): ordinary lines are passed on unchanged and at once;
// slabguard's text reports get their stack frames symbolized — demangled
// names and file:line (ReportSymbolizer.swift).  JSON reports pass unchanged.

import ArgumentParser
import Glibc

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a program with slabguard as its malloc.",
        usage: "slabguard run [--debug <options>] [--log <path>] [--json] -- <program> [<args> ...]",
        discussion: """
            Exit status: the program's own, or 128+N when signal N killed it (134 for an \
            abort after a slabguard report); 127 when the program cannot be found, 126 when \
            it cannot be executed, 64 for a usage error.

            Debug options (comma-separated): default, deadbeef, redzone, uninit, audit[=N], \
            contents[=N], quarantine=SIZE, guards, sample=N, verify=N, leaks, noabort, \
            log=PATH, report=text|json, none.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Debug options, e.g. 'default' or 'redzone,audit=8' (sets SLABGUARD_DEBUG).", valueName: "options"))
    var debug: String?

    @Option(name: .long, help: ArgumentHelp("Write the transaction log to <path> (adds log=<path>).", valueName: "path"))
    var log: String?

    @Flag(name: .long, help: "Write reports as JSON, one object per report (adds report=json).")
    var json = false

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The program to run and its arguments, after --.", valueName: "program"))
    var command: [String] = []

    mutating func validate() throws {
        // Everything from the program on is captured verbatim, so an option this command
        // does not know arrives here first: report it rather than try to run it.
        if command.first == "-h" || command.first == "--help" { throw CleanExit.helpRequest(self) }
        if let first = command.first, first != "--", first.hasPrefix("-") {
            throw ValidationError("unknown option '\(first)' (the program and its arguments go after --)")
        }
        if command.first == "--" { command.removeFirst() }
        if command.isEmpty {
            throw ValidationError("no program given: slabguard run [options] -- PROGRAM [ARGS...]")
        }
        if command[0].isEmpty { throw ValidationError("the program name is empty") }
    }

    func run() throws {
        let library = try LibraryLocator.require()
        if let log { OutputFiles.require(log, flag: "--log") }
        var environment = ProgramRunner.currentEnvironment()
        environment["LD_PRELOAD"] = Run.preloadValue(library: library, existing: environment["LD_PRELOAD"])
        if let options = debugOptions(inherited: environment["SLABGUARD_DEBUG"]) {
            environment["SLABGUARD_DEBUG"] = options
        }
        let json = json || (environment["SLABGUARD_DEBUG"] ?? "").contains("report=json")
        let status = ProgramRunner.run(command, environment: environment, filterStderr: true, rewrite: !json)
        throw ExitCode(status)
    }

    /// The SLABGUARD_DEBUG value the options ask for, or nil to leave the environment alone.
    func debugOptions(inherited: String?) -> String? {
        var words: [String] = []
        if let debug { words.append(debug) }
        if let log { words.append("log=\(log)") }
        if json { words.append("report=json") }
        if words.isEmpty { return nil }
        if debug == nil, let inherited, !inherited.isEmpty { words.insert(inherited, at: 0) }
        return words.joined(separator: ",")
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
