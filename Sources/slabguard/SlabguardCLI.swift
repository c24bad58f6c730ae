// slabguard — the command-line front end.
//
//   slabguard run [--debug S] [--log PATH] [--json] -- PROGRAM [ARGS...]
//   slabguard hunt [--tries N] [run options] -- PROGRAM [ARGS...]   (HuntCommand.swift: the culprit)
//   slabguard log info|kmalog FILE ...   (LogCommand.swift: the flight recorder read back)
//   slabguard libpath
//   slabguard demo     (Demo.swift: classic bugs caught, no compiler needed)
//
// `run` starts PROGRAM with libslabguard_rt.so preloaded (so every malloc of
// the program, its libraries and its children runs on slabguard) and
// SLABGUARD_DEBUG set from the options; it exits with the program's own
// status, or 128+N when signal N killed it.  `libpath` prints where that
// library is: next to this executable (a build folder) or in ../lib of an
// install prefix (LibraryLocator.swift).
//
// Exit statuses of the CLI itself: 64 for a usage error (ArgumentParser's
// EX_USAGE: unknown flag, missing program), 127 when the program cannot be
// found, 126 when it cannot be executed, 1 when the library cannot be found.
// Every error is one line on stderr beginning with "slabguard:".

import ArgumentParser
import Glibc

@main
struct SlabguardCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slabguard",
        abstract: "A debugging slab memory allocator: run any program on it, no recompiling.",
        discussion: """
            Run a program on slabguard's allocator with every check on (use-after-free, \
            overruns, double and invalid frees, leaks; new buffers filled with 0xbaddcafe \
            so that uninitialized reads show): \
            `slabguard run -- PROGRAM ARGS...`; `--debug none` for the fast allocator with \
            no checks.  `slabguard hunt -- PROGRAM ARGS...` runs it too and, when damage is \
            found after the fact, replays it with CPU watchpoints to name the instruction \
            that did it.  Or preload the library yourself: \
            SLABGUARD_DEBUG=default LD_PRELOAD=$(slabguard libpath) PROGRAM.
            """,
        version: "slabguard 0.9.0",
        subcommands: [Run.self, Hunt.self, Log.self, Stat.self, Top.self, Leaks.self, LibPath.self, Demo.self, DemoVictim.self]
    )

    static let subcommandNames = ["run", "hunt", "log", "stat", "top", "leaks", "libpath", "demo", "demo-victim", "help"]

    /// A first argument that is neither a flag nor a subcommand is a typo'd subcommand:
    /// said as such (ArgumentParser would call it an unexpected argument).
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        if let first = arguments.first, !first.hasPrefix("-"), !subcommandNames.contains(first) {
            printError("unknown subcommand '\(first)' (subcommands: run, hunt, log, stat, top, leaks, libpath, demo; see slabguard --help)")
            Glibc.exit(64)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Prints `slabguard: MESSAGE` on standard error.
func printError(_ message: String) {
    writeToStandardError("slabguard: \(message)\n")
}

/// The CLI's one way to give up: `slabguard: MESSAGE` on standard error, exit status 2.
func fail(_ message: String) -> Never {
    printError(message)
    Glibc.exit(2)
}

/// Writes all of `text` to standard error.
func writeToStandardError(_ text: String) {
    var s = text
    s.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(2, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
    }
}

struct LibPath: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "libpath",
        abstract: "Print the absolute path of libslabguard_rt.so (for LD_PRELOAD).",
        discussion: """
            The library is looked for next to the slabguard executable (its build folder) \
            and in ../lib of the prefix it is installed in.  Exit status 1 if it is in neither.
            """
    )

    func run() throws {
        print(try LibraryLocator.require())
    }
}
