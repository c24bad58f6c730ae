// DebugOptionWords.swift — the option words of DebugOptions.swift, each declared once in
// `OptionWord.entry` (name, value, bounds, default, flag, implied words, usage, what a bad
// value is told, help line), and the non-owning byte ranges the parser walks.  Parsing,
// rendering, the error line's list of valid words and `slabguard run --help` all read
// that table; a test checks README.md's "Debug options" table against it.
// Nothing here allocates.

/// A non-owning byte range of the option string.
struct OptionText {
    var base: UnsafeRawPointer
    var count: Int

    static var empty: OptionText { OptionText(base: UnsafeRawPointer(bitPattern: 1)!, count: 0) }

    subscript(i: Int) -> UInt8 { base.load(fromByteOffset: i, as: UInt8.self) }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }

    func trimmed() -> OptionText {
        var start = 0
        var end = count
        while start < end && OptionText.isSpace(self[start]) { start += 1 }
        while end > start && OptionText.isSpace(self[end - 1]) { end -= 1 }
        return OptionText(base: base + start, count: end - start)
    }

    /// Index of the first `byte`, or -1.
    func firstIndex(of byte: UInt8) -> Int {
        var i = 0
        while i < count {
            if self[i] == byte { return i }
            i += 1
        }
        return -1
    }

    func prefix(_ n: Int) -> OptionText { OptionText(base: base, count: n) }
    func dropFirst(_ n: Int) -> OptionText { OptionText(base: base + n, count: count - n) }

    func equals(_ word: StaticString) -> Bool {
        guard word.utf8CodeUnitCount == count else { return false }
        let w = UnsafeRawPointer(word.utf8Start)
        var i = 0
        while i < count {
            if w.load(fromByteOffset: i, as: UInt8.self) != self[i] { return false }
            i += 1
        }
        return true
    }
}

/// How a word's value is written and checked.
enum OptionValueKind { case none, optionalNumber, number, size, path, format }

/// Where in `DebugOptions` a word keeps its value (the one per-field switch is in
/// DebugOptions.swift: `store` / `isOn` / `writeValue`).
enum OptionValueSlot {
    case none, auditDepth, contentsBytes, quarantineBytes, sampling, verifyInterval, watchInterval, exitCode,
         logPath, reportPath, suppressionsPath, reportFormat
}

/// Everything about one option word.  Only StaticStrings and integers: building one
/// allocates nothing and needs no global initialiser (this runs inside malloc).
struct WordEntry {
    var name: StaticString
    var valueKind: OptionValueKind = .none
    /// What follows the name in the usage: "=N" ("sample=N"); an optional number is
    /// listed as "audit[=N]" but a missing one is told "audit=N".
    var usage: StaticString = ""
    var minimum: Int = 1
    var maximum: Int = Int.max
    /// Largest N of the "Nms" form (only `sample`); 0: no such form.
    var maximumMilliseconds: Int = 0
    /// The value a bare word (or an unset one) stands for: audit's 16 frames.
    var defaultValue: Int = 0
    /// The flag that means "this word is on"; empty for words whose value says it.
    var flag: DebugFlags = DebugFlags(rawValue: 0)
    /// Items applied along with the word (`default`'s checks); each keeps the value it
    /// already has when its word is on ("quarantine=64M,default" keeps 64M).
    var implies: StaticString = ""
    var slot: OptionValueSlot = .none
    /// What a bad value is told ("expected ...").
    var expectation: StaticString = "no value"
    /// One line for `slabguard run --help` (after `implies`, when there is one).
    var help: StaticString
}

/// The option words, in the order of the valid-words list and of the canonical string.
/// Adding a word: a case here and its entry below; parsing, rendering, the error line's
/// list and the CLI's help follow, and a test checks README.md's table has it.
enum OptionWord: UInt8 {
    case `default`, none, deadbeef, redzone, uninit, audit, contents, quarantine, guards,
         sample, verify, leaks, modules, watch, noabort, log, report, reportPath, exitcode, suppressions

    // Bounded so that no arithmetic on them can overflow (sample=N's countdown is 2N);
    // a quarantine's bytes are only compared.
    var entry: WordEntry {
        switch self {
        case .default:
            WordEntry(name: "default", implies: "deadbeef,redzone,uninit,audit,quarantine=1M,leaks,modules",
                      help: "and a heap verification at exit (what run uses unless told otherwise)")
        case .none:
            WordEntry(name: "none", help: "fast mode: no checks at all (only alone)")
        case .deadbeef:
            WordEntry(name: "deadbeef", flag: .deadbeef,
                      help: "fill freed buffers with 0xdeadbeef; verified when reused or the heap verified")
        case .redzone:
            WordEntry(name: "redzone", flag: .redzone,
                      help: "0xfeedface after the exact requested size of each buffer; verified at free")
        case .uninit:
            WordEntry(name: "uninit", flag: .uninit,
                      help: "fill new non-zeroed buffers with 0xbaddcafe (calloc stays zero)")
        case .audit:
            WordEntry(name: "audit", valueKind: .optionalNumber, usage: "=N", maximum: 64, defaultValue: 16,
                      flag: .audit, slot: .auditDepth, expectation: "a number of frames from 1 to 64",
                      help: "last allocating and freeing stack (N frames, default 16), thread and time per buffer")
        case .contents:
            WordEntry(name: "contents", valueKind: .optionalNumber, usage: "=N", maximum: 4096, defaultValue: 256,
                      flag: .contents, slot: .contentsBytes, expectation: "a number of bytes from 1 to 4096",
                      help: "keep the first N bytes (default 256) of each buffer at free, shown in reports")
        case .quarantine:
            WordEntry(name: "quarantine", valueKind: .size, usage: "=SIZE", flag: .quarantine, slot: .quarantineBytes,
                      expectation: "a size in bytes of 1 or more, with an optional K, M or G suffix, e.g. 64M",
                      help: "hold freed buffers back from reuse until SIZE bytes (K/M/G) are queued")
        case .guards:
            WordEntry(name: "guards", flag: .guards,
                      help: "every buffer against an inaccessible page, freed pages inaccessible: overruns and stale accesses fault")
        case .sample:
            WordEntry(name: "sample", valueKind: .number, usage: "=N", maximum: 1 << 30, maximumMilliseconds: 3_600_000,
                      flag: .sample, slot: .sampling,
                      expectation: "a whole number from 1 to 1073741824, about 1 in N allocations guarded; or Nms (N up to 3600000), one allocation every N milliseconds",
                      help: "guard about 1 allocation in N (production mode); sample=Nms: one every N milliseconds")
        case .verify:
            WordEntry(name: "verify", valueKind: .number, usage: "=N", maximum: 1 << 30, flag: .verify, slot: .verifyInterval,
                      expectation: "a whole number from 1 to 1073741824; the heap is verified every N allocator calls",
                      help: "verify the whole heap every N allocator calls")
        case .leaks:
            WordEntry(name: "leaks", flag: .leaks,
                      help: "at exit, report buffers never freed and unreachable, with their allocating stacks")
        case .modules:
            WordEntry(name: "modules", flag: .modules,
                      help: "check what a library leaves behind when dlclose unloads it")
        case .watch:
            WordEntry(name: "watch", valueKind: .optionalNumber, usage: "=N", maximum: 60_000, defaultValue: 10,
                      flag: .watch, slot: .watchInterval, expectation: "a number of milliseconds from 1 to 60000",
                      help: "CPU watchpoints on freed buffers, moved to newer ones every N ms (default 10): a write into one is reported at the instruction")
        case .noabort:
            WordEntry(name: "noabort", flag: .noabort, help: "report and continue instead of aborting")
        case .log:
            WordEntry(name: "log", valueKind: .path, usage: "=PATH", maximum: 4095, flag: .log, slot: .logPath,
                      expectation: "a file path of 1 to 4095 bytes",
                      help: "the flight recorder, written to PATH as the program runs (%p: the pid); read it with 'slabguard log'")
        case .report:
            WordEntry(name: "report", valueKind: .format, usage: "=text|json", slot: .reportFormat,
                      expectation: "text or json", help: "report format")
        case .reportPath:
            WordEntry(name: "report_path", valueKind: .path, usage: "=PATH", maximum: 4095, slot: .reportPath,
                      expectation: "a file path of 1 to 4095 bytes",
                      help: "write reports to PATH (%p: the pid) instead of standard error")
        case .exitcode:
            WordEntry(name: "exitcode", valueKind: .number, usage: "=N", minimum: 0, maximum: 255, defaultValue: 1,
                      slot: .exitCode, expectation: "an exit status from 0 to 255 (0: the program's own status is kept)",
                      help: "exit status when the program would exit 0 but something was reported (default 1; 0: off)")
        case .suppressions:
            WordEntry(name: "suppressions", valueKind: .path, usage: "=FILE", maximum: 4095, slot: .suppressionsPath,
                      expectation: "a file path of 1 to 4095 bytes",
                      help: "reports to stay silent about (KIND:PATTERN lines)")
        }
    }

    var name: StaticString { entry.name }

    static func match(_ text: OptionText) -> OptionWord? {
        var raw: UInt8 = 0
        while let word = OptionWord(rawValue: raw) {
            if text.equals(word.name) { return word }
            raw += 1
        }
        return nil
    }

    /// Writes the usage as listed: "audit[=N]", "sample=N", "guards".
    static func writeListedUsage(of entry: WordEntry, to w: inout ReportWriter) {
        w.append(entry.name)
        if entry.valueKind == .optionalNumber {
            w.append(byte: 0x5B)         // [
            w.append(entry.usage)
            w.append(byte: 0x5D)         // ]
        } else {
            w.append(entry.usage)
        }
    }

    /// Writes every word's listed usage, in table order, ", " between: the end of every
    /// error line.
    static func writeValidList(to w: inout ReportWriter) {
        var raw: UInt8 = 0
        while let word = OptionWord(rawValue: raw) {
            if raw > 0 { w.append(", ") }
            writeListedUsage(of: word.entry, to: &w)
            raw += 1
        }
    }
}

extension DebugOptions {
    /// The valid words as the error line lists them (allocates: for Swift callers and tests).
    public static var validOptionsList: String {
        written { OptionWord.writeValidList(to: &$0) }
    }

    /// The words for `slabguard run --help` in table order, "  audit[=N]  last allocating
    /// ...", wrapped here to 80 columns under the help column (allocates: for the CLI).
    public static var wordHelp: String {
        let column = 21
        var lines: [String] = []
        var raw: UInt8 = 0
        while let word = OptionWord(rawValue: raw) {
            raw += 1
            let entry = word.entry
            let usage = written { OptionWord.writeListedUsage(of: entry, to: &$0) }
            var help = "\(entry.help)"
            if entry.implies.utf8CodeUnitCount > 0 { help = "\(entry.implies), \(help)" }
            var line = "  " + usage + String(repeating: " ", count: max(1, column - 2 - usage.utf8.count))
            var lineHasWord = false
            for piece in help.split(separator: " ") {
                if lineHasWord && line.utf8.count + 1 + piece.utf8.count > 79 {
                    lines.append(line)
                    line = String(repeating: " ", count: column)
                    lineHasWord = false
                }
                line += (lineHasWord ? " " : "") + piece
                lineHasWord = true
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    private static func written(_ body: (inout ReportWriter) -> Void) -> String {
        var bytes = [UInt8](repeating: 0, count: 1024)
        let n = bytes.withUnsafeMutableBytes { b in
            var w = ReportWriter(memory: b.baseAddress!, capacity: b.count)
            body(&w)
            return w.finishCString()
        }
        return String(decoding: bytes[0..<min(n, bytes.count - 1)], as: UTF8.self)
    }
}
