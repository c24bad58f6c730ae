// Reading a flight recorder file (`log=PATH`; the writer and the format are
// Sources/SlabguardCore/Debug/FlightRecorder/FlightRecorder.swift): the header, the
// module map, the cache names, the reports, the stack depot and the transaction ring.
// The file is mapped read-only; every offset is checked against its size.  What several
// questions need (the module map, the unloaded libraries' symbols, build-id checks, the
// symbolized stacks) is parsed or computed once per file.

import Glibc

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
    }

    static let readableVersion: UInt32 = 1

    let path: String
    private let base: UnsafeRawPointer
    let size: Int

    init(path: String) throws(LogError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError(message: "cannot read '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw LogError(message: "'\(path)' is not a regular file, so not a slabguard log")
        }
        size = Int(info.st_size)
        guard size >= 8, let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw LogError(message: "'\(path)' is not a slabguard log (it is empty or cannot be mapped)")
        }
        base = UnsafeRawPointer(p)
        guard Array(UnsafeRawBufferPointer(start: base, count: 8)) == Array("SLABGLOG".utf8) else {
            throw LogError(message: "'\(path)' is not a slabguard log (no SLABGLOG header; logs are written with log=PATH or --log PATH)")
        }
        guard size >= 4096 else { throw LogError(message: "'\(path)' is truncated: \(size) bytes, not even its 4096-byte header") }
        let version = base.load(fromByteOffset: 8, as: UInt32.self)
        guard version <= LogFile.readableVersion else {
            throw LogError(message: "'\(path)' was written by a newer slabguard (log format \(version)); this one reads format \(LogFile.readableVersion)")
        }
        let expected = Int(u64(224))
        guard expected == size else { throw LogError(message: "'\(path)' is truncated: \(size) of its \(expected) bytes") }
        for (offset, bytes) in [(72, 0), (96, 0), (112, 0), (128, 136), (152, 160), (176, 184)] {
            let start = Int(u64(offset))
            let length = bytes == 0 ? 0 : Int(u64(bytes))
            guard start >= 4096, start + length <= size else { throw LogError(message: "'\(path)' is damaged: a region lies outside the file") }
        }
    }

    func u64(_ offset: Int) -> UInt64 { base.load(fromByteOffset: offset, as: UInt64.self) }

    private func text(at offset: Int, count: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(start: base + offset, count: max(0, min(count, size - offset))), as: UTF8.self)
    }

    private func cString(at offset: Int, capacity: Int) -> String {
        let bytes = UnsafeRawBufferPointer(start: base + offset, count: capacity)
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    var pid: Int { Int(u64(16)) }
    var options: String { cString(at: 512, capacity: 1024) }
    var commandLine: String { cString(at: 1536, capacity: 2048) }
    var startRealtimeSeconds: Int { Int(u64(24) / 1_000_000_000) }
    var exited: Bool { u64(200) == 1 }
    /// Seconds from the start to the exit (exited runs).
    var runSeconds: Double { seconds(from: u64(40), to: u64(216)) }
    var exitStatus: Int { Int(Int64(bitPattern: u64(208))) }
    var reports: String { text(at: Int(u64(152)), count: Int(u64(168))) }
    /// When each library unloaded during the run went (start address → audit-clock ticks).
    private(set) lazy var unloadTimes: [UInt: UInt64] = {
        guard u64(256) >= 4096 else { return [:] }
        var times: [UInt: UInt64] = [:]
        for line in text(at: Int(u64(256)), count: Int(min(u64(272), u64(264)))).split(separator: "\n") where line.hasPrefix("U ") {
            let f = line.split(separator: " ")
            if f.count == 3, let start = UInt(f[1].dropFirst(2), radix: 16), let ticks = UInt64(f[2]) { times[start] = ticks }
        }
        return times
    }()

    /// Libraries unloaded during the run (by their start address), with the function
    /// symbols captured at their dlclose: (file address, size, name), sorted.
    private(set) lazy var unloadedLibraries: [UInt: (path: String, bias: UInt, symbols: [(UInt, UInt, String)])] = {
        guard u64(256) >= 4096 else { return [:] }
        var captured: [UInt: (path: String, bias: UInt, symbols: [(UInt, UInt, String)])] = [:]
        var current: UInt? = nil
        for line in text(at: Int(u64(256)), count: Int(min(u64(272), u64(264)))).split(separator: "\n") {
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

    /// The ::kmastat table written at exit ("" when the process did not exit).
    var statistics: String { u64(232) >= 4096 ? text(at: Int(u64(232)), count: Int(min(u64(248), u64(240)))) : "" }

    private(set) lazy var modules: [Module] = {
        text(at: Int(u64(128)), count: Int(u64(144))).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 5)
            guard fields.count == 6, let start = UInt(fields[0], radix: 16), let end = UInt(fields[1], radix: 16),
                  let bias = UInt(fields[2], radix: 16), let loaded = UInt64(fields[4]) else { return nil }
            return Module(start: start, end: end, bias: bias, buildId: String(fields[3]), loadedTicks: loaded, path: String(fields[5]))
        }
    }()

    var cacheNames: [UInt: String] {
        var names: [UInt: String] = [:]
        for line in text(at: Int(u64(176)), count: Int(u64(192))).split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 1)
            if fields.count == 2, let address = UInt(fields[0].dropFirst(2), radix: 16) { names[address] = String(fields[1]) }
        }
        return names
    }

    /// Every complete transaction in the ring, oldest first.
    var transactions: [Transaction] {
        let ring = Int(u64(72)), entries = Int(u64(80)), entryBytes = Int(u64(88))
        guard entryBytes >= 56, ring + entries * entryBytes <= size else { return [] }
        var found: [Transaction] = []
        for slot in 0..<entries {
            let e = ring + slot * entryBytes
            let sequence = u64(e)
            // A slot holds transaction `sequence - 1`; 0 is never written or being rewritten.
            guard sequence != 0, Int((sequence - 1) & UInt64(entries - 1)) == slot else { continue }
            let kindThread = u64(e + 8)
            found.append(Transaction(sequence: sequence, isFree: kindThread >> 32 == 2, thread: UInt32(truncatingIfNeeded: kindThread),
                                     ticks: u64(e + 16), buffer: UInt(u64(e + 24)), size: Int(u64(e + 32)),
                                     cache: UInt(u64(e + 40)), stackId: UInt32(truncatingIfNeeded: u64(e + 48))))
        }
        return found.sorted { $0.ticks != $1.ticks ? $0.ticks < $1.ticks : $0.sequence < $1.sequence }
    }

    /// The frames of stack `id`.
    func stack(_ id: UInt32) -> [UInt] {
        let words = Int(u64(96)), count = Int(u64(104))
        guard id != 0, Int(id) + 2 <= count, words + (Int(id) + 2) * 8 <= size else { return [] }
        let record = words + Int(id) * 8
        let depth = min(Int(u64(record + 8)), 64)
        guard record + (2 + depth) * 8 <= size else { return [] }
        return (0..<depth).map { UInt(u64(record + 16 + 8 * $0)) }
    }

    /// Seconds from the start of the run to an audit-clock time.
    func secondsSinceStart(_ ticks: UInt64) -> Double { seconds(from: u64(40), to: max(ticks, u64(40))) }

    /// Seconds between two audit-clock times, by the rate the file's clock samples give.
    func seconds(from earlier: UInt64, to later: UInt64) -> Double {
        let startTicks = u64(40), startNs = u64(32), sampleTicks = u64(48), sampleNs = u64(56)
        let ticks = Double(later &- earlier)
        guard u64(64) == 1 else { return ticks / 1e9 }   // ticks are nanoseconds
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

    /// Stacks already symbolized (kmalog shows the same few stacks many times).
    private var symbolized: [[UInt]: [String]] = [:]
    /// Build-id checks made, by module path.
    private var buildIdChecked: [String: Bool] = [:]

    private func symbolize(_ frames: [UInt]) -> [String] {
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
                   let symbol = lib.symbols.last(where: { $0.0 <= pc - lib.bias - 1 && pc - lib.bias - 1 < $0.0 + max($0.1, 1) }) {
                    lines.append(line + " \(symbol.2)+0x" + String(pc - lib.bias - symbol.0, radix: 16) + " (\(lib.path), unloaded)")
                    continue
                }
                line += " (\(m.path)+0x" + String(pc - m.bias, radix: 16) + ")"
                if !same { mismatched[index] = m }
            }
            lines.append(line)
        }
        // A rebuilt or missing file's frame keeps its module+offset, marked; the mark ends
        // the line in "]", so the symbolizer leaves it alone.
        for (index, m) in mismatched {
            lines[index] += access(m.path, R_OK) != 0 ? " [the file is gone]" : " [build id differs: the file was rebuilt since the run]"
        }
        return ReportSymbolizer.rewrite(lines)
    }

    /// Whether the file at the module's path has the build id the run recorded ("-": none
    /// recorded, so nothing to compare).
    static func buildIdMatches(_ module: Module) -> Bool {
        guard module.buildId != "-" else { return true }
        guard let found = ElfNotes.buildId(path: module.path) else { return false }
        return found == module.buildId
    }
}

/// The GNU build id of an ELF file (its NT_GNU_BUILD_ID note), as lowercase hex.
enum ElfNotes {
    static func buildId(path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
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
            guard let ph = read(phoff + i * phentsize, 56), u(ph, 0, 4) == 4 else { continue }   // PT_NOTE
            let offset = u(ph, 8, 8), size = u(ph, 32, 8)
            guard size < 1 << 20, let notes = read(offset, size) else { continue }
            var at = 0
            while at + 12 <= notes.count {
                let nameSize = u(notes, at, 4), descSize = u(notes, at + 4, 4), type = u(notes, at + 8, 4)
                let name = at + 12, desc = name + ((nameSize + 3) & ~3)
                guard desc + descSize <= notes.count else { break }
                if type == 3 && nameSize == 4 && notes[name] == 0x47 && notes[name + 1] == 0x4E && notes[name + 2] == 0x55 {
                    return notes[desc..<(desc + descSize)].prefix(32).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
                }
                at = desc + ((descSize + 3) & ~3)
            }
        }
        return nil
    }
}
