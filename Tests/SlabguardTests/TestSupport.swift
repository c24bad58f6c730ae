// Shared test support: `ReleaseBuild` (the release library and CLI the integration tests
// run: from SLABGUARD_BIN_DIR, which scripts/test sets, or built here in .build-tests) and
// `Subprocess` (running a program with a time limit, its output, a clean environment,
// temporary folders).  Every suite that runs programs uses these.

import Foundation
import Testing


enum ReleaseBuild {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// The package root, from this file's path (Tests/SlabguardTests/TestSupport.swift).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let integrationSources: URL = packageRoot.appendingPathComponent("Tests/Integration")

    /// The release bin folder, located or built once per test run.
    private static let located: Result<String, Failure> = locate()

    /// The release bin folder holding libslabguard_rt.so and slabguard; throws (so the
    /// test fails with the reason) when it cannot be found or built.
    static func binDirectory() throws -> String { try located.get() }

    static func library() throws -> String { try binDirectory() + "/libslabguard_rt.so" }
    static func cli() throws -> String { try binDirectory() + "/slabguard" }

    private static func locate() -> Result<String, Failure> {
        var directory = ProcessInfo.processInfo.environment["SLABGUARD_BIN_DIR"] ?? ""
        if directory.isEmpty {
            switch build() {
            case .success(let built): directory = built
            case .failure(let failure): return .failure(failure)
            }
        }
        for product in ["libslabguard_rt.so", "slabguard"] {
            if !FileManager.default.isExecutableFile(atPath: directory + "/" + product)
                && !FileManager.default.fileExists(atPath: directory + "/" + product) {
                return .failure(Failure(description: "\(product) is missing from the release folder \(directory)"))
            }
        }
        return .success(directory)
    }

    /// `swift build -c release` in a scratch folder of its own (the one `swift test` uses
    /// is locked while the tests run).
    private static func build() -> Result<String, Failure> {
        let scratch = packageRoot.appendingPathComponent(".build-tests").path
        let arguments = ["build", "-c", "release", "--scratch-path", scratch, "--package-path", packageRoot.path]
        guard let swift = Subprocess.findExecutable("swift") else {
            return .failure(Failure(description: "SLABGUARD_BIN_DIR is not set and no swift is on PATH to build the release products"))
        }
        do {
            let built = try Subprocess.run(swift, arguments + ["--product", "slabguard_rt"])
            guard built.status == 0 else {
                return .failure(Failure(description: "swift build of slabguard_rt failed:\n\(built.stderr)\(built.stdout)"))
            }
            let cli = try Subprocess.run(swift, arguments + ["--product", "slabguard"])
            guard cli.status == 0 else {
                return .failure(Failure(description: "swift build of slabguard failed:\n\(cli.stderr)\(cli.stdout)"))
            }
            let path = try Subprocess.run(swift, arguments + ["--show-bin-path"])
            let directory = path.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            guard path.status == 0, !directory.isEmpty else {
                return .failure(Failure(description: "swift build --show-bin-path failed: \(path.stderr)"))
            }
            return .success(directory)
        } catch {
            return .failure(Failure(description: "cannot run swift build: \(error)"))
        }
    }
}

/// Runs a process to completion with output captured in files (no pipe can fill up).
enum Subprocess {
    struct Outcome {
        var status: Int32            // exit status, or the signal number when `signaled`
        var signaled: Bool
        var stdout: String
        var stderr: String
        var stdoutData: Data
        var timedOut = false         // killed (SIGKILL) after the run's time limit
    }

    /// The environment programs run in: this process's, without any preload or
    /// slabguard options inherited from the caller, in the C locale.
    static func cleanEnvironment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = nil
        environment["SLABGUARD_DEBUG"] = nil
        environment["LC_ALL"] = "C"
        return environment
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                    directory: String? = nil, input: String? = nil, timeout: Double = 300) throws -> Outcome {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("slabguard-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("out"), errURL = scratch.appendingPathComponent("err")
        let inURL = scratch.appendingPathComponent("in")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: inURL.path, contents: Data((input ?? "").utf8))
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        let inHandle = try FileHandle(forReadingFrom: inURL)
        defer { try? out.close(); try? err.close(); try? inHandle.close() }

        // A program copied a moment ago can be "busy" (ETXTBSY) while a process another
        // test is forking still holds the copy's descriptor: wait it out, with a new Process.
        let finished = DispatchSemaphore(value: 0)
        var process = Process()
        var attempt = 0
        while true {
            process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.environment = environment ?? cleanEnvironment()
            if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
            process.standardOutput = out
            process.standardError = err
            process.standardInput = inHandle
            // A hung program (a deadlock is a bug these tests look for) is killed at the time
            // limit and reported as such, instead of hanging the test run.
            process.terminationHandler = { _ in finished.signal() }
            do { try process.run(); break } catch {
                let busy = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.code == Int(ETXTBSY)
                attempt += 1
                guard busy && attempt < 100 else { throw error }
                usleep(20_000)
            }
        }
        var timedOut = false
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            killTree(process.processIdentifier)
            finished.wait()
        }
        let outData = try Data(contentsOf: outURL)
        let errData = try Data(contentsOf: errURL)
        return Outcome(status: process.terminationStatus,
                       signaled: process.terminationReason == .uncaughtSignal,
                       stdout: String(decoding: outData, as: UTF8.self),
                       stderr: String(decoding: errData, as: UTF8.self),
                       stdoutData: outData, timedOut: timedOut)
    }

    /// SIGKILL to `pid` and every process below it (a `slabguard run` and its program).
    static func killTree(_ pid: pid_t) {
        var parents: [pid_t: [pid_t]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let child = pid_t(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 2, let parent = pid_t(fields[1]) { parents[parent, default: []].append(child) }
        }
        var pending = [pid]
        while let next = pending.popLast() {
            kill(next, SIGKILL)
            pending += parents[next] ?? []
        }
    }

    /// `name` looked up on PATH (or nil).
    static func findExecutable(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A tool the tests need: a missing one is a test failure naming the package to install.
    static func requireTool(_ name: String, preferring preferred: String? = nil) throws -> String {
        if let preferred, FileManager.default.isExecutableFile(atPath: preferred) { return preferred }
        guard let found = findExecutable(name) else {
            throw ReleaseBuild.Failure(description: "\(name) is not installed (scripts/setup installs it)")
        }
        return found
    }

    /// A fresh temporary folder, removed by the caller.
    static func temporaryFolder(_ label: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("slabguard-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// SplitMix64: a small seeded generator, so a randomized test replays the same way.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A number in 0..<bound.
    mutating func next(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}
