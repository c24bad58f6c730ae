// External tools the report rewriter uses, when present: addr2line (or
// llvm-symbolizer) for file:line, swift-demangle and c++filt for names.
// Each is run once per report per module (or per name batch) with its output
// captured through a pipe; a missing or failing tool just means the frame
// keeps what the library printed.

import Glibc

enum Tools {
    /// `name` on PATH, else the first existing fallback path.
    static func find(_ name: String, fallbacks: [String] = []) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") where !folder.isEmpty {
            let candidate = folder + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return fallbacks.first { access($0, X_OK) == 0 }
    }

    static let addr2line = find("addr2line")
    static let llvmSymbolizer = find("llvm-symbolizer", fallbacks: ["/opt/swift/usr/bin/llvm-symbolizer"])
    static let swiftDemangle = find("swift-demangle", fallbacks: ["/opt/swift/usr/bin/swift-demangle"])
    static let cxxfilt = find("c++filt")

    /// Runs `tool arguments`, returns its standard output (nil if it could not run or failed).
    static func capture(_ tool: String, _ arguments: [String]) -> String? {
        var fds: [Int32] = [0, 0]
        guard makePipe(&fds) else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let argv = ([tool] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        // The tools run without any preload (a symbolizer on a debug heap is only slower).
        var environment: [UnsafeMutablePointer<CChar>?] = []
        var entry = environ
        while let p = entry.pointee {
            if strncmp(p, "LD_PRELOAD=", 11) != 0 && strncmp(p, "SLABGUARD_DEBUG=", 16) != 0 { environment.append(p) }
            entry += 1
        }
        environment.append(nil)
        let error = posix_spawn(&pid, tool, &actions, nil, argv, environment)
        close(fds[1])
        guard error == 0 else { close(fds[0]); return nil }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n > 0 { output += chunk[..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { return nil }
        return String(decoding: output, as: UTF8.self)
    }

    /// For each offset (already minus one) in `module`: its source frames, innermost
    /// inlined callee first; offsets that resolve to no file:line give the function's
    /// name alone (an empty location), when the symbol table has one.
    static func sourceLines(module: String, offsets: [UInt]) -> [UInt: [SourceFrame]] {
        guard !offsets.isEmpty, access(module, R_OK) == 0 else { return [:] }
        let addresses = offsets.map { "0x" + String($0, radix: 16) }
        var result: [UInt: [SourceFrame]] = [:]
        if let tool = addr2line, let text = capture(tool, ["-a", "-f", "-C", "-i", "-e", module] + addresses) {
            // Groups: an "0x..." address line, then function / file:line pairs.
            var current: UInt?
            var pending: String?
            var nameOnly: [UInt: String] = [:]   // an address with a name but no file:line in any of its pairs
            for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
                if pending == nil, line.hasPrefix("0x"), let value = UInt(line.dropFirst(2), radix: 16) {
                    current = value
                    continue
                }
                if let function = pending {
                    pending = nil
                    if let current, let location = usableLocation(line) {
                        result[current, default: []].append(SourceFrame(function: function, location: location))
                    } else if let current, function != "??", nameOnly[current] == nil {
                        nameOnly[current] = function
                    }
                } else if current != nil {
                    pending = line
                }
            }
            // No debug info at all for an address: the symbol table's name alone (location empty).
            for (address, function) in nameOnly where result[address] == nil {
                result[address] = [SourceFrame(function: function, location: "")]
            }
            return result
        }
        if let tool = llvmSymbolizer,
           let text = capture(tool, ["--obj=" + module, "--functions=linkage", "--inlining", "--no-demangle"] + addresses) {
            // Blocks separated by blank lines, one per address, in order: function / file:line:col pairs.
            let blocks = text.split(separator: "\n", omittingEmptySubsequences: false)
                .split(separator: "", omittingEmptySubsequences: true)
            for (offset, block) in zip(offsets, blocks) {
                let lines = Array(block)
                var k = 0
                while k + 1 < lines.count {
                    var location = String(lines[k + 1])
                    // file:line:column → file:line
                    if let last = location.lastIndex(of: ":"), location[location.index(after: last)...].allSatisfy(\.isNumber),
                       location[..<last].contains(":") {
                        location = String(location[..<last])
                    }
                    if let usable = usableLocation(location) {
                        result[offset, default: []].append(SourceFrame(function: String(lines[k]), location: usable))
                    }
                    k += 2
                }
            }
        }
        return result
    }

    /// "file:line" without a discriminator, or nil for "??:0", "??:?", "file:0".
    static func usableLocation(_ raw: String) -> String? {
        var text = raw
        if let space = text.firstIndex(of: " ") { text = String(text[..<space]) }  // " (discriminator N)"
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let file = text[..<colon], line = text[text.index(after: colon)...]
        guard !file.isEmpty, !file.hasPrefix("??"), !file.contains("<compiler-generated>"), let number = Int(line), number > 0 else { return nil }
        return text
    }

    /// Demangled forms of the Swift and C++ names among `names` (others absent).
    static func demangle(_ names: [String]) -> [String: String] {
        var result: [String: String] = [:]
        let unique = Array(Set(names))
        let swift = unique.filter { $0.hasPrefix("$s") || $0.hasPrefix("_$s") || $0.hasPrefix("$S") || $0.hasPrefix("$e") }
        let cxx = unique.filter { $0.hasPrefix("_Z") }
        if !swift.isEmpty, let tool = swiftDemangle,
           let text = capture(tool, ["--compact", "--simplified"] + swift) {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            for (name, line) in zip(swift, lines) where !line.isEmpty { result[name] = String(line) }
        }
        if !cxx.isEmpty, let tool = cxxfilt, let text = capture(tool, cxx) {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            for (name, line) in zip(cxx, lines) where !line.isEmpty { result[name] = String(line) }
        }
        return result
    }
}

/// pipe() with both ends close-on-exec (pipe2 is not visible to Swift here).
func makePipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    return true
}
