// Files the CLI hands to the library (--log): checked here, before the program
// starts, under the same rules the library applies at start-up (design §11):
// never through a symbolic link, created 0600, an existing file replaced only
// when it is a regular file of this user that can hold data.  A path that fails
// is one line naming the flag as the user wrote it, and exit status 2.

import Glibc

enum OutputFiles {
    /// Why `path` cannot be the library's output file, or nil when it can.
    static func problem(_ path: String) -> String? {
        let fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o600)
        guard fd >= 0 else {
            return errno == ELOOP ? "a symbolic link (slabguard does not follow links)" : String(cString: strerror(errno))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return String(cString: strerror(errno)) }
        if info.st_mode & S_IFMT != S_IFREG { return "not a regular file" }
        if info.st_uid != geteuid() { return "the file belongs to another user (slabguard replaces only its user's files)" }
        let probe: off_t = 4096
        if ftruncate(fd, probe) != 0 { return String(cString: strerror(errno)) }
        if fstat(fd, &info) != 0 || info.st_size != probe || ftruncate(fd, 0) != 0 { return "not a file that can hold data" }
        return nil
    }

    /// Exits with status 2 and one line when `path`, given with `flag`, cannot be written.
    static func require(_ path: String, flag: String) {
        guard let problem = problem(path) else { return }
        printError("\(flag) \(path): cannot write it: \(problem)")
        exit(2)
    }
}
