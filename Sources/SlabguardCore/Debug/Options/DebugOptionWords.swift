// DebugOptionWords.swift — the option words of DebugOptions.swift (their names, what
// value each takes, what a bad value is told), and the non-owning byte ranges the
// parser walks.  Nothing here allocates.

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

/// The option words, in table (and render) order.
enum OptionWord: UInt8 {
    case none, `default`, deadbeef, redzone, uninit, audit, contents, quarantine, guards,
         sample, verify, leaks, modules, noabort, log, report, reportPath, exitcode, suppressions

    enum ValueKind { case none, optionalNumber, number, size, path, format }

    static func match(_ text: OptionText) -> OptionWord? {
        var raw: UInt8 = 0
        while let word = OptionWord(rawValue: raw) {
            if text.equals(word.name) { return word }
            raw += 1
        }
        return nil
    }

    var name: StaticString {
        switch self {
        case .none: "none"
        case .default: "default"
        case .deadbeef: "deadbeef"
        case .redzone: "redzone"
        case .uninit: "uninit"
        case .audit: "audit"
        case .contents: "contents"
        case .quarantine: "quarantine"
        case .guards: "guards"
        case .sample: "sample"
        case .verify: "verify"
        case .leaks: "leaks"
        case .modules: "modules"
        case .noabort: "noabort"
        case .log: "log"
        case .report: "report"
        case .reportPath: "report_path"
        case .exitcode: "exitcode"
        case .suppressions: "suppressions"
        }
    }

    var valueKind: ValueKind {
        switch self {
        case .audit, .contents: .optionalNumber
        case .sample, .verify, .exitcode: .number
        case .quarantine: .size
        case .log, .reportPath, .suppressions: .path
        case .report: .format
        default: .none
        }
    }

    /// Largest accepted number.
    var maximum: Int {
        switch self {
        case .audit: DebugOptions.maxAuditDepth
        case .contents: DebugOptions.maxContentsBytes
        case .exitcode: 255
        // Bounded so that no arithmetic on them can overflow (sample=N's countdown is 2N);
        // a quarantine's bytes are only compared.
        case .sample: DebugOptions.maxSampleRate
        case .verify: DebugOptions.maxVerifyInterval
        default: Int.max
        }
    }

    /// Smallest accepted number (exitcode=0 turns the exit status change off).
    var minimum: Int { self == .exitcode ? 0 : 1 }

    /// What follows "word" in the usage shown for a missing value ("=N" in "sample=N").
    var valueUsage: StaticString {
        switch valueKind {
        case .optionalNumber, .number: "=N"
        case .size: "=SIZE"
        case .path: "=PATH"
        case .format: "=text|json"
        case .none: ""
        }
    }

    var expectation: StaticString {
        switch self {
        case .audit: "a number of frames from 1 to 64"
        case .contents: "a number of bytes from 1 to 4096"
        case .quarantine: "a size in bytes of 1 or more, with an optional K, M or G suffix, e.g. 64M"
        case .sample: "a whole number from 1 to 1073741824, about 1 in N allocations guarded; or Nms (N up to 3600000), one allocation every N milliseconds"
        case .verify: "a whole number from 1 to 1073741824; the heap is verified every N allocator calls"
        case .log, .reportPath, .suppressions: "a file path of 1 to 4095 bytes"
        case .exitcode: "an exit status from 0 to 255 (0: the program's own status is kept)"
        case .report: "text or json"
        default: "no value"
        }
    }
}
