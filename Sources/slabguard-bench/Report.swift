// Report — the results tables (one row per workload) and machine-readable lines.
//
// Time table: for each configuration its throughput (millions of operations
// per second, median run); for each configuration after the baseline the time
// ratio config/baseline (lower is better; < 1 means faster than glibc), and
// the same ratio for the process CPU time spent in the timed region.
// Memory table: for each configuration the peak RSS of the measurement process
// (VmHWM: the program's own baseline, the allocator and its heap) and the peak
// growth during the run (the allocator's set-up and the workload's heap only),
// each with its ratio to the baseline.
//
// Machine-readable lines, one per workload × configuration:
//   result workload=W allocator=A threads=T operations=N median_ns=… ops_per_s=…
//          time_ratio=… paired_time_ratio=… median_cpu_ns=… cpu_ratio=… peak_rss_kib=… rss_ratio=… rss_growth_kib=…
//          growth_ratio=… setup_rss_kib=… checksum=… samples_ns=a,b,c
// (ratios are against the baseline configuration; paired_time_ratio is the median of the
// per-repetition ratios; `failures=N` is added when runs failed).

import Glibc

struct Report {
    let run: BenchmarkRun

    func timeTable() -> String {
        let configs = run.configs
        var header = ["workload", "thr"]
        for c in configs { header.append("\(c.name) Mops/s") }
        for c in configs.dropFirst() { header.append("\(c.name)/\(configs[0].name) time") }
        for c in configs.dropFirst() { header.append("\(c.name)/\(configs[0].name) cpu") }
        var rows: [[String]] = []
        for (w, workload) in run.workloads.enumerated() {
            let cells = run.cells[w]
            var row = [workload.rawValue, String(workload.threads)]
            for cell in cells { row.append(cell.opsPerSecond.map { formatFixed($0 / 1e6, 2) } ?? failed(cell)) }
            for c in cells.indices.dropFirst() { row.append(ratio(cells[c].medianNanoseconds, cells[0].medianNanoseconds)) }
            for c in cells.indices.dropFirst() { row.append(ratio(cells[c].medianCPUNanoseconds, cells[0].medianCPUNanoseconds)) }
            rows.append(row)
        }
        return layout([header] + rows)
    }

    func memoryTable() -> String {
        let configs = run.configs
        var header = ["workload", "thr"]
        for c in configs { header.append("\(c.name) peak MiB") }
        for c in configs.dropFirst() { header.append("\(c.name)/\(configs[0].name) peak") }
        for c in configs { header.append("\(c.name) +MiB") }
        for c in configs.dropFirst() { header.append("\(c.name)/\(configs[0].name) +") }
        var rows: [[String]] = []
        for (w, workload) in run.workloads.enumerated() {
            let cells = run.cells[w]
            var row = [workload.rawValue, String(workload.threads)]
            for cell in cells { row.append(cell.medianPeakRSSKiB.map { formatFixed($0 / 1024, 1) } ?? failed(cell)) }
            for c in cells.indices.dropFirst() { row.append(ratio(cells[c].medianPeakRSSKiB, cells[0].medianPeakRSSKiB)) }
            for cell in cells { row.append(cell.medianRSSGrowthKiB.map { formatFixed($0 / 1024, 2) } ?? failed(cell)) }
            for c in cells.indices.dropFirst() { row.append(ratio(cells[c].medianRSSGrowthKiB, cells[0].medianRSSGrowthKiB)) }
            rows.append(row)
        }
        return layout([header] + rows)
    }

    func machineLines() -> String {
        var out = ""
        for (w, workload) in run.workloads.enumerated() {
            let cells = run.cells[w]
            for (c, cell) in cells.enumerated() {
                var fields = ["result", "workload=\(workload.rawValue)", "allocator=\(run.configs[c].name)",
                              "threads=\(workload.threads)", "operations=\(cell.operations)"]
                if let ns = cell.medianNanoseconds { fields.append("median_ns=\(UInt64(ns))") }
                if let ops = cell.opsPerSecond { fields.append("ops_per_s=\(UInt64(ops))") }
                fields.append("time_ratio=\(ratio(cell.medianNanoseconds, cells[0].medianNanoseconds))")
                if c > 0, let paired = pairedRatio(cell, cells[0]) { fields.append("paired_time_ratio=\(formatFixed(paired, 2))") }
                if let cpu = cell.medianCPUNanoseconds { fields.append("median_cpu_ns=\(UInt64(cpu))") }
                fields.append("cpu_ratio=\(ratio(cell.medianCPUNanoseconds, cells[0].medianCPUNanoseconds))")
                if let p = cell.medianPeakRSSKiB { fields.append("peak_rss_kib=\(Int(p))") }
                fields.append("rss_ratio=\(ratio(cell.medianPeakRSSKiB, cells[0].medianPeakRSSKiB))")
                if let g = cell.medianRSSGrowthKiB { fields.append("rss_growth_kib=\(Int(g))") }
                fields.append("growth_ratio=\(ratio(cell.medianRSSGrowthKiB, cells[0].medianRSSGrowthKiB))")
                if let p = cell.medianSetUpRSSKiB { fields.append("setup_rss_kib=\(Int(p))") }
                if let sum = cell.samples.first?.checksum { fields.append("checksum=\(sum)") }
                fields.append("samples_ns=" + cell.samples.map { String($0.nanoseconds) }.joined(separator: ","))
                if !cell.failures.isEmpty { fields.append("failures=\(cell.failures.count)") }
                out += fields.joined(separator: " ") + "\n"
            }
        }
        return out
    }

    /// Median over repetitions of (time / baseline time of the same repetition): the two
    /// runs of a repetition are back to back, so this ratio resists slow drifts in machine load.
    private func pairedRatio(_ cell: Cell, _ base: Cell) -> Double? {
        var ratios: [Double] = []
        for s in cell.samples {
            if let b = base.samples.first(where: { $0.repetition == s.repetition }), b.nanoseconds > 0 {
                ratios.append(Double(s.nanoseconds) / Double(b.nanoseconds))
            }
        }
        return median(ratios)
    }

    private func failed(_ cell: Cell) -> String { cell.failures.isEmpty ? "-" : "FAILED" }

    private func ratio(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b, b > 0 else { return "-" }
        return formatFixed(a / b, 2)
    }

    /// Right-aligned columns (the first left-aligned), two spaces apart.
    private func layout(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for (r, row) in rows.enumerated() {
            var line = ""
            for (i, cell) in row.enumerated() {
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                line += i == 0 ? cell + pad : "  " + pad + cell
            }
            out += line + "\n"
            if r == 0 { out += String(repeating: "-", count: line.count) + "\n" }
        }
        return out
    }
}

/// One line about the machine and the build, for the record.
func machineDescription() -> String {
    var parts: [String] = []
    if let cpu = firstLine(of: "/proc/cpuinfo", prefix: "model name") {
        parts.append(cpu.split(separator: ":", maxSplits: 1).last.map { $0.trimmingSpaces() } ?? cpu)
    }
    parts.append("\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) online CPUs")
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    parts.append("Linux \(release)")
    var version = [CChar](repeating: 0, count: 64)
    if confstr(Int32(_CS_GNU_LIBC_VERSION), &version, 64) > 0 {
        parts.append(String(decoding: version.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return parts.joined(separator: ", ")
}

private func firstLine(of path: String, prefix: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var buffer = [CChar](repeating: 0, count: 1024)
    while fgets(&buffer, 1024, f) != nil {
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if line.hasPrefix(prefix) { return line.trimmingSpaces() }
    }
    return nil
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        let scalars = unicodeScalars
        var start = scalars.startIndex, end = scalars.endIndex
        while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
        while end > start, scalars[scalars.index(before: end)].properties.isWhitespace { end = scalars.index(before: end) }
        return String(String.UnicodeScalarView(scalars[start..<end]))
    }
}
