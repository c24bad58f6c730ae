// A destination for lines of text that is either a descriptor or memory (the flight
// recorder's statistics region, written through its mapping: no descriptor kept).

import CSlabguardShim
import Glibc

/// Where the table's lines go: a descriptor (sg_stats_print), or memory (the flight
/// recorder's statistics region, written through its mapping: no descriptor kept).
struct TextSink {
    var fd: Int32 = -1
    var memory: UnsafeMutableRawPointer? = nil
    var capacity = 0
    var used = 0
    /// Whether frames written here are named in process (an ELF symbol lookup maps the
    /// library's symbols): false for the live table rewritten every second, whose reader
    /// names them itself, so a running program's address space does not grow by it.
    var namesFrames = true

    init(fd: Int32) { self.fd = fd }
    init(memory: UnsafeMutableRawPointer, capacity: Int) { (self.memory, self.capacity) = (memory, capacity) }

    mutating func write(_ bytes: UnsafeRawPointer, _ count: Int) {
        guard let memory else { _ = Platform.writeAll(fd, bytes, count); return }
        let n = min(count, capacity - used)
        guard n > 0 else { return }
        (memory + used).copyMemory(from: bytes, byteCount: n)
        used += n
    }
}

extension RawLine {
    mutating func flush(to sink: inout TextSink) {
        let n = length
        withUnsafeBytes(of: &storage) { sink.write($0.baseAddress!, n) }
        length = 0
    }
}
