// The heap a flight recorder shows, computed once for the exports and the HTML report:
// per allocation stack, what it allocated over the whole run and what is still live —
// the stack depot's counters, exact however far the transaction ring wrapped — and the
// bytes in use over time, in all and per cache, from the ring's window (a free of a
// buffer allocated before the window is not counted against the series).  slabguard's
// own buffers (and the loader's) are left out, as findleaks leaves them out.

struct LogHeap {
    struct Site {
        var stack: UInt32
        var allocations = 0, allocatedBytes = 0
        var live = 0, liveBytes = 0
    }

    struct Point {
        var seconds: Double
        var bytes: Int
        var perCache: [UInt: Int]
    }

    var sites: [Site] = []
    var series: [Point] = []

    init(_ log: LogFile, points: Int = 400) {
        sites = log.depotSites.filter { !log.isSlabguardsOwn(stack: $0.stack) }.map {
            Site(stack: $0.stack, allocations: $0.allocations, allocatedBytes: $0.allocatedBytes,
                 live: max(0, $0.liveBuffers), liveBytes: max(0, $0.liveBytes))
        }
        guard points > 0 else { return }
        let transactions = log.transactions.filter { !log.isSlabguardsOwn($0) }
        guard let first = transactions.first, let last = transactions.last else { return }
        let start = log.secondsSinceStart(first.ticks), end = log.secondsSinceStart(last.ticks)
        let step = max((end - start) / Double(max(points, 1)), 1e-6)
        var total = 0
        var perCache: [UInt: Int] = [:]
        var sizes: [UInt: Int] = [:]
        var next = start
        for t in transactions {
            let at = log.secondsSinceStart(t.ticks)
            while at >= next { series.append(Point(seconds: next, bytes: total, perCache: perCache)); next += step }
            if t.isFree {
                if let size = sizes.removeValue(forKey: t.buffer) {
                    total -= size
                    perCache[t.cache, default: 0] -= size
                }
            } else {
                let size = max(t.size, 0)
                sizes[t.buffer] = size
                total += size
                perCache[t.cache, default: 0] += size
            }
        }
        series.append(Point(seconds: end, bytes: total, perCache: perCache))
    }
}
