// The hit path of malloc and free in fast mode, counted (issue 22 item 1): instructions
// per call under valgrind's callgrind, which counts instructions, not time — the same
// total on every run, whatever the machine is doing.  Two runs of the same loop, N and
// 2N calls: the difference over N is the hit path alone (start-up, the first refill and
// exit cancel out), export and Swift entry together.  Fails when either path grows past
// its bound.

import Foundation
import Testing

@Suite("Fast path: instructions on a magazine hit", .serialized, .timeLimit(.minutes(5)))
struct FastPathTests {
    static let mallocBound = 30   // measured 28 (1 export jump + 27)
    static let freeBound = 40     // measured 37 (1 export jump + 36)

    /// Instructions per function (self cost) in one callgrind run of the loop, `calls` times.
    static func selfCosts(calls: Int, library: String, program: String, folder: URL) throws -> [String: Int] {
        let valgrind = try Subprocess.requireTool("valgrind")
        let out = folder.appendingPathComponent("callgrind.\(calls)").path
        var environment = Subprocess.cleanEnvironment()
        environment["LD_PRELOAD"] = library
        let run = try Subprocess.run(valgrind, ["--tool=callgrind", "--callgrind-out-file=\(out)", program, "\(calls)"],
                                     environment: environment, timeout: 180)
        guard run.status == 0 else { throw ReleaseBuild.Failure(description: "callgrind: \(run.stderr)") }
        let annotate = try Subprocess.run(try Subprocess.requireTool("callgrind_annotate"), ["--auto=no", out], timeout: 60)
        var costs: [String: Int] = [:]
        for line in annotate.stdout.split(separator: "\n") {
            // "5,400,395 (29.56%)  ???:$s13SlabguardCore15sg_entry_malloc… [/path/lib.so]"
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 3, let cost = Int(fields[0].replacingOccurrences(of: ",", with: "")),
                  let name = fields.first(where: { $0.hasPrefix("???:") || $0.contains(".c:") || $0.contains(".swift:") })
            else { continue }
            let function = String(name.split(separator: ":", maxSplits: 1).last ?? "")
            costs[function, default: 0] += cost
        }
        return costs
    }

    @Test func mallocAndFreeHitPathsStayShort() throws {
        let folder = try Subprocess.temporaryFolder("fastpath")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try LogCommandTests.compile("hit_path", into: folder, sources: ReleaseBuild.integrationSources.appendingPathComponent("fastpath"))
        // valgrind 3.19 cannot read the library's DWARF 5: a copy without it (symbols kept).
        let library = folder.appendingPathComponent("libslabguard_rt.so").path
        let strip = try Subprocess.run(try Subprocess.requireTool("objcopy"), ["--strip-debug", try ReleaseBuild.library(), library], timeout: 60)
        try #require(strip.status == 0, "\(strip.stderr)")
        let n = 100_000
        let once = try Self.selfCosts(calls: n, library: library, program: program, folder: folder)
        let twice = try Self.selfCosts(calls: 2 * n, library: library, program: program, folder: folder)
        func perCall(_ names: [String]) -> Double {
            Double(names.reduce(0) { $0 + (twice[$1] ?? 0) - (once[$1] ?? 0) }) / Double(n)
        }
        let mallocNames = twice.keys.filter { $0 == "malloc" || $0.contains("sg_entry_malloc") || $0.contains("mallocMiss") || $0.contains("mallocSlow") }
        let freeNames = twice.keys.filter { $0 == "free" || $0.contains("sg_entry_free") || $0.contains("freeSlow") }
        let malloc = perCall(mallocNames), free = perCall(freeNames)
        #expect(mallocNames.contains("malloc") && freeNames.contains("free"), "\(twice.keys.sorted())")
        let seen = mallocNames.map { "\($0): \(once[$0] ?? -1) then \(twice[$0] ?? -1)" }
        #expect(malloc > 10 && malloc <= Double(Self.mallocBound), "malloc's hit path: \(malloc) instructions (bound \(Self.mallocBound)); \(seen)")
        #expect(free > 10 && free <= Double(Self.freeBound), "free's hit path: \(free) instructions (bound \(Self.freeBound))")
        print("fast path: malloc \(malloc), free \(free) instructions per hit")
    }
}
