// DebugOptions.swift — the SLABGUARD_DEBUG / `slabguard run --debug` option string.
//
// What: `DebugOptions.parse` turns "default,quarantine=64M,log=/tmp/x" into a DebugOptions
// value (or one error line naming the bad item and listing the valid words);
// `render` writes the canonical string back, which parses to an equal value.
//
// The words themselves — names, values, bounds, what each sets — are the table of
// DebugOptionWords.swift (`OptionWord.entry`); this file walks it.
//
// Grammar (fixed words, case-sensitive; see `OptionWord.writeValidList`):
//   string := item { "," item }      items are trimmed of ASCII whitespace; empty items
//                                    (",,", a trailing ",", an all-blank string) are ignored
//   item   := word | word "=" value  whitespace around "=" is trimmed as well
// `none` (or nothing at all) means fast mode and may only appear alone. Later items win:
// `audit=8,audit=32` gives 32. A bare `audit` / `contents` (and `default`) only turns the
// feature on; its value stays whatever was set before, else the default (16 frames, 256 B).
// Numbers are decimal digits only (no sign, no 0x). SIZE is a number with an optional
// suffix K, M or G (either case, binary: 1024, 1024², 1024³), optionally followed by B/b:
// 64M = 64m = 64MB = 64mb = 67108864. Values that overflow Int are rejected.
// `log=PATH` keeps the rest of the item after the first "=", trimmed, 1...4095 bytes;
// a path cannot contain "," (the separator) nor begin or end with whitespace.
//
// Invariants:
//  - The C-string path never allocates: bytes are walked through raw pointers, words are
//    StaticStrings, messages go through a memory-mode ReportWriter. Only `parse(String)` and
//    `description`, `validOptionsList` and `wordHelp` (marked) allocate.
//  - DebugOptions is BitwiseCopyable, holds no references; `DebugOptions()` is fast mode.
//    A value field means something only while its flag is set; `==` compares it only then.
//    Bytes of `logPath` after its NUL are always zero.
//  - `parse` either succeeds and assigns `*options`, or leaves it untouched.

import Glibc

/// Which debugging features are on. An empty set is fast mode.
public struct DebugFlags: OptionSet, Sendable, BitwiseCopyable, Hashable {
    public let rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    // Computed, not stored: no global initialisers to run inside malloc.
    @inlinable public static var deadbeef: DebugFlags { DebugFlags(rawValue: 1 << 0) }
    @inlinable public static var redzone: DebugFlags { DebugFlags(rawValue: 1 << 1) }
    @inlinable public static var uninit: DebugFlags { DebugFlags(rawValue: 1 << 2) }
    @inlinable public static var audit: DebugFlags { DebugFlags(rawValue: 1 << 3) }
    @inlinable public static var contents: DebugFlags { DebugFlags(rawValue: 1 << 4) }
    @inlinable public static var quarantine: DebugFlags { DebugFlags(rawValue: 1 << 5) }
    @inlinable public static var guards: DebugFlags { DebugFlags(rawValue: 1 << 6) }
    @inlinable public static var sample: DebugFlags { DebugFlags(rawValue: 1 << 7) }
    @inlinable public static var verify: DebugFlags { DebugFlags(rawValue: 1 << 8) }
    @inlinable public static var leaks: DebugFlags { DebugFlags(rawValue: 1 << 9) }
    @inlinable public static var noabort: DebugFlags { DebugFlags(rawValue: 1 << 10) }
    /// `report=json`; absent means text reports.
    @inlinable public static var jsonReport: DebugFlags { DebugFlags(rawValue: 1 << 11) }
    /// `log=PATH`; the path is in `DebugOptions.logPath`.
    @inlinable public static var log: DebugFlags { DebugFlags(rawValue: 1 << 12) }
    /// `modules`: what a library leaves behind when `dlclose` unmaps it (design §8).
    @inlinable public static var modules: DebugFlags { DebugFlags(rawValue: 1 << 13) }
    /// `watch[=N]`: CPU watchpoints on recently freed buffers (Faults/Watchpoints.swift).
    @inlinable public static var watch: DebugFlags { DebugFlags(rawValue: 1 << 14) }

    /// What the word `default` turns on: deadbeef, redzone, uninit, audit, a small
    /// quarantine (`DebugOptions.defaultQuarantineBytes` unless one was set), leaks, modules.
    @inlinable public static var defaultSet: DebugFlags {
        DebugFlags(rawValue: (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 9) | (1 << 13))
    }
}

/// Parsed debug options. Plain data; keep one instance and pass it by pointer or borrow
/// (it is about 4 KiB because of the inline log path).
/// The options part's state: the options in force and whether they were fixed (by the
/// API or the environment) — its own region of the static map (`debug_options`).
struct OptionsState {
    var options = DebugOptions()
    var configured = false

    @inline(__always) static var shared: UnsafeMutablePointer<OptionsState> {
        StateRegion.debugOptions.bound(to: OptionsState.self)
    }
}

public struct DebugOptions: BitwiseCopyable, Sendable {
    public var flags: DebugFlags
    /// Frames per audit stack (`audit=N`), 1...64.
    public var auditDepth: Int
    /// Bytes of each buffer kept at free (`contents=N`), 1...4096.
    public var contentsBytes: Int
    /// Bytes of freed buffers held back (`quarantine=SIZE`), >= 1.
    public var quarantineBytes: Int
    /// Guard about 1 in `sampleRate` allocations (`sample=N`), >= 1; 0 with `sample=Nms`.
    public var sampleRate: Int
    /// Guard one allocation every `sampleMilliseconds` ms (`sample=Nms`, KFENCE's way); 0: by count.
    public var sampleMilliseconds: Int
    /// Verify the heap every `verifyInterval` allocator calls (`verify=N`), >= 1.
    public var verifyInterval: Int
    /// Move the watchpoints to newer freed buffers every `watchMilliseconds` ms (`watch=N`).
    public var watchMilliseconds: Int
    /// `log=PATH`, NUL-terminated, zero-filled after the NUL. Use `withLogPath`.
    public var logPath: FixedBytes4K
    /// `report_path=PATH` (reports written there instead of stderr; `%p` is the pid), as
    /// `logPath`; empty when not given.  Use `withReportPath`.
    public var reportPath: FixedBytes4K
    /// `suppressions=FILE`, as `logPath`; empty when not given.  Use `withSuppressionsPath`.
    public var suppressionsPath: FixedBytes4K
    /// `exitcode=N`: the exit status when the program would exit 0 but something was
    /// reported (0 turns it off); -1 when not given (then 1 applies, `effectiveExitCode`).
    public var exitCode: Int

    // The bounds and defaults are the word table's (DebugOptionWords.swift).
    public static var defaultAuditDepth: Int { OptionWord.audit.entry.defaultValue }
    /// The quarantine `default` brings (BENCHMARKS.md: "default's quarantine"); the table
    /// says it in `default`'s implied words, a test checks the two agree.
    public static var defaultQuarantineBytes: Int { 1 << 20 }
    public static var maxAuditDepth: Int { OptionWord.audit.entry.maximum }
    public static var defaultContentsBytes: Int { OptionWord.contents.entry.defaultValue }
    public static var maxContentsBytes: Int { OptionWord.contents.entry.maximum }
    public static var maxSampleRate: Int { OptionWord.sample.entry.maximum }
    public static var maxSampleMilliseconds: Int { OptionWord.sample.entry.maximumMilliseconds }
    public static var maxVerifyInterval: Int { OptionWord.verify.entry.maximum }
    /// Longest accepted log path in bytes (the storage holds one more, for the NUL).
    public static var maxLogPathLength: Int { OptionWord.log.entry.maximum }
    /// An error buffer this large always holds the whole message.
    public static var errorCapacity: Int { 1024 }
    /// A render buffer this large always holds the whole canonical string.
    public static var renderCapacity: Int { 13312 }

    /// Fast mode: no flags; values at their defaults.
    public init() {
        flags = DebugFlags(rawValue: 0)
        auditDepth = DebugOptions.defaultAuditDepth
        contentsBytes = DebugOptions.defaultContentsBytes
        quarantineBytes = 0
        sampleRate = 0
        sampleMilliseconds = 0
        verifyInterval = 0
        watchMilliseconds = OptionWord.watch.entry.defaultValue
        logPath = FixedBytes4K()
        reportPath = FixedBytes4K()
        suppressionsPath = FixedBytes4K()
        exitCode = -1
    }

    /// The exit status for a run that reported something but would exit 0.
    public var effectiveExitCode: Int { exitCode < 0 ? 1 : exitCode }

    /// Any checking at all? (False is fast mode.)
    @inlinable public var isEnabled: Bool { flags.rawValue != 0 }

    /// Calls `body` with the NUL-terminated log path ("" when none was given).
    public func withLogPath<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        withUnsafePointer(to: logPath) { p in
            body(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self))
        }
    }

    /// Calls `body` with the NUL-terminated `report_path=` ("" when none was given).
    public func withReportPath<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        withUnsafePointer(to: reportPath) { p in body(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self)) }
    }

    /// Calls `body` with the NUL-terminated `suppressions=` ("" when none was given).
    public func withSuppressionsPath<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        withUnsafePointer(to: suppressionsPath) { p in body(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self)) }
    }

    public var hasReportPath: Bool { withReportPath { $0.pointee != 0 } }
    public var hasSuppressions: Bool { withSuppressionsPath { $0.pointee != 0 } }

    /// Length in bytes of the log path.
    public var logPathLength: Int {
        withLogPath { ReportWriter.length(of: UnsafeRawPointer($0), max: DebugOptions.maxLogPathLength) }
    }

    /// Sets the log path and the `.log` flag. Returns false (and changes nothing) when the
    /// path could not round-trip through `parse`: empty, over 4095 bytes, containing ",",
    /// or beginning or ending with whitespace.
    public mutating func setLogPath(_ path: UnsafePointer<CChar>) -> Bool {
        let raw = UnsafeRawPointer(path)
        let n = ReportWriter.length(of: raw, max: DebugOptions.maxLogPathLength + 1)
        guard n >= 1 && n <= DebugOptions.maxLogPathLength else { return false }
        let text = OptionText(base: raw, count: n)
        guard text.firstIndex(of: 0x2C) < 0, text.trimmed().count == n else { return false }
        storeLogPath(raw, count: n)
        flags.insert(.log)
        return true
    }

    /// Removes the log path (the `.log` flag is the caller's).
    mutating func clearLogPath() {
        logPath = FixedBytes4K()
    }

    mutating func storeLogPath(_ source: UnsafeRawPointer, count n: Int) {
        DebugOptions.store(source, count: n, in: &logPath)
    }

    /// Removes the paths of the options that read or write files (secure execution).
    mutating func clearFilePaths() {
        logPath = FixedBytes4K()
        reportPath = FixedBytes4K()
        suppressionsPath = FixedBytes4K()
    }

    static func store(_ source: UnsafeRawPointer, count n: Int, in storage: inout FixedBytes4K) {
        withUnsafeMutablePointer(to: &storage) { p in
            let dest = UnsafeMutableRawPointer(p)
            dest.copyMemory(from: source, byteCount: n)
            memset(dest + n, 0, 4096 - n)
        }
    }

    // MARK: Parsing

    /// Parses `text` (nil, "", all blank or "none": fast mode) into `*options` without
    /// allocating. On error leaves `*options` untouched, writes one NUL-terminated line
    /// (no newline) into `error` — truncated to `errorCapacity` bytes; 1024 always suffice —
    /// and returns false. `source` names where the text came from ("SLABGUARD_DEBUG",
    /// "--debug"); nil or "" leaves the " in SOURCE" part out.
    public static func parse(_ text: UnsafePointer<CChar>?, source: UnsafePointer<CChar>?,
                             into options: UnsafeMutablePointer<DebugOptions>,
                             error: UnsafeMutablePointer<CChar>, errorCapacity: Int) -> Bool {
        var src = OptionText.empty
        if let source {
            src = OptionText(base: UnsafeRawPointer(source), count: ReportWriter.length(of: UnsafeRawPointer(source), max: 64))
        }
        return parse(text, source: src, into: options, error: error, errorCapacity: errorCapacity)
    }

    /// The same with the source as a literal — chosen by the compiler for
    /// `source: "SLABGUARD_DEBUG"`. Prefer it: converting a String literal to a C-string
    /// argument allocates a temporary in -Onone builds.
    public static func parse(_ text: UnsafePointer<CChar>?, source: StaticString,
                             into options: UnsafeMutablePointer<DebugOptions>,
                             error: UnsafeMutablePointer<CChar>, errorCapacity: Int) -> Bool {
        var src = OptionText.empty
        if source.hasPointerRepresentation {   // else a one-scalar literal: left out, no temporaries
            src = OptionText(base: UnsafeRawPointer(source.utf8Start), count: source.utf8CodeUnitCount)
        }
        return parse(text, source: src, into: options, error: error, errorCapacity: errorCapacity)
    }

    static func parse(_ text: UnsafePointer<CChar>?, source: OptionText, into options: UnsafeMutablePointer<DebugOptions>,
                      error: UnsafeMutablePointer<CChar>, errorCapacity: Int) -> Bool {
        var result = DebugOptions()
        let outcome = parseItems(UnsafeRawPointer(text), into: &result)
        if outcome.kind == nil { options.pointee = result; return true }
        var writer = ReportWriter(memory: UnsafeMutableRawPointer(error), capacity: errorCapacity)
        writeMessage(outcome, source: source, to: &writer)
        writer.finishCString()
        return false
    }

    /// Convenience for Swift callers and tests (allocates): the same parse, throwing an
    /// error whose `message` / `description` is the same line.
    public static func parse(_ text: String, source: String = "SLABGUARD_DEBUG") throws(DebugOptionsError) -> DebugOptions {
        var result = DebugOptions()
        var line = [UInt8](repeating: 0, count: errorCapacity)
        var length = 0
        // The outcome points into the C string: write the message while it is alive.
        let kind = text.withCString { cText -> DebugOptionsError.Kind? in
            let outcome = parseItems(UnsafeRawPointer(cText), into: &result)
            guard outcome.kind != nil else { return nil }
            length = line.withUnsafeMutableBytes { buffer in
                var name = source
                return name.withUTF8 { src in
                    var writer = ReportWriter(memory: buffer.baseAddress!, capacity: buffer.count)
                    let count = src.count < 64 ? src.count : 64
                    writeMessage(outcome, source: OptionText(base: UnsafeRawPointer(src.baseAddress!), count: count), to: &writer)
                    return writer.count
                }
            }
            return outcome.kind
        }
        guard let kind else { return result }
        throw DebugOptionsError(kind: kind, message: String(decoding: line[0..<length], as: UTF8.self))
    }

    /// One outcome of `parseItems`: success when `kind` is nil, else what went wrong where.
    struct Outcome {
        var kind: DebugOptionsError.Kind?
        var word: OptionWord = .none
        var item = OptionText.empty          // the whole offending item
        var value = OptionText.empty         // its value, for badValue
        var other = OptionText.empty         // the item `none` clashed with

        static var success: Outcome { Outcome(kind: nil) }
    }

    static func parseItems(_ text: UnsafeRawPointer?, into result: inout DebugOptions) -> Outcome {
        guard let text else { return .success }
        return parseItems(OptionText(base: text, count: strlen(text.assumingMemoryBound(to: CChar.self))),
                          into: &result, keepingValuesOfWordsOn: false)
    }

    /// Applies every item of `text`.  `keepingValuesOfWordsOn`: for implied items (`default`'s),
    /// an item whose word is already on is skipped, so its value stays.
    static func parseItems(_ text: OptionText, into result: inout DebugOptions, keepingValuesOfWordsOn: Bool) -> Outcome {
        var sawNone = false
        var noneItem = OptionText.empty
        var firstOther = OptionText.empty
        var p = 0
        while true {
            let start = p
            while p < text.count && text[p] != 0x2C { p += 1 }
            let item = OptionText(base: text.base + start, count: p - start).trimmed()
            if item.count > 0 {
                let outcome = apply(item, to: &result, keepingValueIfOn: keepingValuesOfWordsOn)
                if outcome.kind != nil { return outcome }
                let isNone = item.equals("none")
                if isNone && !sawNone { sawNone = true; noneItem = item }
                if !isNone && firstOther.count == 0 { firstOther = item }
                if sawNone && firstOther.count > 0 {
                    return Outcome(kind: .noneCombined, word: .none, item: noneItem, other: firstOther)
                }
            }
            if p >= text.count { return .success }
            p += 1
        }
    }

    /// Applies one trimmed, non-empty item, as the word's table entry says.
    static func apply(_ item: OptionText, to options: inout DebugOptions, keepingValueIfOn: Bool = false) -> Outcome {
        let eq = item.firstIndex(of: 0x3D)
        let key = eq < 0 ? item : item.prefix(eq).trimmed()
        let hasValue = eq >= 0
        let value = hasValue ? item.dropFirst(eq + 1).trimmed() : OptionText.empty
        guard let word = OptionWord.match(key) else {
            return Outcome(kind: .unknownOption, item: item)
        }
        let entry = word.entry
        if keepingValueIfOn && !entry.flag.isEmpty && options.flags.contains(entry.flag) { return .success }
        var failure = Outcome(kind: nil, word: word, item: item, value: value)
        let kind = entry.valueKind
        if kind == .none {
            if hasValue { failure.kind = .unexpectedValue; return failure }
        } else if value.count == 0 && (hasValue || kind != .optionalNumber) {
            failure.kind = .missingValue
            return failure
        }
        var number = 0
        // sample=Nms: a time, not a count.
        let milliseconds = entry.maximumMilliseconds > 0 && value.count > 2
            && value[value.count - 2] | 0x20 == 0x6D && value[value.count - 1] | 0x20 == 0x73
        if value.count > 0 && (kind == .optionalNumber || kind == .number || kind == .size) {
            guard let n = parseNumber(milliseconds ? value.prefix(value.count - 2) : value, sizeSuffix: kind == .size),
                  n >= entry.minimum && n <= (milliseconds ? entry.maximumMilliseconds : entry.maximum) else {
                failure.kind = .badValue
                return failure
            }
            number = n
        }
        if kind == .path && value.count > entry.maximum { failure.kind = .badValue; return failure }
        if entry.implies.utf8CodeUnitCount > 0 {
            let implied = OptionText(base: UnsafeRawPointer(entry.implies.utf8Start), count: entry.implies.utf8CodeUnitCount)
            _ = parseItems(implied, into: &options, keepingValuesOfWordsOn: true)   // the table's own words: cannot fail
        }
        guard options.store(number, value, milliseconds: milliseconds, in: entry.slot) else {
            failure.kind = .badValue
            return failure
        }
        options.flags.formUnion(entry.flag)
        return .success
    }

    /// Keeps a word's value in its field; false for a value the field refuses (report=xml).
    mutating func store(_ number: Int, _ value: OptionText, milliseconds: Bool, in slot: OptionValueSlot) -> Bool {
        switch slot {
        case .none: break
        case .auditDepth: if number > 0 { auditDepth = number }          // a bare word keeps the value
        case .contentsBytes: if number > 0 { contentsBytes = number }
        case .quarantineBytes: quarantineBytes = number
        case .sampling:
            sampleRate = milliseconds ? 0 : number
            sampleMilliseconds = milliseconds ? number : 0
        case .verifyInterval: verifyInterval = number
        case .watchInterval: if number > 0 { watchMilliseconds = number }
        case .exitCode: exitCode = number
        case .logPath: storeLogPath(value.base, count: value.count)
        case .reportPath: DebugOptions.store(value.base, count: value.count, in: &reportPath)
        case .suppressionsPath: DebugOptions.store(value.base, count: value.count, in: &suppressionsPath)
        case .reportFormat:
            if value.equals("json") { flags.insert(.jsonReport) }
            else if value.equals("text") { flags.remove(.jsonReport) }
            else { return false }
        }
        return true
    }

    /// Decimal digits, then (if `sizeSuffix`) an optional K/M/G, either case, optionally
    /// followed by B/b. Nil for anything else, including overflow of Int.
    static func parseNumber(_ text: OptionText, sizeSuffix: Bool) -> Int? {
        var value = 0
        var i = 0
        while i < text.count {
            let b = text[i]
            if b < 0x30 || b > 0x39 { break }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(b - 0x30))
            if o1 || o2 { return nil }
            value = sum
            i += 1
        }
        if i == 0 { return nil }
        if i < text.count && sizeSuffix {
            var shift = 0
            switch text[i] | 0x20 {                  // ASCII lowercase
            case 0x6B: shift = 10                    // k
            case 0x6D: shift = 20                    // m
            case 0x67: shift = 30                    // g
            default: return nil
            }
            i += 1
            if i < text.count && text[i] | 0x20 == 0x62 { i += 1 }   // b
            if value > (Int.max >> shift) { return nil }
            value <<= shift
        }
        return i == text.count ? value : nil
    }

    // MARK: Messages

    static func writeMessage(_ outcome: Outcome, source: OptionText, to w: inout ReportWriter) {
        w.append("slabguard: ")
        switch outcome.kind {
        case .unknownOption?:
            w.append("unknown debug option '")
            quote(outcome.item, to: &w)
            w.append("'")
        case .missingValue?:
            w.append("missing value for debug option '")
            w.append(outcome.word.name)
            w.append("' (expected ")
            w.append(outcome.word.name)
            w.append(outcome.word.entry.usage)
            w.append(": ")
            w.append(outcome.word.entry.expectation)
            w.append(")")
        case .badValue?:
            w.append("bad value '")
            quote(outcome.value, to: &w)
            w.append("' for debug option '")
            w.append(outcome.word.name)
            w.append("' (expected ")
            w.append(outcome.word.entry.expectation)
            w.append(")")
        case .unexpectedValue?:
            w.append("debug option '")
            w.append(outcome.word.name)
            w.append("' takes no value, got '")
            quote(outcome.item, to: &w)
            w.append("'")
        case .noneCombined?:
            w.append("debug option 'none' cannot be combined with other options, got '")
            quote(outcome.other, to: &w)
            w.append("'")
        case nil:
            w.append("no error")
        }
        if source.count > 0 {
            w.append(" in ")
            w.appendPrintable(bytes: source.base, count: source.count)
        }
        w.append("; valid options: ")
        OptionWord.writeValidList(to: &w)
    }

    /// Echoes user text on one line: at most 80 bytes, non-printables escaped, "..." if cut.
    static func quote(_ text: OptionText, to w: inout ReportWriter) {
        if text.count <= 80 {
            w.appendPrintable(bytes: text.base, count: text.count)
        } else {
            w.appendPrintable(bytes: text.base, count: 80)
            w.append("...")
        }
    }

    // MARK: Rendering

    /// Writes the canonical string — words in table order, values explicit ("audit=16"),
    /// sizes with the largest exact suffix ("quarantine=64M"), "none" for fast mode — NUL-
    /// terminated into `buffer`. Returns its full length like snprintf: a result >= capacity
    /// means it was cut (`renderCapacity` bytes always suffice). Never allocates.
    @discardableResult
    public func render(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        var writer = ReportWriter(memory: UnsafeMutableRawPointer(buffer), capacity: capacity)
        render(to: &writer)
        return writer.finishCString()
    }

    /// Appends the canonical string to a report (e.g. in its header): every word that is
    /// on, in table order.
    public func render(to w: inout ReportWriter) {
        var first = true
        var raw: UInt8 = 0
        while let word = OptionWord(rawValue: raw) {
            raw += 1
            let entry = word.entry
            guard isOn(entry) else { continue }
            if !first { w.append(byte: 0x2C) }
            first = false
            w.append(entry.name)
            if entry.valueKind != .none {
                w.append(byte: 0x3D)
                writeValue(of: entry.slot, to: &w)
            }
        }
        if first { w.append("none") }
    }

    /// Whether the canonical string has this word: its flag, or for a word without one,
    /// a value other than the unset one.
    func isOn(_ entry: WordEntry) -> Bool {
        if !entry.flag.isEmpty { return flags.contains(entry.flag) }
        switch entry.slot {
        case .reportFormat: return flags.contains(.jsonReport)       // text is the default
        case .exitCode: return exitCode >= 0
        case .reportPath: return hasReportPath
        case .suppressionsPath: return hasSuppressions
        default: return false                                         // none, default
        }
    }

    /// Writes the value after "word=": explicit numbers, sizes with the largest exact suffix.
    func writeValue(of slot: OptionValueSlot, to w: inout ReportWriter) {
        switch slot {
        case .none: break
        case .auditDepth: w.append(decimal: auditDepth)
        case .contentsBytes: w.append(decimal: contentsBytes)
        case .quarantineBytes:
            let n = quarantineBytes
            if n > 0 && n % (1 << 30) == 0 { w.append(decimal: n >> 30); w.append(byte: 0x47) }
            else if n > 0 && n % (1 << 20) == 0 { w.append(decimal: n >> 20); w.append(byte: 0x4D) }
            else if n > 0 && n % (1 << 10) == 0 { w.append(decimal: n >> 10); w.append(byte: 0x4B) }
            else { w.append(decimal: n) }
        case .sampling:
            if sampleMilliseconds > 0 { w.append(decimal: sampleMilliseconds); w.append("ms") } else { w.append(decimal: sampleRate) }
        case .verifyInterval: w.append(decimal: verifyInterval)
        case .watchInterval: w.append(decimal: watchMilliseconds)
        case .exitCode: w.append(decimal: exitCode)
        case .logPath: withLogPath { w.append(cString: $0, maxLength: DebugOptions.maxLogPathLength) }
        case .reportPath: withReportPath { w.append(cString: $0, maxLength: DebugOptions.maxLogPathLength) }
        case .suppressionsPath: withSuppressionsPath { w.append(cString: $0, maxLength: DebugOptions.maxLogPathLength) }
        case .reportFormat: w.append(flags.contains(.jsonReport) ? "json" : "text")
        }
    }
}

extension DebugOptions: Equatable {
    /// Same flags, and the same value for every feature that is on (values of features that
    /// are off are ignored, so render→parse round trips compare equal).
    public static func == (a: DebugOptions, b: DebugOptions) -> Bool {
        let f = a.flags
        guard f == b.flags else { return false }
        if f.contains(.audit) && a.auditDepth != b.auditDepth { return false }
        if f.contains(.contents) && a.contentsBytes != b.contentsBytes { return false }
        if f.contains(.quarantine) && a.quarantineBytes != b.quarantineBytes { return false }
        if f.contains(.sample) && (a.sampleRate != b.sampleRate || a.sampleMilliseconds != b.sampleMilliseconds) { return false }
        if f.contains(.verify) && a.verifyInterval != b.verifyInterval { return false }
        if f.contains(.watch) && a.watchMilliseconds != b.watchMilliseconds { return false }
        if f.contains(.log) {
            let same = a.withLogPath { pa in b.withLogPath { pb in strcmp(pa, pb) == 0 } }
            if !same { return false }
        }
        if a.exitCode != b.exitCode { return false }
        if !a.withReportPath({ pa in b.withReportPath { pb in strcmp(pa, pb) == 0 } }) { return false }
        return a.withSuppressionsPath { pa in b.withSuppressionsPath { pb in strcmp(pa, pb) == 0 } }
    }
}

extension DebugOptions: CustomStringConvertible {
    /// The canonical string (allocates; for Swift callers, tests and diagnostics).
    public var description: String {
        var bytes = [UInt8](repeating: 0, count: DebugOptions.renderCapacity)
        let n = bytes.withUnsafeMutableBytes { b in
            render(into: b.baseAddress!.assumingMemoryBound(to: CChar.self), capacity: b.count)
        }
        return String(decoding: bytes[0..<min(n, bytes.count - 1)], as: UTF8.self)
    }
}

/// A rejected option string (thrown by the String convenience `parse`).
public struct DebugOptionsError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case unknownOption      // a word not in the table
        case missingValue       // `sample`, `quarantine=`, `audit=`, `log=` ...
        case badValue           // not a number, out of range, overflow, bad suffix, long path
        case unexpectedValue    // `leaks=3`: the word takes no value
        case noneCombined       // `none` together with other words
    }
    public var kind: Kind
    /// The whole one-line message, starting "slabguard: ", without a newline.
    public var message: String
    public var description: String { message }
}

extension DebugOptions {
    /// `path` with each `%p` replaced by the process id, as a C string in `page`.
    static func expandingPid(_ path: UnsafePointer<CChar>, into page: UnsafeMutableRawPointer, capacity: Int) {
        var w = ReportWriter(memory: page, capacity: capacity)
        var i = 0
        while path[i] != 0 {
            if path[i] == 0x25, path[i + 1] == 0x70 {   // %p
                w.append(decimal: UInt64(getpid()))
                i += 2
                continue
            }
            w.append(byte: UInt8(bitPattern: path[i]))
            i += 1
        }
        _ = w.finishCString()
    }
}
