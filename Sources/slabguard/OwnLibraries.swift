// Which loaded libraries are there only for slabguard: libslabguard_rt.so carries the
// Swift runtime, which needs the C++ runtime (libstdc++, libgcc_s), so a C program run
// under slabguard has libstdc++ loaded, and libstdc++'s load-time buffer (its 72 KiB
// exception pool) in its heap — a buffer the same program under glibc or Valgrind does
// not have.  Such a library's buffers are slabguard's own, and the heap's top sites
// leave them out; a program that needs the library itself (a C++ program, or one of
// its libraries: DT_NEEDED) keeps them, as Valgrind would show them.

import Glibc

enum OwnLibraries {
    /// Of `modules` (the paths of every loaded module), those that only slabguard needs:
    /// libslabguard_rt.so and each library it names in DT_NEEDED that no other module names.
    /// Paths are compared resolved (`canonical`): the module map names a library by its
    /// soname link, /proc/PID/maps by the file.
    static func paths(among modules: [String]) -> Set<String> {
        // `top` asks every refresh, for the same modules: their ELF files are read once.
        let key = modules.sorted()
        if let last = lastAnswer, last.modules == key { return last.own }
        let own = computePaths(among: key)
        lastAnswer = (key, own)
        return own
    }

    nonisolated(unsafe) private static var lastAnswer: (modules: [String], own: Set<String>)? = nil

    private static func computePaths(among modules: [String]) -> Set<String> {
        let files = modules.map(canonical)
        guard let runtime = files.first(where: { LogFile.baseName($0).hasPrefix("libslabguard_rt") }) else { return [] }
        var own: Set<String> = [runtime]
        let neededByRuntime = needed(by: runtime)
        // A DT_NEEDED name is a soname: the file is that name or that name plus a version.
        func isNamed(_ file: String, in names: [String]) -> Bool {
            let base = LogFile.baseName(file)
            return names.contains { base == $0 || base.hasPrefix($0 + ".") }
        }
        var neededByOthers: [String] = []
        for file in files where file != runtime && !isNamed(file, in: neededByRuntime) {
            neededByOthers += needed(by: file)
        }
        for file in files where isNamed(file, in: neededByRuntime) && !isNamed(file, in: neededByOthers) {
            let base = LogFile.baseName(file)
            if !base.hasPrefix("libc.so") && !base.hasPrefix("libm.so") && !LogFile.isLoader(base) { own.insert(file) }
        }
        return own
    }

    /// Whether an allocation stack, given as its frames' module paths (innermost first;
    /// "" where none), is slabguard's own: every frame in the dynamic loader or in a
    /// library only slabguard needs (a load-time buffer of libstdc++ in a C program), or,
    /// past the C library's frames (strdup and the like), the caller is one of `own`.
    static func isOwnStack(modules: [String], own: Set<String>) -> Bool {
        isOwnStack(modules: modules) { !$0.isEmpty && own.contains(canonical($0)) }
    }

    /// The same, with `isOwn` telling whether a module path is one only slabguard needs.
    static func isOwnStack(modules: [String], isOwn: (String) -> Bool) -> Bool {
        guard !modules.isEmpty else { return false }
        let names = modules.map(LogFile.baseName)
        let owned = modules.map(isOwn)
        if zip(names, owned).allSatisfy({ LogFile.isLoader($0.0) || $0.1 }) { return true }
        guard let caller = names.firstIndex(where: { !($0.hasPrefix("libc.so") || $0.hasPrefix("libc-")) }) else { return false }
        return owned[caller] || names[caller].hasPrefix("libslabguard_rt")
    }

    /// The path with every link resolved (itself when it cannot be).
    static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The DT_NEEDED names of an ELF64 file (empty when it cannot be read).
    static func needed(by path: String) -> [String] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        func read<T>(_ type: T.Type, at offset: Int) -> T? {
            let size = MemoryLayout<T>.size
            var bytes = [UInt8](repeating: 0, count: size)
            guard pread(fd, &bytes, size, off_t(offset)) == size else { return nil }
            return bytes.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
        }
        guard let magic = read(UInt32.self, at: 0), magic == 0x464C_457F, read(UInt8.self, at: 4) == 2,
              let phoff = read(UInt64.self, at: 32), let phentsize = read(UInt16.self, at: 54), let phnum = read(UInt16.self, at: 56)
        else { return [] }
        var loads: [(vaddr: UInt64, offset: UInt64, size: UInt64)] = []
        var dynamic: (offset: UInt64, size: UInt64)? = nil
        for i in 0..<Int(phnum) {
            let at = Int(phoff) + i * Int(phentsize)
            guard let type = read(UInt32.self, at: at), let offset = read(UInt64.self, at: at + 8),
                  let vaddr = read(UInt64.self, at: at + 16), let fileSize = read(UInt64.self, at: at + 32) else { return [] }
            if type == 1 { loads.append((vaddr, offset, fileSize)) }
            if type == 2 { dynamic = (offset, fileSize) }
        }
        guard let dynamic, dynamic.size < 1 << 20 else { return [] }
        var names: [UInt64] = []
        var strtab: UInt64 = 0
        for i in 0..<Int(dynamic.size / 16) {
            guard let tag = read(Int64.self, at: Int(dynamic.offset) + i * 16), let value = read(UInt64.self, at: Int(dynamic.offset) + i * 16 + 8) else { break }
            if tag == 0 { break }
            if tag == 1 { names.append(value) }     // DT_NEEDED
            if tag == 5 { strtab = value }          // DT_STRTAB (an address)
        }
        guard let segment = loads.first(where: { $0.vaddr <= strtab && strtab < $0.vaddr + $0.size }) else { return [] }
        let strtabOffset = Int(strtab - segment.vaddr + segment.offset)
        return names.compactMap { name -> String? in
            var bytes = [UInt8](repeating: 0, count: 256)
            let n = pread(fd, &bytes, bytes.count, off_t(strtabOffset + Int(name)))
            guard n > 0, let end = bytes[0..<n].firstIndex(of: 0) else { return nil }
            return String(decoding: bytes[0..<end], as: UTF8.self)
        }
    }
}
