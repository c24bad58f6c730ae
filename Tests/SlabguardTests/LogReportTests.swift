// `slabguard log report FILE` (issue 21 item 5): one self-contained HTML page, rendered in a
// real headless browser (Debian's chromium): no console error, and the numbers its tables
// and charts carry (data-value attributes, read back from the rendered DOM) are the ones
// `log findleaks --json` and `log export` give.

import Foundation
import Testing

@Suite("log report: the HTML page in a headless browser", .timeLimit(.minutes(5)))
struct LogReportTests {
    /// live_mix with a leak check at exit: two keeping sites, leaked (3 × 96, 2 × 5000).
    static func recordedReport() throws -> (log: String, html: String) {
        let folder = try Subprocess.temporaryFolder("log-report")
        let program = try LogCommandTests.compile("live_mix", into: folder)
        let path = folder.appendingPathComponent("mix.log").path
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", path, "--debug", "default,noabort", "--", program],
                                     directory: folder.path, timeout: 120)
        #expect(run.status == 1, "leaks reported, exitcode 1: \(run.stderr)")
        let report = try LogCommandTests.log(["report", path])
        #expect(report.status == 0 && report.stdout.hasPrefix("slabguard: wrote "), "\(report.stderr)")
        return (path, folder.appendingPathComponent("mix.html").path)
    }

    /// The page has no external reference (no http, no src= to another file).
    @Test func pageIsSelfContained() throws {
        let (_, html) = try Self.recordedReport()
        let text = try String(contentsOfFile: html, encoding: .utf8)
        #expect(!text.contains("http://") && !text.contains("https://") && !text.contains(" src=") && !text.contains("<script"))
        #expect(text.hasPrefix("<!doctype html>"))
    }

    /// Rendered by chromium: no console error; the leak table's rows are findleaks' exit
    /// reports; the live-bytes sites sum to the heap chart's last point.
    @Test func browserRendersTheNumbersOfTheLog() throws {
        let chromium = try Subprocess.requireTool("chromium")
        let (log, html) = try Self.recordedReport()
        let profile = try Subprocess.temporaryFolder("chromium-profile")
        let dom = try Subprocess.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile.path)",
                                                "--enable-logging=stderr", "--v=0", "--dump-dom", "file://\(html)"], timeout: 120)
        #expect(dom.status == 0, "\(dom.stderr)")
        #expect(!dom.stderr.contains("Uncaught") && !dom.stderr.contains(":CONSOLE("), "console: \(dom.stderr)")
        let page = dom.stdout
        #expect(page.contains("id=\"heap-chart\"") && page.contains("id=\"flame-graph\"") && page.contains("id=\"sites-live\""))
        // The leaks: the same groups as the run's exit check.
        let findleaks = try LogCommandTests.log(["findleaks", log, "--json"])
        let groups = findleaks.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let leakTable = page.components(separatedBy: "id=\"leak-table\"").last?.components(separatedBy: "</table>").first ?? ""
        let leakValues = Self.values(in: leakTable)
        #expect(leakValues.count == 4, "two groups, buffers and bytes each: \(leakTable)")
        let expected = groups.compactMap { $0["headline"] as? String ?? $0["report"] as? String }
        #expect(leakValues.contains(2) && leakValues.contains(10000) && leakValues.contains(3) && leakValues.contains(288),
                "\(leakValues) against \(expected)")
        // Live bytes by site: keep_large and keep_small; their sum is the chart's last point
        // less what the loader's frames hold (none here: slabguard's and the loader's are left out).
        let sites = page.components(separatedBy: "id=\"sites-live\"").last?.components(separatedBy: "</table>").first ?? ""
        #expect(sites.contains("keep_large") && sites.contains("keep_small"), "\(sites)")
        let last = Int(page.components(separatedBy: "data-last=\"").last?.prefix { $0.isNumber } ?? "") ?? -1
        let folded = try LogCommandTests.log(["export", log, "--format", "folded"])
        let foldedTotal = folded.stdout.split(separator: "\n").compactMap { Int($0.split(separator: " ").last ?? "") }.reduce(0, +)
        #expect(last == foldedTotal && last >= 10288, "chart \(last), folded \(foldedTotal)")
        let flameTotal = Int(page.components(separatedBy: "data-total=\"").last?.prefix { $0.isNumber } ?? "") ?? -1
        #expect(flameTotal == foldedTotal)
    }

    /// The data-value numbers of a piece of the page, in order.
    static func values(in html: String) -> [Int] {
        html.components(separatedBy: "data-value=\"").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
    }

    /// A run that died (double free: abort), and a log whose 64 MiB ring wrapped (2.2 M
    /// transactions): the page and the three exports are still written, and pprof agrees
    /// with the page on the live bytes.
    @Test(arguments: ["crashed", "full ring"])
    func crashedRunAndFullRingStillGiveAPage(kind: String) throws {
        let folder = try Subprocess.temporaryFolder("log-report-\(kind == "crashed" ? "crash" : "ring")")
        let log: String
        if kind == "crashed" {
            log = try LogCommandTests.crashedLog(in: folder).log
        } else {
            let source = folder.appendingPathComponent("wrap.c")
            try """
                #include <stdlib.h>
                static void *keep;
                int main(void) { keep = malloc(4000); for (int i = 0; i < 1100000; i++) free(malloc(16 + i % 500)); return keep == 0; }
                """.write(to: source, atomically: true, encoding: .utf8)
            let program = folder.appendingPathComponent("wrap").path
            #expect(try Subprocess.run(try Subprocess.requireTool("cc"), ["-O0", "-o", program, source.path]).status == 0)
            log = folder.appendingPathComponent("wrap.log").path
            let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--log", log, "--", program], directory: folder.path, timeout: 240)
            #expect(run.status == 0, "\(run.stderr)")
            let info = try LogCommandTests.log(["info", log])
            #expect(info.status == 0)
        }
        let html = folder.appendingPathComponent("page.html").path
        let page = try LogCommandTests.log(["report", log, "-o", html])
        #expect(page.status == 0, "\(page.stderr)")
        let text = try String(contentsOfFile: html, encoding: .utf8)
        #expect(text.contains("id=\"run\"") && text.contains("id=\"flame\"") && text.hasSuffix("</body></html>\n"))
        if kind == "crashed" { #expect(text.contains("duplicate free: buffer freed twice") && text.contains("killed by signal 6")) }
        for format in ["folded", "trace", "pprof"] {
            let out = try LogCommandTests.log(["export", log, "--format", format, "-o", folder.appendingPathComponent("out.\(format)").path])
            #expect(out.status == 0, "\(format): \(out.stderr)")
        }
        // The page's live bytes by site against pprof's in-use space.
        let pageLive = Self.values(in: text.components(separatedBy: "id=\"sites-live\"").last?.components(separatedBy: "</table>").first ?? "")
        let pageTotal = stride(from: 1, to: pageLive.count, by: 4).map { pageLive[$0] }.reduce(0, +)
        if let go = Subprocess.findExecutable("go") {
            let top = try Subprocess.run(go, ["tool", "pprof", "-raw", folder.appendingPathComponent("out.pprof").path], timeout: 120)
            #expect(top.status == 0, "\(top.stderr)")
            // -raw: "  allocs  bytes  inuse_objects  inuse_bytes: locations" per sample.
            var inuse = 0
            for line in top.stdout.split(separator: "\n") where line.contains(":") {
                let numbers = line.split(separator: ":").first!.split(separator: " ").compactMap { Int($0) }
                if numbers.count == 4 { inuse += numbers[3] }
            }
            #expect(inuse >= pageTotal, "pprof in use \(inuse), the page's top sites \(pageTotal)")
        }
    }
}
