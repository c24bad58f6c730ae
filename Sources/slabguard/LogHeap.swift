// The heap a flight recorder's transaction ring shows, computed once for the exports and
// the HTML report: per allocation stack, what was allocated in the ring's window and what
// is still live at its end; and the bytes in use over time, in all and per cache.
// slabguard's own buffers (and the loader's) are left out, as findleaks leaves them out.
// A free of a buffer allocated before the window is not counted against the series.

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
        let transactions = log.transactions.filter { !log.isSlabguardsOwn($0) }
        var byStack: [UInt32: Site] = [:]
        var live: [UInt: LogFile.Transaction] = [:]
        for t in transactions {
            if t.isFree { live[t.buffer] = nil; continue }
            live[t.buffer] = t
            byStack[t.stackId, default: Site(stack: t.stackId)].allocations += 1
            byStack[t.stackId]!.allocatedBytes += max(t.size, 0)
        }
        for t in live.values {
            byStack[t.stackId, default: Site(stack: t.stackId)].live += 1
            byStack[t.stackId]!.liveBytes += max(t.size, 0)
        }
        sites = byStack.values.sorted { $0.stack < $1.stack }
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
