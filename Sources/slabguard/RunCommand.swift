// `slabguard run` — runs a program on slabguard, with the checks on.
//
// The program inherits this process's environment with these changes:
// LD_PRELOAD gets libslabguard_rt.so in front (any libraries already there
// stay preloaded after it); SLABGUARD_DEBUG is set from --debug (default:
// `default`, every check; `--debug none` is fast mode) plus --log, --json,
// --error-exitcode and --suppressions; an inherited SLABGUARD_DEBUG is used
// when --debug is not given.  SLABGUARD_REPORT_SOCKET names the report channel.
//
// Options are checked before the program starts (design §10): a bad --debug
// word, an unwritable --log, a missing or malformed suppressions file is one
// line naming the flag as it was written, and exit status 2.
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

    @Option(name: .customLong("debug"), help: ArgumentHelp("Debug options (default: 'default'; 'none' for no checks; sets SLABGUARD_DEBUG); given more than once, joined with ','.", valueName: "options"))
    var debugValues: [String] = []

    /// Every --debug value joined with ',' (the parser then reports any error as usual),
    /// nil when none was given.
    var debug: String? { debugValues.isEmpty ? nil : debugValues.joined(separator: ",") }

    @Option(name: .long, help: ArgumentHelp("Write the transaction log to <path> (adds log=<path>).", valueName: "path"))
    var log: String?

    @Flag(name: .long, help: "Write reports as JSON, one object per report (adds report=json).")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Stay silent about the reports this file matches (adds suppressions=<file>).", valueName: "file"))
    var suppressions: String?

    @Option(name: .customLong("error-exitcode"), help: ArgumentHelp("Exit status when the program exits 0 but something was reported (default 1; 0: keep the program's).", valueName: "n"))
    var errorExitCode: Int?

    @Flag(name: .long, help: "No 'slabguard: checking' line at the start (printed when standard error is a terminal).")
    var quiet = false

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
        var environment = ProgramRunner.currentEnvironment()
        environment["LD_PRELOAD"] = Run.preloadValue(library: library, existing: environment["LD_PRELOAD"])
        let options = try checkedOptions(inherited: environment["SLABGUARD_DEBUG"])
        environment["SLABGUARD_DEBUG"] = options.text
        // A program the preload cannot reach is said, then run as asked.
        if let executable = ExecutableCheck.resolve(command[0], path: environment["PATH"]) {
            for problem in ExecutableCheck.problems(executable: executable, named: command[0]) { printError(problem) }
        }
        if !quiet && isatty(2) != 0 {   // a terminal: say that slabguard is there (a clean run prints nothing else)
            writeToStandardError("slabguard: checking \(command[0]) (\(options.parsed.isEnabled ? options.parsed.description : "none: fast mode, no checks"))\n")
        }
        let channel = ReportChannel(rewrite: !options.parsed.flags.contains(.jsonReport))
        var status = ProgramRunner.run(command, environment: environment, channel: channel)
        // The run's status, not the program's: the program and its children keep theirs.
        if status == 0, let channel, channel.sawReports { status = Int32(errorExitCode ?? options.parsed.effectiveExitCode) }
        throw ExitCode(status)
    }

    /// The SLABGUARD_DEBUG value for the program, checked: any problem is one line naming
    /// the flag as the user wrote it, and exit status 2.
    func checkedOptions(inherited: String?) throws -> (text: String, parsed: DebugOptions) {
        // An option string with no word in it ('', ',,') would switch every check off:
        // a mistake on the command line (--debug none asks for fast mode).
        for value in debugValues where value.split(separator: ",").allSatisfy({ $0.allSatisfy(\.isWhitespace) }) {
            fail("--debug '\(value)': no option in it (--debug none is fast mode; --debug default every check)")
        }
        let source = debug != nil ? "--debug" : (inherited?.isEmpty == false ? "SLABGUARD_DEBUG" : "--debug")
        var words = [debug ?? (inherited?.isEmpty == false ? inherited! : "default")]
        if let log {
            if let problem = DebugControl.outputFileProblem(log) { fail("--log \(log): cannot write it: \(problem)") }
            words.append("log=\(log)")
        }
        if json { words.append("report=json") }
        if let code = errorExitCode, !(0...255).contains(code) {
            fail("--error-exitcode \(code): expected an exit status from 0 to 255")
        }
        if let file = suppressions {
            if let problem = DebugControl.suppressionsProblem(file) { fail("--suppressions \(file): \(problem)") }
            words.append("suppressions=\(Run.absolute(file))")
        }
        // "none" alone stays "none"; anything else is joined to it.
        if words.first == "none" && words.count > 1 { words[0] = "" }
        let text = words.filter { !$0.isEmpty }.joined(separator: ",")
        let parsed: DebugOptions
        do { parsed = try DebugOptions.parse(text, source: source) } catch {
            writeToStandardError(error.message + "\n")
            throw ExitCode(2)
        }
        if suppressions == nil && parsed.hasSuppressions {
            let file = parsed.withSuppressionsPath { String(cString: $0) }
            if let problem = DebugControl.suppressionsProblem(file) { fail("\(source) suppressions=\(file): \(problem)") }
        }
        if parsed.hasReportPath {
            let file = parsed.withReportPath { String(cString: $0) }
            if !file.contains("%p"), let problem = DebugControl.outputFileProblem(file) {
                fail("\(source) report_path=\(file): cannot write it: \(problem)")
            }
        }
        if log == nil && parsed.flags.contains(.log) {
            let file = parsed.withLogPath { String(cString: $0) }
            if !file.contains("%p"), let problem = DebugControl.outputFileProblem(file) {
                fail("\(source) log=\(file): cannot write it: \(problem)")
            }
        }
        return (text, parsed)
    }

    private func fail(_ message: String) -> Never {
        printError(message)
        Glibc.exit(2)
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
