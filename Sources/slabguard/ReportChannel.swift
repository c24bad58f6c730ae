// The channel the library sends its reports on while `slabguard run` runs a program
// (design §10): a Unix datagram socket bound in a private folder (mode 0700, so only
// this user's processes reach it), its path in SLABGUARD_REPORT_SOCKET.  Each report
// arrives as one datagram, whole, even from several processes at once, and every process
// of the run reaches it — children whose descriptors were closed too, since each opens
// its own socket.  The program's standard streams are left exactly as the caller gave
// them.
//
// The CLI prints each report on its own standard error, text reports with their frames
// symbolized (ReportSymbolizer), JSON reports with file and line added to their frames.
// Once the program has exited, what is already queued is printed, the socket removed,
// and the CLI is done: a background child that reports later finds no channel and
// writes to its standard error.

import Glibc

final class ReportChannel {
    let ownFD: Int32
    /// The socket's path (SLABGUARD_REPORT_SOCKET) and its private folder.
    let path: String
    private let folder: String
    let rewrite: Bool
    /// Reports seen (not summaries, not notices), and their headlines.
    private(set) var reports = 0
    private(set) var headlines: [String] = []
    /// Reports counted by the summaries seen (a process writing its reports to a
    /// report_path= file sends run only its summary).
    private(set) var summarizedReports = 0

    /// Whether the run reported anything.
    var sawReports: Bool { reports > 0 || summarizedReports > 0 }

    /// One message as it arrived and as it is printed (text symbolized, JSON with file and line).
    struct Message {
        var raw: String
        var shown: String
    }
    /// Whether every message is kept in `messages` (`slabguard hunt` reads them).
    var keepsMessages = false
    /// Whether messages are printed as they arrive (false: kept only; `hunt`'s replays).
    var echo = true
    private(set) var messages: [Message] = []

    init?(rewrite: Bool) {
        let base = ProgramRunner.currentEnvironment()["TMPDIR"].flatMap { $0.utf8.count < 60 && $0.hasPrefix("/") ? $0 : nil } ?? "/tmp"
        var template = Array((base + "/slabguard-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { return nil }
        folder = String(cString: made)
        path = folder + "/reports"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { rmdir(folder); return nil }
        ownFD = fd
        self.rewrite = rewrite
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let fits = withUnsafeMutableBytes(of: &address.sun_path) { raw -> Bool in
            guard bytes.count < raw.count else { return false }
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
            return true
        }
        let bound = fits && withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard bound else { close(fd); rmdir(folder); return nil }
        // A generous queue: a burst of reports does not hold the program up.
        var size: Int32 = 8 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
        close(ownFD)
        unlink(path)
        rmdir(folder)
    }

    /// Prints reports until the program exits; returns its wait status.  With `input`,
    /// also writes the program's standard input into its pipe as the pipe takes it.
    func pump(pid: pid_t, input: InputFeeder? = nil) -> Int32 {
        var status: Int32 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 17)
        while true {
            var pollers = [pollfd(fd: ownFD, events: Int16(POLLIN), revents: 0)]
            if let wanted = input?.poller { pollers.append(wanted) }
            if poll(&pollers, nfds_t(pollers.count), 50) > 0 {
                if pollers.count > 1, pollers[1].revents != 0 { input?.ready(pollers[1].revents) }
                if pollers[0].revents != 0 {
                    while receive(&buffer) {}
                    continue
                }
            }
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return status }
        }
        // Exited: print what is queued.
        while receive(&buffer) {}
        return status
    }

    /// Receives and prints one report; false when none is queued.
    private func receive(_ buffer: inout [UInt8]) -> Bool {
        let n = buffer.withUnsafeMutableBytes { recv(ownFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 && errno == EINTR { return true }
        guard n > 0 else { return false }
        print(message: String(decoding: buffer[..<n], as: UTF8.self))
        return true
    }

    /// N in "slabguard: summary: N reports ..." or {"report":"summary",...,"reports":N,...}.
    static func summaryCount(_ line: Substring) -> Int? {
        if line.hasPrefix("slabguard: summary: ") {
            return Int(line.dropFirst("slabguard: summary: ".count).prefix { $0.isNumber })
        }
        guard line.hasPrefix("{\"report\":\"summary\""), let key = line.firstRange(of: "\"reports\":") else { return nil }
        return Int(line[key.upperBound...].prefix { $0.isNumber })
    }

    private func print(message: String) {
        let firstLine = message.prefix { $0 != "\n" }
        let isJSON = firstLine.hasPrefix("{")
        let isNotice = firstLine.hasPrefix("slabguard: summary:") || firstLine.hasPrefix("slabguard: leak check skipped")
            || firstLine.hasPrefix("{\"report\":\"summary\"")
        if !isNotice {
            reports += 1
            headlines.append(String(firstLine))
        } else if let count = ReportChannel.summaryCount(firstLine) {
            summarizedReports += count
        }
        var text = message
        if isJSON {
            text = message.split(separator: "\n").map { ReportSymbolizer.rewriteJSON(String($0)) }.joined(separator: "\n") + "\n"
        } else if rewrite {
            var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let trailing = lines.last == "" ? lines.removeLast() : nil
            text = ReportSymbolizer.rewrite(lines).joined(separator: "\n") + (trailing == nil ? "" : "\n")
        }
        if keepsMessages { messages.append(Message(raw: message, shown: text)) }
        if echo { writeToStandardError(text) }
    }
}
