// `slabguard log` — the post-mortem half (design §7): questions asked of a flight
// recorder file after the process is gone, as mdb's dcmds ask a kernel dump.
//
//   slabguard log info FILE              the run: program, pid, options, how it ended,
//                                        counts, every report's headline
//   slabguard log kmalog FILE [ADDR]     transactions newest first (::kmalog), T-SECONDS
//                                        before the last one; with ADDR only those on the
//                                        buffer holding ADDR; --unique: the distinct call
//                                        sites with their counts, rarest first
//
// Every subcommand takes --json (one JSON object per line).  A file that is not a
// slabguard log, is truncated or was written by a newer format: one line, status 2.

import ArgumentParser
import Glibc

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Answer post-mortem questions from a flight recorder file (log=PATH, run --log PATH).",
        subcommands: [LogInfo.self, LogKmalog.self]
    )
}

/// Opens the log or ends the process with its one-line error and status 2.
func openLog(_ path: String) -> LogFile {
    do { return try LogFile(path: path) } catch {
        printError(error.message)
        Glibc.exit(2)
    }
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default: out += u.value < 0x20 ? "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16) : String(u)
        }
    }
    return out + "\""
}

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
        var ending: String
        if log.exited {
            ending = log.exitStatus > 128 ? "killed by signal \(log.exitStatus - 128)" : "exited with status \(log.exitStatus)"
        } else if let last = transactions.last, let first = transactions.first {
            ending = "did not exit: last transaction at \(format(log.seconds(from: first.ticks, to: last.ticks), digits: 6))s after the first recorded"
        } else {
            ending = "did not exit: no transactions recorded"
        }
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
        var address: UInt? = nil
        if let text = self.address {
            let digits = text.hasPrefix("0x") || text.hasPrefix("0X") ? String(text.dropFirst(2)) : text
            guard let a = UInt(digits, radix: 16) else {
                printError("'\(text)' is not an address (0x followed by hex digits)")
                Glibc.exit(2)
            }
            address = a
        }
        let all = log.transactions
        guard let last = all.last else { print("no transactions in \(file)"); return }
        var chosen = all.reversed().filter { t in
            guard let a = address else { return true }
            return t.buffer <= a && a < t.buffer + UInt(max(t.size, 1))
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

extension String {
    var trimmingLeadingSpaces: String { String(drop { $0 == " " }) }
}

/// `value` with `digits` decimals.
func format(_ value: Double, digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let whole = Int(value), fraction = Int(((value - Double(whole)) * scale).rounded())
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
