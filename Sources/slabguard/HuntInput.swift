// What makes a replay of `slabguard hunt` the same run as the first: the same
// standard input, and the same code addresses.
//
// Standard input (fstat of descriptor 0, before the first run):
// - a pipe or a socket: read to its end before the first run (at most
//   `HuntInput.bound`, 64 MiB), then every run gets the same bytes through a pipe
//   of its own (InputFeeder, written by the report channel's pump as the program
//   reads).  More than the bound: the first run gets what was read and then the
//   rest of the stream, and there is no replay (said when one is wanted).
// - a regular file: every run gets the file itself, rewound to where it stood
//   (no copy, no bound; the program can still seek and fstat it).
// - a terminal: the first run reads the terminal as usual; replays get /dev/null
//   (a person cannot be asked to type the same again), and the hunt says so.
// - anything else (/dev/null, another device, closed): given to every run as it is.
//
// Addresses: `personality(ADDR_NO_RANDOMIZE)` in this process, inherited by every
// program it starts, so the allocation stack of the first run names the same
// code in the replays (SLABGUARD_HUNT carries return addresses).

import Glibc

enum HuntInput {
    /// At most this many bytes of a piped standard input are kept for the replays.
    static let bound = 64 << 20

    case asGiven                  // every run: descriptor 0 as it is
    case file(offset: off_t)      // every run: the file, rewound to `offset`
    case captured([UInt8])        // every run: these bytes through a pipe
    case overflow([UInt8])        // first run: these bytes, then the rest of descriptor 0; no replay
    case terminal                 // first run: the terminal; replays: /dev/null
    case nullDevice               // every run: /dev/null (the demo)

    /// Standard input, looked at (and read, when it is a pipe) before the first run.
    static func standardInput(bound: Int = HuntInput.bound) -> HuntInput {
        if isatty(0) != 0 { return .terminal }
        var info = stat()
        guard fstat(0, &info) == 0 else { return .asGiven }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            let offset = lseek(0, 0, SEEK_CUR)
            return offset < 0 ? .asGiven : .file(offset: offset)
        case S_IFIFO, S_IFSOCK:
            let (bytes, complete) = readAll(0, bound: bound)
            return complete ? .captured(bytes) : .overflow(bytes)
        default:
            return .asGiven
        }
    }

    /// Up to `bound` bytes of `fd`; complete when its end came within them.
    static func readAll(_ fd: Int32, bound: Int) -> (bytes: [UInt8], complete: Bool) {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while bytes.count <= bound {
            let want = min(chunk.count, bound + 1 - bytes.count)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return (bytes, true) }
            bytes += chunk[..<n]
        }
        return (bytes, false)
    }

    /// Why there can be no replay, or nil.
    var replayProblem: String? {
        if case .overflow = self {
            return "its standard input (a pipe) was more than the \(HuntInput.bound >> 20) MiB a replay can be given again"
        }
        return nil
    }

    /// What a replay's standard input is, when it is not the first run's; or nil.
    var replayNote: String? {
        if case .terminal = self { return "the replay reads /dev/null: the first run's standard input was a terminal" }
        return nil
    }

    /// Sets descriptor 0 up for one run and says what the program gets instead, if anything.
    func prepare(firstRun: Bool) -> ProgramInput? {
        switch self {
        case .asGiven: return nil
        case .file(let offset):
            lseek(0, offset, SEEK_SET)
            return nil
        case .captured(let bytes): return InputFeeder(bytes: bytes, then: nil).map { .feed($0) } ?? .nullDevice
        case .overflow(let bytes): return InputFeeder(bytes: bytes, then: 0).map { .feed($0) } ?? .nullDevice
        case .terminal: return firstRun ? nil : .nullDevice
        case .nullDevice: return .nullDevice
        }
    }
}

/// A pipe for the program's standard input, filled with `bytes` (then whatever
/// descriptor `then` gives until its end) as the program reads.  The report channel's
/// pump calls `ready` when the pipe can take more (or the source has more); nothing
/// here blocks.  Its write end closes when all is written, when the program's side is
/// gone, or at `close`.
final class InputFeeder {
    /// The program's end (descriptor 0 in the program; closed here once it runs).
    private(set) var readEnd: Int32
    private var writeEnd: Int32
    private var pending: [UInt8]
    private var position = 0
    private var source: Int32?

    init?(bytes: [UInt8], then source: Int32?) {
        var fds: [Int32] = [0, 0]
        guard makePipe(&fds) else { return nil }
        readEnd = fds[0]
        writeEnd = fds[1]
        _ = fcntl(writeEnd, F_SETFL, fcntl(writeEnd, F_GETFL) | O_NONBLOCK)
        pending = bytes
        self.source = source
        // A program that stops reading makes writes fail with EPIPE, not kill slabguard.
        signal(SIGPIPE, SIG_IGN)
        if bytes.isEmpty && source == nil { Glibc.close(writeEnd); writeEnd = -1 }
    }

    deinit { close() }

    /// The program has started (or could not): its end is its own now.
    func started() {
        if readEnd >= 0 { Glibc.close(readEnd) }
        readEnd = -1
    }

    /// What to wait for: the pipe taking more, or (all written) the source having more.
    var poller: pollfd? {
        guard writeEnd >= 0 else { return nil }
        if position < pending.count { return pollfd(fd: writeEnd, events: Int16(POLLOUT), revents: 0) }
        guard let source else { return nil }
        return pollfd(fd: source, events: Int16(POLLIN), revents: 0)
    }

    /// Writes what the pipe takes, or reads the next piece of the source.
    func ready(_ events: Int16) {
        guard writeEnd >= 0 else { return }
        if position < pending.count {
            if events & Int16(POLLERR | POLLHUP) != 0 && events & Int16(POLLOUT) == 0 { close(); return }
            let n = pending.withUnsafeBytes { write(writeEnd, $0.baseAddress! + position, pending.count - position) }
            if n > 0 { position += n } else if n < 0 && errno != EAGAIN && errno != EINTR { close(); return }
            if position == pending.count && source == nil { close() }
            return
        }
        guard let source else { close(); return }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = chunk.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
        if n > 0 {
            pending = Array(chunk[..<n])
            position = 0
        } else if n == 0 || errno != EINTR {
            close()
        }
    }

    func close() {
        started()
        if writeEnd >= 0 { Glibc.close(writeEnd) }
        writeEnd = -1
    }
}

enum AddressRandomization {
    static let addrNoRandomize: UInt32 = 0x0040000   // linux/personality.h

    /// Turns address-space randomization off for this process and the programs it starts;
    /// nil when it is off, else why it could not be.
    static func disable() -> String? {
        typealias Personality = @convention(c) (UInt) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "personality") else {
            return "the C library has no personality()"
        }
        let personality = unsafeBitCast(symbol, to: Personality.self)
        let current = personality(0xffff_ffff)   // reads the persona, changes nothing
        if current == -1 { return "personality(): \(String(cString: strerror(errno)))" }
        if UInt32(bitPattern: current) & addrNoRandomize != 0 { return nil }
        if personality(UInt(UInt32(bitPattern: current) | addrNoRandomize)) == -1 {
            return "personality(ADDR_NO_RANDOMIZE): \(String(cString: strerror(errno)))"
        }
        if UInt32(bitPattern: personality(0xffff_ffff)) & addrNoRandomize == 0 {
            return "personality(ADDR_NO_RANDOMIZE) did not take (a seccomp filter?)"
        }
        return nil
    }
}
