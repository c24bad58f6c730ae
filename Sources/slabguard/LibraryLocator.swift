// Finds libslabguard_rt.so relative to the running executable, with no setup:
// the executable's real path comes from /proc/self/exe (symlinks resolved by
// the kernel), and the library is either beside it (a SwiftPM build folder
// holds both) or in ../lib (an install prefix: PREFIX/bin/slabguard and
// PREFIX/lib/libslabguard_rt.so, as scripts/install lays them out).

import ArgumentParser
import Glibc

enum LibraryLocator {
    static let libraryName = "libslabguard_rt.so"

    struct NotFound: Error, CustomStringConvertible {
        var searched: [String]
        var reason: String?
        var description: String {
            if let reason { return "cannot find \(LibraryLocator.libraryName): \(reason)" }
            return "cannot find \(LibraryLocator.libraryName) (looked in \(searched.joined(separator: " and ")))"
        }
    }

    /// The library's path for a command that needs it: on failure, one line on stderr
    /// saying what was searched, and a failing exit.
    static func require() throws -> String {
        switch find() {
        case .success(let path): return path
        case .failure(let error):
            printError(error.description)
            throw ExitCode.failure
        }
    }

    /// The absolute, normalized path of the library, or what was searched.
    static func find() -> Result<String, NotFound> {
        guard let exe = executablePath() else {
            return .failure(NotFound(searched: [], reason: "cannot read /proc/self/exe"))
        }
        let dir = directory(of: exe)
        let candidates = [dir, dir + "/../lib"]
        for folder in candidates {
            if let path = realPath(folder + "/" + libraryName), isRegularFile(path) {
                return .success(path)
            }
        }
        return .failure(NotFound(searched: candidates.map { realPath($0) ?? $0 }))
    }

    /// The running executable's real path.
    static func executablePath() -> String? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let n = buffer.withUnsafeMutableBufferPointer { bytes in
            bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                readlink("/proc/self/exe", $0, bytes.count)
            }
        }
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}
