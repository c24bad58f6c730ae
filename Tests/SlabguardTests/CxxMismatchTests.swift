// C++ allocation kinds under the drop-in (design §4's `alloc-dealloc mismatch`): the
// operator new/delete family is slabguard's, debug modes record how each buffer was
// allocated and check the deallocator that releases it.
//
// - Every operator new/delete form libstdc++ exports is exported by the library.
// - Tests/Integration/cxx/cxx_kinds.cpp (g++ -O0: GCC may elide a new/delete pair above
//   it), one case per argument: each mismatch reported once with its exact headline, the
//   program going on under `noabort` (its stacks naming the program's own allocating and
//   freeing functions, not slabguard's entry points); in the guarded modes too; aborting
//   without `noabort`; correct pairs, operator new's failure (std::bad_alloc, the
//   new_handler, nothrow's NULL) and fast mode silent; a sized delete of the wrong size
//   is `bad free: free size != alloc size`; delete past new[]'s array cookie is the
//   mismatch, not a bad free address; `mismatch:` suppressions; the JSON fields.
// - Real C++ programs give no report: cxx_stl.cpp (the C++ runtime's own containers,
//   streams, exceptions, threads) in every checking mode, and node.

import Foundation
import Glibc
import Testing

@Suite("C++ new/delete and alloc-dealloc mismatches (drop-in)", .timeLimit(.minutes(5)))
struct CxxMismatchTests {
    static let sources = ReleaseBuild.integrationSources.appendingPathComponent("cxx")

    /// Compiles Tests/Integration/cxx/NAME.cpp with g++ into `folder`.
    static func compile(_ name: String, into folder: URL, optimization: String = "-O0") throws -> String {
        let gxx = try Subprocess.requireTool("g++")
        let output = folder.appendingPathComponent(name).path
        let result = try Subprocess.run(gxx, [optimization, "-g", "-std=c++17", "-pthread", "-o", output,
                                              Self.sources.appendingPathComponent("\(name).cpp").path], timeout: 120)
        guard result.status == 0 else { throw ReleaseBuild.Failure(description: "g++ \(name).cpp failed:\n\(result.stderr)") }
        return output
    }

    /// PROGRAM ARGUMENTS preloaded, with SLABGUARD_DEBUG=`debug` (nil: fast mode).
    static func preloaded(_ program: String, _ arguments: [String], debug: String?,
                          in folder: URL) throws -> Subprocess.Outcome {
        var environment = Subprocess.cleanEnvironment()
        environment["LD_PRELOAD"] = try ReleaseBuild.library()
        if let debug { environment["SLABGUARD_DEBUG"] = debug }
        return try Subprocess.run(program, arguments, environment: environment, directory: folder.path, timeout: 120)
    }

    /// The frames of the stack printed after a line starting with `label`.
    static func stack(_ label: String, in text: String) -> [Substring] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("  \(label)") }) else { return [] }
        return Array(lines[(start + 1)...].prefix { $0.hasPrefix("    #") })
    }

    @Test func everyOperatorNewAndDeleteOfLibstdcxxIsExported() throws {
        let gxx = try Subprocess.requireTool("g++")
        let path = try Subprocess.run(gxx, ["-print-file-name=libstdc++.so.6"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let nm = try Subprocess.requireTool("nm")
        func operators(_ library: String) throws -> Set<String> {
            let listing = try Subprocess.run(nm, ["-D", "--defined-only", library])
            try #require(listing.status == 0, "nm \(library): \(listing.stderr)")
            return Set(listing.stdout.split(separator: "\n").compactMap { line -> String? in
                guard let name = line.split(separator: " ").last?.split(separator: "@").first,
                      name.hasPrefix("_Znw") || name.hasPrefix("_Zna") || name.hasPrefix("_Zdl") || name.hasPrefix("_Zda") else { return nil }
                return String(name)
            })
        }
        let runtime = try operators(path)
        #expect(runtime.count >= 20, "libstdc++ (\(path)) exports \(runtime.sorted())")
        let missing = runtime.subtracting(try operators(try ReleaseBuild.library())).sorted()
        #expect(missing.isEmpty, "libstdc++ exports operators slabguard does not: \(missing)")
    }

    struct Mismatch: CustomTestStringConvertible, Sendable {
        var name: String
        var allocator: String
        var deallocator: String
        var allocatingFunction: String
        var freeingFunction: String
        var testDescription: String { name }
    }

    static let mismatches = [
        Mismatch(name: "malloc-delete", allocator: "malloc", deallocator: "delete",
                 allocatingFunction: "alloc_with_malloc", freeingFunction: "free_with_delete"),
        Mismatch(name: "new-free", allocator: "new", deallocator: "free",
                 allocatingFunction: "alloc_with_new", freeingFunction: "free_with_free"),
        Mismatch(name: "newarray-delete", allocator: "new[]", deallocator: "delete",
                 allocatingFunction: "alloc_with_new_array", freeingFunction: "free_with_delete"),
        Mismatch(name: "new-deletearray", allocator: "new", deallocator: "delete[]",
                 allocatingFunction: "alloc_with_new", freeingFunction: "free_with_delete_array"),
        Mismatch(name: "alignednew-delete", allocator: "aligned new", deallocator: "delete",
                 allocatingFunction: "alloc_with_aligned_new", freeingFunction: "free_with_plain_delete"),
        Mismatch(name: "new-aligneddelete", allocator: "new", deallocator: "aligned delete",
                 allocatingFunction: "alloc_with_new", freeingFunction: "free_with_aligned_delete"),
        // `delete` of objects with a destructor allocated by new[]: the pointer is 8 bytes
        // past the buffer's start (the array cookie).
        Mismatch(name: "cookie", allocator: "new[]", deallocator: "delete",
                 allocatingFunction: "alloc_widgets", freeingFunction: "free_widget"),
    ]

    @Test(arguments: mismatches)
    func mismatchIsReportedWithBothStacks(_ mismatch: Mismatch) throws {
        let folder = try Subprocess.temporaryFolder("cxx-\(mismatch.name)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_kinds", into: folder)
        let result = try Self.preloaded(program, [mismatch.name], debug: "default,noabort", in: folder)
        let text = result.stderr
        #expect(!result.signaled && !result.timedOut, "killed: \(text)")
        // Reported, then freed properly: the program goes on; the report makes its status 1.
        #expect(result.status == 1 && result.stdout == "ok \(mismatch.name)\n", "status \(result.status): \(result.stdout)")
        let headlines = text.split(separator: "\n").filter { $0.hasPrefix("slabguard:") && !$0.hasPrefix("slabguard: summary:") }
        #expect(headlines == ["slabguard: alloc-dealloc mismatch: buffer allocated by \(mismatch.allocator), freed by \(mismatch.deallocator)"],
                "\(text)")
        #expect(text.contains("slabguard: summary: 1 report (1 alloc-dealloc mismatch)"), "\(text)")
        #expect(text.contains(", cache sg_alloc_"), "\(text)")
        // The top frames are the program's: slabguard's exports and Swift entries are not shown.
        let freed = Self.stack("freed by thread", in: text), allocated = Self.stack("allocated by thread", in: text)
        #expect(freed.first?.contains(" \(mismatch.freeingFunction)+") == true, "free stack: \(freed)")
        #expect(allocated.first?.contains(" \(mismatch.allocatingFunction)+") == true, "allocation stack: \(allocated)")
        for frame in freed + allocated {
            #expect(!frame.contains(" _Zn") && !frame.contains(" _Zd") && !frame.contains("sg_entry") && !frame.contains("Slabguard"),
                    "slabguard's own frame shown: \(frame)")
        }
        if mismatch.name == "cookie" {
            #expect(text.contains("is 8 bytes into the buffer: past the array cookie"), "\(text)")
            #expect(!text.contains("bad free"), "\(text)")
        }
    }

    /// Guarded buffers (`guards`, and `sample=N`'s) carry the kind too; without `noabort` the
    /// report aborts, as every error does.
    @Test(arguments: [("default,guards,noabort", false), ("guards,noabort", false), ("sample=1", true)])
    func guardedBuffersCarryTheKind(_ debug: String, _ aborts: Bool) throws {
        let folder = try Subprocess.temporaryFolder("cxx-guarded")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_kinds", into: folder)
        for mismatch in Self.mismatches where !(aborts && mismatch.name == "alignednew-delete") {   // sample=N guards no aligned request
            let result = try Self.preloaded(program, [mismatch.name], debug: debug, in: folder)
            let headline = "slabguard: alloc-dealloc mismatch: buffer allocated by \(mismatch.allocator), freed by \(mismatch.deallocator)\n"
            #expect(result.stderr.hasPrefix(headline), "\(debug) \(mismatch.name): \(result.stderr)")
            #expect(result.stderr.contains(", cache guarded (page arena), size"), "\(debug) \(mismatch.name): \(result.stderr)")
            if aborts {
                #expect(result.signaled && result.status == SIGABRT && result.stdout.isEmpty,
                        "\(debug) \(mismatch.name): status \(result.status), stdout \(result.stdout)")
            } else {
                #expect(result.status == 1 && result.stdout == "ok \(mismatch.name)\n", "\(debug) \(mismatch.name): \(result.status)")
            }
        }
    }

    @Test(arguments: ["default", "default,guards", "sample=1", "guards"])
    func correctPairsAndFailingNewReportNothing(_ debug: String) throws {
        let folder = try Subprocess.temporaryFolder("cxx-correct")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_kinds", into: folder)
        let result = try Self.preloaded(program, ["correct", "bad-alloc"], debug: debug, in: folder)
        #expect(result.status == 0 && !result.signaled, "\(debug): status \(result.status), stderr: \(result.stderr)")
        #expect(result.stdout == "ok correct\nok bad-alloc\n", "\(debug): \(result.stdout)")
        #expect(result.stderr.isEmpty, "\(debug): \(result.stderr)")
    }

    /// Fast mode: new is malloc, delete is free, nothing checked or said (the cookie case,
    /// which frees an interior pointer, is left out: fast mode does not check frees).
    @Test func fastModeRunsEveryCaseSilently() throws {
        let folder = try Subprocess.temporaryFolder("cxx-fast")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_kinds", into: folder)
        let cases = Self.mismatches.map(\.name).filter { $0 != "cookie" } + ["sized-wrong", "correct", "bad-alloc"]
        let result = try Self.preloaded(program, cases, debug: nil, in: folder)
        #expect(result.status == 0 && !result.signaled, "status \(result.status), stderr: \(result.stderr)")
        #expect(result.stdout == cases.map { "ok \($0)\n" }.joined(), "\(result.stdout)")
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test func sizedDeleteWithTheWrongSizeIsABadFree() throws {
        let folder = try Subprocess.temporaryFolder("cxx-sized")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_kinds", into: folder)
        let result = try Self.preloaded(program, ["sized-wrong"], debug: "default,noabort", in: folder)
        #expect(result.stderr.hasPrefix("slabguard: bad free: free size != alloc size\n"), "\(result.stderr)")
        #expect(result.stderr.contains("free size 24 != alloc size 40"), "\(result.stderr)")
        #expect(!result.stderr.contains("mismatch"), "\(result.stderr)")
        #expect(result.status == 1 && result.stdout == "ok sized-wrong\n")
    }

    @Test func mismatchSuppressionSilencesIt() throws {
        let folder = try Subprocess.temporaryFolder("cxx-suppress")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_kinds", into: folder)
        let silenced = folder.appendingPathComponent("mismatch.supp"), other = folder.appendingPathComponent("free.supp")
        try "# the widgets' owner\nmismatch:free_widget\n".write(to: silenced, atomically: true, encoding: .utf8)
        try "free:free_widget\n".write(to: other, atomically: true, encoding: .utf8)
        let quiet = try Self.preloaded(program, ["cookie"], debug: "default,suppressions=\(silenced.path)", in: folder)
        #expect(!quiet.signaled && quiet.stdout == "ok cookie\n", "\(quiet.stderr)")
        #expect(!quiet.stderr.contains("alloc-dealloc mismatch"), "\(quiet.stderr)")
        #expect(quiet.stderr.contains("1 suppressed"), "\(quiet.stderr)")
        // Another kind's suppression does not silence it (and without noabort it aborts).
        let loud = try Self.preloaded(program, ["cookie"], debug: "default,suppressions=\(other.path)", in: folder)
        #expect(loud.stderr.hasPrefix("slabguard: alloc-dealloc mismatch: buffer allocated by new[], freed by delete\n"), "\(loud.stderr)")
        #expect(loud.signaled && loud.status == SIGABRT)
    }

    @Test func jsonReportNamesBothSides() throws {
        let folder = try Subprocess.temporaryFolder("cxx-json")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_kinds", into: folder)
        let result = try Self.preloaded(program, ["newarray-delete"], debug: "default,noabort,report=json", in: folder)
        let objects = result.stderr.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let report = try #require(objects.first { $0["report"] as? String == "alloc-dealloc mismatch" }, "\(result.stderr)")
        #expect(report["allocated_by"] as? String == "new[]")
        #expect(report["freed_by"] as? String == "delete")
        let buffer = report["buffer"] as? [String: Any]
        #expect(buffer?["size"] as? Int == 40 && (buffer?["cache"] as? String)?.hasPrefix("sg_alloc_") == true, "\(report)")
        func firstFunction(_ key: String) -> String? {
            ((report[key] as? [String: Any])?["frames"] as? [[String: Any]])?.first?["function"] as? String
        }
        #expect(firstFunction("allocation_stack") == "alloc_with_new_array", "\(report)")
        #expect(firstFunction("current_stack") == "free_with_delete", "\(report)")
        let summary = objects.first { $0["report"] as? String == "summary" }
        #expect((summary?["counts"] as? [String: Any])?["alloc-dealloc mismatch"] as? Int == 1, "\(result.stderr)")
    }

    /// An ordinary C++ program: no report in any checking mode, its output unchanged.
    @Test(arguments: ["default", "default,guards", "sample=10"])
    func realCxxProgramHasNoFalseReports(_ debug: String) throws {
        let folder = try Subprocess.temporaryFolder("cxx-stl")
        defer { try? FileManager.default.removeItem(at: folder) }
        let program = try Self.compile("cxx_stl", into: folder, optimization: "-O2")
        let plain = try Subprocess.run(program, [], timeout: 120)
        try #require(plain.status == 0, "cxx_stl without slabguard: \(plain.stderr)")
        let result = try Self.preloaded(program, [], debug: debug, in: folder)
        #expect(result.status == 0 && !result.signaled, "\(debug): status \(result.status), stderr: \(result.stderr)")
        #expect(result.stdout == plain.stdout, "\(debug): \(result.stdout) vs \(plain.stdout)")
        #expect(result.stderr.isEmpty, "\(debug): \(result.stderr)")
    }

    /// node (V8, ICU, libuv and zlib in C++): no report, the same output (scripts/setup installs it).
    @Test func nodeRunsWithoutReports() throws {
        let node = try Subprocess.requireTool("node")
        let script = """
            const m = new Map(); for (let i = 0; i < 50000; i++) m.set("k" + i, {a: i, b: [i]});
            const zlib = require("zlib"); let s = 0;
            for (let i = 0; i < 3; i++) s += zlib.gzipSync(Buffer.alloc(1 << 20, i)).length;
            console.log(m.size, s, JSON.stringify({x: [1, 2, 3]}), new Intl.NumberFormat("en").format(1234567.5),
                        [..."h\\u00e9llo"].reverse().join(""), /(\\d+)-(\\d+)/.exec("a 12-34")[2]);
            """
        let plain = try Subprocess.run(node, ["-e", script], timeout: 120)
        try #require(plain.status == 0, "node without slabguard: \(plain.stderr)")
        let folder = try Subprocess.temporaryFolder("cxx-node")
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = try Self.preloaded(node, ["-e", script], debug: "default", in: folder)
        #expect(result.status == 0 && !result.signaled, "status \(result.status), stderr: \(result.stderr)")
        #expect(result.stdout == plain.stdout)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }
}
