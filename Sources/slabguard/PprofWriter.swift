// pprof's profile.proto from a flight recorder (`slabguard log export --format pprof`):
// sample types allocated objects and space, in-use objects and space (in-use space last:
// pprof's default view), one sample per allocation stack, locations with their mapping
// (build ids from the module map) and symbolized lines, gzipped.  The message is written
// by hand (varints and length-delimited fields: the format is small and stable); the gzip
// container holds deflate's stored blocks (valid gzip, not compressed — pprof reads it
// either way).  Field numbers: github.com/google/pprof proto/profile.proto.

import Glibc

struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: UInt64) { varint(UInt64(field) << 3 | wire) }
    mutating func int(_ field: Int, _ value: Int64) { guard value != 0 else { return }; key(field, 0); varint(UInt64(bitPattern: value)) }
    mutating func uint(_ field: Int, _ value: UInt64) { guard value != 0 else { return }; key(field, 0); varint(value) }
    mutating func bool(_ field: Int, _ value: Bool) { guard value else { return }; key(field, 0); varint(1) }
    mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        body(&inner)
        key(field, 2)
        varint(UInt64(inner.bytes.count))
        bytes += inner.bytes
    }
    mutating func string(_ field: Int, _ text: String) {
        key(field, 2)
        varint(UInt64(text.utf8.count))
        bytes += Array(text.utf8)
    }
    mutating func packed(_ field: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        var inner = ProtoWriter()
        for v in values { inner.varint(v) }
        key(field, 2)
        varint(UInt64(inner.bytes.count))
        bytes += inner.bytes
    }
}

enum Pprof {
    static func profile(_ log: LogFile) -> [UInt8] {
        var strings: [String] = [""]
        var index: [String: Int64] = ["": 0]
        func s(_ text: String) -> Int64 {
            if let i = index[text] { return i }
            strings.append(text)
            index[text] = Int64(strings.count - 1)
            return Int64(strings.count - 1)
        }
        let sites = LogHeap(log, points: 0).sites
        log.prefetchFrameLines(sites.map { log.stack($0.stack) })

        let modules = log.modules
        var mappingIds: [String: UInt64] = [:]
        var functions: [String: UInt64] = [:]
        var functionList: [(id: UInt64, name: String, file: String)] = []
        var locations: [UInt: UInt64] = [:]
        var locationList: [(id: UInt64, address: UInt, mapping: UInt64, function: UInt64, line: Int64)] = []
        var samples: [(locations: [UInt64], values: [Int64])] = []
        for site in sites {
            let frames = log.stack(site.stack)
            let lines = log.frameLines(frames)
            var ids: [UInt64] = []
            for (i, pc) in frames.enumerated() {
                if let known = locations[pc] { ids.append(known); continue }
                let (name, file, line) = i < lines.count ? parse(lines[i]) : ("0x" + String(pc, radix: 16), "", 0)
                var functionId: UInt64 = 0
                let key = name + "\u{0}" + file
                if let f = functions[key] { functionId = f } else {
                    functionId = UInt64(functionList.count + 1)
                    functions[key] = functionId
                    functionList.append((functionId, name, file))
                }
                var mapping: UInt64 = 0
                if let m = modules.last(where: { $0.start <= pc && pc < $0.end }) {
                    if let known = mappingIds[m.path] { mapping = known } else { mapping = UInt64(mappingIds.count + 1); mappingIds[m.path] = mapping }
                }
                let locationId = UInt64(locationList.count + 1)
                locations[pc] = locationId
                locationList.append((locationId, pc, mapping, functionId, line))
                ids.append(locationId)
            }
            samples.append((ids, [Int64(site.allocations), Int64(site.allocatedBytes), Int64(site.live), Int64(site.liveBytes)]))
        }

        var p = ProtoWriter()
        for (type, unit) in [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")] {
            p.message(1) { v in v.int(1, s(type)); v.int(2, s(unit)) }
        }
        for sample in samples {
            p.message(2) { v in
                v.packed(1, sample.locations)
                v.packed(2, sample.values.map { UInt64(bitPattern: $0) })
            }
        }
        for m in modules {
            guard let id = mappingIds[m.path] else { continue }
            p.message(3) { v in
                v.uint(1, id)
                v.uint(2, UInt64(m.start))
                v.uint(3, UInt64(m.end))
                v.uint(4, UInt64(m.start &- m.bias))   // the file offset of the mapping's start (bias: load address of offset 0)
                v.int(5, s(m.path))
                v.int(6, s(m.buildId))
                v.bool(7, true)
                v.bool(8, true)
                v.bool(9, true)
            }
            mappingIds[m.path] = nil   // once per module
        }
        for l in locationList {
            p.message(4) { v in
                v.uint(1, l.id)
                v.uint(2, l.mapping)
                v.uint(3, UInt64(l.address))
                v.message(4) { line in line.uint(1, l.function); line.int(2, l.line) }
            }
        }
        for f in functionList {
            p.message(5) { v in
                v.uint(1, f.id)
                v.int(2, s(f.name))
                v.int(3, s(f.name))
                v.int(4, s(f.file))
            }
        }
        let space = s("space"), bytes = s("bytes"), inuseSpace = s("inuse_space")   // every string before the table
        for text in strings { p.string(6, text) }
        p.int(9, Int64(log.startRealtimeSeconds) * 1_000_000_000)
        p.message(11) { v in v.int(1, space); v.int(2, bytes) }
        p.int(14, inuseSpace)
        return gzip(p.bytes)
    }

    /// "    #0 0x… name+0x1e (file:12)" → (name, file, 12); module+offset frames keep the
    /// module as the file and no line.
    static func parse(_ line: String) -> (String, String, Int64) {
        let name = LogExport.functionName(line)
        guard let open = line.lastIndex(of: "("), let close = line.lastIndex(of: ")"), open < close else { return (name, "", 0) }
        let inside = line[line.index(after: open)..<close]
        if let colon = inside.lastIndex(of: ":"), let number = Int64(inside[inside.index(after: colon)...]) {
            return (name, String(inside[..<colon]), number)
        }
        let module = inside.split(separator: "+").first.map(String.init) ?? ""
        return (name, module, 0)
    }

    /// A gzip member of deflate's stored blocks.
    static func gzip(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF]
        var offset = 0
        repeat {
            let n = min(65535, data.count - offset)
            let last = offset + n == data.count
            out.append(last ? 1 : 0)
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[offset..<(offset + n)]
            offset += n
        } while offset < data.count
        let crc = crc32(data), size = UInt32(truncatingIfNeeded: data.count)
        for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8((crc >> UInt32(shift)) & 0xFF)) }
        for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8((size >> UInt32(shift)) & 0xFF)) }
        return out
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var table = [UInt32](repeating: 0, count: 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            table[i] = c
        }
        var crc: UInt32 = 0xFFFF_FFFF
        for b in data { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
