// The flight recorder's format, defined once (Sources/SlabguardFormats): a log written
// by the library, read back field by field through those definitions, and a log whose
// version field is changed refused in one line.  Program: Tests/Integration/log/exits.c.

import Foundation
import Glibc
import SlabguardFormats
import Testing

@Suite("Flight recorder format", .timeLimit(.minutes(5)))
struct RecorderFormatTests {
    /// exits.c run with the library preloaded and `log=PATH`: the log and the child's pid.
    static func writtenLog(in folder: URL) throws -> (path: String, pid: UInt64, program: String) {
        let program = try LogCommandTests.compile("exits", into: folder)
        let path = folder.appendingPathComponent("exits.log").path
        var environment = Subprocess.cleanEnvironment()
        environment["LD_PRELOAD"] = try ReleaseBuild.library()
        environment["SLABGUARD_DEBUG"] = "default,log=\(path)"
        let run = try Subprocess.run(program, [], environment: environment, directory: folder.path, timeout: 120)
        try #require(run.status == 0 && !run.signaled, "\(run.status) \(run.stderr)")
        let pid = try #require(run.stdout.firstMatch(of: /pid (\d+)/).flatMap { UInt64($0.output.1) }, "\(run.stdout)")
        return (path, pid, program)
    }

    /// `count` bytes of the file at `offset`.
    static func read(_ path: String, at offset: Int, count: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        try #require(n == count)
        return bytes
    }

    @Test func aWrittenLogReadsBackThroughTheSharedDefinitions() throws {
        let folder = try Subprocess.temporaryFolder("format-header")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, pid, program) = try Self.writtenLog(in: folder)
        let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        let header = try Self.read(path, at: 0, count: RecorderHeader.bytes)
        func u64(_ field: Int) -> UInt64 { header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: field, as: UInt64.self) } }
        func u32(_ field: Int) -> UInt32 { header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: field, as: UInt32.self) } }
        func text(_ field: Int, _ width: Int) -> String {
            String(decoding: header[field..<(field + width)].prefix { $0 != 0 }, as: UTF8.self)
        }
        typealias Field = RecorderHeader.Field
        let magic = RecorderHeader.magic
        #expect(Array(header[Field.magic..<(Field.magic + RecorderHeader.Width.magic)])
                == Array(UnsafeBufferPointer(start: magic.utf8Start, count: magic.utf8CodeUnitCount)))
        #expect(u32(Field.version) == RecorderHeader.version)
        #expect(u32(Field.headerBytes) == UInt32(RecorderHeader.bytes))
        #expect(u64(Field.pid) == pid)
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        #expect(u64(Field.startRealtime) <= now && now - u64(Field.startRealtime) < 600 * 1_000_000_000)
        #expect(u64(Field.startMonotonic) != 0 && u64(Field.clockNanoseconds) >= u64(Field.startMonotonic))
        #expect(u64(Field.useTSC) <= 1 && u64(Field.endTicks) >= u64(Field.startTicks))
        #expect(u64(Field.exited) == 1 && u64(Field.exitStatus) == 0)
        #expect(u64(Field.fileBytes) == UInt64(size) && size == RecorderRegion.fileBytes)
        #expect(u64(Field.entryBytes) == UInt64(RingEntry.bytes))
        #expect(text(Field.options, RecorderHeader.Width.options).contains("log=\(path)"))
        #expect(text(Field.commandLine, RecorderHeader.Width.commandLine).hasPrefix(program))
        // Every region where this version puts it, in the documented order, inside the file.
        var end = RecorderHeader.bytes
        for region in RecorderRegion.allCases {
            let offset = Int(u64(region.offsetField))
            let unit = region == .ring ? RingEntry.bytes : region.unitBytes
            let bytes = Int(u64(region.capacityField)) * unit
            #expect(offset == end && offset == region.offset && bytes == region.bytes, "\(region)")
            #expect(offset + bytes <= size, "\(region)")
            if region.usedField >= 0 { #expect(u64(region.usedField) <= UInt64(bytes), "\(region)") }
            end = offset + bytes
        }
        #expect(end == size)
        #expect(u64(RecorderRegion.modules.usedField) > 0 && u64(RecorderRegion.caches.usedField) > 0)
        // The ring's first entry: transaction 0, an allocation or a free, its stack in the depot.
        let entry = try Self.read(path, at: RecorderRegion.ring.offset, count: RingEntry.bytes)
        func field(_ offset: Int) -> UInt64 { entry.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) } }
        #expect(field(RingEntry.Field.sequence) == 1)
        let kind = TransactionKind(rawValue: field(RingEntry.Field.kindThread) >> RingEntry.kindShift)
        #expect(kind == .allocation || kind == .free)
        #expect(field(RingEntry.Field.address) != 0 && field(RingEntry.Field.cache) != 0)
        #expect(field(RingEntry.Field.stackId) < UInt64(StackDepotFormat.storageWords))
    }

    @Test func aChangedVersionIsOneLineAndStatusTwo() throws {
        let folder = try Subprocess.temporaryFolder("format-version")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, _, _) = try Self.writtenLog(in: folder)
        let fd = open(path, O_WRONLY)
        try #require(fd >= 0)
        var newer = RecorderHeader.version + 1
        let written = withUnsafeBytes(of: &newer) { pwrite(fd, $0.baseAddress, RecorderHeader.Width.version, off_t(RecorderHeader.Field.version)) }
        close(fd)
        try #require(written == RecorderHeader.Width.version)
        let result = try LogCommandTests.log(["info", path])
        #expect(result.status == 2 && !result.signaled, "\(result.status) \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1
                && result.stderr.hasPrefix("slabguard: '\(path)' was written by a newer slabguard (log format \(newer))"), "\(result.stderr)")
    }

    /// The build-id parser the library and the CLI share, on notes made here.
    @Test func theBuildIdNoteIsFoundAmongOthers() {
        func note(_ name: [UInt8], type: UInt32, _ desc: [UInt8]) -> [UInt8] {
            func le(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
            func padded(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }
            return le(UInt32(name.count)) + le(UInt32(desc.count)) + le(type) + padded(name) + padded(desc)
        }
        let id: [UInt8] = [0xde, 0xad, 0xbe, 0xef, 0x01]
        let notes = note(Array("GNU\0".utf8), type: 1, [0, 0, 0, 0]) + note(Array("Go\0".utf8), type: 3, [1, 2])
            + note(Array("GNU\0".utf8), type: 3, id)
        let found = notes.withUnsafeBytes { ElfNote.gnuBuildId(in: $0.baseAddress!, count: $0.count) }
        #expect(found.map { Array(notes[$0.offset..<($0.offset + $0.count)]) } == id)
        let cut = notes.withUnsafeBytes { ElfNote.gnuBuildId(in: $0.baseAddress!, count: $0.count - 4) }
        #expect(cut == nil)
    }
}
