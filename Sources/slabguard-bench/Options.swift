// Command line of slabguard-bench (hand-parsed: the target has no dependencies
// besides slabguard itself).

import Glibc

struct Options {
    var workloads: [Workload] = Workload.allCases
    var allocators: [AllocatorConfig] = AllocatorConfig.defaultSelection
    var repetitions = 5
    var parameters = WorkloadParameters()
    var machineReadable = true

    static let usage = """
        usage: slabguard-bench [--quick] [--workload NAME]... [--allocator NAME]...
                               [--repetitions N] [--scale X] [--no-lines] [--list]

        Runs each workload on every allocator configuration, interleaved, each run in
        its own forked child; prints the median throughput, the time ratio to the first
        configuration (glibc malloc) and the peak RSS.

          --quick            a tenth of the operations and 3 repetitions (smoke run)
          --workload NAME    only this workload (repeatable, or comma-separated)
          --allocator NAME   run these configurations (repeatable or comma-separated; ratios
                             are to the first): glibc, slabguard (fast mode), slabguard-default
                             (SLABGUARD_DEBUG=default), slabguard-sample1k/-sample10k/-sample100k (sample=N), one
                             debug word alone (see --list); without it: glibc, slabguard
          --repetitions N    runs per workload and configuration (default 5; median reported)
          --scale X          multiply every operation count by X
          --no-lines         omit the machine-readable `result` lines after the table
          --list             list workloads and configurations, then exit
        """

    static func parse(_ arguments: [String]) -> Options {
        var o = Options()
        var quick = false, repetitionsGiven = false, scale: Double? = nil
        var chosenWorkloads: [Workload] = [], chosenAllocators: [AllocatorConfig] = []
        var i = 0
        func value(_ flag: String) -> String {
            i += 1
            guard i < arguments.count else { fail("\(flag) needs a value") }
            return arguments[i]
        }
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "--quick": quick = true
            case "--workload", "-w":
                for name in value(a).split(separator: ",") {
                    guard let w = Workload(rawValue: String(name)) else {
                        fail("unknown workload '\(name)'; valid: \(Workload.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    chosenWorkloads.append(w)
                }
            case "--allocator", "-a":
                for name in value(a).split(separator: ",") {
                    guard let c = AllocatorConfig.all.first(where: { $0.name == name }) else {
                        fail("unknown allocator '\(name)'; valid: \(AllocatorConfig.all.map(\.name).joined(separator: ", "))")
                    }
                    chosenAllocators.append(c)
                }
            case "--repetitions", "-n":
                guard let n = Int(value(a)), n > 0 else { fail("--repetitions needs a positive integer") }
                o.repetitions = n
                repetitionsGiven = true
            case "--scale":
                guard let x = Double(value(a)), x > 0 else { fail("--scale needs a positive number") }
                scale = x
            case "--no-lines": o.machineReadable = false
            case "--list":
                for w in Workload.allCases { print("\(w.rawValue): \(w.summary)") }
                print("allocators: \(AllocatorConfig.all.map(\.name).joined(separator: ", "))")
                exit(0)
            case "--help", "-h":
                print(usage)
                exit(0)
            default:
                fail("unknown argument '\(a)'")
            }
            i += 1
        }
        if quick {
            o.parameters.scale = 0.1
            if !repetitionsGiven { o.repetitions = 3 }
        }
        if let scale { o.parameters.scale = scale }
        if !chosenWorkloads.isEmpty { o.workloads = chosenWorkloads }
        if !chosenAllocators.isEmpty { o.allocators = chosenAllocators }
        return o
    }

    static func fail(_ message: String) -> Never {
        printError("slabguard-bench: \(message)\n\(usage)")
        exit(2)
    }
}
