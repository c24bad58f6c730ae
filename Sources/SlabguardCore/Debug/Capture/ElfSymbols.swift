// ElfSymbols: in-process symbolization of code addresses from ELF symbol tables.
//
// For the module containing an address (ModuleMap record), the module's file is opened and
// mmapped read-only once (open/fstat/mmap, fd closed right away) and a sorted index of its
// function symbols is built in anonymous mmapped memory: `.symtab` when the file has one
// (so file-local / static functions resolve too), else the separate debug file
// /usr/lib/debug/.build-id/xx/yyyy.debug when it exists, else `.dynsym`. The file mapping
// and the index are cached per module record for the life of the process (records are
// never reused, so an unloaded module keeps resolving). A file whose GNU build id differs
// from the loaded module's (replaced on disk) is not trusted. Files that cannot be read
// ([vdso], deleted files) are remembered as unavailable.
//
// Lookup: binary search for the last symbol starting at or below the file address
// (runtime address - load bias); among aliases at that address a sized symbol containing
// the address wins (GLOBAL over WEAK over LOCAL), a size-0 symbol is taken as "nearest
// preceding" within its own section. Nothing allocates through malloc or the Swift runtime.
//
// Locking: one pthread mutex (in mmapped memory) serializes index building and lookups. The
// module record is fetched from ModuleMap (its own mutex) before this lock is taken, so the
// two locks are never nested.

import CSlabguardShim
import Glibc

struct ElfSymbolEntry {
    var value: UInt64
    var size: UInt64       // st_size; for size-0 symbols the distance to the end of their section
    var name: UInt32
    var rank: UInt32   // lower is preferred: binding (GLOBAL, WEAK, LOCAL) * 2 + (size == 0)
}

/// Per-module cached symbol index.
struct ElfSymbolTable {
    var state = 0          // 0 = not tried, 1 = ready, 2 = unavailable
    var entries: UnsafeMutablePointer<ElfSymbolEntry>? = nil
    var count = 0
    var strtab: UnsafePointer<CChar>? = nil
    var strtabSize = 0
    var fromSymtab = false
}

struct ElfSymbolsState {
    var mutex = pthread_mutex_t()
    var tables: UnsafeMutablePointer<ElfSymbolTable>
    var pathBuffer: UnsafeMutablePointer<CChar>
}

/// A read-only mapping of an ELF file and the section facts we need from it.
private struct MappedElf {
    var base: UInt = 0
    var size = 0
    var symtab = -1         // section index of SHT_SYMTAB, -1 if none
    var dynsym = -1         // section index of SHT_DYNSYM, -1 if none
    var shoff: UInt = 0
    var shnum = 0
    var buildId = ModuleRecord()   // only buildId / buildIdLength used

    func section(_ i: Int) -> UInt { base + shoff + UInt(i * 64) }
    func sectionType(_ i: Int) -> UInt32 { StackDebugSupport.load(section(i) + 4, as: UInt32.self) }
    func sectionOffset(_ i: Int) -> UInt { StackDebugSupport.load(section(i) + 24, as: UInt.self) }
    func sectionSize(_ i: Int) -> UInt { StackDebugSupport.load(section(i) + 32, as: UInt.self) }
    func sectionLink(_ i: Int) -> Int { Int(StackDebugSupport.load(section(i) + 40, as: UInt32.self)) }
    func sectionEntSize(_ i: Int) -> UInt { StackDebugSupport.load(section(i) + 56, as: UInt.self) }
    /// The section's bytes lie inside the file (and it is not SHT_NOBITS).
    func sectionInFile(_ i: Int) -> Bool {
        let off = sectionOffset(i), sz = sectionSize(i)
        return sectionType(i) != 8 && off <= UInt(size) && sz <= UInt(size) - off
    }
}


private func elfSymbolsInitialize() {
    let tableBytes = ModuleMap.capacity * MemoryLayout<ElfSymbolTable>.stride
    guard let mem = StackDebugSupport.mapMemory(4096 + tableBytes + 4096) else { return }
    let tables = (mem + 4096).bindMemory(to: ElfSymbolTable.self, capacity: ModuleMap.capacity)
    tables.initialize(repeating: ElfSymbolTable(), count: ModuleMap.capacity)
    let path = (mem + 4096 + tableBytes).bindMemory(to: CChar.self, capacity: 4096)
    let st = mem.bindMemory(to: ElfSymbolsState.self, capacity: 1)
    st.initialize(to: ElfSymbolsState(tables: tables, pathBuffer: path))
    sg_mutex_reinit(&st.pointee.mutex)
    StackLayerState.shared.pointee.elfSymbols = st
}

enum ElfSymbols {
    @inline(__always)
    static func state() -> UnsafeMutablePointer<ElfSymbolsState>? {
        pthread_once(&StackLayerState.shared.pointee.elfSymbolsOnce) { elfSymbolsInitialize() }
        return StackLayerState.shared.pointee.elfSymbols
    }

    /// Resolves `address` to the enclosing function symbol: copies its (mangled) name,
    /// NUL-terminated and truncated to `capacity`, into `name`, sets `offset` to
    /// address - symbol start; returns false when unknown. (To name the call site of a
    /// return address, pass return address - 1.)
    static func symbolize(_ address: UInt, name: UnsafeMutablePointer<CChar>, capacity: Int,
                          offset: UnsafeMutablePointer<UInt>) -> Bool {
        guard capacity > 0 else { return false }
        name[0] = 0
        return withTable(containing: address) { table, bias in
            symbolize(UInt64(address &- bias), in: table, name: name, capacity: capacity, offset: offset)
        } ?? false
    }

    /// Builds the index of the module holding `address` now (before a dlclose: it is kept
    /// after the file is unmapped); false when the module or its symbols are unknown.
    @discardableResult
    static func prepare(moduleAt address: UInt) -> Bool {
        withTable(containing: address) { _, _ in true } ?? false
    }

    /// Calls `body` with the ready symbol table of the module holding `address` and its
    /// load bias, under the lock, indexing it first if need be; nil when unknown.
    private static func withTable<R>(containing address: UInt,
                                     _ body: (UnsafeMutablePointer<ElfSymbolTable>, UInt) -> R) -> R? {
        guard let st = state() else { return nil }
        var rec = ModuleRecord()
        let index = ModuleMap.lookupRecord(address, into: &rec)
        guard index >= 0 else { return nil }
        sg_mutex_lock(&st.pointee.mutex)
        defer { sg_mutex_unlock(&st.pointee.mutex) }
        let table = st.pointee.tables + index
        if table.pointee.state == 0 {
            table.pointee.state = load(table, &rec, st.pointee.pathBuffer) ? 1 : 2
        }
        guard table.pointee.state == 1 else { return nil }
        return body(table, rec.bias)
    }

    private static func symbolize(_ fileAddress: UInt64, in table: UnsafeMutablePointer<ElfSymbolTable>,
                                  name: UnsafeMutablePointer<CChar>, capacity: Int, offset: UnsafeMutablePointer<UInt>) -> Bool {
        guard let entries = table.pointee.entries, let strtab = table.pointee.strtab else { return false }
        guard let e = find(entries, table.pointee.count, fileAddress) else { return false }
        let nameOffset = Int(entries[e].name)
        let limit = table.pointee.strtabSize
        var i = 0
        while i < capacity - 1 && nameOffset + i < limit && strtab[nameOffset + i] != 0 {
            name[i] = strtab[nameOffset + i]
            i += 1
        }
        name[i] = 0
        offset.pointee = UInt(fileAddress &- entries[e].value)
        return true
    }

    /// Calls `body` with each function symbol (file address, size, name) of the module that
    /// contains `address`, building its index now if need be; false when the module or its
    /// symbols are unknown.  (The flight recorder keeps them when the module is unloaded.)
    static func forEachFunction(inModuleAt address: UInt, _ body: (UInt64, UInt64, UnsafePointer<CChar>) -> Bool) -> Bool {
        withTable(containing: address) { table, _ in
            guard let entries = table.pointee.entries, let strtab = table.pointee.strtab else { return false }
            for i in 0..<table.pointee.count {
                let e = entries[i]
                guard Int(e.name) < table.pointee.strtabSize else { continue }
                if !body(e.value, e.size, strtab + Int(e.name)) { break }
            }
            return true
        } ?? false
    }

    /// Index of the best symbol for `address` (file virtual address), or nil.
    private static func find(_ entries: UnsafeMutablePointer<ElfSymbolEntry>, _ count: Int, _ address: UInt64) -> Int? {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if entries[mid].value <= address { lo = mid + 1 } else { hi = mid }
        }
        let last = lo - 1
        guard last >= 0 else { return nil }
        var first = last
        while first > 0 && entries[first - 1].value == entries[last].value { first -= 1 }
        // Aliases are sorted by rank: sized GLOBAL first ... size-0 LOCAL last. (Size-0
        // symbols were given the extent up to the end of their section when indexed.)
        for j in first...last where address - entries[j].value < entries[j].size {
            return j
        }
        // A symbol nested inside a larger one (rare): look back a little for an enclosing one.
        var j = first - 1
        while j >= 0 && j >= first - 32 {
            if entries[j].rank & 1 == 0 && address - entries[j].value < entries[j].size { return j }
            j -= 1
        }
        return nil
    }

    /// Maps the module's file (or its debug file) and builds the sorted index.
    private static func load(_ table: UnsafeMutablePointer<ElfSymbolTable>, _ rec: UnsafeMutablePointer<ModuleRecord>,
                             _ pathBuffer: UnsafeMutablePointer<CChar>) -> Bool {
        guard let path = ModuleMap.path(of: rec), path[0] != 0 else { return false }
        var main = MappedElf()
        var mainOK = mapFile(path, &main)
        if mainOK && !sameBuildId(&main, rec) {
            unmap(&main)
            mainOK = false
        }
        if mainOK && main.symtab >= 0 && buildIndex(&main, main.symtab, table) {
            table.pointee.fromSymtab = true
            return true
        }
        if rec.pointee.buildIdLength >= 2 {
            var debug = MappedElf()
            debugFilePath(rec, pathBuffer)
            if mapFile(pathBuffer, &debug) {
                if sameBuildId(&debug, rec) && debug.symtab >= 0 && buildIndex(&debug, debug.symtab, table) {
                    table.pointee.fromSymtab = true
                    if mainOK { unmap(&main) }
                    return true
                }
                unmap(&debug)
            }
        }
        if mainOK && main.dynsym >= 0 && buildIndex(&main, main.dynsym, table) { return true }
        if mainOK { unmap(&main) }
        return false
    }

    private static func sameBuildId(_ elf: UnsafeMutablePointer<MappedElf>, _ rec: UnsafeMutablePointer<ModuleRecord>) -> Bool {
        let n = rec.pointee.buildIdLength
        if n == 0 { return true }   // nothing to compare against
        guard elf.pointee.buildId.buildIdLength == n else { return false }
        return withUnsafeBytes(of: &elf.pointee.buildId.buildId) { a in
            withUnsafeBytes(of: &rec.pointee.buildId) { b in memcmp(a.baseAddress!, b.baseAddress!, n) == 0 }
        }
    }

    /// "/usr/lib/debug/.build-id/ab/cdef....debug"
    private static func debugFilePath(_ rec: UnsafeMutablePointer<ModuleRecord>, _ out: UnsafeMutablePointer<CChar>) {
        let prefix = StackDebugSupport.cString("/usr/lib/debug/.build-id/")
        var n = strlen(prefix)
        memcpy(out, prefix, n)
        let count = rec.pointee.buildIdLength
        withUnsafeBytes(of: &rec.pointee.buildId) { b in
            for k in 0..<count {
                if k == 1 { out[n] = 0x2F; n += 1 }
                let hi = UInt8(b[k] >> 4), lo = UInt8(b[k] & 15)
                out[n] = CChar(hi < 10 ? 0x30 + hi : 0x57 + hi)
                out[n + 1] = CChar(lo < 10 ? 0x30 + lo : 0x57 + lo)
                n += 2
            }
        }
        let suffix = StackDebugSupport.cString(".debug")
        memcpy(out + n, suffix, 7)   // includes the NUL
    }

    private static func unmap(_ elf: UnsafeMutablePointer<MappedElf>) {
        if elf.pointee.base != 0 {
            Platform.unmap(UnsafeMutableRawPointer(bitPattern: elf.pointee.base)!, elf.pointee.size)
        }
        elf.pointee.base = 0
    }

    /// open/fstat/mmap a regular ELF64 little-endian file and locate its symbol tables and build id.
    private static func mapFile(_ path: UnsafePointer<CChar>, _ elf: UnsafeMutablePointer<MappedElf>) -> Bool {
        guard let (p, size) = Platform.mapFile(path, minimum: 64) else { return false }
        elf.pointee.base = UInt(bitPattern: p)
        elf.pointee.size = size
        let b = elf.pointee.base
        let ok = StackDebugSupport.load(b, as: UInt32.self) == 0x464C_457F      // "\u{7f}ELF"
            && StackDebugSupport.load(b + 4, as: UInt8.self) == 2                 // ELFCLASS64
            && StackDebugSupport.load(b + 5, as: UInt8.self) == 1                 // little endian
            && StackDebugSupport.load(b + 0x3A, as: UInt16.self) == 64            // e_shentsize
        var shoff = StackDebugSupport.load(b + 0x28, as: UInt.self)
        var shnum = UInt(StackDebugSupport.load(b + 0x3C, as: UInt16.self))
        if ok && shoff != 0 && shnum == 0 && shoff <= UInt(size) && UInt(size) - shoff >= 64 {
            shnum = StackDebugSupport.load(b + shoff + 32, as: UInt.self)   // extended numbering
        }
        if !ok || shoff == 0 || shoff > UInt(size) || shnum > (UInt(size) - shoff) / 64 {
            shoff = 0
            shnum = 0
        }
        elf.pointee.shoff = shoff
        elf.pointee.shnum = Int(shnum)
        guard ok, shnum > 0 else {
            unmap(elf)
            return false
        }
        for i in 0..<Int(shnum) where elf.pointee.sectionInFile(i) {
            switch elf.pointee.sectionType(i) {
            case 2: if elf.pointee.symtab < 0 { elf.pointee.symtab = i }     // SHT_SYMTAB
            case 11: if elf.pointee.dynsym < 0 { elf.pointee.dynsym = i }    // SHT_DYNSYM
            case 7:                                                           // SHT_NOTE
                if elf.pointee.buildId.buildIdLength == 0 {
                    _ = ModuleMap.readBuildId(from: b + elf.pointee.sectionOffset(i),
                                              size: elf.pointee.sectionSize(i), into: &elf.pointee.buildId)
                }
            default: break
            }
        }
        return true
    }

    /// Builds the sorted function-symbol index of section `sec` into `table`.
    private static func buildIndex(_ elf: UnsafeMutablePointer<MappedElf>, _ sec: Int,
                                   _ table: UnsafeMutablePointer<ElfSymbolTable>) -> Bool {
        let e = elf.pointee
        let link = e.sectionLink(sec)
        guard e.sectionEntSize(sec) == 24, link > 0, link < e.shnum, e.sectionType(link) == 3,
              e.sectionInFile(link) else { return false }
        let symbols = e.base + e.sectionOffset(sec)
        let total = Int(e.sectionSize(sec) / 24)
        let strSize = Int(e.sectionSize(link))
        var count = 0
        for i in 0..<total where isFunction(symbols + UInt(i * 24), strSize) { count += 1 }
        guard count > 0,
              let mem = StackDebugSupport.mapMemory(count * MemoryLayout<ElfSymbolEntry>.stride) else { return false }
        let entries = mem.bindMemory(to: ElfSymbolEntry.self, capacity: count)
        var n = 0
        for i in 0..<total {
            let s = symbols + UInt(i * 24)
            guard isFunction(s, strSize) else { continue }
            let info = StackDebugSupport.load(s + 4, as: UInt8.self)
            let value = StackDebugSupport.load(s + 8, as: UInt64.self)
            var size = StackDebugSupport.load(s + 16, as: UInt64.self)
            let sizeUnknown = size == 0
            if sizeUnknown {
                // "Nearest preceding" symbol, but only up to the end of its own section.
                size = 1
                let shndx = Int(StackDebugSupport.load(s + 6, as: UInt16.self))
                if shndx < e.shnum {
                    let sectionStart = UInt64(StackDebugSupport.load(e.section(shndx) + 16, as: UInt.self))
                    let sectionEnd = sectionStart &+ UInt64(e.sectionSize(shndx))
                    if value >= sectionStart && value < sectionEnd { size = sectionEnd - value }
                }
            }
            let binding: UInt32
            switch info >> 4 {
            case 1: binding = 0   // STB_GLOBAL
            case 2: binding = 1   // STB_WEAK
            case 0: binding = 2   // STB_LOCAL
            default: binding = 3
            }
            (entries + n).initialize(to: ElfSymbolEntry(
                value: value, size: size,
                name: StackDebugSupport.load(s, as: UInt32.self), rank: binding * 2 + (sizeUnknown ? 1 : 0)))
            n += 1
        }
        heapSort(entries, n)
        table.pointee.entries = entries
        table.pointee.count = n
        table.pointee.strtab = UnsafePointer(bitPattern: e.base + e.sectionOffset(link))
        table.pointee.strtabSize = strSize
        return true
    }

    /// Defined STT_FUNC / STT_GNU_IFUNC symbol with a usable name.
    @inline(__always)
    private static func isFunction(_ s: UInt, _ strSize: Int) -> Bool {
        let type = StackDebugSupport.load(s + 4, as: UInt8.self) & 15
        return (type == 2 || type == 10)
            && StackDebugSupport.load(s + 6, as: UInt16.self) != 0            // st_shndx != SHN_UNDEF
            && StackDebugSupport.load(s + 8, as: UInt64.self) != 0
            && Int(StackDebugSupport.load(s, as: UInt32.self)) < strSize
    }

    @inline(__always)
    private static func less(_ a: UnsafeMutablePointer<ElfSymbolEntry>, _ b: UnsafeMutablePointer<ElfSymbolEntry>) -> Bool {
        if a.pointee.value != b.pointee.value { return a.pointee.value < b.pointee.value }
        if a.pointee.rank != b.pointee.rank { return a.pointee.rank < b.pointee.rank }
        return a.pointee.name < b.pointee.name
    }

    /// In-place heap sort (no allocation, O(n log n) worst case).
    private static func heapSort(_ a: UnsafeMutablePointer<ElfSymbolEntry>, _ n: Int) {
        guard n > 1 else { return }
        var start = n / 2
        while start > 0 {
            start -= 1
            siftDown(a, start, n)
        }
        var end = n - 1
        while end > 0 {
            let t = a[0]; a[0] = a[end]; a[end] = t
            siftDown(a, 0, end)
            end -= 1
        }
    }

    private static func siftDown(_ a: UnsafeMutablePointer<ElfSymbolEntry>, _ start: Int, _ end: Int) {
        var root = start
        while true {
            var child = 2 * root + 1
            if child >= end { return }
            if child + 1 < end && less(a + child, a + child + 1) { child += 1 }
            if !less(a + root, a + child) { return }
            let t = a[root]; a[root] = a[child]; a[child] = t
            root = child
        }
    }
}

extension ElfSymbols {
    /// The mutex, once the state exists (fork handlers take it without creating anything).
    static var mutexIfCreated: UnsafeMutablePointer<pthread_mutex_t>? {
        guard let st = StackLayerState.shared.pointee.elfSymbols else { return nil }
        return st.field(\.mutex)
    }
}
