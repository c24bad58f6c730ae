// Reading a running process's statistics (`slabguard stat PID`, `slabguard top PID`,
// design §12) without disturbing it: a process in a debug mode rewrites the ::kmastat
// table in its recorder's statistics region about once a second (under a sequence
// number, odd while it writes: Debug/FlightRecorder/FlightRecorder.swift,
// refreshStatistics) — its log with `log=PATH`, else a live recorder in a memory file.
// Here: find that file from /proc/PID/maps (a shared mapping whose header is a slabguard
// log of this pid; a memory file through /proc/PID/fd), read the header and the region with pread,
// and retry while the sequence says a rewrite is under way.  Nothing is written to the
// process, nothing stops it, no ptrace.

import Glibc
import SlabguardFormats

struct LiveError: Error {
    var message: String
    var exited = false   // the process is gone (or a zombie): `top` ends there
}

/// One consistent copy of a process's live table.
struct LiveSnapshot {
    struct Cache { var name: String; var bufferSize: Int; var inUse: Int; var total: Int; var memory: Int; var allocations: Int; var failures: Int }
    struct Tag { var name: String; var kind: String; var inUse: Int; var bytes: Int; var peak: Int; var allocations: Int; var frees: Int }

    var pid: Int32
    var command: String
    var options: String
    var logPath: String
    /// A live recorder (no log=), read through /proc/PID/fd.
    var inMemory: Bool { logPath.hasPrefix("/proc/") }
    var table: String
    /// Seconds since the process's start at which the table was written.
    var writtenAt: Double
    /// Seconds from then to now.
    var age: Double
    struct Site { var stack: Int; var liveBytes: Int; var liveBuffers: Int; var allocations: Int; var allocatedBytes: Int; var frames: [String] }

    var caches: [Cache] = []
    var tags: [Tag] = []
    var sites: [Site] = []
    var large = (spans: 0, bytes: 0)

    /// Parses the table's lines (StatisticsTable's format: names left, numbers right; the
    /// allocation sites last, "site ID LIVE_BYTES LIVE_BUFFERS ALLOCATIONS BYTES" and frames).
    /// The frames are symbolized first (file:line), in the table too.
    /// Sites whose frames are all in `ownLibraries` or the loader are slabguard's own (OwnLibraries): left out.
    mutating func parse(ownLibraries: Set<String> = []) {
        let lines = SiteLines.rewriting(table.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)) { site, frames in
            OwnLibraries.isOwnStack(modules: frames.map { FrameLine($0)?.module ?? "" }, own: ownLibraries) ? [] : [site] + frames
        }
        table = ReportSymbolizer.rewrite(lines).joined(separator: "\n")
        for line in table.split(separator: "\n") {
            if line.hasPrefix("site ") {
                let n = line.split(separator: " ").dropFirst().compactMap { Int($0) }
                if n.count == 5 { sites.append(Site(stack: n[0], liveBytes: n[1], liveBuffers: n[2], allocations: n[3], allocatedBytes: n[4], frames: [])) }
                continue
            }
            if line.hasPrefix("    #"), !sites.isEmpty {
                sites[sites.count - 1].frames.append(line.trimmingCharacters(in: " "))
                continue
            }
            if line.hasPrefix("large allocations: ") {
                let n = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
                if n.count >= 2 { large = (n[0], n[1]) }
                continue
            }
            let f = line.split(separator: " ")
            guard f.count >= 7 else { continue }
            let numbers = f.suffix(5).compactMap { Int($0) }
            guard numbers.count == 5 else { continue }
            let head = f.dropLast(5)
            if let kind = head.last, kind == "tag" || kind == "library" {
                tags.append(Tag(name: head.dropLast().joined(separator: " "), kind: String(kind), inUse: numbers[0], bytes: numbers[1],
                                peak: numbers[2], allocations: numbers[3], frees: numbers[4]))
            } else if let size = head.last.flatMap({ Int($0) }), f.count >= 7 {
                caches.append(Cache(name: head.dropLast().joined(separator: " "), bufferSize: size, inUse: numbers[0], total: numbers[1],
                                    memory: numbers[2], allocations: numbers[3], failures: numbers[4]))
            }
        }
    }
}

/// The allocation sites at the end of a statistics table (Statistics/SiteTable.swift): a
/// "site ID …" line, then its frame lines.
enum SiteLines {
    /// `lines` with each site's block (its line and frames) replaced by what `replace`
    /// gives for it (nothing: the site is left out).
    static func rewriting(_ lines: [String], _ replace: (_ site: String, _ frames: [String]) -> [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < lines.count {
            guard lines[i].hasPrefix("site ") else { out.append(lines[i]); i += 1; continue }
            var end = i + 1
            while end < lines.count && lines[end].hasPrefix("    #") { end += 1 }
            out += replace(lines[i], Array(lines[(i + 1)..<end]))
            i = end
        }
        return out
    }

    /// The stack id a site line names.
    static func stack(of site: String) -> UInt32? { site.split(separator: " ").dropFirst().first.flatMap { UInt32($0) } }
}

enum LiveStatistics {
    /// The live table of process `pid`, or one line saying why not.
    static func snapshot(of pid: Int32) throws(LiveError) -> LiveSnapshot {
        let (path, modules) = try recorder(of: pid)
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw LiveError(message: "cannot read process \(pid)'s log '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: RecorderHeader.bytes)
        func word(_ field: Int) -> UInt64 {
            header.withUnsafeBytes { $0.load(fromByteOffset: field, as: UInt64.self) }
        }
        for _ in 0..<200 {
            guard pread(fd, &header, header.count, 0) == header.count else {
                throw LiveError(message: "cannot read process \(pid)'s log '\(path)': it is shorter than its header")
            }
            let sequence = word(RecorderHeader.Field.statisticsSequence)
            let ticks = word(RecorderHeader.Field.statisticsTicks)
            if sequence == 0 || ticks == 0 {
                throw LiveError(message: "process \(pid) has written no statistics yet (the first table comes after its first second of allocations); try again")
            }
            if sequence & 1 == 1 { usleep(1000); continue }
            let offset = Int(word(RecorderHeader.Field.statisticsOffset)), capacity = Int(word(RecorderHeader.Field.statisticsBytes))
            let used = Int(word(RecorderHeader.Field.statisticsUsed))
            guard offset >= RecorderHeader.bytes, used >= 0, used <= capacity, capacity <= RecorderRegion.statistics.bytes else {
                throw LiveError(message: "process \(pid)'s log '\(path)' is damaged: its statistics region lies outside the file")
            }
            var bytes = [UInt8](repeating: 0, count: used)
            guard pread(fd, &bytes, used, off_t(offset)) == used else {
                throw LiveError(message: "cannot read process \(pid)'s log '\(path)': it is shorter than its header says")
            }
            var after: UInt64 = 0
            guard pread(fd, &after, 8, off_t(RecorderHeader.Field.statisticsSequence)) == 8, after == sequence else { continue }
            var snapshot = LiveSnapshot(pid: pid, command: text(header, RecorderHeader.Field.commandLine, RecorderHeader.Width.commandLine),
                                        options: text(header, RecorderHeader.Field.options, RecorderHeader.Width.options),
                                        logPath: path, table: String(decoding: bytes, as: UTF8.self), writtenAt: 0, age: 0)
            // Ticks to seconds with the clock sample the writer left beside the table.
            let startTicks = word(RecorderHeader.Field.startTicks), startNs = word(RecorderHeader.Field.startMonotonic)
            let clockTicks = word(RecorderHeader.Field.clockTicks), clockNs = word(RecorderHeader.Field.clockNanoseconds)
            if clockTicks > startTicks && clockNs > startNs && ticks >= startTicks {
                let ns = Double(ticks - startTicks) * Double(clockNs - startNs) / Double(clockTicks - startTicks)
                snapshot.writtenAt = ns / 1e9
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                let nowNs = Double(now.tv_sec) * 1e9 + Double(now.tv_nsec)
                snapshot.age = max(0, (nowNs - Double(startNs) - ns) / 1e9)
            }
            snapshot.parse(ownLibraries: OwnLibraries.paths(among: modules))
            return snapshot
        }
        throw LiveError(message: "process \(pid) kept rewriting its statistics while they were read; try again")
    }

    private static func text(_ header: [UInt8], _ offset: Int, _ width: Int) -> String {
        let slice = header[offset..<min(header.count, offset + width)]
        let end = slice.firstIndex(of: 0) ?? slice.endIndex
        return String(decoding: slice[slice.startIndex..<end], as: UTF8.self).trimmingTrailingSpaces()
    }

    /// The path of process `pid`'s flight recorder (the shared file mapping whose header
    /// is a slabguard log of that pid), and the files it has mapped executable.
    static func recorder(of pid: Int32) throws(LiveError) -> (path: String, modules: [String]) {
        guard pid > 0 else { throw LiveError(message: "'\(pid)' is not a process id") }
        if kill(pid, 0) != 0 && errno == ESRCH { throw LiveError(message: "no process \(pid)", exited: true) }
        let maps = "/proc/\(pid)/maps"
        let fd = open(maps, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == EACCES || e == EPERM {
                throw LiveError(message: "cannot inspect process \(pid): permission denied (a process of another user; run as that user)")
            }
            throw LiveError(message: e == ENOENT ? "no process \(pid)" : "cannot read \(maps): \(String(cString: strerror(e)))")
        }
        let text = readAll(fd)
        close(fd)
        if text.isEmpty {
            if isZombie(pid) { throw LiveError(message: "process \(pid) exited", exited: true) }
            throw LiveError(message: "cannot inspect process \(pid): its memory map is unreadable (a process of another user?)")
        }
        // One pass over the map: the shared file mappings (the recorder is one of them), in
        // order, and the files mapped executable (its modules, for OwnLibraries).
        var runsSlabguard = false
        var shared: [String] = []
        var modules = Set<String>()
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6 else { continue }
            let path = fields[5].trimmingCharacters(in: " ")
            if path.hasSuffix("libslabguard_rt.so") { runsSlabguard = true }
            guard path.hasPrefix("/") else { continue }
            if fields[1].contains("x") { modules.insert(path) }
            if fields[1].hasSuffix("s") && !shared.contains(path) { shared.append(path) }
        }
        for path in shared {
            if path.hasPrefix(liveMapping) {
                if let live = try liveRecorder(of: pid) { return (live, Array(modules)) }
                throw LiveError(message: "process \(pid) closed the descriptor of its live recorder (a program that closes every descriptor): start it with --log PATH (log=PATH), whose file stat, top and leaks read instead")
            }
            if isLog(path, of: pid) { return (path, Array(modules)) }
        }
        throw LiveError(message: runsSlabguard
            ? "process \(pid) runs slabguard in fast mode (or sample=N alone), which keeps no live statistics: start it in a debug mode (slabguard run, or SLABGUARD_DEBUG=default)"
            : "process \(pid) does not run slabguard (start it with slabguard run -- PROG, or LD_PRELOAD with SLABGUARD_DEBUG=default)")
    }

    /// How a debug run without log= shows its live recorder in /proc/PID/maps: a memory
    /// file (Debug/FlightRecorder/FlightRecorder.swift, createLive).
    static let liveMapping = "/memfd:slabguard-live"

    /// The live recorder's path through the descriptor the process keeps open for it
    /// (/proc/PID/fd/N, which the process's owner may open), or nil.
    private static func liveRecorder(of pid: Int32) throws(LiveError) -> String? {
        guard let dir = opendir("/proc/\(pid)/fd") else {
            if errno == EACCES || errno == EPERM {
                throw LiveError(message: "cannot inspect process \(pid): permission denied (a process of another user; run as that user)")
            }
            return nil
        }
        defer { closedir(dir) }
        var link = [CChar](repeating: 0, count: 256)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let n = Int32(name), n >= 3 else { continue }
            let path = "/proc/\(pid)/fd/\(n)"
            let length = readlink(path, &link, link.count - 1)
            guard length > 0 else { continue }
            let target = link.withUnsafeBufferPointer { String(decoding: UnsafeRawBufferPointer($0).prefix(length), as: UTF8.self) }
            if target.hasPrefix(liveMapping), isLog(path, of: pid) { return path }
        }
        return nil
    }

    /// Everything left to read from `fd` (a /proc file: its size is not known ahead).
    private static func readAll(_ fd: Int32) -> [UInt8] {
        var text: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            text += chunk[0..<n]
        }
        return text
    }

    /// /proc/PID/stat's state is Z: exited, not yet reaped.
    private static func isZombie(_ pid: Int32) -> Bool {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0, let paren = buffer[0..<n].lastIndex(of: 0x29), paren + 2 < n else { return false }   // after "(comm) "
        return buffer[paren + 2] == 0x5A   // Z
    }

    private static func isLog(_ path: String, of pid: Int32) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 24)
        guard pread(fd, &header, header.count, 0) == header.count else { return false }
        guard header.prefix(8).elementsEqual("SLABGLOG".utf8) else { return false }
        return header.withUnsafeBytes { $0.load(fromByteOffset: RecorderHeader.Field.pid, as: UInt64.self) } == UInt64(pid)
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }

    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String { String(self).trimmingCharacters(in: set) }
}
