// Suppressions — `suppressions=FILE`: report kinds and frames to stay silent about
// (design §10, the LeakSanitizer `leak:` convention).
//
// The file: one `KIND:PATTERN` per line; blank lines and lines starting with `#` are
// ignored; KIND is leak, modified, redzone, free, use-after-free, mismatch, unload, stale,
// tag or `*` (every kind); PATTERN a glob (`*` any run of characters, `?` one) matched against
// each frame of the report's stacks: the function's name as the symbol table has it
// (mangled, for C++ and Swift), the library's path and its file name.  A report with a
// matching frame is not printed, only counted in the summary.  A malformed line is one
// error naming the file and the line, exit status 2 (the CLI checks the file the same
// way before the program starts).
//
// The file is read once at start-up into mapped memory; matching walks it in place and
// never allocates.

import Glibc

struct SuppressionsState {
    var text: UnsafeMutableRawPointer? = nil
    var entries: UnsafeMutablePointer<Suppressions.Entry>? = nil
    var count = 0
}

package enum Suppressions {
    package enum Kind: UInt8 {
        case leak, modified, redzone, free, useAfterFree, unload, stale, tag, mismatch
        var bit: UInt32 { 1 << UInt32(rawValue) }
    }
    static let everyKind: UInt32 = 0x1FF

    package struct Entry {
        var kinds: UInt32
        var start: Int32
        var length: Int32
    }

    /// A malformed line: its number (from 1) and what is wrong.
    package struct Problem {
        package var line: Int
        package var reason: StaticString
    }

    static var state: UnsafeMutablePointer<SuppressionsState> {
        ReportOutput.state.field(\.suppressions)
    }

    static var isActive: Bool { state.pointee.count > 0 }

    /// Parses `count` bytes of `text`; fills `entries` (room for one per line) when given.
    /// Returns the first problem, or nil and the number of entries in `found`.
    package static func parse(_ text: UnsafeRawPointer, count: Int, into entries: UnsafeMutablePointer<Entry>?,
                              found: inout Int) -> Problem? {
        found = 0
        var line = 0
        var p = 0
        while p < count {
            line += 1
            var end = p
            while end < count && text.load(fromByteOffset: end, as: UInt8.self) != 0x0A { end += 1 }
            let item = OptionText(base: text + p, count: end - p).trimmed()
            p = end + 1
            if item.count == 0 || item[0] == 0x23 { continue }   // blank, or a # comment
            let colon = item.firstIndex(of: 0x3A)
            guard colon >= 0 else { return Problem(line: line, reason: "no ':' (expected KIND:PATTERN)") }
            let kindText = item.prefix(colon).trimmed()
            let pattern = item.dropFirst(colon + 1).trimmed()
            guard let kinds = kindBits(kindText) else {
                return Problem(line: line, reason: "unknown kind (expected leak, modified, redzone, free, use-after-free, mismatch, unload, stale, tag or *)")
            }
            guard pattern.count > 0 else { return Problem(line: line, reason: "empty pattern after ':'") }
            if let entries {
                entries[found] = Entry(kinds: kinds, start: Int32(pattern.base - text), length: Int32(pattern.count))
            }
            found += 1
        }
        return nil
    }

    private static func kindBits(_ t: OptionText) -> UInt32? {
        if t.equals("*") { return everyKind }
        if t.equals("leak") { return Kind.leak.bit }
        if t.equals("modified") { return Kind.modified.bit }
        if t.equals("redzone") { return Kind.redzone.bit }
        if t.equals("free") { return Kind.free.bit }
        if t.equals("use-after-free") { return Kind.useAfterFree.bit }
        if t.equals("unload") { return Kind.unload.bit }
        if t.equals("stale") { return Kind.stale.bit }
        if t.equals("tag") { return Kind.tag.bit }
        if t.equals("mismatch") { return Kind.mismatch.bit }
        return nil
    }

    /// Start-up: reads and parses the file named by `suppressions=`.  A file that cannot
    /// be read or has a malformed line: one line, exit status 2.
    static func load(_ path: UnsafePointer<CChar>) {
        var error: Int32 = 0
        guard let (memory, done, _) = Platform.readFile(path, error: &error) else { fail(path, line: 0, reason: nil, error: error) }
        let lines = done / 2 + 2
        guard let entryMemory = Platform.map(roundUp(lines * MemoryLayout<Entry>.stride, pageSize)) else {
            fail(path, line: 0, reason: nil, error: ENOMEM)
        }
        let entries = entryMemory.bindMemory(to: Entry.self, capacity: lines)
        var found = 0
        if let problem = parse(memory, count: done, into: entries, found: &found) {
            fail(path, line: problem.line, reason: problem.reason, error: 0)
        }
        state.pointee = SuppressionsState(text: memory, entries: entries, count: found)
    }

    private static func fail(_ path: UnsafePointer<CChar>, line: Int, reason: StaticString?, error: Int32) -> Never {
        ReportWriter.withStackBuffer(fd: 2) { w in
            w.append("slabguard: suppressions file '")
            w.appendPrintable(cString: path, maxLength: 512)
            if let reason {
                w.append("', line ")
                w.append(decimal: line)
                w.append(": ")
                w.append(reason)
            } else {
                w.append("': cannot read it: ")
                if error == EINVAL { w.append("not a regular file") } else { w.append(cString: strerror(error)) }
            }
            w.newline()
        }
        _exit(2)
    }

    /// Whether an entry for a kind in `bits` matches `name` (NUL-terminated).
    static func matches(_ bits: UInt32, _ name: UnsafePointer<CChar>) -> Bool {
        let s = state.pointee
        guard let text = s.text, let entries = s.entries, bits != 0 else { return false }
        let length = ReportWriter.length(of: UnsafeRawPointer(name), max: 4096)
        var i = 0
        while i < s.count {
            let e = entries[i]
            i += 1
            if e.kinds & bits == 0 { continue }
            if glob(UnsafeRawPointer(text + Int(e.start)), Int(e.length), UnsafeRawPointer(name), length) { return true }
        }
        return false
    }

    /// `*` and `?` globbing over bytes (iterative, with one backtrack point).
    package static func glob(_ pattern: UnsafeRawPointer, _ pn: Int, _ text: UnsafeRawPointer, _ tn: Int) -> Bool {
        var p = 0, t = 0
        var star = -1, mark = 0
        while t < tn {
            if p < pn {
                let c = pattern.load(fromByteOffset: p, as: UInt8.self)
                if c == 0x2A { star = p; p += 1; mark = t; continue }
                if c == 0x3F || c == text.load(fromByteOffset: t, as: UInt8.self) { p += 1; t += 1; continue }
            }
            if star >= 0 { p = star + 1; mark += 1; t = mark; continue }
            return false
        }
        while p < pn && pattern.load(fromByteOffset: p, as: UInt8.self) == 0x2A { p += 1 }
        return p == pn
    }
}
