// The program's standard error, read through a pipe by `slabguard run`:
// every line that is not part of a slabguard report is written to our own
// stderr as soon as it is complete (and a partial line as soon as the pipe
// goes quiet, so prompts without a newline still show); report lines — a
// line beginning with "slabguard:" and the indented lines after it — are
// gathered until the report ends, then written with their stack frames
// rewritten by ReportSymbolizer.  A report ends at the next unindented line,
// at end of file, or when nothing more arrives for a moment.
//
// Reading stops at end of file, or once the program has exited and the pipe
// is drained (a daemon it left behind may hold the pipe open forever).

import Glibc

struct StderrFilter {
    let fd: Int32
    let pid: pid_t
    let rewrite: Bool
    private var pending: [UInt8] = []
    private var report: [String] = []

    init(fd: Int32, pid: pid_t, rewrite: Bool) {
        self.fd = fd
        self.pid = pid
        self.rewrite = rewrite
    }

    /// Pumps until the pipe is done; returns the wait status if it reaped the program.
    mutating func pump() -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var reaped: Int32?
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, reaped == nil ? 50 : 0)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            if ready == 0 {
                flushReport()
                flushPartial()
                if reaped != nil { break }
                var status: Int32 = 0
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid { reaped = status }   // drain what is left, without waiting again
                continue
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                break
            }
            if n == 0 { break }
            consume(buffer[..<n])
        }
        flushReport()
        flushPartial()
        close(fd)
        return reaped
    }

    private mutating func consume(_ bytes: ArraySlice<UInt8>) {
        pending += bytes
        var start = 0
        while let newline = pending[start...].firstIndex(of: 0x0a) {
            handle(Array(pending[start...newline]))
            start = newline + 1
        }
        pending.removeFirst(start)
    }

    /// One complete line, newline included.
    private mutating func handle(_ line: [UInt8]) {
        let isStart = line.starts(with: Array("slabguard:".utf8))
        let isIndented = line.first == 0x20 || line.first == 0x09
        if isStart { reportHeadlinesSeen.append(String(decoding: line.dropLast(), as: UTF8.self)) }
        if isStart || (!report.isEmpty && isIndented) {
            report.append(String(decoding: line.dropLast(), as: UTF8.self))
            return
        }
        flushReport()
        StderrFilter.writeAll(line)
    }

    private mutating func flushReport() {
        guard !report.isEmpty else { return }
        let lines = rewrite ? ReportSymbolizer.rewrite(report) : report
        report.removeAll()
        var text = ""
        for line in lines { text += line + "\n" }
        StderrFilter.writeAll(Array(text.utf8))
    }

    private mutating func flushPartial() {
        guard !pending.isEmpty else { return }
        flushReport()
        StderrFilter.writeAll(pending)
        pending.removeAll()
    }

    static func writeAll(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(2, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
        }
    }
}
