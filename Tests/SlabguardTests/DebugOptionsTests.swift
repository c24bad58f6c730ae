// DebugOptionsTests.swift — the SLABGUARD_DEBUG grammar: every word, values, suffixes,
// every error class (one line, naming the item, the source and the valid words), the
// non-allocating C entry point and the render → parse round trip.

import Foundation
import Glibc
import Testing
@testable import SlabguardCore

private let validList = "valid options: default, none, deadbeef, redzone, uninit, audit[=N], contents[=N], "
    + "quarantine=SIZE, guards, sample=N, verify=N, leaks, modules, watch[=N], noabort, log=PATH, report=text|json, "
    + "report_path=PATH, exitcode=N, suppressions=FILE"

private func parse(_ s: String, source: String = "SLABGUARD_DEBUG") throws(DebugOptionsError) -> DebugOptions {
    try DebugOptions.parse(s, source: source)
}

/// The error a string must produce (fails the test if it parses).
private func failure(_ s: String, source: String = "SLABGUARD_DEBUG") -> DebugOptionsError? {
    do {
        let options = try parse(s, source: source)
        Issue.record("'\(s)' parsed, as \(options)")
        return nil
    } catch {
        return error
    }
}

private func logPath(_ o: DebugOptions) -> String { o.withLogPath { String(cString: $0) } }

/// Parses through the C entry point, with `errorCapacity` bytes for the message.
private func cParse(_ s: String?, into options: inout DebugOptions, errorCapacity: Int = 1024) -> (Bool, String) {
    let error = UnsafeMutablePointer<CChar>.allocate(capacity: errorCapacity + 1)
    defer { error.deallocate() }
    error.initialize(repeating: 0x55, count: errorCapacity + 1)
    let ok: Bool
    if let s {
        ok = s.withCString { DebugOptions.parse($0, source: "--debug", into: &options, error: error, errorCapacity: errorCapacity) }
    } else {
        ok = DebugOptions.parse(nil, source: "--debug", into: &options, error: error, errorCapacity: errorCapacity)
    }
    #expect(error[errorCapacity] == 0x55, "message overran its buffer")
    return (ok, ok || errorCapacity == 0 ? "" : String(cString: error))
}

@Suite("DebugOptions", .timeLimit(.minutes(5)))
struct DebugOptionsTests {
    // MARK: Words

    @Test(arguments: [
        ("deadbeef", DebugFlags.deadbeef), ("redzone", .redzone), ("uninit", .uninit),
        ("audit", .audit), ("contents", .contents), ("guards", .guards), ("leaks", .leaks),
        ("modules", .modules), ("noabort", .noabort), ("report=json", .jsonReport), ("quarantine=1", .quarantine),
        ("sample=3", .sample), ("verify=9", .verify), ("log=/tmp/sg.log", .log),
    ])
    func eachWordSetsExactlyItsFlag(word: String, flag: DebugFlags) throws {
        let o = try parse(word)
        #expect(o.flags == flag)
        #expect(o.isEnabled)
    }

    @Test func defaultExpandsExactly() throws {
        let o = try parse("default")
        #expect(o.flags == DebugFlags.deadbeef.union(.redzone).union(.uninit).union(.audit).union(.quarantine).union(.leaks).union(.modules))
        #expect(o.flags == .defaultSet)
        #expect(o.auditDepth == 16)
        #expect(o.quarantineBytes == 1 << 20)
        #expect(o.description == "deadbeef,redzone,uninit,audit=16,quarantine=1M,leaks,modules")
        // A quarantine set before `default` stays; one after it wins.
        #expect(try parse("quarantine=64M,default").quarantineBytes == 64 << 20)
        #expect(try parse("default,quarantine=1K").quarantineBytes == 1024)
    }

    @Test func fastModeSpellings() throws {
        for s in ["", "none", "  none ", " ", ",", " , ,", "none,none"] {
            let o = try parse(s)
            #expect(!o.isEnabled, "'\(s)'")
            #expect(o.flags.rawValue == 0)
        }
        #expect(!DebugOptions().isEnabled)
        var o = try parse("default")
        let (ok, _) = cParse(nil, into: &o)          // unset variable: nil pointer
        #expect(ok && !o.isEnabled)
    }

    @Test func valuesAndDefaults() throws {
        let bare = try parse("audit,contents")
        #expect(bare.auditDepth == 16 && bare.contentsBytes == 256)
        let o = try parse("audit=64,contents=4096,sample=1,verify=1000,report=json")
        #expect(o.auditDepth == 64 && o.contentsBytes == 4096)
        #expect(o.sampleRate == 1 && o.verifyInterval == 1000)
        #expect(o.flags.contains(.jsonReport))
        #expect(try parse("audit=1").auditDepth == 1)
        #expect(try parse("contents=1").contentsBytes == 1)
        #expect(try parse("sample=007").sampleRate == 7)
        #expect(!(try parse("report=text")).flags.contains(.jsonReport))
    }

    @Test func logPathIsStoredInline() throws {
        let o = try parse("log=/tmp/a b/x=y.log")
        #expect(logPath(o) == "/tmp/a b/x=y.log")            // spaces inside and "=" kept
        #expect(o.logPathLength == 16)
        let longest = "/" + String(repeating: "p", count: 4094)
        let l = try parse("log=" + longest)
        #expect(logPath(l) == longest && l.logPathLength == 4095)
        #expect(_isPOD(DebugOptions.self))
        #expect(MemoryLayout<DebugOptions>.size >= 4096 + 6 * 8)
    }

    @Test func laterItemsWin() throws {
        #expect(try parse("audit=8,audit=32").auditDepth == 32)
        #expect(try parse("audit=8,audit").auditDepth == 8)          // a bare word keeps the value
        #expect(try parse("audit=8,default").auditDepth == 8)
        #expect(try parse("sample=5,sample=50").sampleRate == 50)
        #expect(try parse("quarantine=1M,quarantine=2K").quarantineBytes == 2048)
        #expect(!(try parse("report=json,report=text")).flags.contains(.jsonReport))
        let o = try parse("log=/a/much/longer/path,log=/b")
        #expect(logPath(o) == "/b" && o.logPathLength == 2)
        let bytesAfterNul = o.withLogPath { p in (3..<4096).allSatisfy { p[$0] == 0 } }
        #expect(bytesAfterNul)
        let twice = try parse("leaks,leaks,deadbeef,deadbeef")
        #expect(twice.flags == DebugFlags.leaks.union(.deadbeef))
    }

    @Test func whitespaceAndEmptyItems() throws {
        let o = try parse(" deadbeef ,\tredzone ,, leaks ,audit = 8 , log = /tmp/x ,")
        #expect(o.flags == DebugFlags.deadbeef.union(.redzone).union(.leaks).union(.audit).union(.log))
        #expect(o.auditDepth == 8 && logPath(o) == "/tmp/x")
        #expect(try parse(",,guards,,").flags == .guards)
    }

    @Test(arguments: [
        ("1", 1), ("4096", 4096), ("64K", 65536), ("64k", 65536), ("64KB", 65536), ("64kb", 65536),
        ("3M", 3 << 20), ("3m", 3 << 20), ("3MB", 3 << 20), ("2G", 2 << 30), ("2g", 2 << 30), ("2Gb", 2 << 30),
        ("8589934591G", 8_589_934_591 << 30), ("9223372036854775807", Int.max),
    ])
    func quarantineSizes(text: String, bytes: Int) throws {
        let o = try parse("quarantine=" + text)
        #expect(o.quarantineBytes == bytes)
        #expect(o.flags == .quarantine)
    }

    // MARK: Errors

    @Test func unknownWordMessageIsExact() {
        let e = failure("deadbeef,dedbeef,leaks")
        #expect(e?.kind == .unknownOption)
        #expect(e?.message == "slabguard: unknown debug option 'dedbeef' in SLABGUARD_DEBUG; " + validList)
        #expect(failure("Deadbeef")?.kind == .unknownOption)            // words are case-sensitive
        #expect(failure("foo=3")?.message.contains("'foo=3'") == true)
    }

    @Test func badValueMessageIsExact() {
        let e = failure("audit=x")
        #expect(e?.kind == .badValue)
        #expect(e?.message == "slabguard: bad value 'x' for debug option 'audit' "
            + "(expected a number of frames from 1 to 64) in SLABGUARD_DEBUG; " + validList)
    }

    @Test(arguments: ["quarantine", "sample", "verify", "log", "report", "audit=", "contents=",
                      "quarantine=", "sample= ", "log=", "log=  "])
    func missingValue(item: String) {
        let e = failure("leaks," + item)
        #expect(e?.kind == .missingValue)
        let word = String(item.prefix { $0 != "=" })
        #expect(e?.message.hasPrefix("slabguard: missing value for debug option '\(word)' (expected \(word)=") == true)
        #expect(e?.message.hasSuffix(" in SLABGUARD_DEBUG; " + validList) == true)
    }

    @Test(arguments: [
        ("sample=10x", "10x"), ("sample=0", "0"), ("sample=-1", "-1"), ("sample=+1", "+1"), ("verify=0x10", "0x10"),
        ("audit=0", "0"), ("audit=65", "65"), ("contents=0", "0"), ("contents=4097", "4097"),
        ("quarantine=0", "0"), ("quarantine=1T", "1T"), ("quarantine=1KK", "1KK"), ("quarantine=K", "K"),
        ("quarantine=1.5M", "1.5M"), ("quarantine=-1M", "-1M"), ("report=xml", "xml"), ("report=JSON", "JSON"),
        // overflow
        ("sample=99999999999999999999", "99999999999999999999"), ("verify=9223372036854775808", "9223372036854775808"),
        ("quarantine=8589934592G", "8589934592G"), ("quarantine=9007199254740992M", "9007199254740992M"),
        ("quarantine=17179869185G", "17179869185G"),    // (2^34 + 1) << 30 would wrap to 1G
    ])
    func badValues(item: String, value: String) {
        let e = failure(item)
        let word = String(item.prefix { $0 != "=" })
        #expect(e?.kind == .badValue)
        #expect(e?.message.hasPrefix("slabguard: bad value '\(value)' for debug option '\(word)' (expected ") == true)
        #expect(e?.message.hasSuffix(") in SLABGUARD_DEBUG; " + validList) == true)
    }

    @Test(arguments: ["leaks=3", "default=1", "deadbeef=", "guards=yes", "none=1"])
    func valueOnWordWithoutOne(item: String) {
        let e = failure(item)
        let word = String(item.prefix { $0 != "=" })
        #expect(e?.kind == .unexpectedValue)
        #expect(e?.message == "slabguard: debug option '\(word)' takes no value, got '\(item)' in SLABGUARD_DEBUG; " + validList)
    }

    @Test(arguments: [("none,deadbeef", "deadbeef"), ("deadbeef,none", "deadbeef"), (" default , none", "default"),
                      ("none,audit=8", "audit=8")])
    func noneMustBeAlone(text: String, other: String) {
        let e = failure(text)
        #expect(e?.kind == .noneCombined)
        #expect(e?.message == "slabguard: debug option 'none' cannot be combined with other options, got '\(other)' "
            + "in SLABGUARD_DEBUG; " + validList)
    }

    @Test func overLongLogPath() {
        let path = "/" + String(repeating: "q", count: 4095)          // 4096 bytes
        let e = failure("log=" + path)
        #expect(e?.kind == .badValue)
        let shown = "/" + String(repeating: "q", count: 79) + "..."     // echo is cut at 80 bytes
        #expect(e?.message == "slabguard: bad value '\(shown)' for debug option 'log' "
            + "(expected a file path of 1 to 4095 bytes) in SLABGUARD_DEBUG; " + validList)
    }

    @Test func messagesStayOnOneLineAndNameTheSource() {
        let e = failure("dead\nbeef\u{1}", source: "--debug")
        #expect(e?.message == "slabguard: unknown debug option 'dead\\x0abeef\\x01' in --debug; " + validList)
        let noSource = failure("x", source: "")
        #expect(noSource?.message == "slabguard: unknown debug option 'x'; " + validList)
        for bad in ["x", "audit=", "leaks=1", "none,leaks", "sample=0", "modules=1"] {
            let m = failure(bad)?.message ?? "\n"
            #expect(!m.contains("\n") && m.hasPrefix("slabguard: ") && m.contains(validList))
            #expect(failure(bad)?.description == m)
        }
    }

    // MARK: C entry point

    @Test func cEntryPointSucceedsAndFails() {
        var o = DebugOptions()
        var (ok, message) = cParse("default,quarantine=64M", into: &o)
        #expect(ok && message.isEmpty)
        #expect(o.flags == DebugFlags.defaultSet.union(.quarantine) && o.quarantineBytes == 64 << 20)

        let before = o
        (ok, message) = cParse("redzone,sample=0", into: &o)
        #expect(!ok)
        #expect(message == "slabguard: bad value '0' for debug option 'sample' (expected a whole number from 1 to 1073741824, "
            + "about 1 in N allocations guarded; or Nms (N up to 3600000), one allocation every N milliseconds) in --debug; "
            + validList)
        #expect(o == before && o.quarantineBytes == 64 << 20, "options must be untouched on failure")
    }

    @Test func cEntryPointWithCStringSource() {
        var o = DebugOptions()
        let error = UnsafeMutablePointer<CChar>.allocate(capacity: 1024)
        defer { error.deallocate() }
        let fromPointer: (Bool, String) = "leaks=1".withCString { text in
            "SLABGUARD_DEBUG".withCString { source in
                let ok = DebugOptions.parse(text, source: source, into: &o, error: error, errorCapacity: 1024)
                return (ok, String(cString: error))
            }
        }
        #expect(!fromPointer.0)
        #expect(fromPointer.1 == "slabguard: debug option 'leaks' takes no value, got 'leaks=1' in SLABGUARD_DEBUG; " + validList)
        let noSource: String = "leaks=1".withCString { text in
            _ = DebugOptions.parse(text, source: nil as UnsafePointer<CChar>?, into: &o, error: error, errorCapacity: 1024)
            return String(cString: error)
        }
        #expect(noSource == "slabguard: debug option 'leaks' takes no value, got 'leaks=1'; " + validList)
    }

    @Test func cEntryPointTruncatesTheMessageSafely() {
        var o = DebugOptions()
        let (ok, message) = cParse("bogus", into: &o, errorCapacity: 20)
        #expect(!ok && message == "slabguard: unknown ")       // 19 bytes + NUL
        let (ok0, _) = cParse("bogus", into: &o, errorCapacity: 0)
        #expect(!ok0)
        let longest = cParse("log=/" + String(repeating: "\u{1}", count: 5000), into: &o, errorCapacity: DebugOptions.errorCapacity)
        #expect(longest.1.hasSuffix(validList), "errorCapacity must hold the longest message")
    }

    // MARK: Rendering

    /// Every number is bounded, so nothing computed from it overflows (before: sample=2^62
    /// was accepted and trapped at start-up).
    @Test func numbersAreBounded() throws {
        for bad in ["sample=4611686018427387904", "sample=1073741825", "sample=3600001ms", "verify=1073741825"] {
            #expect(failure(bad)?.message.contains("bad value") == true || failure(bad)?.message.contains("value") == true,
                    "\(bad) accepted")
        }
        #expect(try parse("sample=1073741824").sampleRate == 1 << 30)
        #expect(try parse("sample=3600000ms").sampleMilliseconds == 3_600_000)
    }

    @Test func canonicalRendering() throws {
        #expect(DebugOptions().description == "none")
        #expect(try parse("report=json,leaks,quarantine=65536,audit").description == "audit=16,quarantine=64K,leaks,report=json")
        #expect(try parse("quarantine=3G").description == "quarantine=3G")
        #expect(try parse("quarantine=1536K").description == "quarantine=1536K")
        #expect(try parse("quarantine=1025").description == "quarantine=1025")
        #expect(try parse("report=text").description == "none")
    }

    /// Each text renders as the canonical form written here by hand (design §3's word order:
    /// deadbeef, redzone, uninit, audit, contents, quarantine, guards, sample, verify, leaks,
    /// noabort, log, report), and the rendering parses back to the same options.
    @Test(arguments: [
        ("default", "deadbeef,redzone,uninit,audit=16,quarantine=1M,leaks,modules"),
        ("none", "none"),
        ("guards,deadbeef", "deadbeef,guards"),
        ("default,quarantine=64M,noabort", "deadbeef,redzone,uninit,audit=16,quarantine=64M,leaks,modules,noabort"),
        ("report=json,verify=7,sample=1000,contents=4096,audit=64", "audit=64,contents=4096,sample=1000,verify=7,report=json"),
        ("uninit,redzone,log=/var/tmp/slab guard.log,leaks", "redzone,uninit,leaks,log=/var/tmp/slab guard.log"),
        ("sample=2,guards,quarantine=1025", "quarantine=1025,guards,sample=2"),
        ("sample=10MS,leaks", "sample=10ms,leaks"),
        ("sample=10ms,sample=7", "sample=7"),
        ("noabort,leaks,log=/x,report=json,verify=13,sample=11,guards,quarantine=5G,contents=9,audit=3,uninit,redzone,deadbeef",
         "deadbeef,redzone,uninit,audit=3,contents=9,quarantine=5G,guards,sample=11,verify=13,leaks,noabort,log=/x,report=json"),
    ])
    func renderParseRoundTrip(text: String, canonical: String) throws {
        let o = try parse(text)
        #expect(o.description == canonical, "\(text) rendered as \(o.description)")
        #expect(try parse(o.description) == o, "\(text): the rendering parses to other options")
    }

    @Test func renderIntoSmallBufferBehavesLikeSnprintf() throws {
        let o = try parse("default,log=/tmp/abc")
        let full = "deadbeef,redzone,uninit,audit=16,quarantine=1M,leaks,modules,log=/tmp/abc"
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: 11)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0x55, count: 11)
        let n = o.render(into: buffer, capacity: 10)
        #expect(n == full.utf8.count)
        #expect(String(cString: buffer) == "deadbeef,")
        #expect(buffer[10] == 0x55)
        // The longest possible rendering fits in renderCapacity.
        var longest = try parse("deadbeef,redzone,uninit,audit=64,contents=4096,quarantine=9223372036854775807,guards,"
            + "sample=1073741824,verify=1073741824,leaks,modules,noabort,report=json,exitcode=255,"
            + "report_path=/" + String(repeating: "r", count: 4094) + ",suppressions=/" + String(repeating: "s", count: 4094))
        let set = longest.setLogPath("/" + String(repeating: "z", count: 4094))
        #expect(set)
        let big = UnsafeMutablePointer<CChar>.allocate(capacity: DebugOptions.renderCapacity)
        defer { big.deallocate() }
        #expect(longest.render(into: big, capacity: DebugOptions.renderCapacity) < DebugOptions.renderCapacity)
        #expect(try parse(String(cString: big)) == longest)
    }

    @Test func setLogPathKeepsRoundTripPossible() {
        var o = DebugOptions()
        let accepted = o.setLogPath("/tmp/ok.log")
        #expect(accepted && o.flags == .log && logPath(o) == "/tmp/ok.log")
        for bad in ["", "/tmp/a,b", " /tmp/lead", "/tmp/trail ", "/" + String(repeating: "x", count: 4095)] {
            let result = o.setLogPath(bad)
            #expect(!result, "'\(bad.prefix(20))'")
        }
        #expect(logPath(o) == "/tmp/ok.log", "a rejected path changes nothing")
    }

    @Test func equalityIgnoresValuesOfFeaturesThatAreOff() throws {
        var a = DebugOptions()
        var b = DebugOptions()
        b.sampleRate = 99
        b.auditDepth = 3
        #expect(a == b)
        a.flags.insert(.sample)
        b.flags.insert(.sample)
        #expect(a != b)
        #expect(try parse("log=/a") != (try parse("log=/b")))
        #expect(try parse("audit=5") != (try parse("audit=6")))
    }

    /// The run-convention words (design §3, §10): exitcode=N from 0 to 255, report_path
    /// and suppressions paths; each round-trips through render.
    @Test func runConventionWords() throws {
        let o = try parse("default,exitcode=0,report_path=/tmp/r.%p,suppressions=/tmp/s.supp")
        #expect(o.exitCode == 0 && o.effectiveExitCode == 0)
        #expect(o.withReportPath { String(cString: $0) } == "/tmp/r.%p")
        #expect(o.withSuppressionsPath { String(cString: $0) } == "/tmp/s.supp")
        #expect(try parse(o.description) == o)
        #expect(try parse("default").effectiveExitCode == 1)
        #expect(try parse("exitcode=255").exitCode == 255)
        #expect(failure("exitcode=256")?.kind == .badValue)
        #expect(failure("exitcode")?.kind == .missingValue)
        #expect(failure("suppressions=")?.kind == .missingValue)
        #expect(try parse("exitcode=3") != (try parse("exitcode=4")))
    }

    // MARK: The word table (DebugOptionWords.swift): one declaration per word

    /// Every word of the table, in its order.
    private static var tableWords: [OptionWord] {
        var words: [OptionWord] = []
        var raw: UInt8 = 0
        while let word = OptionWord(rawValue: raw) { words.append(word); raw += 1 }
        return words
    }

    private static func text(_ s: StaticString) -> String { s.description }

    @Test func errorLineListsTheTablesWordsInOrder() {
        let message = failure("bogus")?.message ?? ""
        #expect(message.hasSuffix("; valid options: " + DebugOptions.validOptionsList))
        let listed = DebugOptions.validOptionsList.components(separatedBy: ", ")
        let expected = Self.tableWords.map { word -> String in
            let e = word.entry
            return Self.text(e.name) + (e.valueKind == .optionalNumber ? "[\(Self.text(e.usage))]" : Self.text(e.usage))
        }
        #expect(listed == expected)
        #expect(listed.map { String($0.prefix { $0 != "=" && $0 != "[" }) } == Self.tableWords.map { Self.text($0.name) })
    }

    /// Generated from the table: each word parses in each of its forms, sets its flag,
    /// renders (in the canonical string when on) and parses back to the same options; its
    /// bounds are enforced and said in its expectation; a missing or unexpected value is
    /// told with the table's usage.
    @Test func everyWordOfTheTableRoundTrips() throws {
        for word in Self.tableWords {
            let e = word.entry
            let name = Self.text(e.name)
            var items: [String] = []
            switch e.valueKind {
            case .none: items = [name]
            case .optionalNumber: items = [name, "\(name)=\(e.minimum)", "\(name)=\(e.maximum)"]
            case .number: items = ["\(name)=\(e.minimum)", "\(name)=\(e.maximum)"]
            case .size: items = ["\(name)=\(e.minimum)", "\(name)=64M", "\(name)=\(e.maximum)"]
            case .path: items = ["\(name)=/tmp/sg-\(name)", "\(name)=/" + String(repeating: "p", count: e.maximum - 1)]
            case .format: items = ["\(name)=text", "\(name)=json"]
            }
            if e.maximumMilliseconds > 0 { items += ["\(name)=1ms", "\(name)=\(e.maximumMilliseconds)ms"] }
            for item in items {
                let o = try parse(item)
                #expect(o.flags.isSuperset(of: e.flag), "\(item)")
                let canonical = o.description
                if o.isOn(e) {
                    #expect(canonical.split(separator: ",").contains { $0 == name || $0.hasPrefix(name + "=") },
                            "\(item) rendered as \(canonical)")
                }
                #expect(try parse(canonical) == o, "\(item) → \(canonical)")
            }
            if e.valueKind == .none {
                #expect(failure("\(name)=1")?.kind == .unexpectedValue, "\(name)")
                continue
            }
            let missing = failure("\(name)=")
            #expect(missing?.kind == .missingValue)
            #expect(missing?.message.contains("(expected \(name)\(Self.text(e.usage)): \(Self.text(e.expectation)))") == true,
                    "\(missing?.message ?? "")")
            if e.valueKind == .optionalNumber || e.valueKind == .number {
                #expect(failure("\(name)=\(e.maximum + 1)")?.kind == .badValue, "\(name) above its maximum")
                if e.minimum > 0 { #expect(failure("\(name)=\(e.minimum - 1)")?.kind == .badValue, "\(name) below its minimum") }
            }
            if e.valueKind != .size && e.valueKind != .format {
                #expect(Self.text(e.expectation).contains("\(e.minimum) to \(e.maximum)"), "\(name): \(Self.text(e.expectation))")
            }
            if e.defaultValue > 0 { #expect(Self.text(e.help).contains("default \(e.defaultValue)"), "\(name)'s help") }
        }
    }

    /// `default` is its implied words, each at the table's value unless already on.
    @Test func defaultIsItsImpliedWords() throws {
        let implied = Self.text(OptionWord.default.entry.implies)
        #expect(try parse("default") == (try parse(implied)))
        #expect(try parse("default").flags == .defaultSet)
        #expect(try parse("default").quarantineBytes == DebugOptions.defaultQuarantineBytes)
        #expect(try parse("audit=8,contents=9,default").description
            == "deadbeef,redzone,uninit,audit=8,contents=9,quarantine=1M,leaks,modules")
    }

    /// Each word's help line, in order, in `slabguard run --help`'s text.
    @Test func helpTextHasEveryWordInOrder() {
        let lines = DebugOptions.wordHelp.split(separator: "\n").filter { !$0.hasPrefix("   ") }
        let usages = DebugOptions.validOptionsList.components(separatedBy: ", ")
        #expect(lines.count == usages.count)
        for (line, usage) in zip(lines, usages) {
            #expect(line.hasPrefix("  \(usage) "), "\(line)")
        }
        #expect(DebugOptions.wordHelp.split(separator: "\n").allSatisfy { $0.utf8.count < 80 })
    }

    /// README.md's "Debug options" table has a row for every word of the table, and no
    /// other word (a row's word is its first `code`, up to "=" or "[").
    @Test func readmeTableHasExactlyTheTablesWords() throws {
        let readme = try String(contentsOf: ReleaseBuild.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let section = readme.components(separatedBy: "\n## Debug options\n").dropFirst().first ?? ""
        let rows = section.components(separatedBy: "\n## ").first!.split(separator: "\n").filter { $0.hasPrefix("| `") }
        var documented: [String: Substring] = [:]
        for row in rows {
            let code = row.dropFirst(3).prefix { $0 != "`" }
            documented[String(code.prefix { $0 != "=" && $0 != "[" })] = row
        }
        let names = Self.tableWords.map { Self.text($0.name) }
        #expect(rows.count >= names.count, "no Debug options table found in README.md")
        for name in names { #expect(documented[name] != nil, "README.md's Debug options table has no row for '\(name)'") }
        for name in documented.keys where !names.contains(name) {
            #expect(Bool(false), "README.md documents '\(name)', which is not a debug option word")
        }
        let implied = Self.text(OptionWord.default.entry.implies)
        #expect(documented["default"]?.contains("`\(implied)`") == true, "README's default row must say `\(implied)`")
    }
}
