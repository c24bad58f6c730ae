// slabguard-bench — slabguard (public Swift API, fast mode) against glibc
// malloc/free on the same workloads, in one process and one run.  See
// BENCHMARKS.md for how to read the output, and the other files here for
// what is measured (Workloads.swift), how the allocators are called
// (Allocators.swift) and how runs are isolated and interleaved (Harness.swift).

import Glibc

if let at = CommandLine.arguments.firstIndex(of: "--stack-capture") {
    let depth = CommandLine.arguments.count > at + 1 ? Int(CommandLine.arguments[at + 1]) ?? 12 : 12
    runStackCaptureBenchmark(depth: depth)
    exit(0)
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))

print("slabguard-bench: \(machineDescription())")
print("repetitions \(options.repetitions) (median reported), operation scale \(options.parameters.scale), "
      + "each run in a forked child; time ratio = allocator time / \(options.allocators[0].name) time (lower is better)")

var run = BenchmarkRun(workloads: options.workloads, configs: options.allocators,
                       repetitions: options.repetitions, parameters: options.parameters)
run.run { printError("  \($0)") }

let report = Report(run: run)
print("")
print("Time (median of the repetitions):")
print(report.timeTable(), terminator: "")
print("Mops/s: million operations (one allocation + one free) per second; time: wall-clock time / \(options.allocators[0].name)'s;")
print("cpu: CPU time of the process (all threads) / \(options.allocators[0].name)'s, less sensitive to other load on the machine.")
print("")
print("Memory (median of the repetitions):")
print(report.memoryTable(), terminator: "")
print("peak MiB: peak RSS of the measuring process (VmHWM); +MiB: its growth during the run, i.e. the")
print("allocator's set-up and the workload's heap (the program's own baseline left out).")
print("")
for w in options.workloads { print("  \(w.rawValue): \(w.summary)") }
if options.machineReadable {
    print("")
    print(report.machineLines(), terminator: "")
}
let mismatches = run.checksumMismatches()
for m in mismatches { printError("slabguard-bench: CHECKSUM MISMATCH \(m)") }
let failures = run.cells.joined().contains { !$0.failures.isEmpty }
exit(mismatches.isEmpty && !failures ? 0 : 1)
