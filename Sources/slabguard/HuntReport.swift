// What `slabguard hunt` reads in a report: its headline, the offset of the damage, the
// buffer's size and the stacks (allocation, free, and the faulting or writing thread's),
// from a text report as the channel prints it (frames symbolized) or from a JSON one
// (report=json, with file and line added).  Both forms carry the same fields (design §4).
//
// The hunt's target — what SLABGUARD_HUNT tells the library to watch in a replay:
//     SLABGUARD_HUNT=KIND:OFFSET:ADDR1,ADDR2,...
// KIND `freed` (a write into a freed buffer: `buffer modified after being freed`, or a
// fatal signal through a freed buffer) or `overrun` (`redzone violation: write past end
// of buffer` found at free or verification, i.e. without a faulting stack); OFFSET the
// report's offset in hex (the damaged word from the buffer's chunk start; the first
// damaged byte from the buffer's start; for a fatal signal the offset its note gives, else
// 0); ADDRi the first (up to 4) return addresses of the buffer's allocation stack.

import Glibc

/// One frame: its address, and its function and place as printed ("file:line", or
/// "module+0xOFF" when no line is known).
struct ReportFrame: Equatable {
    var address: UInt
    var function: String?
    var location: String?

    /// "function (file:line)", as the hunt names a place.
    var place: String {
        let name = function ?? "0x" + String(address, radix: 16)
        return location.map { "\(name) (\($0))" } ?? name
    }
}

struct ParsedReport {
    var headline = ""                       // without "slabguard: "
    var offset: UInt?
    var bufferSize: Int?
    var notes: [String] = []
    var stacks: [String: [ReportFrame]] = [:]      // JSON keys: allocation_stack, free_stack, fault_stack, ...
    var threads: [String: UInt] = [:]              // the thread of each stack

    /// Parses a report as the channel received or printed it (text or JSON); nil for a
    /// message that is no report (a summary, a notice).
    init?(_ message: String) {
        let trimmed = message.drop { $0 == " " || $0 == "\n" }
        if trimmed.hasPrefix("{") {
            guard let value = JSONValue.parse(String(trimmed.prefix { $0 != "\n" })) else { return nil }
            self.init(json: value)
        } else {
            self.init(text: String(trimmed))
        }
        if headline.isEmpty || headline.hasPrefix("summary") { return nil }
    }

    private init?(json: JSONValue) {
        guard let kind = json["report"]?.string else { return nil }
        headline = kind
        if kind == "use-after-free", let access = json["access"]?.string {   // as the text headline begins
            headline += ": \(access) at \(json["address"]?.string ?? "?")"
        }
        offset = json["offset"]?.number.flatMap { $0 >= 0 ? UInt(exactly: $0) : nil }
        bufferSize = json["buffer"]?["size"]?.number.flatMap { Int(exactly: $0) }
        notes = json["notes"]?.array?.compactMap(\.string) ?? []
        let demangled = Tools.demangle(Self.stackKeys.flatMap { json[$0]?["frames"]?.array ?? [] }.compactMap { $0["function"]?.string })
        for key in Self.stackKeys {
            guard let stack = json[key], let frames = stack["frames"]?.array else { continue }
            threads[key] = stack["thread"]?.number.flatMap { UInt(exactly: $0) }
            stacks[key] = frames.compactMap { frame in
                guard let text = frame["address"]?.string, let address = parseHex(text) else { return nil }
                let function = frame["function"]?.string.map { demangled[$0] ?? $0 }
                var location: String? = nil
                if let file = frame["file"]?.string, let line = frame["line"]?.number {
                    location = "\(file):\(Int(line))"
                } else if let module = frame["module"]?.string, let offset = frame["module_offset"]?.string {
                    location = "\(module)+\(offset)"
                }
                return ReportFrame(address: address, function: function, location: location)
            }
        }
    }

    /// The stacks the hunt reads, by their JSON keys.
    static let stackKeys = ["allocation_stack", "free_stack", "fault_stack", "current_stack"]

    /// A text stack's label (before " THREAD at T:") → its JSON key.
    static func stackKey(label: String) -> String {
        switch label {
        case "allocated by thread": return "allocation_stack"
        case "last freed by thread", "freed by thread", "first free by thread": return "free_stack"
        case "written by thread", "faulting access by thread", "crashed in thread": return "fault_stack"
        default: return label.hasPrefix("detected") ? "current_stack" : label
        }
    }

    private init(text: String) {
        let lines = text.split(separator: "\n").map(String.init)
        guard let first = lines.first, first.hasPrefix("slabguard: ") else { return }
        headline = String(first.dropFirst("slabguard: ".count))
        var key: String? = nil
        var lastNumber: Substring? = nil
        for line in lines.dropFirst() {
            let body = line.drop { $0 == " " }
            if body.hasPrefix("#"), let key {
                // "#N 0xADDR name+0xoff (place)"; an inlined callee repeats N (innermost first).
                let fields = body.split(separator: " ", maxSplits: 2)
                guard fields.count >= 2, let address = parseHex(String(fields[1])) else { continue }
                if fields[0] == lastNumber { continue }
                lastNumber = fields[0]
                stacks[key, default: []].append(Self.frame(address: address, rest: fields.count > 2 ? String(fields[2]) : ""))
                continue
            }
            key = nil
            lastNumber = nil
            if body.hasSuffix(":"), let at = body.ranges(of: " at ").last, let label = Self.stackLabel(body[..<at.lowerBound]) {
                key = Self.stackKey(label: label.name)
                threads[key!] = label.thread
                stacks[key!] = []
            } else if body.hasPrefix("note: ") {
                notes.append(String(body.dropFirst("note: ".count)))
            } else if offset == nil, body.hasPrefix("modification occurred at offset ") || body.hasPrefix("first damaged byte at offset ") {
                let hex = body[body.firstRange(of: "at offset ")!.upperBound...].prefix { $0 != " " }
                offset = parseHex(String(hex))
            } else if bufferSize == nil, body.hasPrefix("buffer 0x") || body.hasPrefix("freed buffer 0x"),
                      let size = body.firstRange(of: ", size ") {
                bufferSize = Int(body[size.upperBound...].prefix { $0.isNumber })
            }
        }
    }

    /// "allocated by thread 1234" → ("allocated by thread", 1234).
    private static func stackLabel(_ text: Substring) -> (name: String, thread: UInt)? {
        guard let space = text.lastIndex(of: " "), let thread = UInt(text[text.index(after: space)...]) else { return nil }
        return (String(text[..<space]), thread)
    }

    /// A printed frame's function (without +0xoff) and place (the last parenthesis).
    private static func frame(address: UInt, rest: String) -> ReportFrame {
        var text = rest
        if text.hasSuffix(" [inlined]") { text.removeLast(" [inlined]".count) }
        var location: String? = nil
        if text.hasSuffix(")"), let open = text.ranges(of: " (").last {
            location = String(text[open.upperBound..<text.index(before: text.endIndex)])
            text = String(text[..<open.lowerBound])
        }
        if let plus = text.ranges(of: "+0x").last { text = String(text[..<plus.lowerBound]) }
        return ReportFrame(address: address, function: text.isEmpty ? nil : text, location: location)
    }

    /// The first "offset 0xOFF into a freed buffer" a fatal signal's notes give.
    var freedBufferOffset: UInt? {
        for note in notes where note.contains("into a freed buffer") {
            guard let at = note.firstRange(of: "offset 0x") else { continue }
            let hex = note[note.index(at.upperBound, offsetBy: -2)...].prefix { $0 != " " }
            if let value = parseHex(String(hex)) { return value }
        }
        return nil
    }

    /// The writing instruction's frame: a report made at the write (a watchpoint's, or a
    /// guard page's), which a replay is looking for.
    var writer: ReportFrame? {
        guard headline.hasPrefix("use-after-free: write") || headline == "redzone violation: write past end of buffer" else { return nil }
        return stacks["fault_stack"]?.first
    }
}

/// What a replay watches: SLABGUARD_HUNT's value and the words that explain it.
struct HuntTarget: Equatable {
    enum Kind: String { case freed, overrun }
    var kind: Kind
    var offset: UInt
    var allocation: [ReportFrame]
    var bufferSize: Int?
    var headline: String

    /// The report's hunt, when it reports damage found after the fact with an allocation stack.
    init?(_ report: ParsedReport) {
        headline = report.headline
        switch report.headline {
        case "buffer modified after being freed":
            kind = .freed
            offset = report.offset ?? 0
        case "redzone violation: write past end of buffer" where report.stacks["fault_stack"] == nil:
            kind = .overrun
            offset = report.offset ?? 0
        case let h where h.hasPrefix("fatal signal") && report.freedBufferOffset != nil:
            kind = .freed
            offset = report.freedBufferOffset!
        default:
            return nil
        }
        allocation = report.stacks["allocation_stack"] ?? []
        bufferSize = report.bufferSize
    }

    /// Damage found after the fact that cannot be hunted: no allocation stack (audit off).
    var hasSite: Bool { !allocation.isEmpty }

    /// SLABGUARD_HUNT=KIND:OFFSET:ADDR1,...
    var environmentValue: String {
        let addresses = allocation.prefix(4).map { "0x" + String($0.address, radix: 16) }
        return "\(kind.rawValue):0x\(String(offset, radix: 16)):\(addresses.joined(separator: ","))"
    }

    /// "buffer of 48 bytes allocated at f (prog.c:12)".
    var buffer: String {
        let size = bufferSize.map { "buffer of \($0) bytes" } ?? "buffer"
        return allocation.first.map { "\(size) allocated at \($0.place)" } ?? size
    }

    /// "a watchpoint on offset 0x8 of buffers allocated there".
    var watch: String {
        switch kind {
        case .freed: return "a watchpoint on offset 0x\(String(offset, radix: 16)) of buffers allocated there, once freed"
        case .overrun: return "a watchpoint on offset 0x\(String(offset, radix: 16)) (past the end) of buffers allocated there"
        }
    }
}

/// "0x1f" (or "1f") as a number.
func parseHex(_ text: String) -> UInt? {
    let digits = text.hasPrefix("0x") || text.hasPrefix("0X") ? text.dropFirst(2) : Substring(text)
    return digits.isEmpty ? nil : UInt(digits, radix: 16)
}

/// A JSON value: enough of JSON to read one report.
indirect enum JSONValue {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }
    var string: String? { if case .string(let s) = self { return s }; return nil }
    var number: Double? { if case .number(let n) = self { return n }; return nil }
    var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }

    /// The value `text` holds (whitespace around it allowed), or nil when it is not JSON.
    static func parse(_ text: String) -> JSONValue? {
        var parser = Parser(bytes: Array(text.utf8))
        guard let value = parser.value() else { return nil }
        parser.skipSpace()
        return parser.i == parser.bytes.count ? value : nil
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0
        var depth = 0

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[i]) { i += 1 }
        }

        mutating func literal(_ word: String, _ value: JSONValue) -> JSONValue? {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { return nil }
            i += w.count
            return value
        }

        mutating func value() -> JSONValue? {
            skipSpace()
            guard i < bytes.count, depth < 64 else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1; depth += 1; defer { depth -= 1 }
                var members: [String: JSONValue] = [:]
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skipSpace()
                    guard let key = string() else { return nil }
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let member = value() else { return nil }
                    if members[key] == nil { members[key] = member }
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    i += 1
                    if bytes[i - 1] == UInt8(ascii: "}") { return .object(members) }
                    guard bytes[i - 1] == UInt8(ascii: ",") else { return nil }
                }
            case UInt8(ascii: "["):
                i += 1; depth += 1; defer { depth -= 1 }
                var elements: [JSONValue] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(elements) }
                while true {
                    guard let element = value() else { return nil }
                    elements.append(element)
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    i += 1
                    if bytes[i - 1] == UInt8(ascii: "]") { return .array(elements) }
                    guard bytes[i - 1] == UInt8(ascii: ",") else { return nil }
                }
            case UInt8(ascii: "\""): return string().map { .string($0) }
            case UInt8(ascii: "t"): return literal("true", .bool(true))
            case UInt8(ascii: "f"): return literal("false", .bool(false))
            case UInt8(ascii: "n"): return literal("null", .null)
            default:
                let start = i
                while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
                return Double(String(decoding: bytes[start..<i], as: UTF8.self)).map { .number($0) }
            }
        }

        mutating func string() -> String? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                if b == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                guard b == UInt8(ascii: "\\") else { out.append(b); continue }
                guard i < bytes.count else { return nil }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "u"):
                    guard i + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16) else { return nil }
                    i += 4
                    out += Array(String(Unicode.Scalar(code).map(Character.init) ?? "\u{FFFD}").utf8)
                default: out.append(e)   // \" \\ \/
                }
            }
            return nil
        }
    }
}
