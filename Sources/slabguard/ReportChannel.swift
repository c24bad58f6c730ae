// The channel the library sends its reports on while `slabguard run` runs a program
// (design §10): a socket pair of the CLI's own, SOCK_SEQPACKET, so that each report
// arrives as one message, whole, even from several processes at once (the program's
// children inherit the descriptor).  The program's standard streams are left exactly
// as the caller gave them; only the descriptor number in SLABGUARD_REPORT_FD is added.
//
// The CLI prints each report on its own standard error, text reports with their frames
// symbolized (ReportSymbolizer), JSON reports as they came.  Once the program has
// exited, what is already queued is printed and the CLI is done: a background child
// that reports later finds the channel closed and writes to its standard error.

import Glibc

final class ReportChannel {
    /// The CLI's end (close-on-exec).
    let ownFD: Int32
    /// The end handed to the program (close-on-exec here; the spawn dup2s it to `childFD`).
    private(set) var programEnd: Int32
    /// The descriptor number the program gets: one not open in this process.
    let childFD: Int32
    let rewrite: Bool
    /// Reports seen (not summaries, not notices), and their headlines.
    private(set) var reports = 0
    private(set) var headlines: [String] = []

    init?(rewrite: Bool) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { return nil }
        ownFD = pair[0]
        programEnd = pair[1]
        var candidate: Int32 = 100
        while fcntl(candidate, F_GETFD) != -1 { candidate += 1 }
        childFD = candidate
        self.rewrite = rewrite
        // A generous send buffer: a burst of reports does not block the program.
        var size: Int32 = 4 << 20
        setsockopt(programEnd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
        close(ownFD)
        if programEnd >= 0 { close(programEnd) }
    }

    /// After the spawn: this process keeps only its own end.
    func closeProgramEnd() {
        if programEnd >= 0 { close(programEnd) }
        programEnd = -1
    }

    /// Prints reports until the program exits; returns its wait status.
    func pump(pid: pid_t) -> Int32 {
        var status: Int32 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 17)
        var reaped = false
        var open = true
        while open {
            var poller = pollfd(fd: ownFD, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 50) > 0 {
                open = receive(&buffer) >= 0
                continue
            }
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { reaped = true; break }
            if r < 0 && errno != EINTR { return status }
        }
        // Exited, or no writer left: print what is queued, then reap.
        while receive(&buffer) > 0 {}
        if !reaped { while waitpid(pid, &status, 0) < 0 && errno == EINTR {} }
        return status
    }

    /// Receives and prints one message: 1, or 0 when none is queued, -1 when no writer is left.
    private func receive(_ buffer: inout [UInt8]) -> Int {
        let n = buffer.withUnsafeMutableBytes { recv(ownFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 { return errno == EINTR || errno == EAGAIN ? 0 : -1 }
        if n == 0 { return -1 }
        print(message: String(decoding: buffer[..<n], as: UTF8.self))
        return 1
    }

    private func print(message: String) {
        let firstLine = message.prefix { $0 != "\n" }
        let isJSON = firstLine.hasPrefix("{")
        let isNotice = firstLine.hasPrefix("slabguard: summary:") || firstLine.hasPrefix("slabguard: leak check skipped")
            || firstLine.hasPrefix("{\"report\":\"summary\"")
        if !isNotice {
            reports += 1
            headlines.append(String(firstLine))
        }
        var text = message
        if isJSON {
            text = message.split(separator: "\n").map { ReportSymbolizer.rewriteJSON(String($0)) }.joined(separator: "\n") + "\n"
        } else if rewrite {
            var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let trailing = lines.last == "" ? lines.removeLast() : nil
            text = ReportSymbolizer.rewrite(lines).joined(separator: "\n") + (trailing == nil ? "" : "\n")
        }
        writeToStandardError(text)
    }
}

/// Writes all of `text` to standard error.
func writeToStandardError(_ text: String) {
    var s = text
    s.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(2, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
    }
}
