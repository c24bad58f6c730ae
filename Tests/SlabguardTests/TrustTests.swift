// Trust: correct programs get no report, whatever their threads, mappings and
// exit paths do, and no mode hangs or crashes them (issue 7).  Each program in
// Tests/Integration/trust is a correct program (or, for the re-entry and
// secure-execution cases, one whose outcome is spelled out in its header), run
// under `slabguard run` or the preload; each test failed before its fix.
//
// ReleaseBuild and Subprocess are in PreloadTests.swift.

import Foundation
import Testing

@Suite("Trust: no false reports, no hangs", .timeLimit(.minutes(5)))
struct TrustTests {
    static let sources = ReleaseBuild.integrationSources.appendingPathComponent("trust")

    /// Compiles Tests/Integration/trust/NAME.c at -O0 (gcc at -O1 may delete what the
    /// program does on purpose) into `folder`.
    static func compile(_ name: String, into folder: URL, extra: [String] = []) throws -> String {
        let cc = try Subprocess.requireTool("cc")
        let output = folder.appendingPathComponent(name).path
        let result = try Subprocess.run(cc, ["-O0", "-g", "-pthread", "-o", output,
                                             sources.appendingPathComponent("\(name).c").path] + extra)
        guard result.status == 0 else { throw ReleaseBuild.Failure(description: "cc \(name).c failed:\n\(result.stderr)") }
        return output
    }

    /// `slabguard run --debug DEBUG -- PROGRAM ARGUMENTS` in a fresh folder.
    static func run(_ name: String, debug: String = "default", arguments: [String] = [],
                    timeout: Double = 120) throws -> Subprocess.Outcome {
        let folder = try Subprocess.temporaryFolder(name)
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try compile(name, into: folder)
        return try Subprocess.run(try ReleaseBuild.cli(), ["run", "--debug", debug, "--", program] + arguments,
                                  directory: folder.path, timeout: timeout)
    }

    /// A correct program: exits 0, prints "ok NAME", and slabguard says nothing.
    static func expectClean(_ name: String, debug: String = "default", _ result: Subprocess.Outcome,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!result.timedOut, "\(name) (\(debug)) hung", sourceLocation: sourceLocation)
        #expect(!result.signaled && result.status == 0, "\(name) (\(debug)): exit \(result.status), stderr: \(result.stderr)",
                sourceLocation: sourceLocation)
        #expect(result.stdout.hasPrefix("ok \(name)"), "\(name) stdout: \(result.stdout)", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains("slabguard:"), "\(name) (\(debug)) false report: \(result.stderr)",
                sourceLocation: sourceLocation)
    }

    // MARK: 1. Roots next to slabguard's own mappings

    /// Pointers kept only in the program's own mmap regions (merged by the kernel with
    /// slabguard's metadata into one maps line) are roots: no `leak: 114 buffers`.
    @Test func pointersInTheProgramsOwnMappingsAreRoots() throws {
        Self.expectClean("mmap_roots", try Self.run("mmap_roots"))
    }

    /// pthread_exit makes glibc load libgcc_s, whose link map lives in ld.so's memory
    /// next to slabguard's: no `leak: 1 buffers, 56 bytes`.
    @Test func threadEndingWithPthreadExitLeavesNoLeak() throws {
        Self.expectClean("thread_exit", try Self.run("thread_exit"))
    }
}
