// `slabguard log` on damaged flight recorder files (issue 18 item 8): a log written by
// a real run (Tests/Integration/bugs/double_free.c, killed by the abort after its
// report, and leak.c, which exits), then, with a seeded PRNG, header fields overwritten
// with extreme values (0, all ones, 2^63, the file's size, just past it), the file
// truncated, pages overwritten with random bytes, and every subcommand (info, kmalog,
// kmalog --unique, whatis ADDR, findleaks, kmastat, each also with --json) run on each
// file as a subprocess (the honest check for a Swift trap).  Each run must end by
// itself, with no signal, status 0 or 2, a status 2 with exactly one line on stderr
// beginning with "slabguard:", in under 2 s, with bounded memory.

import Foundation
import Glibc
import Testing

@Suite("slabguard log on damaged files", .timeLimit(.minutes(5)))
struct LogFuzzTests {
    /// splitmix64: the same sequence for the same seed, so a failure names its case.

    /// The header's 64-bit fields (FlightRecorder.Field), from pid to symbolsUsed.
    static let headerFields: [Int] = Array(stride(from: 16, through: 272, by: 8))

    /// A log file kept as its data extents (the file is sparse: ~140 MB, little data).
    struct Image {
        var size: Int
        var extents: [(offset: Int, bytes: [UInt8])]

        init(path: String) throws {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { throw Failure("cannot open \(path)") }
            defer { close(fd) }
            size = Int(lseek(fd, 0, SEEK_END))
            extents = []
            var at = 0
            while at < size {
                let data = Int(lseek(fd, off_t(at), 3 /* SEEK_DATA */))
                guard data >= 0 else { break }
                let hole = Int(lseek(fd, off_t(data), 4 /* SEEK_HOLE */))
                let count: Int = hole - data
                var bytes = [UInt8](repeating: 0, count: count)
                let n: Int = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(data)) }
                guard n == count else { throw Failure("short read of \(path)") }
                extents.append((data, bytes))
                at = hole
            }
        }

        /// Writes the image to `path` (sparse, like the original).
        func write(to path: String) throws -> Int32 {
            let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
            guard fd >= 0, ftruncate(fd, off_t(size)) == 0 else { throw Failure("cannot write \(path)") }
            for e in extents { _ = e.bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, e.bytes.count, off_t(e.offset)) } }
            return fd
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ text: String) { description = text }
    }

    struct Outcome {
        var status: Int32 = 0, signal: Int32 = 0
        var stderr = ""
        var seconds = 0.0
        var maxResidentKB = 0
        var timedOut = false
    }

    /// Runs the CLI with stdout to /dev/null and stderr to `errorFile`; killed after 10 s.
    /// `runOnce`, and once more when it seemed to pass the memory bound: the same input gives
    /// the same peak, while a rare sample of the child's VmHWM read as this test process's
    /// (seen once in a full run: 380 MB for a file refused in 0.00 s at 15 MB) does not recur.
    static func run(_ cli: String, _ arguments: [String], errorFile: String) -> Outcome {
        let first = runOnce(cli, arguments, errorFile: errorFile)
        guard first.maxResidentKB > memoryLimitKB else { return first }
        return runOnce(cli, arguments, errorFile: errorFile)
    }

    static let memoryLimitKB = 200 << 10

    static func runOnce(_ cli: String, _ arguments: [String], errorFile: String) -> Outcome {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errorFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([cli] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        // No Swift backtrace dump: a trap must show as the signal it is, at once.
        let environment: [String] = ["SWIFT_BACKTRACE=enable=no", "PATH=/usr/bin:/bin"]
        let envp = environment.map { strdup($0) } + [nil]
        defer { for p in envp { free(p) } }
        var pid: pid_t = 0
        var outcome = Outcome()
        let start = DispatchTime.now().uptimeNanoseconds
        guard posix_spawn(&pid, cli, &actions, nil, argv, envp) == 0 else { outcome.status = -1; return outcome }
        var status: Int32 = 0
        var usage = rusage()
        // Peak memory: the child's own VmHWM, read while it runs (its rusage's ru_maxrss would
        // count this test process too: posix_spawn's child shares our memory until its exec).
        var peakKB = 0
        while true {
            peakKB = max(peakKB, Self.highWaterKB(pid))
            let r = wait4(pid, &status, WNOHANG, &usage)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if DispatchTime.now().uptimeNanoseconds - start > 10_000_000_000 && !outcome.timedOut {
                kill(pid, SIGKILL)
                outcome.timedOut = true
            }
            usleep(500)
        }
        outcome.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        outcome.maxResidentKB = peakKB
        if status & 0x7f == 0 { outcome.status = (status >> 8) & 0xff } else { outcome.signal = status & 0x7f }
        outcome.stderr = (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? "<stderr not UTF-8>"
        return outcome
    }

    /// VmHWM of a running process in KB (0 when it is gone or not readable).
    static func highWaterKB(_ pid: pid_t) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }

    static let variants: [[String]] = [
        ["info"], ["info", "--json"], ["kmalog"], ["kmalog", "--json"], ["kmalog", "--unique"], ["kmalog", "--unique", "--json"],
        ["whatis", "ADDR"], ["whatis", "ADDR", "--json"], ["findleaks"], ["findleaks", "--json"], ["kmastat"], ["kmastat", "--json"],
        ["msgbuf"], ["msgbuf", "--json"],
    ]

    /// Checks one run; returns the problem, or nil.
    static func problem(_ o: Outcome) -> String? {
        if o.timedOut { return "did not end within 10 s" }
        if o.signal != 0 { return "killed by signal \(o.signal) (a trap?); stderr: \(o.stderr.prefix(300))" }
        if o.status != 0 && o.status != 2 { return "exit status \(o.status); stderr: \(o.stderr.prefix(300))" }
        if o.status == 2 {
            let lines = o.stderr.split(separator: "\n", omittingEmptySubsequences: false)
            if !(lines.count == 2 && lines[1].isEmpty && lines[0].hasPrefix("slabguard: ")) {
                return "status 2 without exactly one 'slabguard:' line on stderr: \(o.stderr.prefix(500))"
            }
        } else if !o.stderr.isEmpty {
            return "status 0 with something on stderr: \(o.stderr.prefix(300))"
        }
        if o.seconds > 2 { return "took \(o.seconds) s" }
        if o.maxResidentKB > memoryLimitKB { return "used \(o.maxResidentKB) KB of memory" }
        return nil
    }

    /// The two real logs: a run killed by its abort, a run that exited with leaks.
    static func realLogs(in folder: URL) throws -> [(path: String, address: String)] {
        var logs: [(String, String)] = []
        for name in ["double_free", "leak"] {
            let program = try LogCommandTests.compile(name, into: folder, sources: BugCorpusTests.bugSources)
            let path = folder.appendingPathComponent("\(name).log").path
            let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", program], directory: folder.path, timeout: 120)
            guard run.status == 134 || run.status == 1 else { throw Failure("\(name) under slabguard: status \(run.status): \(run.stderr)") }
            // A buffer the log knows (whatis then has something to find).
            let kmalog = try LogCommandTests.log(["kmalog", path])
            let address = kmalog.stdout.firstMatch(of: /buffer (0x[0-9a-f]+) size/).map { String($0.output.1) } ?? "0x1000"
            logs.append((path, address))
        }
        return logs
    }

    /// Every header field (FlightRecorder.Field, version to symbolsUsed) set to each extreme
    /// value in turn: info, kmalog and findleaks on each.
    @Test(.timeLimit(.minutes(5)))
    func everyHeaderFieldAtEveryExtreme() throws {
        let folder = try Subprocess.temporaryFolder("log-fields")
        defer { try? FileManager.default.removeItem(at: folder) }
        let cli = try ReleaseBuild.cli()
        let log = try Self.realLogs(in: folder)[0]
        let image = try Image(path: log.path)
        let damaged = folder.appendingPathComponent("damaged.log").path
        let errorFile = folder.appendingPathComponent("stderr").path
        let size = UInt64(image.size)
        var failures: [String] = []
        for field in [8] + Self.headerFields {
            for value in [0, UInt64.max, 1 << 63, size, size + 1, 4095] {
                let fd = try image.write(to: damaged)
                var v = value
                _ = withUnsafeBytes(of: &v) { pwrite(fd, $0.baseAddress, field == 8 ? 4 : 8, off_t(field)) }
                close(fd)
                for variant in [["info", "--json"], ["kmalog"], ["findleaks"]] {
                    let o = Self.run(cli, ["log", variant[0], damaged] + variant.dropFirst(), errorFile: errorFile)
                    if let p = Self.problem(o) { failures.append("field \(field) = \(value) \(variant): \(p)") }
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// A few hundred damaged files, each read by every subcommand.
    @Test(.timeLimit(.minutes(5)))
    func damagedLogsNeverTrapOrHang() throws {
        let folder = try Subprocess.temporaryFolder("log-fuzz")
        defer { try? FileManager.default.removeItem(at: folder) }
        let cli = try ReleaseBuild.cli()
        let logs = try Self.realLogs(in: folder)
        let images = try logs.map { try Image(path: $0.path) }
        // The untouched logs read cleanly, every subcommand.
        let errorFile = folder.appendingPathComponent("stderr").path
        for (index, log) in logs.enumerated() {
            for variant in Self.variants {
                let o = Self.run(cli, ["log", variant[0], log.path] + variant.dropFirst().map { $0 == "ADDR" ? log.address : $0 }, errorFile: errorFile)
                #expect(o.status == 0 && o.signal == 0 && o.stderr.isEmpty, "log \(index) \(variant): \(o.status) \(o.stderr)")
            }
        }

        var random = SplitMix(seed: 0x51AB_6A4D)
        let damaged = folder.appendingPathComponent("damaged.log").path
        let deadline = Date().addingTimeInterval(60)
        var iterations = 0, runs = 0, refused = 0, slowest = 0.0, largestKB = 0
        var failures: [String] = []
        while iterations < 300 && Date() < deadline && failures.count < 10 {
            iterations += 1
            let which = random.next(images.count)
            let image = images[which]
            let fd = try image.write(to: damaged)
            var done: [String] = []
            func put(_ value: UInt64, at offset: Int) {
                var v = value
                _ = withUnsafeBytes(of: &v) { pwrite(fd, $0.baseAddress, 8, off_t(offset)) }
            }
            let size = UInt64(image.size)
            let extremes: [UInt64] = [0, UInt64.max, 1 << 63, UInt64(Int64.max), size, size + 1, size - 1, size + 4096, 4096, 4095,
                                      UInt64(UInt32.max), random.next(), random.next() % (size + 1)]
            for _ in 0...random.next(3) {
                switch random.next(6) {
                case 0, 1:   // a header field, extreme
                    let field = Self.headerFields[random.next(Self.headerFields.count)]
                    let value = extremes[random.next(extremes.count)]
                    put(value, at: field)
                    done.append("field \(field) = \(value)")
                case 2:      // truncated, sometimes with the header's size field made to match
                    let at = random.next(3) == 0 ? random.next(8192) : random.next(image.size)
                    ftruncate(fd, off_t(at))
                    if random.next(2) == 0 && at >= 232 { put(UInt64(at), at: 224) }
                    done.append("truncated at \(at)")
                case 3, 4:   // a page of data overwritten with random bytes
                    let e = image.extents[random.next(image.extents.count)]
                    let page = e.offset + random.next(max(e.bytes.count / 4096, 1)) * 4096
                    var bytes = [UInt8](repeating: 0, count: 4096)
                    for i in stride(from: 0, to: 4096, by: 8) {
                        var v = random.next()
                        withUnsafeBytes(of: &v) { for j in 0..<8 { bytes[i + j] = $0[j] } }
                    }
                    if page == 0 { bytes.replaceSubrange(0..<16, with: Array("SLABGLOG".utf8) + [1, 0, 0, 0, 0, 16, 0, 0]) }
                    _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, off_t(page)) }
                    done.append("page at \(page) random")
                default:     // a few random bytes anywhere in the first page (magic, version, fields, texts)
                    let at = random.next(4096)
                    var b = UInt8(truncatingIfNeeded: random.next())
                    _ = pwrite(fd, &b, 1, off_t(at))
                    done.append("byte \(at) = \(b)")
                }
            }
            close(fd)
            for variant in Self.variants {
                let arguments = ["log", variant[0], damaged] + variant.dropFirst().map { $0 == "ADDR" ? logs[which].address : $0 }
                let o = Self.run(cli, arguments, errorFile: errorFile)
                runs += 1
                if o.status == 2 { refused += 1 }
                slowest = max(slowest, o.seconds)
                largestKB = max(largestKB, o.maxResidentKB)
                if let p = Self.problem(o) { failures.append("iteration \(iterations) (log \(which), \(done.joined(separator: ", "))) \(variant): \(p)") }
            }
        }
        print("log fuzz: \(iterations) damaged files, \(runs) runs, \(refused) refused with status 2, slowest \(slowest) s, largest \(largestKB) KB")
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(iterations >= 100, "only \(iterations) iterations in 60 s")
    }
}
