// `slabguard log` — the post-mortem half (design §7): questions asked of a flight
// recorder file after the process is gone, as mdb's dcmds ask a kernel dump.
//
//   slabguard log info FILE              the run: program, pid, options, how it ended,
//                                        counts, every report's headline
//   slabguard log kmalog FILE [ADDR]     transactions newest first (::kmalog), T-SECONDS
//                                        before the last one; with ADDR only those on the
//                                        buffer holding ADDR; --unique: the distinct call
//                                        sites with their counts, rarest first
//   slabguard log whatis FILE ADDR       what ADDR is at the end of the log: inside which
//                                        buffer (offset, cache, allocated or free, its last
//                                        allocation and free), or inside which library
//   slabguard log findleaks FILE         buffers never freed: the run's own exit check's
//                                        leak reports when it made one, else the buffers
//                                        the ring shows allocated and not freed, grouped
//                                        by allocation stack, largest first
//   slabguard log kmastat FILE           per-cache statistics at the end (the table the
//                                        run wrote at exit, else counts from the ring)
//
// Every subcommand takes --json (one JSON object per line).  A file that is not a
// slabguard log, is truncated or was written by a newer format: one line, status 2.

import ArgumentParser
import Glibc
import SlabguardFormats

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Answer post-mortem questions from a flight recorder file (log=PATH, run --log PATH).",
        subcommands: [LogInfo.self, LogKmalog.self, LogWhatis.self, LogFindleaks.self, LogKmastat.self, LogMsgbuf.self, LogExport.self, LogReport.self, LogTimeline.self]
    )
}

/// An address argument (0x... or hex digits), or the process ends with one line, status 2.
func parseAddress(_ text: String) -> UInt {
    let digits = text.hasPrefix("0x") || text.hasPrefix("0X") ? String(text.dropFirst(2)) : text
    guard let a = UInt(digits, radix: 16) else { fail("'\(text)' is not an address (0x followed by hex digits)") }
    return a
}

/// Opens the log or ends the process with its one-line error and status 2.
func openLog(_ path: String) -> LogFile {
    do { return try LogFile(path: path) } catch { fail(error.message) }
}

/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String { "\"" + ReportSymbolizer.jsonEscaped(s) + "\"" }

struct LogInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "The run the log recorded.")
    @Argument(help: "The log file.") var file: String
    @Flag(help: "One JSON object.") var json = false

    func run() throws {
        let log = openLog(file)
        let transactions = log.transactions
        let headlines = log.reports.split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix("slabguard: ") && !$0.hasPrefix("slabguard: summary:") }
        let stacks = Set(transactions.map(\.stackId)).subtracting([0]).count
        let ending = log.ending
        if json {
            print("{\"program\":\(jsonString(log.commandLine)),\"pid\":\(log.pid),\"options\":\(jsonString(log.options)),"
                  + "\"start\":\(log.startRealtimeSeconds),\"exited\":\(log.exited),\"status\":\(log.exited ? String(log.exitStatus) : "null"),"
                  + "\"ending\":\(jsonString(ending)),\"transactions\":\(transactions.count),\"stacks\":\(stacks),"
                  + "\"reports\":[" + headlines.map(jsonString).joined(separator: ",") + "]}")
            return
        }
        print("program:       \(log.commandLine)")
        print("pid:           \(log.pid)")
        print("options:       \(log.options)")
        print("started:       \(utcTime(log.startRealtimeSeconds))")
        print("ended:         \(ending)")
        print("transactions:  \(transactions.count) in the ring (\(transactions.filter { !$0.isFree }.count) allocations, "
              + "\(transactions.filter(\.isFree).count) frees), \(stacks) distinct stacks")
        let modules = log.modules, unloads = log.unloadTimes
        print("modules:       \(modules.count) (\(modules.filter { $0.loadedTicks != 0 }.count) loaded and \(unloads.count) unloaded during the run)")
        for m in modules where unloads[m.start] != nil || m.loadedTicks != 0 {
            let loaded = format(log.secondsSinceStart(m.loadedTicks), digits: 6)
            let unloaded = unloads[m.start].map { ", unloaded at " + format(log.secondsSinceStart($0), digits: 6) + "s" } ?? ""
            print("  \(m.path): loaded at \(loaded)s\(unloaded)")
        }
        print("reports:       \(headlines.count)")
        for h in headlines { print("  " + h) }
    }
}

struct LogKmalog: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kmalog",
        abstract: "Transactions, newest first, with their stacks (::kmalog); with ADDR, those of the buffer holding it.")
    @Argument(help: "The log file.") var file: String
    @Argument(help: "An address (0x...): only transactions on the buffer that holds it.") var address: String?
    @Flag(help: "The distinct call sites instead, with how often each occurs, rarest first.") var unique = false
    @Flag(help: "One JSON object per line.") var json = false

    func run() throws {
        let log = openLog(file)
        let address = self.address.map(parseAddress)
        let all = log.transactions
        guard let last = all.last else { print("no transactions in \(file)"); return }
        var chosen = all.reversed().filter { t in
            guard let a = address else { return true }
            return t.holds(a)
        }
        if chosen.isEmpty {
            print("no transactions for 0x" + String(address ?? 0, radix: 16))
            return
        }
        let caches = log.cacheNames
        if unique {
            var counts: [String: (count: Int, isFree: Bool, stack: UInt32)] = [:]
            var order: [String] = []
            for t in chosen {
                let key = "\(t.isFree) \(t.stackId)"
                if counts[key] == nil { order.append(key); counts[key] = (0, t.isFree, t.stackId) }
                counts[key]!.count += 1
            }
            let sorted = order.sorted { counts[$0]!.count < counts[$1]!.count }
            log.prefetchFrameLines(sorted.map { log.stack(counts[$0]!.stack) })
            for key in sorted {
                let c = counts[key]!
                let frames = log.frameLines(log.stack(c.stack))
                if json {
                    print("{\"count\":\(c.count),\"kind\":\"\(c.isFree ? "free" : "alloc")\",\"stack\":["
                          + frames.map { jsonString($0.trimmingLeadingSpaces) }.joined(separator: ",") + "]}")
                } else {
                    print("\(c.count) \(c.isFree ? "free" : "alloc")")
                    for f in frames { print(f) }
                }
            }
            return
        }
        if chosen.count > 10_000 && address == nil { chosen = Array(chosen.prefix(10_000)) }
        log.prefetchFrameLines(Set(chosen.map(\.stackId)).map { log.stack($0) })
        for t in chosen {
            let ago = format(log.seconds(from: t.ticks, to: last.ticks), digits: 6)
            let cache = caches[t.cache] ?? "?"
            let frames = log.frameLines(log.stack(t.stackId))
            if json {
                print("{\"ago\":\"T-\(ago)\",\"kind\":\"\(t.isFree ? "free" : "alloc")\",\"buffer\":\"0x\(String(t.buffer, radix: 16))\","
                      + "\"size\":\(t.size),\"cache\":\(jsonString(cache)),\"thread\":\(t.thread),\"stack\":["
                      + frames.map { jsonString($0.trimmingLeadingSpaces) }.joined(separator: ",") + "]}")
            } else {
                print("T-\(ago) \(t.isFree ? "free " : "alloc") buffer 0x\(String(t.buffer, radix: 16)) size \(t.size) cache \(cache) thread \(t.thread)")
                for f in frames { print(f) }
            }
        }
    }
}

struct LogWhatis: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whatis", abstract: "What an address is at the end of the log (::whatis).")
    @Argument(help: "The log file.") var file: String
    @Argument(help: "The address (0x...).") var address: String
    @Flag(help: "One JSON object.") var json = false

    func run() throws {
        let log = openLog(file)
        let a = parseAddress(address)
        let hex = "0x" + String(a, radix: 16)
        let all = log.transactions
        // The buffer's newest transaction decides its state at the end.
        if let newest = all.last(where: { $0.holds(a) }) {
            let cache = log.cacheNames[newest.cache] ?? "?"
            let offset = a - newest.buffer
            let state = newest.isFree ? "free" : "allocated"
            let lastAlloc = all.last { !$0.isFree && $0.buffer == newest.buffer && $0.ticks <= newest.ticks }
            let lastFree = newest.isFree ? newest : nil
            if json {
                print("{\"address\":\"\(hex)\",\"buffer\":\"0x\(String(newest.buffer, radix: 16))\",\"offset\":\(offset),"
                      + "\"size\":\(newest.size),\"cache\":\(jsonString(cache)),\"state\":\"\(state)\"}")
                return
            }
            print("\(hex) is 0x\(String(offset, radix: 16)) bytes into buffer 0x\(String(newest.buffer, radix: 16)) "
                  + "(size \(newest.size), cache \(cache)), \(state) at the end of the log")
            let last = all.last!.ticks
            for (label, t) in [("last freed", lastFree), ("allocated", lastAlloc)] {
                guard let t else { continue }
                print("  \(label) by thread \(t.thread) at T-\(format(log.seconds(from: t.ticks, to: last), digits: 6)):")
                for f in log.frameLines(log.stack(t.stackId)) { print(f) }
            }
            return
        }
        if let module = log.modules.last(where: { $0.start <= a && a < $0.end }) {
            let frame = log.frameLines([a &+ 1])[0]   // frame lines look up return address - 1
            let name = frame.firstMatch(of: /#0 0x[0-9a-f]+ (.*)$/).map { String($0.output.1) } ?? module.path
            if json {
                print("{\"address\":\"\(hex)\",\"module\":\(jsonString(module.path)),\"offset\":\(a &- module.bias),\"where\":\(jsonString(name))}")
            } else {
                print("\(hex) is in \(module.path) at +0x\(String(a &- module.bias, radix: 16)): \(name)")
            }
            return
        }
        print(json ? "{\"address\":\"\(hex)\",\"unknown\":true}" : "\(hex) is not in any buffer or library the log knows")
    }
}

struct LogFindleaks: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "findleaks", abstract: "Buffers never freed (::findleaks).")
    @Argument(help: "The log file.") var file: String
    @Flag(help: "One JSON object per group.") var json = false

    func run() throws {
        let log = openLog(file)
        let checked = log.exitLeakCheckRan
        // The run's own leak checks knew reachability: their reports are the answer.
        let reports = log.reports.components(separatedBy: "\n\n")
            .filter { $0.hasPrefix("slabguard: leak: ") || $0.hasPrefix("slabguard: leak at unload: ") }
        if checked && !json {
            if reports.isEmpty {
                print("no leaks: the run's leak check at exit found every buffer still allocated reachable")
            } else {
                print("the run's leak check at exit (unreachable buffers only):")
                for r in reports { print(resymbolized(r, log) + "\n") }
            }
            return
        }
        if !reports.isEmpty && !json {
            print("the run's leak reports (unreachable buffers only):")
            for r in reports { print(resymbolized(r, log) + "\n") }
        }
        var live: [UInt: LogFile.Transaction] = [:]
        for t in log.transactions {
            if t.isFree { live[t.buffer] = nil } else { live[t.buffer] = t }
        }
        var groups: [UInt32: (count: Int, bytes: Int)] = [:]
        var own = (count: 0, bytes: 0)
        for t in live.values {
            let size = max(t.size, 0)
            if log.isSlabguardsOwn(t) {
                own.count += 1
                own.bytes = own.bytes.addingReportingOverflow(size).overflow ? Int.max : own.bytes + size
                continue
            }
            groups[t.stackId, default: (0, 0)].count += 1
            groups[t.stackId]!.bytes = groups[t.stackId]!.bytes.addingReportingOverflow(size).overflow
                ? Int.max : groups[t.stackId]!.bytes + size
        }
        let sorted = groups.sorted { $0.value.bytes != $1.value.bytes ? $0.value.bytes > $1.value.bytes : $0.key < $1.key }
        log.prefetchFrameLines(sorted.map { log.stack($0.key) })
        if !json {
            let why = log.exited ? (log.killedBySignal != nil ? "no leak check at exit ran: the run was \(log.ending)"
                                                              : "the run made no leak check at exit (its options did not ask for one)")
                                 : "no leak check at exit ran: the process \(log.ending)"
            print("buffers allocated and not freed by the end of the log, by allocation stack "
                  + "(reachable ones included: \(why))")
            if sorted.isEmpty { print("none") }
        }
        for (stack, g) in sorted {
            let frames = log.frameLines(log.stack(stack))
            if json {
                print("{\"buffers\":\(g.count),\"bytes\":\(g.bytes),\"stack\":[" + frames.map { jsonString($0.trimmingLeadingSpaces) }.joined(separator: ",") + "]}")
            } else {
                print("\(counted(g.count, "buffer")), \(counted(g.bytes, "byte")), allocated at:")
                for f in frames { print(f) }
            }
        }
        if own.count > 0 && !json {
            print("(not listed: \(counted(own.count, "buffer")), \(counted(own.bytes, "byte")) allocated by slabguard itself or the dynamic loader, "
                  + "no code of the program's or its libraries')")
        }
    }
}

/// A report's frame lines symbolized again offline (file:line, and names from the symbols
/// of libraries unloaded during the run), other lines kept.
func resymbolized(_ report: String, _ log: LogFile) -> String {
    var out: [String] = []
    var frames: [UInt] = []
    func flush() {
        if !frames.isEmpty { out += log.frameLines(frames) }
        frames = []
    }
    for line in report.split(separator: "\n", omittingEmptySubsequences: false) {
        if let m = line.firstMatch(of: /^    #\d+ 0x([0-9a-f]+)/), let pc = UInt(m.output.1, radix: 16) {
            frames.append(pc)
        } else {
            flush()
            out.append(String(line))
        }
    }
    flush()
    return out.joined(separator: "\n")
}

/// Every report in full, as the run wrote it into the log (the seed's ::msgbuf); `info`
/// keeps only the headlines.
struct LogMsgbuf: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "msgbuf", abstract: "Every report in full, as the run wrote it (::msgbuf).")
    @Argument(help: "The log file.") var file: String
    @Flag(help: "One JSON object per report.") var json = false

    func run() throws {
        let log = openLog(file)
        let text = log.reports
        if !json {
            if text.isEmpty { print("(no report: the run \(log.ending))") } else { print(text, terminator: text.hasSuffix("\n") ? "" : "\n") }
            return
        }
        for report in Self.split(text) {
            let headline = report.prefix { $0 != "\n" }
            print("{\"headline\":\(jsonString(String(headline))),\"report\":\(jsonString(report))}")
        }
    }

    /// The reports of the log's text: each begins with a line "slabguard: ...".
    static func split(_ text: String) -> [String] {
        var reports: [String] = []
        var current: [Substring] = []
        func close() {
            while let last = current.last, last.isEmpty { current.removeLast() }
            if !current.isEmpty { reports.append(current.joined(separator: "\n")) }
            current = []
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("slabguard: ") { close() }
            current.append(line)
        }
        close()
        return reports
    }
}

struct LogKmastat: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kmastat", abstract: "Per-cache statistics at the end (::kmastat).")
    @Argument(help: "The log file.") var file: String
    @Flag(help: "One JSON object per cache and per tag.") var json = false

    func run() throws {
        let log = openLog(file)
        // The table written at the exit; a run that did not exit may have left a live one
        // (written about every second for `slabguard stat`), which is not "at the end".
        let table = log.exited ? log.statistics : ""
        if !table.isEmpty {
            if !json {
                print(LogKmastat.namingSites(table, log), terminator: "")
                print("(the table the run wrote as it ended: \(log.ending))")
                return
            }
            for line in table.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                if f.count == 7, f[1] == "tag" || f[1] == "library" {   // sg_stats_print's tag lines
                    print("{\"tag\":\(jsonString(String(f[0]))),\"kind\":\(jsonString(String(f[1]))),\"in_use\":\(f[2]),"
                          + "\"bytes_in_use\":\(f[3]),\"peak_bytes\":\(f[4]),\"allocations\":\(f[5]),\"frees\":\(f[6])}")
                    continue
                }
                guard f.count == 7, let size = Int(f[1]) else { continue }
                print("{\"cache\":\(jsonString(String(f[0]))),\"buffer_size\":\(size),\"in_use\":\(f[2]),\"total\":\(f[3]),"
                      + "\"memory\":\(f[4]),\"allocations\":\(f[5]),\"failures\":\(f[6])}")
            }
            return
        }
        // The process did not exit: what the ring shows.
        let names = log.cacheNames
        var rows: [String: (allocs: Int, frees: Int, bytes: Int)] = [:]
        for t in log.transactions {
            let name = names[t.cache] ?? "?"
            if t.isFree { rows[name, default: (0, 0, 0)].frees += 1; rows[name]!.bytes &-= t.size }
            else { rows[name, default: (0, 0, 0)].allocs += 1; rows[name]!.bytes &+= t.size }
        }
        if !json {
            let how = log.exited ? "the run \(log.ending), but wrote no table" : "the process \(log.ending)"
            print("\(how): counts from the \(counted(log.transactions.count, "transaction")) in the ring\ncache                          allocs    frees")
        }
        for (name, r) in rows.sorted(by: { $0.key < $1.key }) {
            if json {
                print("{\"cache\":\(jsonString(name)),\"allocations\":\(r.allocs),\"frees\":\(r.frees)}")
            } else {
                print(name.padding(30) + String(r.allocs).leftPadded(9) + String(r.frees).leftPadded(9))
            }
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
    func leftPadded(_ width: Int) -> String { count >= width ? " " + self : String(repeating: " ", count: width - count) + self }
    var trimmingLeadingSpaces: String { String(drop { $0 == " " }) }
}

/// "1 buffer", "2 buffers".
func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)" + (n == 1 ? "" : "s") }

/// `value` with `digits` decimals (a value no run can have, from a damaged file, as
/// Swift prints a Double: never a trap).
func format(_ value: Double, digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    guard value.isFinite, value >= 0, value < 1e12 else { return "\(value)" }
    var whole = Int(value), fraction = Int(((value - Double(whole)) * scale).rounded())
    if Double(fraction) >= scale { whole += 1; fraction = 0 }
    let text = String(fraction)
    return "\(whole)." + String(repeating: "0", count: max(0, digits - text.count)) + text
}

/// A UTC date and time for seconds since the epoch.
func utcTime(_ seconds: Int) -> String {
    var t = time_t(seconds)
    var parts = tm()
    gmtime_r(&t, &parts)
    var buffer = [CChar](repeating: 0, count: 64)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S UTC", &parts)
    return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension LogKmastat {
    /// The table with each allocation site's frames named offline (the process wrote them
    /// as addresses): the stack's frames from the log's depot, symbolized as kmalog's;
    /// slabguard's own sites left out, as everywhere.
    static func namingSites(_ table: String, _ log: LogFile) -> String {
        let lines = table.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let ids = lines.compactMap { $0.hasPrefix("site ") ? SiteLines.stack(of: $0) : nil }
        log.prefetchFrameLines(ids.map { Array(log.stack($0).prefix(StackDepotFormat.siteFrames)) })
        return SiteLines.rewriting(lines) { site, written in
            guard let id = SiteLines.stack(of: site) else { return [site] + written }
            if log.isSlabguardsOwn(stack: id) { return [] }
            let frames = Array(log.stack(id).prefix(StackDepotFormat.siteFrames))
            return [site] + (frames.isEmpty ? written : log.frameLines(frames))
        }.joined(separator: "\n")
    }
}
