// ReportWriterTests.swift — exact bytes produced by ReportWriter, read back through pipes.
//
// Each test writes through a real pipe (a reader thread drains it, so output of any size
// and a non-blocking write end work) or through a memory-mode buffer, and compares bytes.

import Glibc
import Testing
@testable import SlabguardCore

/// Drains a pipe on its own thread until end of file.
private final class PipeDrain: @unchecked Sendable {
    let fd: Int32
    var bytes: [UInt8] = []
    var thread = pthread_t()

    init(fd: Int32) {
        self.fd = fd
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let drain = Unmanaged<PipeDrain>.fromOpaque(arg!).takeRetainedValue()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(drain.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    drain.bytes += chunk[0..<n]
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
            return nil
        }, context)
        precondition(rc == 0)
    }

    func join() -> [UInt8] {
        pthread_join(thread, nil)
        return bytes
    }
}

/// Runs `body` with an fd-mode writer over a `capacity`-byte buffer writing into a pipe,
/// flushes, and returns everything that came out of the pipe.
private func capture(capacity: Int = 64, nonBlocking: Bool = false, pipeSize: Int32 = 0,
                     _ body: (inout ReportWriter) -> Void) -> [UInt8] {
    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    if pipeSize > 0 { _ = fcntl(fds[1], 1031 /* F_SETPIPE_SZ */, pipeSize) }
    if nonBlocking { _ = fcntl(fds[1], F_SETFL, O_NONBLOCK) }
    let drain = PipeDrain(fd: fds[0])
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    defer { buffer.deallocate() }
    var writer = ReportWriter(fd: fds[1], buffer: buffer, capacity: capacity)
    body(&writer)
    writer.flush()
    let failed = writer.failed
    #expect(!failed)
    close(fds[1])
    let out = drain.join()
    close(fds[0])
    return out
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// nil when equal, else a short description (keeps failures on big outputs readable and fast).
private func mismatch(_ got: [UInt8], _ want: [UInt8]) -> String? {
    if got == want { return nil }
    var i = 0
    while i < got.count && i < want.count && got[i] == want[i] { i += 1 }
    return "got \(got.count) bytes, want \(want.count); first difference at byte \(i)"
}

/// Runs `body` with a memory-mode writer over `capacity` bytes; returns the C string and
/// what `finishCString` returned.
private func memoryText(capacity: Int, _ body: (inout ReportWriter) -> Void) -> (String, Int) {
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity + 1)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 0x55, count: capacity + 1)       // 'U' canary after the end
    var writer = ReportWriter(memory: UnsafeMutableRawPointer(buffer), capacity: capacity)
    body(&writer)
    let total = writer.finishCString()
    #expect(buffer[capacity] == 0x55, "wrote past the capacity")
    return (capacity > 0 ? String(cString: buffer) : "", total)
}

@Suite("ReportWriter", .timeLimit(.minutes(5)))
struct ReportWriterTests {
    @Test func decimalNumbers() {
        let out = capture { w in
            w.append(decimal: 0); w.append(byte: 0x20)
            w.append(decimal: 7); w.append(byte: 0x20)
            w.append(decimal: 10); w.append(byte: 0x20)
            w.append(decimal: 1234567890); w.append(byte: 0x20)
            w.append(decimal: -1); w.append(byte: 0x20)
            w.append(decimal: UInt64.max); w.append(byte: 0x20)
            w.append(decimal: Int64.min); w.append(byte: 0x20)
            w.append(decimal: Int64.max); w.append(byte: 0x20)
            w.append(decimal: UInt(1000))
            w.newline()
        }
        #expect(text(out) == "0 7 10 1234567890 -1 18446744073709551615 -9223372036854775808 9223372036854775807 1000\n")
    }

    @Test func hexNumbersAndPadding() {
        let out = capture { w in
            w.append(hex: UInt64(0)); w.append(byte: 0x20)
            w.append(hex: UInt64(0xdeadbeef)); w.append(byte: 0x20)
            w.append(hex: UInt64(0xdeadbeefdeadbeef), width: 16); w.append(byte: 0x20)
            w.append(hex: UInt64(0x7f12345678), width: 14); w.append(byte: 0x20)
            w.append(hex: UInt64(0xabc), width: 2); w.append(byte: 0x20)     // never truncates
            w.append(hex: UInt64.max); w.append(byte: 0x20)
            w.append(hex: UInt64(1), width: 20); w.append(byte: 0x20)
            w.append(hex: -1); w.append(byte: 0x20)
            w.append(address: UnsafeRawPointer(bitPattern: 0x7f0012345678)); w.append(byte: 0x20)
            w.append(address: nil); w.append(byte: 0x20)
            w.appendHexDigits(0x5, width: 2)
        }
        #expect(text(out) == "0x0 0xdeadbeef 0xdeadbeefdeadbeef 0x00007f12345678 0xabc 0xffffffffffffffff "
            + "0x00000000000000000001 0xffffffffffffffff 0x7f0012345678 0x000000000000 05")
    }

    @Test func stringsAndCStrings() {
        let out = capture { w in
            w.append("static ")
            w.append("é")                                        // may be a scalar-form StaticString
            "abc".withCString { w.append(cString: $0) }
            "defgh".withCString { w.append(cString: $0, maxLength: 2) }
            "xy".withCString { w.append(cString: $0, maxLength: 10) }
            w.append(cString: nil)
            w.append(repeating: 0x2E, count: 3)
            w.newline()
        }
        #expect(text(out) == "static éabcdexy...\n")
    }

    @Test func printableEscapesControlAndMalformedBytes() {
        let input: [UInt8] = [0x61, 0x0A, 0x62, 0x09, 0xC3, 0xA9, 0xFF, 0x7F, 0x63]
        let out = capture { w in
            input.withUnsafeBytes { w.appendPrintable(bytes: $0.baseAddress!, count: $0.count) }
        }
        #expect(text(out) == "a\\x0ab\\x09é\\xff\\x7fc")
    }

    @Test func jsonStringEscaping() {
        var input: [UInt8] = Array("a\"b\\c/".utf8)
        input += [0x01, 0x0A, 0x1F, 0x7F]          // control bytes and DEL
        input += [0xC3, 0xA9]                      // é: valid, passed through
        input += [0xF0, 0x9F, 0x98, 0x80]          // U+1F600: valid 4-byte sequence
        input += [0xFF]                            // never valid
        input += [0xC0, 0xAF]                      // overlong "/"
        input += [0xED, 0xA0, 0x80]                // UTF-16 surrogate
        input += [0xF4, 0x90, 0x80, 0x80]          // above U+10FFFF
        input += [0x78, 0xE2, 0x82]                // truncated 3-byte sequence at the end
        let out = capture { w in
            input.withUnsafeBytes { w.appendJSONString(bytes: $0.baseAddress!, count: $0.count) }
        }
        let expected = "\"a\\\"b\\\\c/\\u0001\\u000a\\u001f\\u007fé😀\\u00ff\\u00c0\\u00af"
            + "\\u00ed\\u00a0\\u0080\\u00f4\\u0090\\u0080\\u0080x\\u00e2\\u0082\""
        #expect(text(out) == expected)
        #expect(Array(text(out).utf8) == out, "output must be valid UTF-8")
    }

    @Test func jsonCStringsAndNull() {
        let out = capture { w in
            "tab\there".withCString { w.appendJSONString(cString: $0) }
            w.append(byte: 0x20)
            "abcdef".withCString { w.appendJSONString(cString: $0, maxLength: 3) }
            w.append(byte: 0x20)
            w.appendJSONString(cString: nil)
            w.append(byte: 0x20)
            w.appendJSONString("lit\"eral")
        }
        #expect(text(out) == "\"tab\\u0009here\" \"abc\" null \"lit\\\"eral\"")
    }

    @Test func jsonObjectsArraysAndCommas() {
        let out = capture { w in
            w.beginObject()
            w.jsonField("type", string: "redzone violation: write past end of buffer")
            "umem_alloc_32".withCString { w.jsonField("cache", cString: $0) }
            w.jsonField("size", decimal: 32)
            w.jsonField("delta", decimal: Int64(-3))
            w.jsonField("addr", hex: 0x7f00dead0010, width: 12)
            w.jsonField("aborted", bool: false)
            w.jsonNullField("free_stack")
            w.jsonKey("frames")
            w.beginArray()
            w.jsonElement(); w.append(decimal: 1)
            w.jsonElement(); w.append(decimal: 2)
            w.jsonElement(); w.beginObject(); w.jsonField("pc", hex: 0x10); w.jsonField("ok", bool: true); w.endObject()
            w.endArray()
            w.jsonKey("empty"); w.beginArray(); w.endArray()
            w.jsonKey("nested"); w.beginObject(); w.endObject()
            w.endObject()
            w.newline()
        }
        #expect(text(out) == "{\"type\":\"redzone violation: write past end of buffer\",\"cache\":\"umem_alloc_32\","
            + "\"size\":32,\"delta\":-3,\"addr\":\"0x7f00dead0010\",\"aborted\":false,\"free_stack\":null,"
            + "\"frames\":[1,2,{\"pc\":\"0x10\",\"ok\":true}],\"empty\":[],\"nested\":{}}\n")
    }

    @Test func hexDumpLines() {
        let full: [UInt8] = Array("ABCDEFGH".utf8) + [0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF, 0x20]
        let out = capture { w in
            full.withUnsafeBytes { w.appendHexDumpLine(offset: 0x10, bytes: $0.baseAddress!, count: 16) }
            "abc".withCString { w.appendHexDumpLine(offset: 0, bytes: $0, count: 3) }
            full.withUnsafeBytes { w.appendHexDumpLine(offset: 0x12345, bytes: $0.baseAddress!, count: 9) }
        }
        let lines = text(out).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count == 4 && lines[3] == "")
        #expect(lines[0] == "0x0010  41 42 43 44 45 46 47 48  00 01 02 03 7f 80 ff 20  |ABCDEFGH....... |")
        #expect(lines[1] == "0x0000  61 62 63" + String(repeating: " ", count: 42) + "|abc|")
        #expect(lines[2] == "0x12345  41 42 43 44 45 46 47 48  00" + String(repeating: " ", count: 23) + "|ABCDEFGH.|")
        // The ASCII column starts at the same place on full and short lines.
        #expect(lines[0].firstIndex(of: "|")!.utf16Offset(in: lines[0]) == lines[1].firstIndex(of: "|")!.utf16Offset(in: lines[1]))
    }

    @Test func hexDumpOfSeveralLines() {
        let bytes = (0..<40).map { UInt8($0 + 0x30) }
        let out = capture { w in
            bytes.withUnsafeBytes { w.appendHexDump(bytes: $0.baseAddress!, count: 40, baseOffset: 0x100, indent: 2) }
        }
        let lines = text(out).split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("  0x0100  30 31 32 33 34 35 36 37  38 39 3a 3b 3c 3d 3e 3f  |0123456789:;<=>?|"))
        #expect(lines[1].hasPrefix("  0x0110  40 41"))
        #expect(lines[2] == "  0x0120  50 51 52 53 54 55 56 57" + String(repeating: " ", count: 27) + "|PQRSTUVW|")
    }

    @Test func outputLargerThanBufferArrivesCompleteAndInOrder() {
        var expected = ""
        for i in 0..<5000 { expected += "line \(i) 0x\(String(i, radix: 16))\n" }
        for capacity in [1, 7, 64, 4096] {
            let out = capture(capacity: capacity) { w in
                var i = 0
                while i < 5000 {
                    w.append("line "); w.append(decimal: i); w.append(byte: 0x20); w.append(hex: UInt64(i)); w.newline()
                    i += 1
                }
            }
            #expect(mismatch(out, Array(expected.utf8)) == nil, "buffer capacity \(capacity)")
        }
        // One append far larger than the buffer.
        let big = [UInt8]((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let out = capture(capacity: 100) { w in
            big.withUnsafeBytes { w.append(bytes: $0.baseAddress!, count: $0.count) }
        }
        #expect(mismatch(out, big) == nil)
    }

    @Test func nonBlockingPipeWithPartialWritesLosesNothing() {
        // A 4 KiB non-blocking pipe: writes come back short or with EAGAIN while the reader
        // thread catches up; the writer must wait and resume at the right byte.
        let big = [UInt8]((0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) })
        let out = capture(capacity: 8192, nonBlocking: true, pipeSize: 4096) { w in
            big.withUnsafeBytes { w.append(bytes: $0.baseAddress!, count: $0.count) }
        }
        #expect(mismatch(out, big) == nil)
    }

    @Test func stackBufferWriterFlushesAtTheEnd() {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let drain = PipeDrain(fd: fds[0])
        let result = ReportWriter.withStackBuffer(fd: fds[1]) { w -> Int in
            var i = 0
            while i < 3000 { w.append(decimal: i); w.append(byte: 0x2C); i += 1 }   // > 8 KiB
            return w.totalBytes
        }
        close(fds[1])
        let out = drain.join()
        close(fds[0])
        let expected = (0..<3000).map { "\($0)," }.joined()
        #expect(mismatch(out, Array(expected.utf8)) == nil)
        #expect(result == expected.utf8.count)
        #expect(ReportWriter.stackBufferSize == 8192)
    }

    @Test func brokenPipeIsReportedNotFatal() {
        let previous = signal(SIGPIPE, SIG_IGN)     // otherwise the write would kill the test process
        defer { signal(SIGPIPE, previous) }
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        close(fds[0])
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
        defer { buffer.deallocate() }
        var w = ReportWriter(fd: fds[1], buffer: buffer, capacity: 16)
        w.append("0123456789abcdef")
        w.append("more than one buffer of text")       // forces a flush that fails
        let failedAfterFirst = w.failed
        w.append("still accepted, silently dropped")
        w.flush()
        let failed = w.failed
        let pending = w.count
        #expect(failedAfterFirst && failed)
        #expect(pending == 0)
        close(fds[1])
    }

    @Test func badDescriptorMarksFailure() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
        defer { buffer.deallocate() }
        var w = ReportWriter(fd: 987_654, buffer: buffer, capacity: 8)
        w.append("x")
        w.flush()
        let failed = w.failed
        #expect(failed)
    }

    @Test func memoryModeTruncatesAndTerminates() {
        let (s1, n1) = memoryText(capacity: 8) { w in w.append("0123456789") }
        #expect(s1 == "0123456")
        #expect(n1 == 10)                                  // snprintf-style full length
        let (s2, n2) = memoryText(capacity: 11) { w in w.append("0123456789") }
        #expect(s2 == "0123456789" && n2 == 10)
        let (s3, n3) = memoryText(capacity: 1) { w in w.append("abc") }
        #expect(s3 == "" && n3 == 3)
        let (_, n0) = memoryText(capacity: 0) { w in w.append("abc"); w.append(decimal: 12) }
        #expect(n0 == 5)
        let (s4, _) = memoryText(capacity: 32) { w in
            w.append("x="); w.append(hex: UInt64(255), width: 4)
        }
        #expect(s4 == "x=0x00ff")
    }

    @Test func memoryModeTracksTruncation() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4, alignment: 1)
        defer { buffer.deallocate() }
        var w = ReportWriter(memory: buffer, capacity: 4)
        w.append("abc")
        let before = w.isTruncated
        w.append(byte: 0x64)
        let after = w.isTruncated
        let count = w.count
        w.flush()                                         // no-op in memory mode
        let countAfterFlush = w.count
        #expect(!before && after && count == 3 && countAfterFlush == 3)
    }
}
