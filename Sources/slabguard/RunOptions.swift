// The options `slabguard run` and `slabguard hunt` share (an ArgumentParser option
// group), their checks, and what both do before the program starts.
//
// The program inherits this process's environment with these changes:
// LD_PRELOAD gets libslabguard_rt.so in front (any libraries already there
// stay preloaded after it); SLABGUARD_DEBUG is set from --debug (default:
// `default`, every check; `--debug none` is fast mode) plus --log, --json,
// --error-exitcode and --suppressions; an inherited SLABGUARD_DEBUG is used
// when --debug is not given.
//
// Options are checked before the program starts (design §10): a bad --debug
// word, an unwritable --log, a missing or malformed suppressions file is one
// line naming the flag as it was written, and exit status 2.

import ArgumentParser
import Glibc
import SlabguardCore

struct RunOptions: ParsableArguments {
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

    @Flag(name: .long, help: "No line at the start saying what runs ('slabguard: checking …', printed by run when standard error is a terminal; 'slabguard: hunting …').")
    var quiet = false

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The program to run and its arguments, after --.", valueName: "program"))
    var command: [String] = []

    /// The environment and options a run starts the program with.
    struct Prepared {
        var library: String
        var environment: [String: String]
        var text: String            // SLABGUARD_DEBUG
        var parsed: DebugOptions

        /// "default", or "none: fast mode, no checks".
        var label: String { parsed.isEnabled ? parsed.description : "none: fast mode, no checks" }
    }

    /// The checks of the command line both commands make (their `validate`): `name` is
    /// the subcommand, for the messages; `help` the command whose help -h shows.
    mutating func validateCommand(_ name: String, help: ParsableCommand.Type) throws {
        // Everything from the program on is captured verbatim, so an option this command
        // does not know arrives here first: report it rather than try to run it.
        if command.first == "-h" || command.first == "--help" { throw CleanExit.helpRequest(help) }
        if let first = command.first, first != "--", first.hasPrefix("-") {
            throw ValidationError("unknown option '\(first)' (the program and its arguments go after --)")
        }
        if command.first == "--" { command.removeFirst() }
        if command.isEmpty {
            throw ValidationError("no program given: slabguard \(name) [options] -- PROGRAM [ARGS...]")
        }
        if command[0].isEmpty { throw ValidationError("the program name is empty") }
    }

    /// Locates the library, checks the options and builds the program's environment; says
    /// (one line each) why the preload cannot reach the program, if it cannot.
    func prepare() throws -> Prepared {
        let library = try LibraryLocator.require()
        var environment = ProgramRunner.currentEnvironment()
        environment["LD_PRELOAD"] = Run.preloadValue(library: library, existing: environment["LD_PRELOAD"])
        let options = try checkedOptions(inherited: environment["SLABGUARD_DEBUG"])
        environment["SLABGUARD_DEBUG"] = options.text
        // A program the preload cannot reach is said, then run as asked.
        if let executable = ExecutableCheck.resolve(command[0], path: environment["PATH"]) {
            for problem in ExecutableCheck.problems(executable: executable, named: command[0]) { printError(problem) }
        }
        return Prepared(library: library, environment: environment, text: options.text, parsed: options.parsed)
    }

    /// The run's status from the program's: when that is 0 but something was reported,
    /// --error-exitcode (or the options' exitcode=, default 1).
    func status(_ status: Int32, sawReports: Bool, _ parsed: DebugOptions) -> Int32 {
        // The run's status, not the program's: the program and its children keep theirs.
        if status == 0 && sawReports { return Int32(errorExitCode ?? parsed.effectiveExitCode) }
        return status
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

}
