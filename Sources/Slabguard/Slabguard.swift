// Slabguard — the Swift front end: object caches and the kmem_alloc-style
// size-class allocator, safe to call (no pointer arithmetic is asked of the
// caller; buffers are raw memory the caller owns until it frees them).

import SlabguardCore

/// Statistics of one cache, like `::kmastat`.
public typealias CacheStatistics = SlabguardCore.CacheStatistics

/// An object cache (kmem_cache): buffers of one size, with an optional constructor
/// run when a buffer leaves the slab layer and destructor run when it returns there —
/// not on every allocation, so cached objects keep their constructed state.
public final class ObjectCache: @unchecked Sendable {
    /// Constructs a buffer; return false when construction fails (the allocation then fails).
    public typealias Constructor = @Sendable (UnsafeMutableRawPointer) -> Bool
    public typealias Destructor = @Sendable (UnsafeMutableRawPointer) -> Void

    private final class Callbacks {
        let constructor: Constructor?
        let destructor: Destructor?
        init(_ c: Constructor?, _ d: Destructor?) { constructor = c; destructor = d }
    }

    private let handle: CacheHandle
    private let callbacks: Unmanaged<Callbacks>?
    private var destroyed = false
    public let name: String

    /// Creates a cache of `size`-byte buffers aligned to `alignment` (a power of two up to
    /// 4096).  Returns nil for a bad size or alignment, or when out of memory.
    ///
    /// `debug` takes the debug words of SLABGUARD_DEBUG (e.g. `"default"` or
    /// `"deadbeef,redzone,audit,noabort"`) to check this cache's buffers; in a debug
    /// cache the constructor and destructor run on every allocation and free.
    /// Bad debug words also return nil (see `Debug.validate(_:)` for the message).
    public init?(name: String, size: Int, alignment: Int = 8, debug: String? = nil,
                 constructor: Constructor? = nil, destructor: Destructor? = nil) {
        var debugFlags: UInt32 = 0
        if let debug {
            guard let flags = try? DebugControl.flags(debug) else { return nil }
            debugFlags = flags
        }
        let hasCallbacks = constructor != nil || destructor != nil
        let box = hasCallbacks ? Unmanaged.passRetained(Callbacks(constructor, destructor)) : nil
        let created = name.withCString { cName in
            CacheHandle.create(
                name: cName, size: size, alignment: alignment,
                constructor: constructor == nil ? nil : { buffer, argument in
                    let callbacks = Unmanaged<Callbacks>.fromOpaque(argument!).takeUnretainedValue()
                    return callbacks.constructor!(buffer) ? 0 : -1
                },
                destructor: destructor == nil ? nil : { buffer, argument in
                    Unmanaged<Callbacks>.fromOpaque(argument!).takeUnretainedValue().destructor!(buffer)
                },
                argument: box?.toOpaque(), debugFlags: debugFlags)
        }
        guard let created else { box?.release(); return nil }
        self.handle = created
        self.callbacks = box
        self.name = name
    }

    deinit { if !destroyed { destroy() } }

    /// The size of each buffer.
    public var bufferSize: Int { handle.bufferSize }

    /// A constructed buffer, or nil when out of memory or the constructor failed.
    @inline(__always) public func allocate() -> UnsafeMutableRawPointer? {
        precondition(!destroyed, "ObjectCache '\(name)' used after destroy()")
        return handle.allocate()
    }

    /// Returns a buffer (in its constructed state) to the cache.
    @inline(__always) public func free(_ buffer: UnsafeMutableRawPointer) {
        handle.free(buffer)
    }

    /// Releases empty slabs and depot magazines back to the page arena (kmem_cache_reap).
    public func reap() { handle.reap() }

    public var statistics: CacheStatistics { handle.statistics }

    /// Destroys the cache: collects magazines from every thread and returns all memory.
    /// Returns the number of buffers that were never freed (0 for a clean destroy); their
    /// memory is kept rather than reused, and the leak is reported instead of hidden.
    @discardableResult
    public func destroy() -> Int {
        guard !destroyed else { return 0 }
        destroyed = true
        let result = handle.destroy()
        if result.outstandingBuffers == 0 { callbacks?.release() }
        return result.outstandingBuffers
    }
}

/// kmem_alloc: at least `size` bytes (16-byte aligned above 8 bytes), or nil when out of memory.
@inline(__always) public func alloc(_ size: Int) -> UnsafeMutableRawPointer? {
    Allocator.malloc(size)
}

/// kmem_zalloc: `size` zeroed bytes, or nil.
public func zalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    Allocator.zalloc(size)
}

/// kmem_free: `size` must be the size given to `alloc`/`zalloc`/`realloc`.
@inline(__always) public func free(_ buffer: UnsafeMutableRawPointer, size: Int) {
    Allocator.free(buffer, size: size)
}

/// Resizes a buffer from `oldSize` to `newSize` bytes, in place when its size class allows;
/// the contents up to the smaller size are kept.  Returns nil (the old buffer untouched)
/// when out of memory.  A nil `buffer` allocates.
public func realloc(_ buffer: UnsafeMutableRawPointer?, oldSize: Int, newSize: Int) -> UnsafeMutableRawPointer? {
    Allocator.realloc(buffer, newSize)
}

/// A buffer of `size` bytes aligned to `alignment` (any power of two), or nil.
public func alloc(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
    Allocator.alignedAlloc(alignment, size)
}

/// Usable bytes of a buffer from this allocator (0 when it is not one).
public func usableSize(_ buffer: UnsafeRawPointer) -> Int {
    Allocator.usableSize(buffer)
}

/// Heap-wide statistics.
public enum Statistics {
    /// One entry per cache (object caches and size classes).
    public static func caches() -> [CacheStatistics] { HeapStatistics.allCaches() }

    /// Writes a ::kmastat-style table to a file descriptor.
    public static func print(to fileDescriptor: Int32) { StatisticsTable.print(to: fileDescriptor) }

    /// Large allocations (above the size classes) currently live.
    public static var largeAllocations: (count: Int, bytes: Int) {
        let l = HeapStatistics.largeAllocations()
        return (l.count, l.bytes)
    }
}

/// The debug layer (kmem_flags): configuration, heap verification, leak checks.
public enum Debug {
    /// Why `configure` failed.
    public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
        /// A bad word or value; the message names it and lists the valid words.
        case invalidOptions(String)
        /// The heap has already handed out memory: options must be set before that.
        case heapAlreadyInUse

        public var description: String {
            switch self {
            case .invalidOptions(let message): return message
            case .heapAlreadyInUse: return "slabguard: debug options must be set before the first allocation"
            }
        }
    }

    /// Turns on debug checks for `alloc`/`zalloc`/`free` (the words of SLABGUARD_DEBUG,
    /// e.g. `"default"`).  Must be called before the first allocation; overrides the
    /// environment.
    public static func configure(_ options: String) throws(ConfigurationError) {
        do { try DebugControl.configure(options) } catch {
            switch error {
            case .invalidOptions(let m): throw .invalidOptions(m)
            case .heapAlreadyInUse: throw .heapAlreadyInUse
            }
        }
    }

    /// Checks an option string; returns nil when valid, else the one-line error message.
    public static func validate(_ options: String) -> String? {
        do { _ = try DebugControl.flags(options); return nil } catch {
            if case .invalidOptions(let m) = error { return m }
            return "\(error)"
        }
    }

    /// Verifies every debug buffer now (::umem_verify); returns the number of problems
    /// reported (each also produces a report and, without `noabort`, an abort).
    @discardableResult
    public static func verifyHeap() -> Int { DebugControl.verifyHeap() }

    /// Reports unreachable unfreed buffers of debug caches now; returns how many.
    @discardableResult
    public static func findLeaks() -> Int { DebugControl.findLeaks() }

    /// Reports written so far.
    public static var reportCount: Int { Int(DebugControl.reportCount) }

    /// Where reports go (standard error by default).
    public static func setReportFileDescriptor(_ fd: Int32) { DebugControl.setReportFileDescriptor(fd) }
}

/// A tag's counters (design §9): buffers and bytes in use, the peak, allocations, frees.
public struct TagStatistics: Sendable, Equatable {
    public let buffersInUse: Int
    public let bytesInUse: Int
    public let peakBytes: Int
    public let allocations: UInt64
    public let frees: UInt64
}

/// A tag: accounting for one subsystem (OSMalloc's tags, libkext's `memck`).  Every buffer
/// allocated from it is charged to it; `check()` reports what is still outstanding (in
/// debug mode with each buffer's allocation stack).  The tag is non-copyable: it has one
/// owner, `destroy()` consumes it, so it cannot be used after it is destroyed; dropping
/// it destroys it.  Thread-safe.
public struct Tag: ~Copyable, @unchecked Sendable {
    private let handle: UInt

    /// A new tag named `name` (its first 63 bytes), or nil when 256 tags (with the libraries' own) are live or out of memory.
    public init?(name: String) {
        let h = name.withCString { TagAPI.create(name: $0) }
        guard h != 0 else { return nil }
        handle = h
    }

    /// At least `size` bytes charged to this tag, or nil when out of memory.
    public func allocate(_ size: Int) -> UnsafeMutableRawPointer? { TagAPI.allocate(handle, size, zero: false) }

    /// `size` zeroed bytes charged to this tag, or nil.
    public func zeroAllocate(_ size: Int) -> UnsafeMutableRawPointer? { TagAPI.allocate(handle, size, zero: true) }

    /// Frees a buffer of this tag; `size` must be the size it was allocated with.
    public func free(_ buffer: UnsafeMutableRawPointer, size: Int) { TagAPI.free(handle, buffer, size) }

    /// Reports `tag check: N buffers, M bytes outstanding in tag NAME` when buffers are
    /// outstanding, and returns N (0: clean).
    @discardableResult
    public func check() -> Int { TagAPI.check(handle) }

    /// The tag's counters now.
    public var statistics: TagStatistics {
        let s = TagAPI.statistics(handle) ?? (0, 0, 0, 0, 0)
        return TagStatistics(buffersInUse: s.buffers, bytesInUse: s.bytes, peakBytes: s.peak, allocations: s.allocations, frees: s.frees)
    }

    /// Checks, then retires the tag; returns the number of buffers still outstanding.
    @discardableResult
    public consuming func destroy() -> Int {
        let outstanding = TagAPI.destroy(handle)
        discard self
        return outstanding
    }

    deinit { _ = TagAPI.destroy(handle) }
}
