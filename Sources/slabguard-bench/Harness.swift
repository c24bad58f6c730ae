// Harness — runs each measurement in its own forked child and collects the
// results in the parent.
//
// Why a child per measurement: every allocator starts from the same state
// (the parent never touches slabguard and allocates little from glibc), a
// configuration's environment can be applied before the allocator's first
// use, a crash is reported as a failed cell rather than ending the run, and
// peak RSS is per allocator: the child reads its VmRSS before the allocator's
// first use and VmHWM after the workload; the difference is the peak growth
// (allocator set-up included, and reported on its own too).
//
// Interleaving: for each workload, repetition r runs every configuration,
// in list order when r is even and in reverse order when r is odd (so neither
// allocator always runs first after a pause, or always right after the other
// one warmed the caches and CPU frequency).  The reported figure is the median
// over the repetitions.

import Glibc

/// What a child sends back through its pipe (plain words).
struct ChildReport {
    var nanoseconds: UInt64 = 0
    var cpuNanoseconds: UInt64 = 0
    var operations: UInt64 = 0
    var checksum: UInt64 = 0
    var startRSSKiB: Int64 = 0
    var setUpRSSKiB: Int64 = 0
    var peakRSSKiB: Int64 = 0
}

struct Sample {
    var repetition = 0
    var nanoseconds: UInt64
    var cpuNanoseconds: UInt64
    var operations: UInt64
    var checksum: UInt64
    var startRSSKiB: Int
    /// RSS added by the allocator's first use (heap set-up), part of the growth.
    var setUpRSSKiB: Int
    var peakRSSKiB: Int
    var rssGrowthKiB: Int { max(0, peakRSSKiB - startRSSKiB) }
}

/// All samples of one workload × configuration.
struct Cell {
    var samples: [Sample] = []
    var failures: [String] = []

    var medianNanoseconds: Double? { median(samples.map { Double($0.nanoseconds) }) }
    var medianCPUNanoseconds: Double? { median(samples.map { Double($0.cpuNanoseconds) }) }
    var medianRSSGrowthKiB: Double? { median(samples.map { Double($0.rssGrowthKiB) }) }
    var medianPeakRSSKiB: Double? { median(samples.map { Double($0.peakRSSKiB) }) }
    var medianSetUpRSSKiB: Double? { median(samples.map { Double($0.setUpRSSKiB) }) }
    var operations: UInt64 { samples.first?.operations ?? 0 }

    var opsPerSecond: Double? {
        guard let ns = medianNanoseconds, ns > 0 else { return nil }
        return Double(operations) * 1e9 / ns
    }
}

func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

enum Harness {
    /// Runs `workload` under `config` in a forked child.
    static func measure(_ workload: Workload, _ config: AllocatorConfig,
                        _ parameters: WorkloadParameters) -> Result<Sample, ChildFailure> {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return .failure(ChildFailure("pipe failed")) }
        fflush(nil)   // nothing buffered may be written twice
        let pid = fork()
        if pid < 0 { return .failure(ChildFailure("fork failed")) }
        if pid == 0 {
            close(fds[0])
            childMain(workload, config, parameters, reportTo: fds[1])
        }
        close(fds[1])
        var report = ChildReport()
        let expected = MemoryLayout<ChildReport>.size
        var received = 0
        withUnsafeMutableBytes(of: &report) { buffer in
            while received < expected {
                let n = read(fds[0], buffer.baseAddress! + received, expected - received)
                if n > 0 { received += n } else if n < 0 && errno == EINTR { continue } else { break }
            }
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exitedNormally = status & 0x7F == 0
        if !exitedNormally { return .failure(ChildFailure("killed by signal \(status & 0x7F)")) }
        let code = (status >> 8) & 0xFF
        if code != 0 || received != expected { return .failure(ChildFailure("exited with status \(code)")) }
        return .success(Sample(
            nanoseconds: report.nanoseconds, cpuNanoseconds: report.cpuNanoseconds,
            operations: report.operations, checksum: report.checksum,
            startRSSKiB: Int(report.startRSSKiB), setUpRSSKiB: Int(report.setUpRSSKiB),
            peakRSSKiB: Int(report.peakRSSKiB)))
    }

    private static func childMain(_ workload: Workload, _ config: AllocatorConfig,
                                  _ parameters: WorkloadParameters, reportTo fd: Int32) -> Never {
        config.apply()
        _ = procStatusKiB("VmRSS")   // first use faults in the reader's own code and buffers
        let start = procStatusKiB("VmRSS")
        config.kind.prepare()
        let prepared = procStatusKiB("VmRSS")
        let m = config.kind.measure(workload, parameters)
        var report = ChildReport(
            nanoseconds: m.elapsed.wall, cpuNanoseconds: m.elapsed.cpu, operations: m.operations, checksum: m.checksum,
            startRSSKiB: Int64(start), setUpRSSKiB: Int64(prepared - start),
            peakRSSKiB: Int64(procStatusKiB("VmHWM")))
        let ok = withUnsafeBytes(of: &report) { write(fd, $0.baseAddress, $0.count) == $0.count }
        _exit(ok ? 0 : 3)
    }
}

struct ChildFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Runs every selected workload under every configuration, interleaved.
struct BenchmarkRun {
    let workloads: [Workload]
    let configs: [AllocatorConfig]
    let repetitions: Int
    let parameters: WorkloadParameters
    /// cells[w][c]
    private(set) var cells: [[Cell]] = []

    init(workloads: [Workload], configs: [AllocatorConfig], repetitions: Int, parameters: WorkloadParameters) {
        self.workloads = workloads
        self.configs = configs
        self.repetitions = repetitions
        self.parameters = parameters
        cells = workloads.map { _ in configs.map { _ in Cell() } }
    }

    mutating func run(progress: (String) -> Void) {
        for (w, workload) in workloads.enumerated() {
            for r in 0..<repetitions {
                let order = r % 2 == 0 ? Array(configs.indices) : Array(configs.indices.reversed())
                for c in order {
                    switch Harness.measure(workload, configs[c], parameters) {
                    case .success(var sample):
                        sample.repetition = r
                        cells[w][c].samples.append(sample)
                        progress("\(workload.rawValue) #\(r + 1) \(configs[c].name): "
                                 + "\(formatFixed(Double(sample.nanoseconds) / 1e9, 3)) s "
                                 + "(cpu \(formatFixed(Double(sample.cpuNanoseconds) / 1e9, 3)) s), "
                                 + "peak +\(sample.rssGrowthKiB / 1024) MiB")
                    case .failure(let failure):
                        cells[w][c].failures.append(failure.description)
                        progress("\(workload.rawValue) #\(r + 1) \(configs[c].name): FAILED (\(failure))")
                    }
                }
            }
        }
    }

    /// Checksums that differ between configurations (each workload must read back the same bytes).
    func checksumMismatches() -> [String] {
        var problems: [String] = []
        for (w, workload) in workloads.enumerated() {
            let sums = Set(cells[w].flatMap { $0.samples.map(\.checksum) })
            if sums.count > 1 { problems.append("\(workload.rawValue): checksums differ \(sums.sorted())") }
        }
        return problems
    }
}

func formatFixed(_ value: Double, _ decimals: Int) -> String {
    var scale = 1
    for _ in 0..<decimals { scale *= 10 }
    let n = Int((abs(value) * Double(scale)).rounded())
    var s = (value < 0 && n != 0 ? "-" : "") + String(n / scale)
    if decimals > 0 {
        let fraction = String(n % scale)
        s += "." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }
    return s
}
