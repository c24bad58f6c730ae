// `slabguard log export FILE --format folded|trace [-o OUT]` (issue 21 item 6, in part):
// a flight recorder's heap in formats other tools open.
//
//   folded   collapsed stacks (flamegraph.pl, speedscope, inferno): one line per
//            allocation stack of the buffers allocated and not freed by the end of the
//            log, frames root first separated by ';', weighted by their bytes —
//            a flame graph of live bytes by stack.  slabguard's own buffers are left out,
//            as findleaks leaves them out.
//   trace    Chrome trace-event JSON (Perfetto, chrome://tracing): counter tracks of the
//            heap over time — bytes in use in all, and per cache — from the transaction
//            ring (its window: the last million transactions), at up to 400 points.
//
//   pprof    profile.proto, gzipped (PprofWriter.swift): allocated and in-use objects and
//            space per allocation stack, for `go tool pprof`.

import ArgumentParser
import Glibc

/// Writes `bytes` to the file at `path` (created, or emptied first), or to standard output
/// when `path` is nil; a failure is one line and status 2.
func writeOutput(_ bytes: [UInt8], to path: String?) {
    let fd = path.map { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } ?? 1
    func failed() -> Never { fail("cannot write '\(path ?? "standard output")': \(String(cString: strerror(errno)))") }
    guard fd >= 0 else { failed() }
    defer { if path != nil { close(fd) } }
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { failed() }
        done += n
    }
}

struct LogExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "The heap in other tools' formats: folded stacks of live bytes, a Chrome trace of the heap over time, or a pprof profile.")
    enum Format: String, ExpressibleByArgument { case folded, trace, pprof }
    @Argument(help: "The log file.") var file: String
    @Option(help: "folded (flame graphs of live bytes by stack), trace (Chrome trace-event JSON, heap over time) or pprof (profile.proto, gzipped).") var format: Format
    @Option(name: .shortAndLong, help: "Write here instead of standard output.") var output: String?

    func run() throws {
        let log = openLog(file)
        let bytes: [UInt8]
        switch format {
        case .folded: bytes = Array(Self.folded(log).utf8)
        case .trace: bytes = Array(Self.trace(log).utf8)
        case .pprof: bytes = Pprof.profile(log)
        }
        writeOutput(bytes, to: output)
    }

    static func folded(_ log: LogFile) -> String {
        let sites = LogHeap(log, points: 0).sites.filter { $0.live > 0 }
        log.prefetchFrameLines(sites.map { log.stack($0.stack) })
        var lines: [String: Int] = [:]
        for site in sites {
            let names = log.frameLines(log.stack(site.stack)).map(functionName)
            let key = names.isEmpty ? "[unknown]" : names.reversed().joined(separator: ";")
            lines[key, default: 0] += site.liveBytes
        }
        return lines.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.key) \($0.value)\n" }.joined()
    }

    /// A frame line's function ("    #0 0x… name+0x1e (file:line)"), or its module+offset,
    /// with the characters the folded format reserves replaced.
    static func functionName(_ line: String) -> String {
        var fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.first?.hasPrefix("#") == true { fields.removeFirst() }
        if fields.first?.hasPrefix("0x") == true { fields.removeFirst() }
        guard let first = fields.first else { return "[unknown]" }
        var name = first.hasPrefix("(") ? String(first.dropFirst().prefix { $0 != ")" }) : String(first)
        if !first.hasPrefix("("), let plus = name.lastIndex(of: "+"), name[name.index(after: plus)...].hasPrefix("0x") {
            name = String(name[..<plus])
        }
        return String(name.map { $0 == ";" || $0 == " " ? "_" : $0 })
    }

    static func trace(_ log: LogFile) -> String {
        let heap = LogHeap(log)
        let names = log.cacheNames
        let pid = log.pid
        var events: [String] = ["{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":\(pid),\"args\":{\"name\":\(jsonString("\(log.commandLine) (slabguard)"))}}"]
        for point in heap.series {
            let ts = Int((point.seconds * 1e6).rounded())
            events.append("{\"name\":\"heap in use\",\"ph\":\"C\",\"pid\":\(pid),\"ts\":\(ts),\"args\":{\"bytes\":\(point.bytes)}}")
            let args = point.perCache.sorted { $0.key < $1.key }.map { "\(jsonString(names[$0.key] ?? String($0.key, radix: 16))):\($0.value)" }
            events.append("{\"name\":\"bytes in use by cache\",\"ph\":\"C\",\"pid\":\(pid),\"ts\":\(ts),\"args\":{\(args.joined(separator: ","))}}")
        }
        return "{\"traceEvents\":[\n" + events.joined(separator: ",\n") + "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"log\":"
            + jsonString(log.path) + ",\"window\":\"the transaction ring: allocations before its first entry are not counted\"}}\n"
    }
}

struct LogTimeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timeline",
        abstract: "The heap over the whole run: bytes in use per cache, tag and library, and the resident set, sampled.")
    @Argument(help: "The log file.") var file: String
    @Flag(help: "One JSON object per sample.") var json = false

    func run() throws {
        let log = openLog(file)
        let samples = log.timeline
        if json {
            for s in samples {
                let caches = s.caches.map { "{\"cache\":\(jsonString($0.name)),\"bytes\":\($0.bytes),\"buffers\":\($0.buffers)}" }
                let tags = s.tags.map { "{\"tag\":\(jsonString($0.name)),\"kind\":\(jsonString($0.kind)),\"bytes\":\($0.bytes),\"buffers\":\($0.buffers)}" }
                print("{\"seconds\":\(s.seconds),\"resident_bytes\":\(s.residentBytes),\"bytes\":\(s.bytes),"
                      + "\"caches\":[\(caches.joined(separator: ","))],\"tags\":[\(tags.joined(separator: ","))]}")
            }
            return
        }
        guard !samples.isEmpty else {
            print("no sample: the log has no timeline (the run was shorter than a second, or its log is from before the timeline)")
            return
        }
        print("the heap over the run, a sample every \(log.timelineStride) s (\(samples.count) samples; the run \(log.ending))")
        print("   seconds     resident   in caches  largest cache")
        for s in samples {
            let top = s.caches.max { $0.bytes < $1.bytes }
            let seconds = String(format1: s.seconds)
            print(String(repeating: " ", count: max(0, 10 - seconds.count)) + seconds
                  + pad(s.residentBytes, 13) + pad(s.bytes, 12) + "  " + (top.map { "\($0.name) \($0.bytes)" } ?? "-"))
        }
    }

    private func pad(_ n: Int, _ width: Int) -> String {
        let s = "\(n)"
        return String(repeating: " ", count: max(1, width - s.count)) + s
    }
}
