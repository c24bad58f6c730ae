// `slabguard stat PID [--json]` and `slabguard top PID` (design §12): a running
// process's statistics per cache and per tag and library, read from the live table its
// flight recorder publishes (LiveStatistics.swift).  A pid that runs no slabguard log,
// or that may not be inspected, is one line and status 2.

import ArgumentParser
import Glibc
import SlabguardFormats


struct Stat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A running process's statistics per cache, tag and library (::kmastat, live).",
        discussion: """
            Reads the table a process running slabguard in a debug mode rewrites about once a \
            second: in its log with --log PATH (log=PATH), else in a memory file it keeps open \
            for this. No signal, no ptrace, nothing written to the process. Exit status 2 when \
            the process does not exist, runs no slabguard debug mode, or may not be inspected.
            """)
    @Argument(help: "The process id.") var pid: Int32
    @Flag(help: "One JSON object: the caches, tags and libraries, large spans.") var json = false

    func run() throws {
        let snapshot: LiveSnapshot
        do { snapshot = try LiveStatistics.snapshot(of: pid) } catch { fail(error.message) }
        if json {
            print(LiveReport.json(snapshot))
        } else {
            print("slabguard: process \(snapshot.pid) (\(snapshot.command)), \(snapshot.options); statistics of \(LiveReport.seconds(snapshot.age)) ago (\(snapshot.inMemory ? "live recorder in memory" : "log " + snapshot.logPath))")
            print(snapshot.table, terminator: snapshot.table.hasSuffix("\n") ? "" : "\n")
        }
    }
}

struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A running process's caches, tags and libraries, refreshed, sorted by growth.",
        discussion: """
            Each refresh reads the process's live table (as stat does) and shows, per cache, \
            tag and library, what is in use and how fast it grows: bytes and buffers in use, \
            the change since the previous refresh, allocations per second. q or Ctrl-C quits; \
            so does the process's exit. On a terminal the screen is redrawn; otherwise each \
            refresh is printed after the last.
            """)
    @Argument(help: "The process id.") var pid: Int32
    @Option(help: "Seconds between refreshes (at least 1: the process writes its table about once a second).") var interval: Double = 2
    @Option(name: .customShort("n"), help: "Stop after this many refreshes (0: until q, Ctrl-C or the process's exit).") var iterations = 0

    func run() throws {
        guard interval >= 1 else { fail("--interval must be at least 1 second (the process writes its table about once a second)") }
        var previous: LiveSnapshot? = nil
        do { previous = try LiveStatistics.snapshot(of: pid) } catch { fail(error.message) }
        let terminal = LiveTerminal()
        defer { terminal.restore() }
        var shown = 0
        while true {
            if terminal.waitForQuit(seconds: interval) { return }
            let current: LiveSnapshot
            do { current = try LiveStatistics.snapshot(of: pid) } catch {
                terminal.restore()
                if error.exited { print("slabguard: process \(pid) exited"); return }
                fail(error.message)
            }
            let screen = LiveReport.growth(from: previous!, to: current, rows: terminal.rows)
            if terminal.isTerminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            print(screen)
            if !terminal.isTerminal { print("") }
            fflush(nil)
            previous = current
            shown += 1
            if iterations > 0 && shown >= iterations { return }
        }
    }
}

/// The terminal while `top` runs: raw (q quits at once) when standard input is one, put
/// back on every way out; Ctrl-C restores it too.
final class LiveTerminal {
    let isTerminal: Bool
    private var saved = termios()
    private var raw = false
    nonisolated(unsafe) static var savedForSignal = termios()
    nonisolated(unsafe) static var rawForSignal = false

    init() {
        isTerminal = isatty(1) != 0
        if isatty(0) != 0, tcgetattr(0, &saved) == 0 {
            var t = saved
            t.c_lflag &= ~tcflag_t(ICANON | ECHO)
            if tcsetattr(0, TCSANOW, &t) == 0 {
                raw = true
                LiveTerminal.savedForSignal = saved
                LiveTerminal.rawForSignal = true
            }
        }
        signal(SIGINT) { _ in
            if LiveTerminal.rawForSignal { tcsetattr(0, TCSANOW, &LiveTerminal.savedForSignal) }
            _exit(0)
        }
    }

    var rows: Int {
        var size = winsize()
        return isTerminal && ioctl(1, UInt(TIOCGWINSZ), &size) == 0 && size.ws_row > 6 ? Int(size.ws_row) - 4 : 40
    }

    /// Waits `seconds`; true when q was typed.
    func waitForQuit(seconds: Double) -> Bool {
        guard raw else { usleep(UInt32(seconds * 1e6)); return false }
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let end = Double(deadline.tv_sec) + Double(deadline.tv_nsec) / 1e9 + seconds
        while true {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let left = end - (Double(now.tv_sec) + Double(now.tv_nsec) / 1e9)
            if left <= 0 { return false }
            var p = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(left * 1000) + 1) > 0 {
                var c: UInt8 = 0
                if read(0, &c, 1) == 1 && (c == 0x71 || c == 0x51) { return true }   // q, Q
                if p.revents & Int16(POLLHUP) != 0 { usleep(UInt32(max(0, left) * 1e6)); return false }
            }
        }
    }

    func restore() {
        if raw { tcsetattr(0, TCSANOW, &saved); raw = false; LiveTerminal.rawForSignal = false }
    }
}

enum LiveReport {
    static func seconds(_ s: Double) -> String {
        s < 10 ? String(format1: s) + " s" : "\(Int(s)) s"
    }

    static func json(_ s: LiveSnapshot) -> String {
        let caches = s.caches.map {
            "{\"cache\":\(jsonString($0.name)),\"buffer_size\":\($0.bufferSize),\"in_use\":\($0.inUse),\"total\":\($0.total),\"memory\":\($0.memory),\"allocations\":\($0.allocations),\"failures\":\($0.failures)}"
        }
        let tags = s.tags.map {
            "{\"tag\":\(jsonString($0.name)),\"kind\":\(jsonString($0.kind)),\"in_use\":\($0.inUse),\"bytes_in_use\":\($0.bytes),\"peak_bytes\":\($0.peak),\"allocations\":\($0.allocations),\"frees\":\($0.frees)}"
        }
        let sites = s.sites.map {
            "{\"stack\":\($0.stack),\"live_bytes\":\($0.liveBytes),\"live_buffers\":\($0.liveBuffers),\"allocations\":\($0.allocations),\"allocated_bytes\":\($0.allocatedBytes),\"frames\":[\($0.frames.map(jsonString).joined(separator: ","))]}"
        }
        return "{\"pid\":\(s.pid),\"process\":\(jsonString(s.command)),\"options\":\(jsonString(s.options)),\"log\":\(s.inMemory ? "null" : jsonString(s.logPath)),"
            + "\"written_at_seconds\":\(String(format1: s.writtenAt)),\"age_seconds\":\(String(format1: s.age)),"
            + "\"caches\":[\(caches.joined(separator: ","))],\"tags\":[\(tags.joined(separator: ","))],"
            + "\"large\":{\"spans\":\(s.large.spans),\"bytes\":\(s.large.bytes)},\"sites\":[\(sites.joined(separator: ","))]}"
    }

    /// One screen: caches, then tags and libraries, each sorted by growth in bytes since `a`.
    static func growth(from a: LiveSnapshot, to b: LiveSnapshot, rows: Int) -> String {
        let dt = max(0.001, b.writtenAt - a.writtenAt)
        var lines = ["slabguard top: process \(b.pid) (\(b.command)) at \(seconds(b.writtenAt)); changes over the last \(seconds(dt))  (q quits)", ""]
        lines.append(pad("cache", 30) + lpad("in use", 9) + lpad("bytes", 13) + lpad("Δ bytes", 12) + lpad("Δ buffers", 11) + lpad("allocs/s", 11))
        let before = Dictionary(a.caches.map { ($0.name, $0) }, uniquingKeysWith: { x, _ in x })
        let caches = b.caches.map { c -> (LiveSnapshot.Cache, Int, Int, Double) in
            let p = before[c.name]
            let bytes = c.inUse * c.bufferSize - (p.map { $0.inUse * $0.bufferSize } ?? 0)
            return (c, bytes, c.inUse - (p?.inUse ?? 0), Double(c.allocations - (p?.allocations ?? 0)) / dt)
        }.sorted { ($0.1, $0.0.inUse * $0.0.bufferSize) > ($1.1, $1.0.inUse * $1.0.bufferSize) }
        for (c, bytes, buffers, rate) in caches.prefix(max(5, rows / 2)) {
            lines.append(pad(c.name, 30) + lpad("\(c.inUse)", 9) + lpad("\(c.inUse * c.bufferSize)", 13)
                         + lpad(signed(bytes), 12) + lpad(signed(buffers), 11) + lpad(String(format1: rate), 11))
        }
        if !b.tags.isEmpty {
            lines.append("")
            lines.append(pad("tag or library", 30) + lpad("in use", 9) + lpad("bytes", 13) + lpad("Δ bytes", 12) + lpad("Δ buffers", 11) + lpad("allocs/s", 11))
            let tagsBefore = Dictionary(a.tags.map { ($0.kind + "/" + $0.name, $0) }, uniquingKeysWith: { x, _ in x })
            let tags = b.tags.map { t -> (LiveSnapshot.Tag, Int, Int, Double) in
                let p = tagsBefore[t.kind + "/" + t.name]
                return (t, t.bytes - (p?.bytes ?? 0), t.inUse - (p?.inUse ?? 0), Double(t.allocations - (p?.allocations ?? 0)) / dt)
            }.sorted { ($0.1, $0.0.bytes) > ($1.1, $1.0.bytes) }
            for (t, bytes, buffers, rate) in tags.prefix(max(5, rows / 2)) {
                lines.append(pad(t.name + (t.kind == "library" ? " (lib)" : ""), 30) + lpad("\(t.inUse)", 9) + lpad("\(t.bytes)", 13)
                             + lpad(signed(bytes), 12) + lpad(signed(buffers), 11) + lpad(String(format1: rate), 11))
            }
        }
        if !b.sites.isEmpty {
            lines.append("")
            lines.append(pad("allocation site", 42) + lpad("live bufs", 10) + lpad("live bytes", 12) + lpad("Δ bytes", 12))
            let sitesBefore = Dictionary(a.sites.map { ($0.stack, $0) }, uniquingKeysWith: { x, _ in x })
            let sites = b.sites.map { ($0, $0.liveBytes - (sitesBefore[$0.stack]?.liveBytes ?? 0)) }
                .sorted { ($0.1, $0.0.liveBytes) > ($1.1, $1.0.liveBytes) }
            for (site, grown) in sites.prefix(max(3, rows / 4)) {
                lines.append(pad(siteName(site), 42) + lpad("\(site.liveBuffers)", 10) + lpad("\(site.liveBytes)", 12) + lpad(signed(grown), 12))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// A site in one phrase: its first frame's function and place ("leak_three (leaker.c:19)").
    static func siteName(_ site: LiveSnapshot.Site) -> String {
        // "#0 0xADDR name+0xOFF (file.c:12)" or "... (/path/module+0xOFF)".
        guard let frame = site.frames.first else { return "stack \(site.stack)" }
        func withoutOffset(_ text: String) -> String {
            let bytes = Array(text.utf8)
            guard let plus = FrameLine.lastIndex(of: Array("+0x".utf8), in: bytes, from: 0, to: bytes.count) else { return text }
            return String(decoding: bytes[..<plus], as: UTF8.self)
        }
        let words = frame.split(separator: " ", maxSplits: 3).map(String.init)
        guard words.count >= 3 else { return "stack \(site.stack)" }
        let function = withoutOffset(words[2].hasPrefix("(") ? words[1] : words[2])
        guard let last = words.last, last != words[2] || words.count == 3, frame.hasSuffix(")"),
              let open = frame.lastIndex(of: "(") else { return function }
        let place = withoutOffset(String(frame[frame.index(after: open)...].dropLast()))
        return function + " (" + LogFile.baseName(place) + ")"
    }

    private static func signed(_ n: Int) -> String { n > 0 ? "+\(n)" : "\(n)" }
    private static func pad(_ s: String, _ n: Int) -> String {
        let c = s.count
        return c >= n ? String(s.prefix(n - 1)) + " " : s + String(repeating: " ", count: n - c)
    }
    private static func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
}

extension String {
    /// One decimal: 2.5.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}

struct Leaks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a running process for its leaks now (the exit check, on demand).",
        discussion: """
            The process (running slabguard in a debug mode, with or without a log) runs the \
            exit check's reachability scan at its next allocator call, within about a second, \
            and writes its findings to its recorder, from where they are printed here: grouped by \
            allocation stack, as at exit. Nothing is printed on the program's own output. \
            --new lists only buffers no earlier check listed. A process that makes no \
            allocator call cannot answer: after --timeout seconds, one line and status 2.
            """)
    @Argument(help: "The process id.") var pid: Int32
    @Flag(help: "Only buffers that no earlier check of this process listed.") var new = false
    @Flag(help: "One JSON object per leak report (headline and text), then a summary object.") var json = false
    @Option(help: "Seconds to wait for the answer.") var timeout: Double = 10

    func run() throws {
        let path: String
        do { path = try LiveStatistics.recorder(of: pid).path } catch { fail(error.message) }
        let answer: LeakAnswer
        do { answer = try LeakAnswer.ask(path: path, pid: pid, newOnly: new, timeout: timeout) } catch { fail(error.message) }
        let lines = ReportSymbolizer.rewrite(answer.reports.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        let text = lines.joined(separator: "\n")
        let reports = LogMsgbuf.split(text)
        if json {
            for report in reports {
                let headline = report.prefix { $0 != "\n" }
                print("{\"headline\":\(jsonString(String(headline))),\"report\":\(jsonString(report))}")
            }
            print("{\"pid\":\(pid),\"buffers\":\(answer.found),\"reports\":\(reports.count),\"new_only\":\(new),\"check_seconds\":\(answer.seconds)}")
            return
        }
        for report in reports { print(report); print("") }
        let what = new ? "new leaked buffers (not listed by an earlier check)" : "leaked buffers"
        print("slabguard: process \(pid): \(answer.found) \(what)\(answer.found > 0 && reports.isEmpty ? " (the log's report region is full: not listed)" : "") (the check took \(String(format1: answer.seconds * 1000)) ms in the process)")
    }
}

/// One leak check on demand, through the process's log (Leaks/LeakRequests.swift).
struct LeakAnswer {
    var found: Int
    var reports: String
    var seconds: Double

    static func ask(path: String, pid: Int32, newOnly: Bool, timeout: Double) throws(LiveError) -> LeakAnswer {
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw LiveError(message: "cannot write to process \(pid)'s log '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        func read64(_ field: Int) -> UInt64 {
            var v: UInt64 = 0
            return pread(fd, &v, 8, off_t(field)) == 8 ? v : 0
        }
        func write64(_ field: Int, _ value: UInt64) -> Bool {
            var v = value
            return pwrite(fd, &v, 8, off_t(field)) == 8
        }
        let answer = read64(RecorderHeader.Field.leakAnswer)
        let request = answer &+ 1
        guard write64(RecorderHeader.Field.leakFlags, newOnly ? LeakRequest.newOnly : 0),
              write64(RecorderHeader.Field.leakRequest, request) else {
            throw LiveError(message: "cannot write to process \(pid)'s log '\(path)': \(String(cString: strerror(errno)))")
        }
        var waited = 0.0
        while read64(RecorderHeader.Field.leakAnswer) != request {
            if kill(pid, 0) != 0 && errno == ESRCH { throw LiveError(message: "process \(pid) exited before it answered", exited: true) }
            if waited >= timeout {
                throw LiveError(message: "process \(pid) did not answer within \(Int(timeout)) s: it serves a request at its next allocation or free (about once a second); an idle or stopped process cannot")
            }
            usleep(20_000)
            waited += 0.02
        }
        switch read64(RecorderHeader.Field.leakStatus) {
        case LeakRequest.sandboxed: throw LiveError(message: "process \(pid) runs under a seccomp filter: the scan's system calls could kill it, so no check was made")
        case LeakRequest.noTags: throw LiveError(message: "process \(pid) runs without buffer tags (fast mode or sample=N alone): no leak check is possible")
        default: break
        }
        let start = read64(RecorderHeader.Field.leakReportsStart), end = read64(RecorderHeader.Field.leakReportsEnd)
        let offset = read64(RecorderHeader.Field.reportsOffset), capacity = read64(RecorderHeader.Field.reportsBytes)
        var text = ""
        if end > start && end <= capacity && end - start <= capacity {
            var bytes = [UInt8](repeating: 0, count: Int(end - start))
            if pread(fd, &bytes, bytes.count, off_t(offset + start)) == bytes.count { text = String(decoding: bytes, as: UTF8.self) }
        }
        return LeakAnswer(found: Int(read64(RecorderHeader.Field.leakFound)), reports: text,
                          seconds: Double(read64(RecorderHeader.Field.leakNanoseconds)) / 1e9)
    }
}
