// Starts the program (posix_spawnp: PATH search like a shell), waits for it,
// and turns its wait status into ours: its exit code, or 128+N for death by
// signal N, as shells report it.  Its standard streams and descriptors are ours,
// untouched.
//
// While the program runs, SIGINT and SIGQUIT are ignored here (the terminal
// sends them to the whole foreground process group, so the program gets them
// and decides), and SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to slabguard
// are passed on to the program.  The program starts with default signal
// dispositions and an empty signal mask.

import Glibc

/// The program's standard input when it is not slabguard's own (`slabguard hunt`).
enum ProgramInput {
    case nullDevice               // /dev/null
    case feed(InputFeeder)        // a pipe the report channel's pump fills (needs a channel)
}

/// The running child's pid, read by the forwarding signal handler.
nonisolated(unsafe) private var forwardTo: pid_t = 0

enum ProgramRunner {
    static let forwardedSignals: [Int32] = [SIGTERM, SIGHUP, SIGUSR1, SIGUSR2]

    /// This process's environment as a dictionary (first definition of a name wins, as getenv does).
    static func currentEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let eq = text.firstIndex(of: "=") {
                let name = String(text[..<eq])
                if result[name] == nil { result[name] = String(text[text.index(after: eq)...]) }
            }
            entry += 1
        }
        return result
    }

    /// Runs `command` and returns the status slabguard should exit with.  With a
    /// channel, the program's reports arrive on it (SLABGUARD_REPORT_SOCKET) and are printed
    /// while it runs.  `input` replaces the program's standard input (a feed needs the channel).
    static func run(_ command: [String], environment: [String: String], channel: ReportChannel? = nil,
                    input: ProgramInput? = nil) -> Int32 {
        var environment = environment
        if let channel { environment["SLABGUARD_REPORT_SOCKET"] = channel.path }
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGQUIT, SIGPIPE] + forwardedSignals { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        // Ignore the terminal's interrupt and quit while the program runs; block the
        // forwarded signals until the pid is known, so none is lost or misdirected.
        var previousInt = sigaction(), previousQuit = sigaction()
        var ignore = sigaction()
        ignore.__sigaction_handler.sa_handler = SIG_IGN
        sigaction(SIGINT, &ignore, &previousInt)
        sigaction(SIGQUIT, &ignore, &previousQuit)
        var forwardSet = sigset_t(), savedMask = sigset_t()
        sigemptyset(&forwardSet)
        for s in forwardedSignals { sigaddset(&forwardSet, s) }
        sigprocmask(SIG_BLOCK, &forwardSet, &savedMask)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var feeder: InputFeeder? = nil
        switch input {
        case .nullDevice?: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .feed(let f)?:
            feeder = f
            posix_spawn_file_actions_adddup2(&actions, f.readEnd, 0)
        case nil: break
        }
        defer { feeder?.close() }
        var pid: pid_t = 0
        let error = posix_spawnp(&pid, command[0], &actions, &attributes, argv, envp)
        feeder?.started()
        if error == 0 {
            forwardTo = pid
            var forward = sigaction()
            forward.__sigaction_handler.sa_handler = { signal in
                if forwardTo > 0 { kill(forwardTo, signal) }
            }
            forward.sa_flags = SA_RESTART
            for s in forwardedSignals { sigaction(s, &forward, nil) }
        }
        sigprocmask(SIG_SETMASK, &savedMask, nil)

        guard error == 0 else {
            sigaction(SIGINT, &previousInt, nil)
            sigaction(SIGQUIT, &previousQuit, nil)
            printError("cannot run '\(command[0])': \(String(cString: strerror(error)))")
            return error == ENOENT ? 127 : 126
        }

        var status: Int32 = 0
        if let channel { status = channel.pump(pid: pid, input: feeder) } else { while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR {
                printError("lost track of '\(command[0])' (pid \(pid)): \(String(cString: strerror(errno)))")
                return 1
            }
        } }
        sigaction(SIGINT, &previousInt, nil)
        sigaction(SIGQUIT, &previousQuit, nil)
        return exitStatus(fromWaitStatus: status)
    }

    /// A wait status as a shell's `$?`: the exit code, or 128 + the signal number.
    static func exitStatus(fromWaitStatus status: Int32) -> Int32 {
        let signal = status & 0x7f
        if signal == 0 { return (status >> 8) & 0xff }
        return 128 + signal
    }
}
