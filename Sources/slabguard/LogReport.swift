// `slabguard log report FILE [-o report.html]` (issue 21 item 5): one self-contained HTML
// page — no script, no network, no external file; it opens from disk in any browser —
// with the run (program, options, how it ended), every report (collapsible), the heap
// over time (an inline SVG chart, in all and for the largest caches), the top allocation
// sites by live bytes and by allocations, the leaks, and a flame graph of live bytes by
// stack.  Every number a table shows is also in a `data-value` attribute, for tests and
// scripts (LogReportTests compares them with `log --json`).

import ArgumentParser
import Glibc

struct LogReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "One self-contained HTML page: the run, its reports, the heap over time, top sites, leaks, a flame graph.")
    @Argument(help: "The log file.") var file: String
    @Option(name: .shortAndLong, help: "Write here (default: FILE with .html).") var output: String?

    func run() throws {
        let log = openLog(file)
        let html = HTMLReport(log).page()
        let path = output ?? (file.hasSuffix(".log") ? String(file.dropLast(4)) : file) + ".html"
        writeOutput(Array(html.utf8), to: path)
        print("slabguard: wrote \(path)")
    }
}

struct HTMLReport {
    let log: LogFile
    let heap: LogHeap

    init(_ log: LogFile) {
        self.log = log
        heap = LogHeap(log)
    }

    func page() -> String {
        let reports = LogMsgbuf.split(log.reports).map { resymbolized($0, log) }
        var body = "<h1>slabguard: \(escape(log.commandLine))</h1>\n"
        body += section("run", "The run", runTable())
        body += section("reports", "Reports (\(reports.count))", reportList(reports))
        body += section("timeline", "Heap over the whole run", timelineChart())
        body += section("heap", "Heap over the transaction ring's window", heapChart())
        body += section("sites", "Top allocation sites", sitesTables())
        body += section("leaks", "Leaks", leaksTable(reports))
        body += section("flame", "Live bytes by stack", flameGraph())
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <title>slabguard: \(escape(log.commandLine))</title>
            <style>
            body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #1d2430; }
            h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #dde; }
            table { border-collapse: collapse; margin: 6px 0 12px; } td, th { padding: 3px 10px; text-align: left; }
            th { background: #eef1f6; } tr:nth-child(even) td { background: #f7f8fb; }
            td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
            details { margin: 4px 0; } summary { cursor: pointer; font-family: ui-monospace, monospace; }
            pre { background: #f5f6f8; padding: 8px; overflow-x: auto; font-size: 12px; }
            .bad summary { color: #a4161a; } svg text { font: 11px system-ui, sans-serif; fill: #333; }
            .none { color: #667; font-style: italic; }
            </style></head>
            <body>
            \(body)</body></html>

            """
    }

    private func section(_ id: String, _ title: String, _ content: String) -> String {
        "<section id=\"\(id)\"><h2>\(escape(title))</h2>\n\(content)</section>\n"
    }

    private func runTable() -> String {
        let rows = [("program", log.commandLine), ("pid", "\(log.pid)"), ("options", log.options), ("ended", log.ending),
                    ("transactions in the log", "\(log.transactions.count)")]
        return "<table>" + rows.map { "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>" }.joined() + "</table>\n"
    }

    private func reportList(_ reports: [String]) -> String {
        guard !reports.isEmpty else { return "<p class=\"none\">No report: the run \(escape(log.ending)).</p>\n" }
        return reports.map { r in
            let headline = r.prefix { $0 != "\n" }
            let leak = headline.hasPrefix("slabguard: leak") || headline.hasPrefix("slabguard: summary")
            return "<details class=\"report\(leak ? "" : " bad")\"><summary>\(escape(String(headline)))</summary><pre>\(escape(r))</pre></details>\n"
        }.joined()
    }

    /// An SVG line chart of the bytes in use over the ring's window: in all, and for the
    /// four caches holding the most at the peak.
    private func heapChart() -> String {
        guard let last = heap.series.last, let first = heap.series.first else { return "<p class=\"none\">No transactions in the log.</p>\n" }
        let width = 1000.0, height = 260.0, left = 70.0, bottom = 24.0
        let peak = max(heap.series.map(\.bytes).max() ?? 1, 1)
        let span = max(last.seconds - first.seconds, 1e-9)
        func x(_ s: Double) -> Double { left + (s - first.seconds) / span * (width - left - 10) }
        func y(_ b: Int) -> Double { height - bottom - Double(b) / Double(peak) * (height - bottom - 10) }
        func line(_ values: [(Double, Int)], _ color: String, _ name: String) -> String {
            let points = values.map { "\(format(x($0.0))),\(format(y($0.1)))" }.joined(separator: " ")
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(name == "all" ? 2.2 : 1.2)\" points=\"\(points)\"><title>\(escape(name))</title></polyline>\n"
        }
        let peakPoint = heap.series.max { $0.bytes < $1.bytes }!
        let topCaches = peakPoint.perCache.sorted { $0.value > $1.value }.prefix(4).map(\.key)
        let colors = ["#d1495b", "#edae49", "#00798c", "#66a182"]
        var svg = "<svg id=\"heap-chart\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" "
            + "data-points=\"\(heap.series.count)\" data-peak=\"\(peak)\" data-last=\"\(last.bytes)\">\n"
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 10)\" y2=\"\(height - bottom)\" stroke=\"#99a\"/>\n"
        svg += "<text x=\"4\" y=\"16\">\(escape(human(peak)))</text><text x=\"4\" y=\"\(Int(height - bottom))\">0</text>\n"
        svg += "<text x=\"\(Int(left))\" y=\"\(Int(height - 6))\">\(time(first.seconds))</text>"
            + "<text x=\"\(Int(width - 80))\" y=\"\(Int(height - 6))\">\(time(last.seconds))</text>\n"
        svg += line(heap.series.map { ($0.seconds, $0.bytes) }, "#1d3557", "all")
        let names = log.cacheNames
        var legend = "<p>In use in all (dark), and in "
        for (i, cache) in topCaches.enumerated() {
            let name = names[cache] ?? "cache 0x" + String(cache, radix: 16)
            svg += line(heap.series.map { ($0.seconds, $0.perCache[cache] ?? 0) }, colors[i], name)
            legend += "<span style=\"color:\(colors[i])\">\(escape(name))</span>" + (i < topCaches.count - 1 ? ", " : "")
        }
        legend += topCaches.isEmpty ? "no cache.</p>\n" : ", the caches holding the most at the peak. Over the transaction ring's window; buffers allocated before it are not counted.</p>\n"
        return svg + "</svg>\n" + legend
            + "<table id=\"heap-summary\"><tr><th>peak in use</th><td class=\"n\" data-value=\"\(peak)\">\(human(peak))</td></tr>"
            + "<tr><th>in use at the end</th><td class=\"n\" data-value=\"\(last.bytes)\">\(human(last.bytes))</td></tr></table>\n"
    }

    /// The timeline (a sample a second, coarser for long runs): bytes in caches and the
    /// resident set, over the whole run.
    private func timelineChart() -> String {
        let samples = log.timeline
        guard samples.count >= 2, let first = samples.first, let last = samples.last else {
            return "<p class=\"none\">No timeline: the run was shorter than two seconds (or its log is older than the timeline).</p>\n"
        }
        let width = 1000.0, height = 220.0, left = 70.0, bottom = 24.0
        let peak = max(samples.map { max($0.bytes, $0.residentBytes) }.max() ?? 1, 1)
        let span = max(last.seconds - first.seconds, 1e-9)
        func point(_ s: Double, _ b: Int) -> String {
            format(left + (s - first.seconds) / span * (width - left - 10)) + "," + format(height - bottom - Double(b) / Double(peak) * (height - bottom - 10))
        }
        var svg = "<svg id=\"timeline-chart\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" "
            + "data-samples=\"\(samples.count)\" data-last=\"\(last.bytes)\" data-last-resident=\"\(last.residentBytes)\">\n"
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 10)\" y2=\"\(height - bottom)\" stroke=\"#99a\"/>\n"
        svg += "<text x=\"4\" y=\"16\">\(escape(human(peak)))</text><text x=\"4\" y=\"\(Int(height - bottom))\">0</text>\n"
        svg += "<text x=\"\(Int(left))\" y=\"\(Int(height - 6))\">\(time(first.seconds))</text><text x=\"\(Int(width - 80))\" y=\"\(Int(height - 6))\">\(time(last.seconds))</text>\n"
        svg += "<polyline fill=\"none\" stroke=\"#999\" stroke-width=\"1.2\" points=\"\(samples.map { point($0.seconds, $0.residentBytes) }.joined(separator: " "))\"><title>resident set</title></polyline>\n"
        svg += "<polyline fill=\"none\" stroke=\"#1d3557\" stroke-width=\"2.2\" points=\"\(samples.map { point($0.seconds, $0.bytes) }.joined(separator: " "))\"><title>in caches</title></polyline>\n"
        return svg + "</svg>\n<p>Bytes in the caches' buffers in use (dark) and the process's resident set (grey), a sample every \(log.timelineStride) s "
            + "(slabguard log timeline FILE lists them, per cache, tag and library).</p>\n"
    }

    private func siteName(_ stack: UInt32) -> String {
        let lines = log.frameLines(log.stack(stack))
        return lines.first.map { $0.split(separator: " ").dropFirst(2).joined(separator: " ") } ?? "(no stack)"
    }

    private func sitesTables() -> String {
        let sites = heap.sites
        log.prefetchFrameLines(sites.map { log.stack($0.stack) })
        func table(_ id: String, _ rows: [LogHeap.Site]) -> String {
            guard !rows.isEmpty else { return "<p class=\"none\">None.</p>\n" }
            var t = "<table id=\"\(id)\"><tr><th>allocated at</th><th class=\"n\">live buffers</th><th class=\"n\">live bytes</th>"
                + "<th class=\"n\">allocations</th><th class=\"n\">bytes allocated</th></tr>\n"
            for s in rows.prefix(15) {
                t += "<tr data-stack=\"\(s.stack)\"><td>\(escape(siteName(s.stack)))</td>"
                    + "<td class=\"n\" data-value=\"\(s.live)\">\(s.live)</td><td class=\"n\" data-value=\"\(s.liveBytes)\">\(human(s.liveBytes))</td>"
                    + "<td class=\"n\" data-value=\"\(s.allocations)\">\(s.allocations)</td><td class=\"n\" data-value=\"\(s.allocatedBytes)\">\(human(s.allocatedBytes))</td></tr>\n"
            }
            return t + "</table>\n"
        }
        return "<h3>By live bytes</h3>\n" + table("sites-live", sites.filter { $0.live > 0 }.sorted { ($0.liveBytes, $0.stack) > ($1.liveBytes, $1.stack) })
            + "<h3>By allocations</h3>\n" + table("sites-allocations", sites.sorted { ($0.allocations, $0.stack) > ($1.allocations, $1.stack) })
    }

    /// The run's own leak reports (its exit check) when it made them.
    private func leaksTable(_ reports: [String]) -> String {
        let leaks = reports.filter { $0.hasPrefix("slabguard: leak: ") }
        guard !leaks.isEmpty else {
            return "<p class=\"none\">No leak report: \(log.exited ? "the exit check found none, or did not run" : "the process \(escape(log.ending)), so no exit check ran") "
                + "(the allocation sites above with live buffers are what was still allocated).</p>\n"
        }
        var t = "<table id=\"leak-table\"><tr><th class=\"n\">buffers</th><th class=\"n\">bytes</th><th>allocated at</th></tr>\n"
        for r in leaks {
            let numbers = r.prefix { $0 != "\n" }.split(separator: " ").compactMap { Int($0) }
            let frame = r.split(separator: "\n").first { $0.hasPrefix("    #0 ") }.map { $0.split(separator: " ").dropFirst(2).joined(separator: " ") } ?? ""
            guard numbers.count >= 2 else { continue }
            t += "<tr><td class=\"n\" data-value=\"\(numbers[0])\">\(numbers[0])</td><td class=\"n\" data-value=\"\(numbers[1])\">\(human(numbers[1]))</td><td>\(escape(frame))</td></tr>\n"
        }
        return t + "</table>\n"
    }

    /// An icicle flame graph (root at the top) of live bytes by stack, as SVG.
    private func flameGraph() -> String {
        final class Node { var name: String; var bytes = 0; var children: [String: Node] = [:]; init(_ n: String) { name = n } }
        let root = Node("all")
        for site in heap.sites where site.liveBytes > 0 {
            var node = root
            root.bytes += site.liveBytes
            for name in log.frameLines(log.stack(site.stack)).map(LogExport.functionName).reversed() {
                let child = node.children[name] ?? Node(name)
                node.children[name] = child
                child.bytes += site.liveBytes
                node = child
            }
        }
        guard root.bytes > 0 else { return "<p class=\"none\">Nothing live at the end of the log.</p>\n" }
        let width = 1000.0, rowHeight = 18.0
        var rects: [String] = []
        var depth = 0
        func draw(_ node: Node, x: Double, level: Int) {
            let w = Double(node.bytes) / Double(root.bytes) * width
            guard w >= 0.5 else { return }
            depth = max(depth, level + 1)
            let hue = (node.name.unicodeScalars.reduce(0) { ($0 &* 31 &+ Int($1.value)) & 0xFFFF } % 40) + 10
            rects.append("<g><title>\(escape(node.name)): \(human(node.bytes))</title><rect x=\"\(format(x))\" y=\"\(format(Double(level) * rowHeight))\" "
                         + "width=\"\(format(max(w - 0.5, 0.5)))\" height=\"\(Int(rowHeight - 1))\" fill=\"hsl(\(hue),80%,62%)\" data-bytes=\"\(node.bytes)\"/>"
                         + (w > 60 ? "<text x=\"\(format(x + 3))\" y=\"\(format(Double(level) * rowHeight + 13))\">\(escape(String(node.name.prefix(Int(w / 7)))))</text>" : "")
                         + "</g>")
            var cx = x
            for child in node.children.values.sorted(by: { ($0.bytes, $0.name) > ($1.bytes, $1.name) }) {
                draw(child, x: cx, level: level + 1)
                cx += Double(child.bytes) / Double(root.bytes) * width
            }
        }
        draw(root, x: 0, level: 0)
        let height = Int(Double(depth) * rowHeight) + 2
        return "<svg id=\"flame-graph\" width=\"\(Int(width))\" height=\"\(height)\" viewBox=\"0 0 \(Int(width)) \(height)\" data-total=\"\(root.bytes)\">\n"
            + rects.joined(separator: "\n") + "\n</svg>\n<p>Width: bytes still allocated at the end of the log; hover for the function and its bytes.</p>\n"
    }

    private func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    private func format(_ v: Double) -> String { String(format1: v) }

    /// Seconds since the start, in ms below one second.
    private func time(_ seconds: Double) -> String { seconds < 1 ? String(format1: seconds * 1000) + " ms" : String(format1: seconds) + " s" }

    /// 10288 → "10.0 KiB".
    private func human(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(bytes), i = 0
        while abs(v) >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(bytes) B" : String(format1: v) + " " + units[i]
    }
}
