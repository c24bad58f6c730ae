// What `slabguard run` can tell about the program before it starts: whether the
// preloaded library can reach it at all.
//
// - A statically linked ELF program (no PT_INTERP program header: the kernel starts
//   it with no dynamic loader, so nothing reads LD_PRELOAD) is not checked.
// - A set-user-ID or set-group-ID program whose bit changes the ids it runs with (the
//   file's owner is not the caller's real uid, its group not the real gid) runs in
//   secure execution (AT_SECURE): the loader then ignores LD_PRELOAD entries with a
//   slash, so libslabguard_rt.so is not loaded.
// Either is one line; the program then runs as asked (run is also how one runs a
// pipeline's other programs).  A script (#!) or any file that is not ELF is not
// looked into: its interpreter is what runs.

import Glibc

enum ExecutableCheck {
    /// The file posix_spawnp would run for `name`: a name with a slash as it is, else
    /// the first executable regular file of that name on PATH (default /bin:/usr/bin).
    static func resolve(_ name: String, path: String?) -> String? {
        if name.contains("/") { return name }
        for folder in (path ?? "/bin:/usr/bin").split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (folder.isEmpty ? "." : String(folder)) + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// One line per reason slabguard cannot check `executable` (shown as `name`).
    static func problems(executable: String, named name: String) -> [String] {
        var info = stat()
        guard stat(executable, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return [] }
        var lines: [String] = []
        if isStaticallyLinked(executable) {
            lines.append("\(name) is statically linked: slabguard cannot check it (LD_PRELOAD does not reach it)")
        }
        // The kernel's rule for secure execution by the set-ID bits: the bit makes the
        // effective id (the file's owner or group) differ from the real one.  (Without
        // execute permission for the group, S_ISGID means mandatory locking, not set-group-ID.)
        let setUID = info.st_mode & S_ISUID != 0 && info.st_uid != getuid()
        let setGID = info.st_mode & S_ISGID != 0 && info.st_mode & S_IXGRP != 0 && info.st_gid != getgid()
        if setUID || setGID {
            let what = setUID ? "set-user-ID (owner \(userName(info.st_uid)))" : "set-group-ID (group \(groupName(info.st_gid)))"
            lines.append("\(name) is \(what): it runs in secure execution, where the loader ignores LD_PRELOAD, so slabguard cannot check it")
        }
        return lines
    }

    /// Whether `path` is an ELF executable with no PT_INTERP (no dynamic loader).  The
    /// dynamic loader itself (run as `ld.so PROGRAM`) has none either, yet reads
    /// LD_PRELOAD: it is not called static.
    static func isStaticallyLinked(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        func read(_ offset: Int, _ count: Int) -> [UInt8]? {
            guard offset >= 0 else { return nil }
            var bytes = [UInt8](repeating: 0, count: count)
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return n == count ? bytes : nil
        }
        guard let header = read(0, 64), header[0] == 0x7F, header[1] == 0x45, header[2] == 0x4C, header[3] == 0x46,
              header[5] == 1 else { return false }   // ELF, little-endian
        func u(_ b: [UInt8], _ at: Int, _ width: Int) -> Int {
            var v = 0
            for i in 0..<width { v |= Int(b[at + i]) << (8 * i) }
            return v
        }
        let is64 = header[4] == 2
        guard is64 || header[4] == 1 else { return false }
        let type = u(header, 16, 2)
        guard type == 2 || type == 3 else { return false }   // ET_EXEC or ET_DYN
        let phoff = is64 ? u(header, 32, 8) : u(header, 28, 4)
        let phentsize = is64 ? u(header, 54, 2) : u(header, 42, 2)
        let phnum = is64 ? u(header, 56, 2) : u(header, 44, 2)
        guard phnum > 0, phentsize >= 4, phoff > 0, phoff < 1 << 40 else { return false }
        var loads = 0
        for i in 0..<phnum {
            guard let ph = read(phoff + i * phentsize, 4) else { return false }
            switch u(ph, 0, 4) {
            case 3: return false          // PT_INTERP: started by the dynamic loader
            case 1: loads += 1            // PT_LOAD
            default: break
            }
        }
        let base = path.split(separator: "/").last.map(String.init) ?? path
        if base.hasPrefix("ld-linux") || base.hasPrefix("ld.so") || base.hasPrefix("ld64.so") || base.hasPrefix("ld-musl") { return false }
        return loads > 0
    }

    static func userName(_ uid: uid_t) -> String {
        guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "uid \(uid)" }
        return String(cString: name)
    }

    static func groupName(_ gid: gid_t) -> String {
        guard let entry = getgrgid(gid), let name = entry.pointee.gr_name else { return "gid \(gid)" }
        return String(cString: name)
    }
}
