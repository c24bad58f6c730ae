// `slabguard log export FILE --format folded|trace` (issue 21 item 6, in part).

import Foundation
import Testing

@Suite("log export: folded stacks and Chrome traces", .timeLimit(.minutes(5)))
struct LogExportTests {
    static func recordedLog() throws -> String {
        let folder = try Subprocess.temporaryFolder("log-export")
        let program = try LogCommandTests.compile("live_mix", into: folder)
        let path = folder.appendingPathComponent("mix.log").path
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", program], directory: folder.path, timeout: 120)
        #expect(run.status == 1 && run.stderr.contains("slabguard: leak: "), "the five kept buffers leak: \(run.stderr)")
        return path
    }

    /// Folded stacks of live bytes: the two keeping sites, root first, weighted by their
    /// bytes (3 × 96 and 2 × 5000); the churn's freed buffers are not there.
    @Test func foldedStacksWeighLiveBytes() throws {
        let path = try Self.recordedLog()
        let out = try LogCommandTests.log(["export", path, "--format", "folded"])
        #expect(out.status == 0, "\(out.stderr)")
        let lines = out.stdout.split(separator: "\n").map(String.init)
        let large = lines.first { $0.contains("main;allocate_and_forget;keep_large") }
        let small = lines.first { $0.contains("main;allocate_and_forget;keep_small") }
        #expect(large?.hasSuffix(" 10000") == true, "\(out.stdout)")
        #expect(small?.hasSuffix(" 288") == true, "\(out.stdout)")
        #expect(lines.allSatisfy { $0.split(separator: " ").count == 2 && Int($0.split(separator: " ").last!) != nil }, "\(out.stdout)")
        #expect(lines.first == large, "largest first")
    }

    /// Live bytes per site come from the stack depot's counters, exact over the whole run:
    /// after the ring wrapped (1.2 million transactions in a ring of 2^20), the 1000 kept
    /// buffers of 100 bytes and one large span (which the ring never holds) are there with
    /// their counts; the churn's site has allocated 600,000 times and holds nothing; the
    /// table at exit lists the sites too.
    @Test func siteCountersOutlastTheRing() throws {
        let folder = try Subprocess.temporaryFolder("log-sites")
        let program = try LogCommandTests.compile("site_counts", into: folder)
        let path = folder.appendingPathComponent("sites.log").path
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--", program], directory: folder.path, timeout: 240)
        #expect(run.status == 0, "\(run.stderr)")
        let folded = try LogCommandTests.log(["export", path, "--format", "folded"])
        let lines = folded.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first { $0.contains("main;keep_many") }?.hasSuffix(" 100000") == true, "\(folded.stdout)")
        #expect(lines.first { $0.contains("main;keep_big") }?.hasSuffix(" 300000") == true, "\(folded.stdout)")
        #expect(!lines.contains { $0.contains("churn") } && !lines.contains { $0.contains("libstdc++") }, "\(folded.stdout)")
        let pprof = folder.appendingPathComponent("sites.pb.gz").path
        #expect(try LogCommandTests.log(["export", path, "--format", "pprof", "-o", pprof]).status == 0)
        let go = try Subprocess.requireTool("go")
        let top = try Subprocess.run(go, ["tool", "pprof", "-top", "-sample_index=alloc_objects", "-nodecount=50", pprof], timeout: 120)
        let churn = top.stdout.split(separator: "\n").first { $0.hasSuffix(" churn") } ?? ""
        #expect(churn.contains("600000") || churn.contains("600k"), "\(top.stdout)")
        let table = try LogCommandTests.log(["kmastat", path])
        let site = table.stdout.split(separator: "\n").map(String.init)
        let row = site.firstIndex { $0.hasPrefix("site ") && $0.split(separator: " ").dropFirst(2).first == "100000" }
        #expect(row != nil && site[row! + 1].contains("keep_many"), "\(table.stdout)")
    }

    /// The Chrome trace: valid JSON, counter events in time order, the heap's last point
    /// holding the kept bytes (10288), written to -o.
    @Test func traceHasTheHeapOverTime() throws {
        let path = try Self.recordedLog()
        let output = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("heap.json").path
        let out = try LogCommandTests.log(["export", path, "--format", "trace", "-o", output])
        #expect(out.status == 0 && out.stdout.isEmpty, "\(out.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any])
        let events = try #require(object["traceEvents"] as? [[String: Any]])
        let heap = events.filter { $0["name"] as? String == "heap in use" && $0["ph"] as? String == "C" }
        #expect(heap.count >= 10, "\(heap.count) points")
        let times = heap.compactMap { $0["ts"] as? Int }
        #expect(times == times.sorted())
        let last = try #require((heap.last?["args"] as? [String: Any])?["bytes"] as? Int)
        #expect(last >= 10288 && last < 10288 + 4096, "the kept bytes (and the loader's): \(last)")
        #expect(events.contains { $0["name"] as? String == "bytes in use by cache" })
        let unwritable = try LogCommandTests.log(["export", path, "--format", "trace", "-o", "/nonexistent/x.json"])
        #expect(unwritable.status == 2 && unwritable.stderr.hasPrefix("slabguard: cannot write '/nonexistent/x.json'"), "\(unwritable.stderr)")
    }

    /// The pprof profile, read by pprof itself: `go tool pprof -raw` lists the four sample
    /// types and the two keeping sites; `-top -sample_index=inuse_space` gives their bytes.
    @Test func pprofIsReadByPprof() throws {
        let go = try Subprocess.requireTool("go")
        let path = try Self.recordedLog()
        let output = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("heap.pb.gz").path
        let out = try LogCommandTests.log(["export", path, "--format", "pprof", "-o", output])
        #expect(out.status == 0, "\(out.stderr)")
        let raw = try Subprocess.run(go, ["tool", "pprof", "-raw", output], timeout: 120)
        #expect(raw.status == 0, "\(raw.stderr)")
        #expect(raw.stdout.contains("alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes"), "\(raw.stdout)")
        let top = try Subprocess.run(go, ["tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=50", output], timeout: 120)
        #expect(top.status == 0, "\(top.stderr)")
        let rows = top.stdout.split(separator: "\n")
        let large = rows.first { $0.hasSuffix(" keep_large") } ?? ""
        let small = rows.first { $0.hasSuffix(" keep_small") } ?? ""
        #expect(large.contains("9.77kB") || large.contains("10000B"), "\(top.stdout)")
        #expect(small.contains("288B"), "\(top.stdout)")
    }
}
