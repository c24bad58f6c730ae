// ReportWriter.swift — a text builder that never allocates, for reports printed from inside
// the allocator (possibly with a damaged heap), option error lines and the transaction log.
//
// Design:
//  - The writer owns nothing: it keeps a pointer to memory the caller provides (a stack
//    buffer, see `withStackBuffer`, or any fixed region), a capacity and a fill count.
//  - fd mode (`init(fd:buffer:capacity:)`): when the buffer is full it is written to the fd
//    with write(2) (partial writes continued, EINTR retried, EAGAIN waited out with poll(2));
//    `flush()` writes the rest. After any other write error (EPIPE, EBADF, ...) the writer
//    marks itself `failed` and silently discards further output. It never touches the
//    SIGPIPE disposition: with SIGPIPE at its default, writing to a closed pipe kills the
//    process before EPIPE can be seen — that is the process's choice, not the writer's.
//  - memory mode (`init(memory:capacity:)`): a bounded C-string builder. One byte is kept
//    for the NUL; output beyond the capacity is dropped (counted in `totalBytes`), and
//    `finishCString()` terminates the string.
//  - Invariants: `count <= limit`; only `base[0..<capacity]` and the fd are touched. No
//    String, Array, escaping closure, InlineArray, Optional.map or stdlib Range/stride is
//    used: at -Onone those instantiate type metadata at run time, which mallocs. Checked
//    with a malloc-counting probe in debug and release builds (zero calls, first use too).
//    (withUnsafeTemporaryAllocation is avoided too: above 1 KiB it mallocs even at -O.)
//  - JSON helpers track one "needs comma" bit: `jsonKey`/`jsonElement` emit the separating
//    comma, `beginObject`/`beginArray` reset it, `endObject`/`endArray` set it.
//  - The type is ~Copyable: two copies would share one buffer with two fill counts.

import Glibc

public struct ReportWriter: ~Copyable {
    /// Size of the buffer `withStackBuffer` puts on the stack.
    public static var stackBufferSize: Int { MemoryLayout<StackBufferStorage>.size }

    /// Destination descriptor; negative in memory mode.
    public let fd: Int32
    @usableFromInline let base: UnsafeMutableRawPointer
    /// Bytes the buffer may hold (memory mode: capacity - 1, keeping room for the NUL).
    @usableFromInline let limit: Int
    /// Size of the caller's buffer.
    public let capacity: Int
    /// Bytes currently held in the buffer (not yet written, in fd mode).
    public private(set) var count: Int = 0
    /// Every byte ever appended, including bytes already flushed or dropped.
    public private(set) var totalBytes: Int = 0
    /// fd mode: a write failed for good (EPIPE, EBADF, ...); later output is discarded.
    public private(set) var failed: Bool = false
    @usableFromInline var jsonNeedsComma: Bool = false

    /// A writer that flushes `buffer[0..<capacity]` (capacity >= 1) to `fd`.
    public init(fd: Int32, buffer: UnsafeMutableRawPointer, capacity: Int) {
        precondition(fd >= 0 && capacity >= 1, "ReportWriter: need fd >= 0 and capacity >= 1")
        self.fd = fd
        self.base = buffer
        self.limit = capacity
        self.capacity = capacity
    }

    /// A bounded C-string builder over `buffer[0..<capacity]`; never writes past it and
    /// leaves room for the terminating NUL (capacity 0 stores nothing at all).
    public init(memory buffer: UnsafeMutableRawPointer, capacity: Int) {
        self.fd = -1
        self.base = buffer
        self.limit = capacity > 0 ? capacity - 1 : 0
        self.capacity = capacity > 0 ? capacity : 0
    }

    /// Runs `body` with a writer to `fd` over an 8 KiB buffer on the stack, then flushes.
    /// The buffer is a fixed-size local, never the heap.
    public static func withStackBuffer<R>(fd: Int32, _ body: (inout ReportWriter) -> R) -> R {
        var storage = StackBufferStorage()
        return withUnsafeMutablePointer(to: &storage) { p in
            var writer = ReportWriter(fd: fd, buffer: UnsafeMutableRawPointer(p),
                                      capacity: MemoryLayout<StackBufferStorage>.size)
            let result = body(&writer)
            writer.flush()
            return result
        }
    }

    /// Memory mode: some output did not fit and was dropped.
    public var isTruncated: Bool { fd < 0 && totalBytes > count }

    /// Memory mode: the bytes built so far (valid until the next append).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    // MARK: Output

    /// Writes the buffered bytes to the fd (fd mode); a no-op in memory mode.
    public mutating func flush() {
        guard fd >= 0 else { return }
        if !failed && count > 0 && !Platform.writeAll(fd, base, count) {
            failed = true      // EPIPE, EBADF, EIO, a full disk, a stuck non-blocking fd...
        }
        count = 0
    }

    /// Memory mode: writes the terminating NUL and returns the length the full output has
    /// (like snprintf: a result >= capacity means it was truncated). In fd mode it flushes
    /// and returns `totalBytes`.
    @discardableResult
    public mutating func finishCString() -> Int {
        if fd >= 0 {
            flush()
        } else if capacity > 0 {
            base.storeBytes(of: 0, toByteOffset: count, as: UInt8.self)
        }
        return totalBytes
    }

    // MARK: Plain text

    /// Appends one byte.
    public mutating func append(byte: UInt8) {
        totalBytes += 1
        if count == limit {
            if fd < 0 { return }
            flush()
        }
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    /// Appends `count` raw bytes from `bytes`.
    public mutating func append(bytes: UnsafeRawPointer, count n: Int) {
        guard n > 0 else { return }
        totalBytes += n
        var src = bytes
        var left = n
        while left > 0 {
            if count == limit {
                if fd < 0 { return }
                flush()
            }
            let room = limit - count
            let chunk = left < room ? left : room
            (base + count).copyMemory(from: src, byteCount: chunk)
            count += chunk
            src += chunk
            left -= chunk
        }
    }

    /// Appends a string literal.
    public mutating func append(_ text: StaticString) {
        if text.hasPointerRepresentation {
            append(bytes: UnsafeRawPointer(text.utf8Start), count: text.utf8CodeUnitCount)
        } else {
            text.withUTF8Buffer { buffer in
                if let start = buffer.baseAddress {
                    append(bytes: UnsafeRawPointer(start), count: buffer.count)
                }
            }
        }
    }

    /// Appends a NUL-terminated string (nothing for nil).
    public mutating func append(cString: UnsafePointer<CChar>?) {
        append(cString: cString, maxLength: Int.max)
    }

    /// Appends a NUL-terminated string, at most `maxLength` bytes of it.
    public mutating func append(cString: UnsafePointer<CChar>?, maxLength: Int) {
        guard let cString else { return }
        let raw = UnsafeRawPointer(cString)
        append(bytes: raw, count: ReportWriter.length(of: raw, max: maxLength))
    }

    /// Appends "\n".
    public mutating func newline() { append(byte: 0x0A) }

    /// Appends `byte` `count` times (padding, indentation).
    public mutating func append(repeating byte: UInt8, count n: Int) {
        var i = 0
        while i < n { append(byte: byte); i += 1 }
    }

    /// Appends an unsigned decimal number.
    public mutating func append(decimal value: UInt64) {
        var power: UInt64 = 1
        while value / power >= 10 { power *= 10 }
        var rest = value
        while power > 0 {
            append(byte: 0x30 + UInt8(truncatingIfNeeded: rest / power))
            rest %= power
            power /= 10
        }
    }

    /// Appends a signed decimal number ("-" for negatives; Int64.min is handled).
    public mutating func append(decimal value: Int64) {
        if value < 0 {
            append(byte: 0x2D)
            append(decimal: UInt64(bitPattern: 0 &- value))   // wraps correctly for Int64.min
        } else {
            append(decimal: UInt64(value))
        }
    }

    public mutating func append(decimal value: Int) { append(decimal: Int64(value)) }
    public mutating func append(decimal value: UInt) { append(decimal: UInt64(value)) }

    /// Nanoseconds as seconds with six decimals and an "s": 0.000913s.
    public mutating func append(seconds nanoseconds: UInt64) {
        append(decimal: nanoseconds / 1_000_000_000)
        append(byte: 0x2E)
        var micro = nanoseconds % 1_000_000_000 / 1000
        var divisor: UInt64 = 100_000
        while divisor > 0 { append(byte: UInt8(48 + micro / divisor)); micro %= divisor; divisor /= 10 }
        append(byte: 0x73)
    }

    /// Appends "0x" and lowercase hex digits, zero-padded to at least `width` digits
    /// (`append(hex: 0x7f12, width: 8)` gives "0x00007f12"; width 0 means no padding).
    public mutating func append(hex value: UInt64, width: Int = 0) {
        append(byte: 0x30)
        append(byte: 0x78)
        appendHexDigits(value, width: width)
    }

    public mutating func append(hex value: UInt, width: Int = 0) { append(hex: UInt64(value), width: width) }
    public mutating func append(hex value: Int, width: Int = 0) {
        append(hex: UInt64(UInt(bitPattern: value)), width: width)
    }

    /// Appends an address as "0x" + at least 12 hex digits ("0x00007f12345678" style).
    public mutating func append(address: UnsafeRawPointer?) {
        append(hex: UInt64(UInt(bitPattern: address)), width: 12)
    }

    /// Hex digits without a prefix, zero-padded to at least `width` digits.
    public mutating func appendHexDigits(_ value: UInt64, width: Int = 0) {
        var digits = 1
        while digits < 16 && (value >> (UInt64(digits) * 4)) != 0 { digits += 1 }
        var pad = width - digits
        while pad > 0 { append(byte: 0x30); pad -= 1 }
        while digits > 0 {
            digits -= 1
            append(byte: ReportWriter.hexDigit(UInt8(truncatingIfNeeded: value >> (UInt64(digits) * 4))))
        }
    }

    /// Appends text from an untrusted source so that it stays on one line: printable ASCII
    /// and well-formed UTF-8 pass through, every other byte becomes "\xNN".
    public mutating func appendPrintable(bytes: UnsafeRawPointer, count n: Int) {
        var i = 0
        while i < n {
            let b = bytes.load(fromByteOffset: i, as: UInt8.self)
            if b >= 0x20 && b < 0x7F {
                append(byte: b)
                i += 1
                continue
            }
            let seq = b >= 0x80 ? ReportWriter.utf8SequenceLength(bytes + i, available: n - i) : 0
            if seq > 0 {
                append(bytes: bytes + i, count: seq)
                i += seq
            } else {
                append(byte: 0x5C)          // \xNN
                append(byte: 0x78)
                appendHexDigits(UInt64(b), width: 2)
                i += 1
            }
        }
    }

    public mutating func appendPrintable(cString: UnsafePointer<CChar>?, maxLength: Int = Int.max) {
        guard let cString else { return }
        let raw = UnsafeRawPointer(cString)
        appendPrintable(bytes: raw, count: ReportWriter.length(of: raw, max: maxLength))
    }

    /// One hex dump line for the buffer-contents section of a report:
    /// `0x0010  de ad be ef 00 11 22 33  44 55 66 77 88 99 aa bb  |......"3DUfw....|` + "\n".
    /// The offset has at least 4 hex digits; `count` (1...16; clamped) bytes are shown and a
    /// short line is padded so the ASCII column lines up; non-printable bytes show as ".".
    public mutating func appendHexDumpLine(offset: Int, bytes: UnsafeRawPointer, count n: Int) {
        let shown = n < 0 ? 0 : (n > 16 ? 16 : n)
        append(hex: UInt64(UInt(bitPattern: offset)), width: 4)
        append(byte: 0x20)
        var i = 0
        while i < 16 {
            append(byte: 0x20)
            if i == 8 { append(byte: 0x20) }
            if i < shown {
                appendHexDigits(UInt64(bytes.load(fromByteOffset: i, as: UInt8.self)), width: 2)
            } else {
                append(byte: 0x20)
                append(byte: 0x20)
            }
            i += 1
        }
        append(byte: 0x20)
        append(byte: 0x20)
        append(byte: 0x7C)
        i = 0
        while i < shown {
            let b = bytes.load(fromByteOffset: i, as: UInt8.self)
            append(byte: b >= 0x20 && b < 0x7F ? b : 0x2E)
            i += 1
        }
        append(byte: 0x7C)
        newline()
    }

    /// Hex dump of `count` bytes, 16 per line, offsets counted from `baseOffset`, each line
    /// preceded by `indent` spaces.
    public mutating func appendHexDump(bytes: UnsafeRawPointer, count n: Int, baseOffset: Int = 0, indent: Int = 0) {
        var done = 0
        while done < n {
            append(repeating: 0x20, count: indent)
            let line = n - done < 16 ? n - done : 16
            appendHexDumpLine(offset: baseOffset + done, bytes: bytes + done, count: line)
            done += line
        }
    }

    // MARK: JSON

    /// Appends `bytes` as a JSON string literal, quotes included. `"` and `\` are escaped,
    /// control bytes (< 0x20) and DEL become \u00XX, well-formed UTF-8 passes through and
    /// each byte of malformed UTF-8 becomes \u00XX (its Latin-1 reading), so the output is
    /// always valid JSON and valid UTF-8.
    public mutating func appendJSONString(bytes: UnsafeRawPointer, count n: Int) {
        append(byte: 0x22)
        var i = 0
        while i < n {
            let b = bytes.load(fromByteOffset: i, as: UInt8.self)
            if b == 0x22 || b == 0x5C {
                append(byte: 0x5C)
                append(byte: b)
                i += 1
            } else if b >= 0x20 && b < 0x7F {
                append(byte: b)
                i += 1
            } else {
                let seq = b >= 0x80 ? ReportWriter.utf8SequenceLength(bytes + i, available: n - i) : 0
                if seq > 0 {
                    append(bytes: bytes + i, count: seq)
                    i += seq
                } else {
                    append("\\u00")
                    appendHexDigits(UInt64(b), width: 2)
                    i += 1
                }
            }
        }
        append(byte: 0x22)
    }

    /// A NUL-terminated string (at most `maxLength` bytes) as a JSON string; nil gives `null`.
    public mutating func appendJSONString(cString: UnsafePointer<CChar>?, maxLength: Int = Int.max) {
        guard let cString else { append("null"); return }
        let raw = UnsafeRawPointer(cString)
        appendJSONString(bytes: raw, count: ReportWriter.length(of: raw, max: maxLength))
    }

    public mutating func appendJSONString(_ text: StaticString) {
        text.withUTF8Buffer { buffer in
            if let start = buffer.baseAddress {
                appendJSONString(bytes: UnsafeRawPointer(start), count: buffer.count)
            } else {
                append("\"\"")
            }
        }
    }

    /// "{" — starts an object (itself a value: call `jsonKey` or `jsonElement` first if nested).
    public mutating func beginObject() { append(byte: 0x7B); jsonNeedsComma = false }
    public mutating func endObject() { append(byte: 0x7D); jsonNeedsComma = true }
    public mutating func beginArray() { append(byte: 0x5B); jsonNeedsComma = false }
    public mutating func endArray() { append(byte: 0x5D); jsonNeedsComma = true }

    /// Writes `,` if a member came before, then `"key":`; the value must follow.
    public mutating func jsonKey(_ key: StaticString) {
        if jsonNeedsComma { append(byte: 0x2C) }
        appendJSONString(key)
        append(byte: 0x3A)
        jsonNeedsComma = true
    }

    /// Writes `,` if an element came before; an array element must follow.
    public mutating func jsonElement() {
        if jsonNeedsComma { append(byte: 0x2C) }
        jsonNeedsComma = true
    }

    public mutating func jsonField(_ key: StaticString, string: StaticString) {
        jsonKey(key); appendJSONString(string)
    }
    public mutating func jsonField(_ key: StaticString, cString: UnsafePointer<CChar>?, maxLength: Int = Int.max) {
        jsonKey(key); appendJSONString(cString: cString, maxLength: maxLength)
    }
    public mutating func jsonField(_ key: StaticString, decimal: UInt64) { jsonKey(key); append(decimal: decimal) }
    public mutating func jsonField(_ key: StaticString, decimal: Int64) { jsonKey(key); append(decimal: decimal) }
    public mutating func jsonField(_ key: StaticString, decimal: Int) { jsonKey(key); append(decimal: decimal) }
    /// `"key":"0x…"` — hex goes in a string, since JSON numbers lose 64-bit precision.
    public mutating func jsonField(_ key: StaticString, hex: UInt64, width: Int = 0) {
        jsonKey(key)
        append(byte: 0x22)
        append(hex: hex, width: width)
        append(byte: 0x22)
    }
    public mutating func jsonField(_ key: StaticString, bool: Bool) {
        jsonKey(key)
        if bool { append("true") } else { append("false") }
    }
    public mutating func jsonNullField(_ key: StaticString) { jsonKey(key); append("null") }

    // MARK: Byte helpers (internal, also used by DebugOptions)

    @inline(__always)
    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        let v = nibble & 0xF
        return v < 10 ? 0x30 + v : 0x61 + (v - 10)
    }

    /// strnlen over raw memory.
    static func length(of s: UnsafeRawPointer, max: Int) -> Int {
        var n = 0
        while n < max && s.load(fromByteOffset: n, as: UInt8.self) != 0 { n += 1 }
        return n
    }

    /// Length (2...4) of the well-formed UTF-8 sequence starting at `p` (whose first byte is
    /// >= 0x80), or 0 if it is malformed: bad lead or continuation byte, truncated, overlong,
    /// a surrogate, or above U+10FFFF.
    static func utf8SequenceLength(_ p: UnsafeRawPointer, available: Int) -> Int {
        let b0 = p.load(as: UInt8.self)
        let need: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF   // allowed range of the second byte
        // Plain comparisons rather than range patterns: no generic range types at -Onone.
        if b0 < 0xC2 || b0 > 0xF4 {
            return 0                                  // continuation byte, C0/C1, F5...FF
        } else if b0 <= 0xDF {
            need = 2
        } else if b0 <= 0xEF {
            need = 3
            if b0 == 0xE0 { lo = 0xA0 }               // overlong
            if b0 == 0xED { hi = 0x9F }               // surrogates
        } else {
            need = 4
            if b0 == 0xF0 { lo = 0x90 }               // overlong
            if b0 == 0xF4 { hi = 0x8F }               // above U+10FFFF
        }
        if available < need { return 0 }
        let b1 = p.load(fromByteOffset: 1, as: UInt8.self)
        if b1 < lo || b1 > hi { return 0 }
        var i = 2
        while i < need {
            let b = p.load(fromByteOffset: i, as: UInt8.self)
            if b & 0xC0 != 0x80 { return 0 }
            i += 1
        }
        return need
    }
}

// MARK: - Fixed-size storage

// Plain nested tuples of UInt64, zero-initialised. Unlike InlineArray, using these needs no
// runtime type-metadata instantiation (which calls malloc) even in -Onone builds, where
// InlineArray's generic initialiser and accessors run unspecialised.

/// 64 zero bytes.
public struct FixedBytes64: BitwiseCopyable, Sendable {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    public init() {}
}

/// 512 zero bytes.
public struct FixedBytes512: BitwiseCopyable, Sendable {
    var blocks: (FixedBytes64, FixedBytes64, FixedBytes64, FixedBytes64,
                 FixedBytes64, FixedBytes64, FixedBytes64, FixedBytes64)
        = (.init(), .init(), .init(), .init(), .init(), .init(), .init(), .init())
    public init() {}
}

/// 4096 zero bytes (the storage of `DebugOptions.logPath`).
public struct FixedBytes4K: BitwiseCopyable, Sendable {
    var blocks: (FixedBytes512, FixedBytes512, FixedBytes512, FixedBytes512,
                 FixedBytes512, FixedBytes512, FixedBytes512, FixedBytes512)
        = (.init(), .init(), .init(), .init(), .init(), .init(), .init(), .init())
    public init() {}
}

/// The 8 KiB buffer of `ReportWriter.withStackBuffer`.
struct StackBufferStorage {
    var halves: (FixedBytes4K, FixedBytes4K) = (.init(), .init())
}
