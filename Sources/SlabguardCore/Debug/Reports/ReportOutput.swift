// ReportOutput — where reports go, which of them are printed, and the summary line.
//
// Destination, chosen at start-up: `report_path=PATH` (a file created under design
// §11's rules, `%p` replaced by the pid); else the channel `slabguard run` hands the
// program (below); else standard error (or the descriptor a test set).  The program's own streams are never touched.
// The channel is a Unix datagram socket the CLI binds in a private folder (0700) and
// names in SLABGUARD_REPORT_SOCKET: each report is one datagram, whole, never mixed with
// another process's, and every process of the run reaches it — children whose
// descriptors were closed (Python's close_fds) too, since each process opens its own
// socket.  No descriptor is kept between reports (a program may close every descriptor
// and reuse the numbers for its own files, or run with few of them): each report opens
// its socket, or its report file, and closes it; a channel that is gone (run has exited
// before a background child reports) falls back to standard error.
//
// A report is built whole in the report scratch (ReportBuilder), then one of: printed
// (one write); folded — the same kind and the same stacks as one printed before, so it
// is counted, not printed (Valgrind's "N errors from M contexts"); suppressed — a frame
// matched the `suppressions=` file, counted.  The summary line (at exit, and before an
// abort) gives the counts by kind, the bytes leaked, and the folded and suppressed ones.
// Nothing here allocates.

import CSlabguardShim
import Glibc

/// What a process has reported: counts by kind, repeats, the signatures of the reports
/// printed so far (a forked child starts a tally of its own).  Valid when zeroed.
struct ReportTally {
    static let kindCount = 16
    static let signatureCapacity = 512   // a power of two
    var counts = FixedBytes512()          // UInt64 per DebugReport.Kind.index
    var folded: UInt64 = 0
    var suppressed: UInt64 = 0
    var leakBuffers: UInt64 = 0
    var leakBytes: UInt64 = 0
    var signatures = FixedBytes4K()       // UInt64 each, 0 empty: reports printed so far
    var signatureCount = 0
    var summaryWritten = false

    mutating func count(_ index: Int) -> UnsafeMutablePointer<UInt64> {
        withUnsafeMutablePointer(to: &counts) { UnsafeMutableRawPointer($0).assumingMemoryBound(to: UInt64.self) + index }
    }

    /// Inserts `signature`; false when it was there already (a repeat).
    mutating func insertSignature(_ signature: UInt64) -> Bool {
        let table = withUnsafeMutablePointer(to: &signatures) { UnsafeMutableRawPointer($0).assumingMemoryBound(to: UInt64.self) }
        let key = signature == 0 ? 1 : signature
        var i = Int(truncatingIfNeeded: key) & (ReportTally.signatureCapacity - 1)
        for _ in 0..<ReportTally.signatureCapacity {
            if table[i] == key { return false }
            if table[i] == 0 {
                // Full enough: later reports are printed, never lost.
                if signatureCount >= ReportTally.signatureCapacity * 3 / 4 { return true }
                table[i] = key
                signatureCount += 1
                return true
            }
            i = (i + 1) & (ReportTally.signatureCapacity - 1)
        }
        return true
    }

    /// Reports of any kind, folded ones included (suppressed ones are not).
    var total: UInt64 {
        withUnsafePointer(to: counts) { p in
            let c = UnsafeRawPointer(p).assumingMemoryBound(to: UInt64.self)
            var n: UInt64 = 0
            var i = 0
            while i < ReportTally.kindCount { n &+= c[i]; i += 1 }
            return n
        }
    }
}

/// The reports part's state: its lock, the tally, the destination, the suppressions (its
/// own region of the static map, `debug_reports`; valid when zeroed).
struct ReportState {
    var mutex = pthread_mutex_t()         // one report at a time (DESIGN.md's lock order: first)
    var reportFDPlusOne: Int32 = 0        // 0: standard error
    var reportCount: UInt64 = 0
    var suppressions = SuppressionsState()
    var onDemandThread: UInt32 = 0        // serving a leak check on demand: its reports go to the log only, untallied
    var tally = ReportTally()
    var channelAddress = sockaddr_un()    // SLABGUARD_REPORT_SOCKET
    var channelOpen = false               // run's channel is there
    var underRun = false                  // started by `slabguard run`, which sets the exit status itself
    var toFile = false                    // report_path= is open: reports go there, the summary to run too
}

enum ReportOutput {
    @inline(__always) static var state: UnsafeMutablePointer<ReportState> {
        StateRegion.debugReports.bound(to: ReportState.self)
    }

    static var tally: UnsafeMutablePointer<ReportTally> { state.field(\.tally) }

    /// Where reports go when neither report_path= nor run's channel takes them (the API's
    /// setReportFileDescriptor; standard error by default).
    static var reportFD: Int32 {
        get { state.pointee.reportFDPlusOne == 0 ? 2 : state.pointee.reportFDPlusOne - 1 }
        set { state.pointee.reportFDPlusOne = newValue + 1 }
    }

    static var reportMutex: UnsafeMutablePointer<pthread_mutex_t> { state.field(\.mutex) }

    /// The summary line, under the report lock unless this thread holds it already (a
    /// fatal signal in the middle of a report).
    static func writeSummaryTakingLock(json: Bool) {
        let owns = sg_mutex_lock_unless_held(reportMutex) != 0
        writeSummary(json: json)
        if owns { sg_mutex_unlock(reportMutex) }
    }

    /// Start-up (heap phase 2): opens `report_path=`, or adopts run's channel.
    static func setUp() {
        // In secure execution the environment may not choose where reports go: a setuid
        // program would send them to any socket named there (syslog's, say).
        let channel = Platform.isSecureExecution ? nil : Platform.environment("SLABGUARD_REPORT_SOCKET")
        // Under run (with report_path= too) the program and its children keep their statuses.
        state.pointee.underRun = channel != nil
        if let path = channel { adoptChannel(path) }
        if OptionsState.shared.pointee.options.hasReportPath { openReportPath() }
    }

    private static func adoptChannel(_ path: UnsafePointer<CChar>) {
        let length = ReportWriter.length(of: UnsafeRawPointer(path), max: 200)
        let s = state
        withUnsafeMutablePointer(to: &s.pointee.channelAddress.sun_path) { p in
            let capacity = MemoryLayout.size(ofValue: s.pointee.channelAddress.sun_path)
            guard length > 0 && length < capacity else { return }
            UnsafeMutableRawPointer(p).copyMemory(from: path, byteCount: length)
            UnsafeMutableRawPointer(p).storeBytes(of: 0, toByteOffset: length, as: UInt8.self)
            s.pointee.channelAddress.sun_family = sa_family_t(AF_UNIX)
            s.pointee.channelOpen = true
        }
    }

    /// In a forked child: its own counts, its own repeats (its reports name its pid).
    static func resetAfterFork() { tally.pointee = ReportTally() }

    /// `report_path=PATH`: created now, so a bad path is said at start-up, and closed: each
    /// report opens it again (no descriptor kept, which a program closing its descriptors
    /// would reuse for its own file); reports go to standard error when it cannot be written.
    private static func openReportPath() {
        var error: Int32 = 0
        let created = withReportPath { path -> Bool in
            guard let fd = Platform.createFile(path, error: &error) else { return false }
            Platform.close(fd)
            return true
        }
        if created == true {
            state.pointee.toFile = true
            return
        }
        ReportWriter.withStackBuffer(fd: 2) { e in
            e.append("slabguard: cannot write the report file '")
            OptionsState.shared.pointee.options.withReportPath { e.append(cString: $0) }
            e.append("': ")
            e.append(cString: Platform.fileErrorText(error))
            e.append(" (report_path= gives a writable path; reports go to standard error)\n")
        }
    }

    /// `body` on the report path with `%p` replaced by this process's id (built in a mapped
    /// page: no heap, and little stack in a signal handler's); nil when no page could be had.
    private static func withReportPath<T>(_ body: (UnsafePointer<CChar>) -> T) -> T? {
        guard let page = Platform.map(2 * pageSize) else { return nil }
        defer { Platform.unmap(page, 2 * pageSize) }
        OptionsState.shared.pointee.options.withReportPath { DebugOptions.expandingPid($0, into: page, capacity: 2 * pageSize) }
        return body(UnsafePointer(page.assumingMemoryBound(to: CChar.self)))
    }

    /// Writes one whole report (or line) to the destination.
    static func emit(_ bytes: UnsafeRawPointer, _ count: Int) {
        FlightRecorder.appendReport(bytes, count)
        let s = state
        if s.pointee.toFile {
            if appendToReportPath(bytes, count) { return }
        } else if s.pointee.channelOpen {
            if sendToChannel(bytes, count) { return }
        } else {
            Platform.writeAll(reportFD, bytes, count)
            return
        }
        Platform.writeAll(2, bytes, count)   // run is gone, or the file cannot be written: standard error
    }

    /// One report appended to `report_path=` (a forked child with `%p` creates its own file).
    private static func appendToReportPath(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        withReportPath { path -> Bool in
            var error: Int32 = 0
            guard let fd = Platform.openForAppend(path, error: &error)
                    ?? (error == ENOENT ? Platform.createFile(path, error: &error) : nil) else { return false }
            defer { Platform.close(fd) }
            return Platform.writeAll(fd, bytes, count)
        } ?? false
    }

    /// One datagram to run's channel, on a socket opened for it; false (and the channel
    /// closed) when run is gone.
    private static func sendToChannel(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        let s = state
        if let fd = Platform.datagramSocket() {
            defer { Platform.close(fd) }
            if withUnsafePointer(to: &s.pointee.channelAddress, { Platform.sendDatagram(fd, to: $0, bytes, count) }) {
                return true
            }
        }
        s.pointee.channelOpen = false
        return false
    }

    /// Builds a line (or a few) on the stack and writes it to the report destination.
    static func writeLine(_ body: (inout ReportWriter) -> Void) {
        var storage = StackBufferStorage()
        withUnsafeMutablePointer(to: &storage) { p in
            var w = ReportWriter(memory: UnsafeMutableRawPointer(p), capacity: MemoryLayout<StackBufferStorage>.size)
            body(&w)
            emit(UnsafeRawPointer(p), w.count)
        }
    }

    /// Whether a report with this signature should be printed (false: a repeat, counted).
    static func admit(_ kind: DebugReport.Kind, signature: UInt64, hasStacks: Bool) -> Bool {
        let s = tally
        s.pointee.count(kind.index).pointee &+= 1
        guard hasStacks else { return true }
        if s.pointee.insertSignature(signature &+ UInt64(kind.index) &* 0x9E37_79B9_7F4A_7C15) { return true }
        s.pointee.folded &+= 1
        return false
    }

    static func noteSuppressed() { tally.pointee.suppressed &+= 1 }

    static func noteLeak(buffers: UInt, bytes: UInt) {
        tally.pointee.leakBuffers &+= UInt64(buffers)
        tally.pointee.leakBytes &+= UInt64(bytes)
    }

    /// Whether anything was reported (folded repeats included).
    static var anyReported: Bool { tally.pointee.total > 0 }

    /// Under `slabguard run` the CLI turns the run's status into `exitcode`; the program
    /// and its children keep theirs (a program that checks its children's statuses, as
    /// git and gcc do, must not see them fail because a child leaked).
    static var setsExitStatus: Bool { !state.pointee.underRun }

    /// The summary line, once per process, when anything was reported or suppressed.
    /// The caller holds the report lock (or is the only thread left).
    static func writeSummary(json: Bool) {
        let s = tally
        guard !s.pointee.summaryWritten, s.pointee.total > 0 || s.pointee.suppressed > 0 else { return }
        s.pointee.summaryWritten = true
        writeLine { w in
            if json { summaryJSON(&w, s) } else { summaryText(&w, s) }
            // Reports in a file: run still hears the summary, for its exit status and its user.
            if state.pointee.toFile && state.pointee.channelOpen { _ = sendToChannel(w.bytes.baseAddress!, w.count) }
        }
    }

    private static func summaryText(_ w: inout ReportWriter, _ s: UnsafeMutablePointer<ReportTally>) {
        let total = s.pointee.total
        w.append("slabguard: summary: ")
        w.append(decimal: total)
        w.append(total == 1 ? " report" : " reports")
        var first = true
        var index = 0
        while let kind = DebugReport.Kind(index: index) {
            index += 1
            let n = s.pointee.count(kind.index).pointee
            guard n > 0 else { continue }
            w.append(first ? " (" : ", ")
            first = false
            w.append(decimal: n)
            w.append(" ")
            w.append(kind.summaryName)
        }
        if !first { w.append(")") }
        w.append(" in process ")
        appendProcess(&w)
        if s.pointee.leakBuffers > 0 {
            w.append("; ")
            w.append(decimal: s.pointee.leakBytes)
            w.append(" bytes leaked in ")
            w.append(decimal: s.pointee.leakBuffers)
            w.append(s.pointee.leakBuffers == 1 ? " buffer" : " buffers")
        }
        if s.pointee.folded > 0 {
            w.append("; ")
            w.append(decimal: s.pointee.folded)
            w.append(s.pointee.folded == 1 ? " repeat folded" : " repeats folded")
        }
        if s.pointee.suppressed > 0 {
            w.append("; ")
            w.append(decimal: s.pointee.suppressed)
            w.append(" suppressed")
        }
        w.newline()
    }

    private static func summaryJSON(_ w: inout ReportWriter, _ s: UnsafeMutablePointer<ReportTally>) {
        w.beginObject()
        w.jsonField("report", string: "summary")
        identityJSON(&w)
        w.jsonField("reports", decimal: s.pointee.total)
        w.jsonKey("counts")
        w.beginObject()
        var index = 0
        while let kind = DebugReport.Kind(index: index) {
            index += 1
            let n = s.pointee.count(kind.index).pointee
            if n > 0 { w.jsonKey(kind.summaryName); w.append(decimal: n) }
        }
        w.endObject()
        w.jsonField("leaked_bytes", decimal: s.pointee.leakBytes)
        w.jsonField("leaked_buffers", decimal: s.pointee.leakBuffers)
        w.jsonField("folded", decimal: s.pointee.folded)
        w.jsonField("suppressed", decimal: s.pointee.suppressed)
        w.endObject()
        w.newline()
    }

    /// "PID (NAME)".
    static func appendProcess(_ w: inout ReportWriter) {
        w.append(decimal: UInt64(getpid()))
        w.append(" (")
        w.appendPrintable(cString: sg_program_name(), maxLength: 64)
        w.append(")")
    }

    /// The JSON fields naming the report's schema, process and thread.
    static func identityJSON(_ w: inout ReportWriter) {
        w.jsonField("schema", decimal: 1)
        w.jsonField("pid", decimal: UInt64(getpid()))
        w.jsonField("process", cString: sg_program_name(), maxLength: 64)
        w.jsonField("thread", decimal: UInt64(AuditThread.id()))
    }
}
