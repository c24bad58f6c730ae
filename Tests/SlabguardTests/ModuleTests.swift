// Modules (design §8): what a library leaves behind at its dlclose — the buffers it
// leaked (leak at unload, with LogCommandTests' deleted plugin), the pointers still into
// it (stale pointer), the late jump into it explained — and that reloading it needs no
// new mechanism.  Programs: Tests/Integration/log/*plugin*.c, *_host.c, late_call.c.

import Foundation
import Testing

@Suite("Modules: unload and reload", .timeLimit(.minutes(5)))
struct ModuleTests {
    /// A call into a plugin after its dlclose: the crash report says the fault is in the
    /// unloaded library, at which function, and when it was unloaded.
    @Test func aJumpIntoAnUnloadedPluginIsExplained() throws {
        let folder = try Subprocess.temporaryFolder("late-call")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try LogCommandTests.compile("plugin", into: folder, output: "libplugin.so")
        let host = try LogCommandTests.compile("late_call", into: folder, flags: ["-ldl"])
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--", host, plugin], directory: folder.path, timeout: 120)
        #expect(run.status == 139, "\(run.stderr)")
        let fatal = run.stderr.components(separatedBy: "slabguard: fatal signal").dropFirst().first ?? ""
        #expect(fatal.contains("note: the fault is in \(plugin)+0x") && fatal.contains("(plugin_start+0x0), a library already unloaded at 0."),
                "\(run.stderr)")
    }

    /// A host that keeps pointers to a plugin's function after unloading it (a callback
    /// list in its data, a hook record on the heap): `stale pointer`, each place named.
    @Test func pointersLeftIntoAnUnloadedPluginAreNamed() throws {
        let folder = try Subprocess.temporaryFolder("stale")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try LogCommandTests.compile("plugin", into: folder, output: "libplugin.so")
        let host = try LogCommandTests.compile("stale_host", into: folder, flags: ["-ldl"])
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--", host, plugin], directory: folder.path, timeout: 120)
        #expect(run.stdout == "unloaded\n", "\(run.stderr)")
        let report = run.stderr.components(separatedBy: "slabguard: stale pointer: ").dropFirst().first ?? ""
        #expect(report.hasPrefix("\(plugin) unloaded, but 2 places still point into it\n"), "\(run.stderr)")
        #expect(report.contains("stale_host+0x") && report.contains(" (its data) holds 0x") && report.contains("(plugin_start+0x0)"), "\(run.stderr)")
        #expect(report.contains("  buffer 0x") && report.contains(" + 0x8 (sg_alloc_16, size 16) holds "), "\(run.stderr)")
        #expect(report.contains("stale_host.c:"), "the hook record's allocation stack: \(run.stderr)")
    }

    /// Reload needs no new mechanism: a plugin loaded, started, stopped, unloaded and loaded
    /// again reads, in the counter it forgot to initialise, 0xbaddcafe on both starts —
    /// on every run, not only when recycled memory happens to hold something.
    @Test func aReloadedPluginReadsBaddcafeEveryTime() throws {
        let folder = try Subprocess.temporaryFolder("reload")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try LogCommandTests.compile("reload_plugin", into: folder, output: "libreload.so")
        let host = try LogCommandTests.compile("reload_host", into: folder, flags: ["-ldl"])
        for _ in 0..<3 {
            let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--", host, plugin], directory: folder.path, timeout: 120)
            #expect(run.status == 0 && run.stdout == "counter 0xbaddcafe\ncounter 0xbaddcafe\n", "\(run.stdout) \(run.stderr)")
        }
    }

    /// A library loaded and unloaded 2,000 times under `default`: no false report (each
    /// cycle frees what the plugin gave), and memory stays bounded.
    @Test func twoThousandLoadsAndUnloadsStayQuietAndBounded() throws {
        let folder = try Subprocess.temporaryFolder("cycle")
        defer { try? FileManager.default.removeItem(at: folder) }
        let plugin = try LogCommandTests.compile("plugin", into: folder, output: "libplugin.so")
        let host = try LogCommandTests.compile("cycle_host", into: folder, flags: ["-ldl"])
        let run = try Subprocess.run(try ReleaseBuild.cli(), ["run", "--", host, plugin, "2000"], directory: folder.path, timeout: 240)
        #expect(run.status == 0 && !run.stderr.contains("slabguard: "), "\(run.stderr)")
        let numbers = run.stdout.split(separator: " ").dropFirst().compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try #require(numbers.count == 2, "\(run.stdout)")
        #expect(numbers[1] - numbers[0] < 8 * 1024, "peak RSS grew from \(numbers[0]) to \(numbers[1]) KiB over 1,800 cycles")
    }
}
