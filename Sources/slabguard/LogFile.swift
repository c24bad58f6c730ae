// Reading a flight recorder file (`log=PATH`; the writer and the format are
// Sources/SlabguardCore/Debug/FlightRecorder/FlightRecorder.swift; the format, shared with
// it, Sources/SlabguardFormats/RecorderFormat.swift): the header, the
// module map, the cache names, the reports, the stack depot and the transaction ring.
// The file is mapped read-only; every offset is checked against its size.  What several
// questions need (the module map, the unloaded libraries' symbols, build-id checks, the
// symbolized stacks) is parsed or computed once per file.

import Glibc
import SlabguardFormats

struct LogError: Error {
    var message: String
}

final class LogFile {
    struct Module {
        var start: UInt, end: UInt, bias: UInt
        var buildId: String
        var loadedTicks: UInt64
        var path: String
    }

    struct Transaction {
        var sequence: UInt64
        var isFree: Bool
        var thread: UInt32
        var ticks: UInt64
        var buffer: UInt
        var size: Int
        var cache: UInt
        var stackId: UInt32

        /// Whether `address` is inside the buffer (no overflow at the top of the address space).
        func holds(_ address: UInt) -> Bool { address >= buffer && address - buffer < UInt(max(size, 1)) }
    }

    static var readableVersion: UInt32 { RecorderHeader.version }
    static var headerBytes: Int { RecorderHeader.bytes }

    /// A region of the file: where it starts and how many of its bytes hold data.
    struct Region {
        var offset = 0, count = 0
    }

    let path: String
    private let base: UnsafeRawPointer
    let size: Int
    /// The regions, each checked against the file's size when the file was opened
    /// (a damaged header is one line, never a read outside the mapping).
    private var modulesRegion = Region(), reportsRegion = Region(), cachesRegion = Region()
    private var statisticsRegion = Region(), symbolsRegion = Region(), timelineRegion = Region()
    private var ringOffset = 0, ringEntries = 0, entryBytes = 0
    /// The ring's slots that hold data (the file is sparse: a short run's 64 MiB ring is
    /// mostly holes, which are not read).
    private var ringSlots: [Range<Int>] = []
    private var stacksOffset = 0, stackWords = 0

    init(path: String) throws(LogError) {
        self.path = path
        // O_NONBLOCK: a FIFO (or a device) is refused below, not waited on.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw LogError(message: "cannot read '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw LogError(message: "cannot read '\(path)': \(String(cString: strerror(errno)))") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw LogError(message: "'\(path)' is \(LogFile.kind(of: info.st_mode)), not a slabguard log (logs are regular files, written with --log PATH or log=PATH)")
        }
        guard let bytes = Int(exactly: info.st_size), bytes > 0 else {
            throw LogError(message: "'\(path)' is empty, not a slabguard log (logs are written with --log PATH or log=PATH)")
        }
        size = bytes
        guard size >= RecorderHeader.Field.magic + RecorderHeader.Width.magic, let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw LogError(message: "'\(path)' is not a slabguard log (it is too short or cannot be mapped)")
        }
        base = UnsafeRawPointer(p)
        let magic = UnsafeRawBufferPointer(start: RecorderHeader.magic.utf8Start, count: RecorderHeader.Width.magic)
        guard UnsafeRawBufferPointer(start: base + RecorderHeader.Field.magic, count: magic.count).elementsEqual(magic) else {
            throw LogError(message: "'\(path)' is not a slabguard log (no SLABGLOG header; logs are written with --log PATH or log=PATH)")
        }
        guard size >= RecorderHeader.Field.headerBytes + RecorderHeader.Width.headerBytes else {
            throw LogError(message: "'\(path)' is truncated: \(size) bytes, not even its \(LogFile.headerBytes)-byte header")
        }
        let version = base.load(fromByteOffset: RecorderHeader.Field.version, as: UInt32.self)
        guard version == LogFile.readableVersion else {
            throw LogError(message: version > LogFile.readableVersion
                ? "'\(path)' was written by a newer slabguard (log format \(version)); this one reads format \(LogFile.readableVersion)"
                : "'\(path)' has log format \(version), which no slabguard writes (this one reads format \(LogFile.readableVersion)): the file is damaged")
        }
        guard size >= LogFile.headerBytes else {
            throw LogError(message: "'\(path)' is truncated: \(size) bytes, not even its \(LogFile.headerBytes)-byte header")
        }
        let header = base.load(fromByteOffset: RecorderHeader.Field.headerBytes, as: UInt32.self)
        guard header == UInt32(LogFile.headerBytes) else {
            throw LogError(message: "'\(path)' is damaged: its header size field says \(header) bytes (format \(LogFile.readableVersion) has \(LogFile.headerBytes))")
        }
        let expected = u64(RecorderHeader.Field.fileBytes)
        guard expected == UInt64(size) else {
            throw LogError(message: expected > UInt64(size) ? "'\(path)' is truncated: \(size) of its \(expected) bytes"
                : "'\(path)' is damaged: its header gives its size as \(expected) bytes, but it has \(size)")
        }
        func damaged(_ what: String) -> LogError { LogError(message: "'\(path)' is damaged: \(what)") }
        /// A region: its (offset, capacity in units of `unit` bytes, bytes used) from the header.
        func region(_ name: String, _ region: RecorderRegion, unit: UInt64) throws(LogError) -> (offset: Int, capacity: Int, used: Int) {
            let offset = u64(region.offsetField), capacity = u64(region.capacityField)
            let used = region.usedField >= 0 ? u64(region.usedField) : 0
            if region.isOptional && offset == 0 && capacity == 0 && used == 0 { return (0, 0, 0) }   // a file from before the region
            let (bytes, overflow) = capacity.multipliedReportingOverflow(by: unit)
            guard offset >= UInt64(LogFile.headerBytes), offset <= UInt64(size), !overflow, bytes <= UInt64(size) - offset else {
                throw damaged("its \(name) region (\(capacity) \(unit == 1 ? "bytes" : "entries") at offset \(offset)) lies outside the file of \(size) bytes")
            }
            guard used <= bytes else { throw damaged("its \(name) region says \(used) bytes are used of its \(bytes)") }
            // Each value is at most `size` here, so the conversions are exact.
            return (Int(offset), Int(capacity), Int(used))
        }
        func region(_ name: String, _ r: RecorderRegion) throws(LogError) -> (offset: Int, capacity: Int, used: Int) {
            try region(name, r, unit: UInt64(r.unitBytes))
        }
        let modules = try region("module map", .modules)
        modulesRegion = Region(offset: modules.offset, count: modules.used)
        let reports = try region("reports", .reports)
        reportsRegion = Region(offset: reports.offset, count: reports.used)
        let caches = try region("cache names", .caches)
        cachesRegion = Region(offset: caches.offset, count: caches.used)
        let statistics = try region("statistics", .statistics)
        statisticsRegion = Region(offset: statistics.offset, count: statistics.used)
        let symbols = try region("symbols", .symbols)
        symbolsRegion = Region(offset: symbols.offset, count: symbols.used)
        let timeline = try region("timeline", .timeline)
        timelineRegion = Region(offset: timeline.offset, count: timeline.used - timeline.used % TimelineFormat.slotBytes)
        let stacks = try region("stack", .stacks)
        (stacksOffset, stackWords) = (stacks.offset, stacks.capacity)
        _ = try region("stack bucket", .buckets)
        let entry = u64(RecorderHeader.Field.entryBytes)
        guard entry >= UInt64(RingEntry.minimumBytes), entry <= UInt64(LogFile.headerBytes), entry % UInt64(RecorderHeader.Width.word) == 0 else {
            throw damaged("its transaction entries are \(entry) bytes (format \(LogFile.readableVersion) has \(RingEntry.bytes))")
        }
        let ring = try region("transaction", .ring, unit: entry)
        guard ring.capacity > 0, ring.capacity & (ring.capacity - 1) == 0 else {
            throw damaged("its transaction ring has \(ring.capacity) entries, not a power of two")
        }
        (ringOffset, ringEntries, entryBytes) = (ring.offset, ring.capacity, Int(entry))
        ringSlots = LogFile.slotsWithData(fd: fd, offset: ring.offset, entries: ring.capacity, entryBytes: Int(entry))
        let exitFlag = u64(RecorderHeader.Field.exited)
        guard exitFlag <= 1 else { throw damaged("its exit flag is \(exitFlag), neither 0 nor 1") }
    }

    /// The slot ranges of the ring where the file has data (SEEK_DATA / SEEK_HOLE); every
    /// slot where the file system cannot tell.
    static func slotsWithData(fd: Int32, offset: Int, entries: Int, entryBytes: Int) -> [Range<Int>] {
        let end = offset + entries * entryBytes
        var ranges: [Range<Int>] = []
        var at = offset
        while at < end {
            let data = lseek(fd, off_t(at), 3 /* SEEK_DATA */)
            if data < 0 {
                if errno == ENXIO { break }                      // no data after `at`
                return [0..<entries]                             // not supported: read it all
            }
            let hole = lseek(fd, off_t(data), 4 /* SEEK_HOLE */)
            guard hole > data else { return [0..<entries] }
            let first = (Int(data) - offset) / entryBytes
            let last = min((Int(hole) - offset + entryBytes - 1) / entryBytes, entries)
            if first >= entries { break }
            if first < last { ranges.append(max(first, 0)..<last) }
            at = Int(hole)
        }
        return ranges
    }

    /// What a file of mode `mode` is, in words ("a directory").
    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file"
        }
    }

    func u64(_ offset: Int) -> UInt64 { base.load(fromByteOffset: offset, as: UInt64.self) }

    private func text(_ region: Region) -> String {
        guard region.offset > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: base + region.offset, count: region.count), as: UTF8.self)
    }

    private func cString(at offset: Int, capacity: Int) -> String {
        let bytes = UnsafeRawBufferPointer(start: base + offset, count: capacity)
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The pid the header records (any 64-bit value a damaged header holds is shown as is).
    var pid: UInt64 { u64(RecorderHeader.Field.pid) }
    var options: String { cString(at: RecorderHeader.Field.options, capacity: RecorderHeader.Width.options) }
    var commandLine: String { cString(at: RecorderHeader.Field.commandLine, capacity: RecorderHeader.Width.commandLine) }
    var startRealtimeSeconds: Int { Int(u64(RecorderHeader.Field.startRealtime) / 1_000_000_000) }
    var exited: Bool { u64(RecorderHeader.Field.exited) == 1 }
    /// Seconds from the start to the exit (exited runs).
    var runSeconds: Double { seconds(from: startTicks, to: u64(RecorderHeader.Field.endTicks)) }
    /// The status the exit recorded (an abort records 128 + SIGABRT).
    var exitStatus: Int64 { Int64(bitPattern: u64(RecorderHeader.Field.exitStatus)) }
    private var startTicks: UInt64 { u64(RecorderHeader.Field.startTicks) }
    var reports: String { text(reportsRegion) }

    /// How the run ended, in the words every subcommand uses (design §7: recorded once,
    /// told the same way everywhere): "exited with status N after Ts", "killed by signal N
    /// after Ts", "did not exit: last transaction at Ts after the first recorded".
    private(set) lazy var ending: String = {
        if exited {
            let status = exitStatus
            let after = " after \(format(runSeconds, digits: 6))s"
            if status > 128 && status < 128 + 65 { return "killed by signal \(status - 128)" + after }
            if status >= 0 && status <= 255 { return "exited with status \(status)" + after }
            return "exited with status \(status & 0xff) (exit(\(status)))" + after
        }
        let all = transactions
        guard let first = all.first, let last = all.last else { return "did not exit: no transactions recorded" }
        return "did not exit: last transaction at \(format(seconds(from: first.ticks, to: last.ticks), digits: 6))s after the first recorded"
    }()

    /// The signal that ended the run, when a signal did (an abort after a report records
    /// 128 + SIGABRT).
    var killedBySignal: Int? {
        guard exited, exitStatus > 128, exitStatus < 128 + 65 else { return nil }
        return Int(exitStatus - 128)
    }

    /// Whether the run's own leak check at exit ran: the options asked for it (`leaks`,
    /// or `default`, which holds it) and the process exited, not killed by a signal (the
    /// abort after a report writes the log's last words and checks nothing).
    var exitLeakCheckRan: Bool {
        guard exited, killedBySignal == nil else { return false }
        let words = options.split(separator: ",").map { $0.split(separator: "=").first.map(String.init) ?? "" }
        return words.contains("leaks") || words.contains("default")
    }

    /// When each library unloaded during the run went (start address → audit-clock ticks).
    private(set) lazy var unloadTimes: [UInt: UInt64] = {
        var times: [UInt: UInt64] = [:]
        for line in text(symbolsRegion).split(separator: "\n") where line.hasPrefix("U ") {
            let f = line.split(separator: " ")
            if f.count == 3, let start = UInt(f[1].dropFirst(2), radix: 16), let ticks = UInt64(f[2]) { times[start] = ticks }
        }
        return times
    }()

    /// Libraries unloaded during the run (by their start address), with the function
    /// symbols captured at their dlclose: (file address, size, name), sorted.
    private(set) lazy var unloadedLibraries: [UInt: (path: String, bias: UInt, symbols: [(UInt, UInt, String)])] = {
        var captured: [UInt: (path: String, bias: UInt, symbols: [(UInt, UInt, String)])] = [:]
        var current: UInt? = nil
        for line in text(symbolsRegion).split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 4)
            if f.first == "M", f.count == 5, let start = UInt(f[1].dropFirst(2), radix: 16), let bias = UInt(f[3].dropFirst(2), radix: 16) {
                current = start
                captured[start] = (String(f[4]), bias, [])
            } else if f.first == "S", f.count >= 4, let c = current, let value = UInt(f[1].dropFirst(2), radix: 16),
                      let size = UInt(f[2].dropFirst(2), radix: 16) {
                captured[c]!.symbols.append((value, size, f[3...].joined(separator: " ")))
            }
        }
        let unloaded = unloadTimes
        return captured.filter { unloaded[$0.key] != nil }.mapValues { ($0.path, $0.bias, $0.symbols.sorted { $0.0 < $1.0 }) }
    }()

    /// One sample of the heap over time (TimelineFormat).
    struct Sample {
        var seconds: Double
        var residentBytes: Int
        var caches: [(name: String, bytes: Int, buffers: Int)] = []
        var tags: [(kind: String, name: String, bytes: Int, buffers: Int)] = []
        var bytes: Int { caches.reduce(0) { $0 + $1.bytes } }
    }

    /// The heap over time, oldest first (empty for a log from before the timeline, or a run
    /// shorter than its first second).
    private(set) lazy var timeline: [Sample] = {
        guard timelineRegion.offset > 0 else { return [] }
        var samples: [Sample] = []
        var at = 0
        while at + TimelineFormat.slotBytes <= timelineRegion.count {
            let slot = UnsafeRawBufferPointer(start: base + timelineRegion.offset + at, count: TimelineFormat.slotBytes)
            at += TimelineFormat.slotBytes
            var sample: Sample? = nil
            for line in String(decoding: slot.prefix { $0 != 0 }, as: UTF8.self).split(separator: "\n") {
                let f = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: false)
                switch f.first {
                case "T" where f.count >= 3:
                    guard let ticks = UInt64(f[1]), let rss = Int(f[2]) else { continue }
                    sample = Sample(seconds: secondsSinceStart(ticks), residentBytes: rss)
                case "c" where f.count >= 4:
                    guard let bytes = Int(f[1]), let buffers = Int(f[2]) else { continue }
                    sample?.caches.append((f[3...].joined(separator: " "), bytes, buffers))
                case "t" where f.count >= 5:
                    guard let bytes = Int(f[2]), let buffers = Int(f[3]) else { continue }
                    sample?.tags.append((String(f[1]), String(f[4]), bytes, buffers))
                default: continue
                }
            }
            if let sample { samples.append(sample) }
        }
        return samples
    }()

    /// Seconds between two samples now (1, doubled each time the region filled).
    var timelineStride: Int { Int(max(u64(RecorderHeader.Field.timelineStride), 1)) }

    /// The ::kmastat table written at exit ("" when the process did not exit).
    var statistics: String { text(statisticsRegion) }

    private(set) lazy var modules: [Module] = {
        text(modulesRegion).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 5)
            guard fields.count == 6, let start = UInt(fields[0], radix: 16), let end = UInt(fields[1], radix: 16),
                  let bias = UInt(fields[2], radix: 16), let loaded = UInt64(fields[4]) else { return nil }
            return Module(start: start, end: end, bias: bias, buildId: String(fields[3]), loadedTicks: loaded, path: String(fields[5]))
        }
    }()

    private(set) lazy var cacheNames: [UInt: String] = {
        var names: [UInt: String] = [:]
        for line in text(cachesRegion).split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 1)
            if fields.count == 2, let address = UInt(fields[0].dropFirst(2), radix: 16) { names[address] = String(fields[1]) }
        }
        return names
    }()

    /// Every complete transaction in the ring, oldest first (the ring was checked to lie
    /// inside the file; a damaged entry's values are kept as they are, never trapped on).
    private(set) lazy var transactions: [Transaction] = {
        var found: [Transaction] = []
        let mask = UInt64(truncatingIfNeeded: ringEntries &- 1)
        for slot in ringSlots.joined() {
            let e = ringOffset + slot * entryBytes
            func field(_ offset: Int) -> UInt64 { u64(e + offset) }
            let sequence = field(RingEntry.Field.sequence)
            // A slot holds transaction `sequence - 1`; 0 is never written or being rewritten.
            guard sequence != 0, (sequence &- 1) & mask == UInt64(slot) else { continue }
            let kindThread = field(RingEntry.Field.kindThread)
            found.append(Transaction(sequence: sequence, isFree: kindThread >> RingEntry.kindShift == TransactionKind.free.rawValue,
                                     thread: UInt32(truncatingIfNeeded: kindThread), ticks: field(RingEntry.Field.time),
                                     buffer: UInt(field(RingEntry.Field.address)), size: Int(clamping: field(RingEntry.Field.size)),
                                     cache: UInt(field(RingEntry.Field.cache)),
                                     stackId: UInt32(truncatingIfNeeded: field(RingEntry.Field.stackId))))
        }
        return found.sorted { $0.ticks != $1.ticks ? $0.ticks < $1.ticks : $0.sequence < $1.sequence }
    }()

    /// The loaded libraries only slabguard needs (OwnLibraries).
    private(set) lazy var ownModulePaths: Set<String> = {
        let paths = Set(modules.map(\.path))
        let own = OwnLibraries.paths(among: Array(paths))
        return paths.filter { own.contains(OwnLibraries.canonical($0)) }
    }()

    /// One stack's counters in the depot (StackDepotFormat): the debug buffers allocated
    /// from it over the whole run, and those still live when the log was last written.
    struct DepotSite {
        var stack: UInt32
        var liveBytes: Int, liveBuffers: Int, allocations: Int, allocatedBytes: Int
    }

    /// Every stack of the depot that allocated, in id order: a walk of the stack records
    /// (one still being written when the process died ends it).
    private(set) lazy var depotSites: [DepotSite] = {
        var found: [DepotSite] = []
        func word(_ n: Int) -> UInt64 { u64(stacksOffset + n * 8) }
        func signed(_ n: Int) -> Int { Int(Int64(bitPattern: word(n))) }
        StackDepotFormat.forEachRecord(used: stackWords, word: word) { index, _ in
            let site = DepotSite(stack: UInt32(index), liveBytes: signed(index + StackDepotFormat.liveBytesWord),
                                 liveBuffers: signed(index + StackDepotFormat.liveBuffersWord),
                                 allocations: signed(index + StackDepotFormat.allocationsWord),
                                 allocatedBytes: signed(index + StackDepotFormat.allocatedBytesWord))
            if site.allocations > 0 { found.append(site) }
        }
        return found
    }()

    /// The frames of stack `id` (none when its record is not inside the stack region).
    func stack(_ id: UInt32) -> [UInt] {
        let index = Int(id), first = StackDepotFormat.framesWord
        guard id != 0, index + first <= stackWords else { return [] }
        func word(_ n: Int) -> UInt64 { u64(stacksOffset + (index + n) * 8) }
        let depth = Int(min(word(StackDepotFormat.depthWord), UInt64(StackDepotFormat.maxDepth)))
        guard index + first + depth <= stackWords else { return [] }
        return (0..<depth).map { UInt(word(first + $0)) }
    }

    /// Whether a buffer was allocated by no code of the program or its libraries: by
    /// slabguard itself or the dynamic loader.  The library records a stack from the
    /// first return address outside its own text (it hops over its frames), so:
    /// - past the C library's frames (strdup and the like), the caller is in
    ///   libslabguard_rt.so: slabguard's code asked the C library for it;
    /// - every frame is in the dynamic loader: the allocation came straight from a
    ///   constructor whose frames were hopped over, slabguard's own (a constructor of the
    ///   program or another library is a frame of its own), or from the loader itself.
    func isSlabguardsOwn(_ t: Transaction) -> Bool { isSlabguardsOwn(stack: t.stackId) }

    func isSlabguardsOwn(stack id: UInt32) -> Bool {
        let frames = stack(id)
        let paths = frames.map { pc in modules.last(where: { $0.start <= pc && pc < $0.end })?.path ?? "" }
        return OwnLibraries.isOwnStack(modules: paths) { ownModulePaths.contains($0) }
    }

    static func baseName(_ path: String) -> String { path.split(separator: "/").last.map(String.init) ?? path }
    static func isLoader(_ name: String) -> Bool { name.hasPrefix("ld-linux") || name.hasPrefix("ld64.so") || name.hasPrefix("ld-musl") }

    /// Seconds from the start of the run to an audit-clock time.
    func secondsSinceStart(_ ticks: UInt64) -> Double { seconds(from: startTicks, to: max(ticks, startTicks)) }

    /// Seconds between two audit-clock times, by the rate the file's clock samples give.
    func seconds(from earlier: UInt64, to later: UInt64) -> Double {
        let startNs = u64(RecorderHeader.Field.startMonotonic)
        let sampleTicks = u64(RecorderHeader.Field.clockTicks), sampleNs = u64(RecorderHeader.Field.clockNanoseconds)
        let ticks = Double(later &- earlier)
        guard u64(RecorderHeader.Field.useTSC) == 1 else { return ticks / 1e9 }   // ticks are nanoseconds
        guard sampleTicks > startTicks, sampleNs > startNs else { return 0 }
        return ticks * Double(sampleNs - startNs) / Double(sampleTicks - startTicks) / 1e9
    }

    /// Frame lines for `frames` (`    #N 0xADDR (MODULE+0xOFF)`), symbolized offline from the
    /// module map's files (ReportSymbolizer: function, file:line where debug info exists) —
    /// only from a file whose build id is the one the run recorded: a file rebuilt since
    /// is said, never read for names.
    func frameLines(_ frames: [UInt]) -> [String] {
        if let done = symbolized[frames] { return done }
        let lines = symbolize(frames)
        symbolized[frames] = lines
        return lines
    }

    /// Symbolizes many stacks at once: one symbolizer call per module for all of them
    /// (kmalog, findleaks), instead of one per module per stack.
    func prefetchFrameLines(_ stacks: [[UInt]]) {
        let pending = Array(Set(stacks.filter { !$0.isEmpty && symbolized[$0] == nil }))
        guard !pending.isEmpty else { return }
        let separator = "slabguard-stack-separator"
        var lines: [String] = []
        for frames in pending { lines += unsymbolizedLines(frames) + [separator] }
        let rewritten = ReportSymbolizer.rewrite(lines)
        var current: [String] = [], index = 0
        for line in rewritten {
            if line == separator {
                if index < pending.count { symbolized[pending[index]] = current }
                index += 1
                current = []
            } else {
                current.append(line)
            }
        }
    }

    /// Stacks already symbolized (kmalog shows the same few stacks many times).
    private var symbolized: [[UInt]: [String]] = [:]
    /// Build-id checks made, by module path.
    private var buildIdChecked: [String: Bool] = [:]

    private func symbolize(_ frames: [UInt]) -> [String] { ReportSymbolizer.rewrite(unsymbolizedLines(frames)) }

    /// The frame lines before the symbolizer: module+offset, or the captured symbol of an
    /// unloaded library, or the build-id mark.
    private func unsymbolizedLines(_ frames: [UInt]) -> [String] {
        let unloaded = unloadedLibraries
        var mismatched: [Int: Module] = [:]
        var lines: [String] = []
        for (index, pc) in frames.enumerated() {
            var line = "    #\(index) 0x" + String(pc, radix: 16)
            if let m = modules.last(where: { $0.start <= pc && pc < $0.end }) {
                let same = buildIdChecked[m.path] ?? LogFile.buildIdMatches(m)
                buildIdChecked[m.path] = same
                // An unloaded library whose file is gone or rebuilt: the symbols captured
                // at its dlclose name the frame.
                if !same, let lib = unloaded[m.start],
                   let symbol = lib.symbols.last(where: { $0.0 <= pc &- lib.bias &- 1 && pc &- lib.bias &- 1 < $0.0 &+ max($0.1, 1) }) {
                    lines.append(line + " \(symbol.2)+0x" + String(pc &- lib.bias &- symbol.0, radix: 16) + " (\(lib.path), unloaded)")
                    continue
                }
                line += " (\(m.path)+0x" + String(pc &- m.bias, radix: 16) + ")"
                if !same { mismatched[index] = m }
            }
            lines.append(line)
        }
        // A rebuilt or missing file's frame keeps its module+offset, marked; the mark ends
        // the line in "]", so the symbolizer leaves it alone.
        for (index, m) in mismatched {
            lines[index] += access(m.path, R_OK) != 0 ? " [the file is gone]" : " [build id differs: the file was rebuilt since the run]"
        }
        return lines
    }

    /// Whether the file at the module's path has the build id the run recorded ("-": none
    /// recorded, so nothing to compare).
    static func buildIdMatches(_ module: Module) -> Bool {
        // Only a regular file is read (a damaged log may name a FIFO or a device).
        var info = stat()
        guard stat(module.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
        guard module.buildId != "-" else { return true }
        guard let found = ElfNotes.buildId(path: module.path) else { return false }
        return found == module.buildId
    }
}

/// The GNU build id of an ELF file (its NT_GNU_BUILD_ID note, parsed by SlabguardFormats'
/// ElfNote, as the library does), as lowercase hex.
enum ElfNotes {
    static func buildId(path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        func read(_ offset: Int, _ count: Int) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: count)
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return n == count ? bytes : nil
        }
        func u(_ b: [UInt8], _ at: Int, _ width: Int) -> Int {
            var v = 0
            for i in 0..<width { v |= Int(b[at + i]) << (8 * i) }
            return v
        }
        guard let header = read(0, 64), header[0] == 0x7F, header[1] == 0x45, header[4] == 2 else { return nil }  // ELF64
        let phoff = u(header, 32, 8), phentsize = u(header, 54, 2), phnum = u(header, 56, 2)
        for i in 0..<phnum {
            guard let ph = read(phoff &+ i &* phentsize, 56), u(ph, 0, 4) == 4 else { continue }   // PT_NOTE
            let offset = u(ph, 8, 8), size = u(ph, 32, 8)
            guard size > 0, size < 1 << 20, let notes = read(offset, size) else { continue }
            let found = notes.withUnsafeBytes { ElfNote.gnuBuildId(in: $0.baseAddress!, count: $0.count) }
            if let found {
                return notes[found.offset..<(found.offset + found.count)].prefix(32).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            }
        }
        return nil
    }
}
