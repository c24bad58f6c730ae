// The flight recorder's file format (`log=PATH`, design §7), defined once: SlabguardCore
// writes it (Debug/FlightRecorder), the `slabguard log` commands read it.  Little-endian,
// one region after another (RecorderRegion, in file order), each named in the header.
// Integer constants and switches only: the writer runs inside malloc, so nothing here
// may allocate or need a lazily initialised global.

public enum RecorderHeader {
    /// The file's first bytes.
    public static var magic: StaticString { "SLABGLOG" }
    public static let version: UInt32 = 2
    /// The header region, at offset 0.
    public static let bytes = 4096

    /// Each field's offset in the header.
    public enum Field {
        public static let magic = 0, version = 8, headerBytes = 12, pid = 16
        public static let startRealtime = 24, startMonotonic = 32, startTicks = 40
        public static let clockTicks = 48, clockNanoseconds = 56, useTSC = 64
        public static let ringOffset = 72, ringEntries = 80, entryBytes = 88
        public static let stacksOffset = 96, stacksWords = 104, bucketsOffset = 112, bucketCount = 120
        public static let modulesOffset = 128, modulesBytes = 136, modulesUsed = 144
        public static let reportsOffset = 152, reportsBytes = 160, reportsUsed = 168
        public static let cachesOffset = 176, cachesBytes = 184, cachesUsed = 192
        public static let exited = 200, exitStatus = 208, endTicks = 216, fileBytes = 224
        public static let statisticsOffset = 232, statisticsBytes = 240, statisticsUsed = 248
        public static let symbolsOffset = 256, symbolsBytes = 264, symbolsUsed = 272
        /// Live statistics (`slabguard stat PID`): a sequence number, odd while the
        /// statistics region is being rewritten, and the audit time of the last rewrite
        /// (0: none while running; the table at exit leaves both as they were).
        public static let statisticsSequence = 280, statisticsTicks = 288
        /// Leak checks on demand (`slabguard leaks PID`): the reader writes `leakFlags`
        /// (LeakRequest) and then `leakRequest` = `leakAnswer` + 1; the process, at its
        /// next allocator call once a second, runs the check, appends its reports to the
        /// reports region between `leakReportsStart` and `leakReportsEnd`, sets
        /// `leakFound` (buffers) and `leakStatus` (LeakRequest), then `leakAnswer`.
        public static let leakRequest = 296, leakAnswer = 304, leakFlags = 312
        public static let leakReportsStart = 320, leakReportsEnd = 328, leakFound = 336, leakStatus = 344
        /// How long the check took in the process (ns).
        public static let leakNanoseconds = 352
        /// The heap over time (`timeline`): fixed slots of `TimelineFormat.slotBytes`, one
        /// sample each, oldest first; `timelineUsed` counts their bytes; a sample is taken
        /// every `timelineStride` seconds, doubled (and every other sample dropped) when
        /// the region is full, so it always covers the whole run.
        public static let timelineOffset = 360, timelineBytes = 368, timelineUsed = 376, timelineStride = 384
        /// The options as text (NUL-terminated), then the command line (arguments joined by spaces).
        public static let options = 512, commandLine = 1536
    }

    /// Each field's width in bytes: magic 8, version and header size 4 (UInt32), the text
    /// fields below, every other field 8 (UInt64; a flag is 0 or 1).
    public enum Width {
        public static let magic = 8, version = 4, headerBytes = 4, word = 8
        public static let options = 1024, commandLine = 2048
    }
}

/// The regions after the header, in file order; each starts where the one before ends.
public enum RecorderRegion: CaseIterable {
    case modules      // the module map as text lines (ModuleMap.write)
    case caches       // "ADDRESS NAME" lines, one per cache
    case reports      // every report's text, appended
    case statistics   // the ::kmastat table: about every second while running, and at exit
    case timeline     // the heap over time: TimelineFormat's samples (the last region of a live recorder)
    case symbols      // unloaded libraries' symbols: "M …", "S …", "U …" lines
    case buckets      // the stack depot's hash buckets (StackDepotFormat)
    case stacks       // the stack depot's words (StackDepotFormat)
    case ring         // the transaction ring (RingEntry)

    /// Its size in a file this version writes.
    public var bytes: Int {
        switch self {
        case .modules: 256 << 10
        case .caches: 256 << 10
        case .reports: 1 << 20
        case .statistics: 64 << 10
        case .symbols: 4 << 20
        case .timeline: TimelineFormat.slots * TimelineFormat.slotBytes
        case .buckets: StackDepotFormat.bucketCount * 8
        case .stacks: StackDepotFormat.storageWords * 8
        case .ring: 64 << 20
        }
    }

    /// Its offset in a file this version writes.
    public var offset: Int {
        switch self {
        case .modules: RecorderHeader.bytes
        case .caches: RecorderRegion.modules.end
        case .reports: RecorderRegion.caches.end
        case .statistics: RecorderRegion.reports.end
        case .timeline: RecorderRegion.statistics.end
        case .symbols: RecorderRegion.timeline.end
        case .buckets: RecorderRegion.symbols.end
        case .stacks: RecorderRegion.buckets.end
        case .ring: RecorderRegion.stacks.end
        }
    }

    public var end: Int { offset + bytes }

    /// The size of a file this version writes.
    public static var fileBytes: Int { RecorderRegion.ring.end }
    /// A live recorder's size (a debug run without `log=`): the regions up to the timeline
    /// (2.6 MiB of address space); its header gives the symbols region, the depot and the
    /// ring no bytes.
    public static var liveBytes: Int { RecorderRegion.timeline.end }

    /// The header field holding its offset.
    public var offsetField: Int {
        switch self {
        case .modules: RecorderHeader.Field.modulesOffset
        case .caches: RecorderHeader.Field.cachesOffset
        case .reports: RecorderHeader.Field.reportsOffset
        case .statistics: RecorderHeader.Field.statisticsOffset
        case .symbols: RecorderHeader.Field.symbolsOffset
        case .timeline: RecorderHeader.Field.timelineOffset
        case .buckets: RecorderHeader.Field.bucketsOffset
        case .stacks: RecorderHeader.Field.stacksOffset
        case .ring: RecorderHeader.Field.ringOffset
        }
    }

    /// The header field holding its capacity, in units of `unitBytes`.
    public var capacityField: Int {
        switch self {
        case .modules: RecorderHeader.Field.modulesBytes
        case .caches: RecorderHeader.Field.cachesBytes
        case .reports: RecorderHeader.Field.reportsBytes
        case .statistics: RecorderHeader.Field.statisticsBytes
        case .symbols: RecorderHeader.Field.symbolsBytes
        case .timeline: RecorderHeader.Field.timelineBytes
        case .buckets: RecorderHeader.Field.bucketCount
        case .stacks: RecorderHeader.Field.stacksWords
        case .ring: RecorderHeader.Field.ringEntries
        }
    }

    /// The unit its capacity counts: a byte for the text regions, a word for the stack
    /// depot's; the ring counts entries (of the header's `entryBytes`), so 0 here.
    public var unitBytes: Int {
        switch self {
        case .buckets, .stacks: 8
        case .ring: 0
        default: 1
        }
    }

    /// The header field holding how many of its bytes hold data (the text regions), or -1.
    public var usedField: Int {
        switch self {
        case .modules: RecorderHeader.Field.modulesUsed
        case .caches: RecorderHeader.Field.cachesUsed
        case .reports: RecorderHeader.Field.reportsUsed
        case .statistics: RecorderHeader.Field.statisticsUsed
        case .symbols: RecorderHeader.Field.symbolsUsed
        case .timeline: RecorderHeader.Field.timelineUsed
        case .buckets, .stacks, .ring: -1
        }
    }

    /// Regions a file from before them lacks (offset, capacity and used all 0).
    public var isOptional: Bool { self == .statistics || self == .symbols || self == .timeline }
}

/// One entry of the transaction ring: 8-byte fields.  A slot holds transaction
/// `sequence - 1`; a sequence of 0 means never written, or being rewritten.
public enum RingEntry {
    public static let bytes = 64
    public enum Field {
        public static let sequence = 0
        /// kind << kindShift | thread id
        public static let kindThread = 8
        public static let time = 16, address = 24, size = 32, cache = 40, stackId = 48
    }
    public static let kindShift: UInt64 = 32
    /// The least entry size a reader accepts: up to the stack id.
    public static let minimumBytes = Field.stackId + 8
}

/// What a ring entry records.
public enum TransactionKind: UInt64 {
    case allocation = 1, free = 2
}

/// The stack depot's storage (the buckets and stacks regions): 8-byte words.  A stack is
/// [next id << 32 | hash] [depth] [live bytes] [live buffers] [allocations] [bytes
/// allocated] [frames…], its id the index of its first word (0: none).  The four counters
/// are the debug buffers allocated from that stack (the heap's "who holds the memory"):
/// added at allocation, the live ones taken back at free, never reset.
public enum StackDepotFormat {
    public static let storageWords = 8 << 20
    public static let bucketCount = 1 << 19
    public static let maxDepth = 64
    /// Word offsets inside a stack record.
    public static let linkWord = 0, depthWord = 1
    public static let liveBytesWord = 2, liveBuffersWord = 3, allocationsWord = 4, allocatedBytesWord = 5
    public static let framesWord = 6
    /// Frames shown per allocation site in the statistics table.
    public static let siteFrames = 6

    /// Calls `body(id, depth)` for each stack record in id order, reading the storage's
    /// words through `word` (index → value) up to word `used`; a record without a depth
    /// (still being written when it was read) ends the walk.
    public static func forEachRecord(used: Int, word: (Int) -> UInt64, _ body: (_ id: Int, _ depth: Int) -> Void) {
        var id = 1
        while id + framesWord <= used {
            let depth = Int(word(id + depthWord))
            guard depth > 0 && depth <= maxDepth else { return }
            body(id, depth)
            id += framesWord + depth
        }
    }
}

/// A leak check on demand: the request's flags and the answer's status.
public enum LeakRequest {
    /// Flag: only buffers no earlier check on demand listed.
    public static let newOnly: UInt64 = 1
    /// Status: the check ran.
    public static let done: UInt64 = 0
    /// Status: not run — a seccomp filter is in force (the scan's system calls could kill).
    public static let sandboxed: UInt64 = 1
    /// Status: not run — this mode keeps no buffer tags (fast mode, sample=N alone).
    public static let noTags: UInt64 = 2
}

/// The heap over time (the timeline region): `slots` slots of `slotBytes`, each one sample
/// as text lines, NUL-padded: "T TICKS RSS_BYTES", then "c BYTES BUFFERS NAME" per cache with
/// buffers in use, then "t KIND BYTES BUFFERS NAME" per tag and library (KIND tag or
/// library); lines that do not fit the slot are left out.
public enum TimelineFormat {
    public static let slots = 512
    public static let slotBytes = 2048
}
