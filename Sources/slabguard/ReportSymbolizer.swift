// Rewrites the stack frames of slabguard's text reports into source terms.
//
// The library prints frames as it can from inside a failing process, with no
// allocation and no debug info:
//     #0 0x55a9b8eef163 trial_main+0x6c3 (/path/to/module+0x9f163)
// i.e. the raw (mangled) ELF symbol and the module path + offset from the
// module's load bias.  `slabguard run` sees those lines on the program's
// stderr and turns each into
//     #0 0x55a9b8eef163 trial_main+0x6c3 (trial.c:42)
// - file:line from `addr2line -a -f -C -i -e MODULE OFF...` (one call per
//   module per report, with offset-1 since frames are return addresses), or
//   `llvm-symbolizer` when addr2line is missing.  Inlined calls at one address
//   become extra lines with the same frame number, marked `[inlined]`, so a
//   static function the compiler inlined still shows by name.  When no
//   file:line is known (`??:0`, no debug info, module gone) the
//   (module+0xOFF) part stays.
// - Swift names demangled with `swift-demangle --simplified`, C++ names with
//   `c++filt`, when those tools exist; otherwise names stay as printed.
// Anything that is not a frame line passes through untouched.

import Glibc

/// One parsed frame line.
struct FrameLine {
    var indent: String
    var number: String
    var address: String
    var symbol: String?        // raw name
    var symbolOffset: String?  // "0x6c3"
    var module: String?
    var moduleOffset: UInt?

    /// Parses `    #N 0xADDR [name+0xoff] [(module+0xOFF)]`, or nil.
    init?(_ line: String) {
        let c = Array(line.utf8)
        var i = 0
        while i < c.count, c[i] == 0x20 { i += 1 }
        guard i > 0, i < c.count, c[i] == UInt8(ascii: "#") else { return nil }
        indent = String(decoding: c[..<i], as: UTF8.self)
        i += 1
        let numberStart = i
        while i < c.count, c[i] >= 0x30, c[i] <= 0x39 { i += 1 }
        guard i > numberStart, i + 2 < c.count, c[i] == 0x20, c[i + 1] == 0x30, c[i + 2] == UInt8(ascii: "x") else { return nil }
        number = String(decoding: c[numberStart..<i], as: UTF8.self)
        i += 1
        let addressStart = i
        while i < c.count, c[i] != 0x20 { i += 1 }
        address = String(decoding: c[addressStart..<i], as: UTF8.self)
        var end = c.count
        // Trailing " (module+0xOFF)".
        if c.last == UInt8(ascii: ")"), let open = FrameLine.lastIndex(of: [0x20, UInt8(ascii: "(")], in: c, from: i, to: c.count),
           let plus = FrameLine.lastIndex(of: Array("+0x".utf8), in: c, from: open + 2, to: c.count - 1),
           let offset = UInt(String(decoding: c[(plus + 3)..<(c.count - 1)], as: UTF8.self), radix: 16) {
            module = String(decoding: c[(open + 2)..<plus], as: UTF8.self)
            moduleOffset = offset
            end = open
        }
        if i + 1 < end {
            let name = Array(c[(i + 1)..<end])
            if let plus = FrameLine.lastIndex(of: Array("+0x".utf8), in: name, from: 0, to: name.count) {
                symbol = String(decoding: name[..<plus], as: UTF8.self)
                symbolOffset = String(decoding: name[(plus + 1)...], as: UTF8.self)
            } else {
                symbol = String(decoding: name, as: UTF8.self)
            }
        }
    }

    /// The last start of `needle` in bytes[from..<to].
    static func lastIndex(of needle: [UInt8], in bytes: [UInt8], from: Int, to: Int) -> Int? {
        var s = to - needle.count
        while s >= from {
            var match = true
            for k in 0..<needle.count where bytes[s + k] != needle[k] { match = false; break }
            if match { return s }
            s -= 1
        }
        return nil
    }
}

/// A source location (and the function there) for one address; several for inlined calls.
struct SourceFrame {
    var function: String
    var location: String   // "file:line"
}

enum ReportSymbolizer {
    /// Rewrites a block of report lines (frame lines changed, others kept).
    static func rewrite(_ lines: [String]) -> [String] {
        let frames = lines.map { FrameLine($0) }
        // Per module, the distinct offsets to look up.
        var byModule: [String: [UInt]] = [:]
        for case let frame? in frames {
            if let module = frame.module, let offset = frame.moduleOffset, offset > 0 {
                byModule[module, default: []].append(offset - 1)
            }
        }
        var resolved: [String: [UInt: [SourceFrame]]] = [:]
        for (module, offsets) in byModule {
            resolved[module] = Tools.sourceLines(module: module, offsets: Array(Set(offsets)).sorted())
        }
        var names = frames.compactMap { $0?.symbol }
        for table in resolved.values { for list in table.values { names += list.map(\.function) } }
        let demangled = Tools.demangle(names)

        var output: [String] = []
        for (index, line) in lines.enumerated() {
            guard let frame = frames[index] else { output.append(line); continue }
            var name = frame.symbol.map { demangled[$0] ?? $0 }
            let prefix = frame.indent + "#" + frame.number + " " + frame.address
            var sources: [SourceFrame] = []
            if let module = frame.module, let offset = frame.moduleOffset, offset > 0 {
                sources = resolved[module]?[offset - 1] ?? []
            }
            guard let outer = sources.last else { output.append(rebuild(frame, name: name)); continue }
            // Inlined callees first, innermost first, each at its own location.
            for inner in sources.dropLast() {
                output.append(prefix + " " + (demangled[inner.function] ?? inner.function) + " (" + inner.location + ") [inlined]")
            }
            if name == nil, outer.function != "??" { name = demangled[outer.function] ?? outer.function }
            var text = prefix
            if let name { text += " " + name + (frame.symbolOffset.map { "+" + $0 } ?? "") }
            text += " (" + outer.location + ")"
            output.append(text)
        }
        return output
    }

    private static func rebuild(_ frame: FrameLine, name: String?) -> String {
        var text = frame.indent + "#" + frame.number + " " + frame.address
        if let name { text += " " + name + (frame.symbolOffset.map { "+" + $0 } ?? "") }
        if let module = frame.module, let offset = frame.moduleOffset {
            text += " (" + module + "+0x" + String(offset, radix: 16) + ")"
        }
        return text
    }
}
