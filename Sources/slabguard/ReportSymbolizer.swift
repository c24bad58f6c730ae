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
            if outer.location.isEmpty {   // a name from the symbol table, no file:line: module+offset stays
                output.append(rebuild(frame, name: name ?? (demangled[outer.function] ?? outer.function)))
                continue
            }
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

    /// A JSON report (one line) with `"file"` and `"line"` added to each frame whose
    /// module and offset resolve to a source line, as the text report shows them.
    static func rewriteJSON(_ line: String) -> String {
        // Frames end with "module":"PATH","module_offset":"0xOFF"} (ReportBuilder's order).
        let bytes = Array(line.utf8)
        let key = Array("\"module\":\"".utf8), offsetKey = Array("\",\"module_offset\":\"0x".utf8)
        var found: [(end: Int, module: String, offset: UInt)] = []
        var i = 0
        while let start = find(key, in: bytes, from: i) {
            let pathStart = start + key.count
            guard let pathEnd = find(offsetKey, in: bytes, from: pathStart) else { break }
            var j = pathEnd + offsetKey.count
            var value: UInt = 0
            while j < bytes.count, let digit = hexValue(bytes[j]) { value = value &* 16 &+ UInt(digit); j += 1 }
            i = j
            guard j + 1 < bytes.count, bytes[j] == UInt8(ascii: "\""), bytes[j + 1] == UInt8(ascii: "}"), value > 0 else { continue }
            found.append((j + 1, String(decoding: bytes[pathStart..<pathEnd], as: UTF8.self), value))
        }
        guard !found.isEmpty else { return line }
        var byModule: [String: [UInt]] = [:]
        for f in found { byModule[f.module, default: []].append(f.offset - 1) }
        var resolved: [String: [UInt: [SourceFrame]]] = [:]
        for (module, offsets) in byModule { resolved[module] = Tools.sourceLines(module: module, offsets: Array(Set(offsets)).sorted()) }
        var output: [UInt8] = []
        var copied = 0
        for f in found {
            guard let location = resolved[f.module]?[f.offset - 1]?.last?.location,
                  let colon = location.lastIndex(of: ":"), let number = Int(location[location.index(after: colon)...]) else { continue }
            output += bytes[copied..<f.end]
            output += Array(",\"file\":\"\(jsonEscaped(String(location[..<colon])))\",\"line\":\(number)".utf8)
            copied = f.end
        }
        output += bytes[copied...]
        return String(decoding: output, as: UTF8.self)
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard needle.count <= bytes.count else { return nil }
        var i = start
        while i + needle.count <= bytes.count {
            if bytes[i] == needle[0] && Array(bytes[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }

    private static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: return Int(b - 0x30)
        case 0x61...0x66: return Int(b - 0x61 + 10)
        case 0x41...0x46: return Int(b - 0x41 + 10)
        default: return nil
        }
    }

    static func jsonEscaped(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
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
