// swift-tools-version:6.1
import PackageDescription

// Layering (see README and ../shared/design.md): CSlabguardShim (TLS slots, libc glue)
// → SlabguardCore (platform → arena → slabs → magazines → size classes → debug)
// → front ends: Slabguard (Swift API), SlabguardRuntime (C API + malloc entry points),
// CSlabguardPreload (exports the libc malloc names), slabguard (CLI).
let optimized: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"]),
]

let package = Package(
    name: "slabguard",
    products: [
        .library(name: "Slabguard", targets: ["Slabguard"]),
        // The one dynamic library: C API (slabguard.h) + the malloc drop-in, shim and core inside.
        .library(name: "slabguard_rt", type: .dynamic, targets: ["SlabguardRuntime", "CSlabguardPreload"]),
        // The plugin `slabguard demo` loads and unloads (leak at unload, stale pointer).
        .library(name: "slabguard_demo_plugin", type: .dynamic, targets: ["CSlabguardDemoPlugin"]),
        .executable(name: "slabguard", targets: ["slabguard"]),
        .executable(name: "slabguard-bench", targets: ["slabguard-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .target(
            name: "CSlabguardShim",
            cSettings: [.unsafeFlags(["-fno-builtin", "-ftls-model=initial-exec"])]
        ),
        // The flight recorder's file format and the ELF build-id note, defined once for the
        // writer (SlabguardCore) and the readers (slabguard).
        .target(
            name: "SlabguardFormats",
            swiftSettings: optimized
        ),
        .target(
            name: "SlabguardCore",
            dependencies: ["CSlabguardShim", "SlabguardFormats"],
            exclude: ["DESIGN.md"],
            swiftSettings: optimized
        ),
        .target(
            name: "Slabguard",
            dependencies: ["SlabguardCore"],
            swiftSettings: optimized
        ),
        .target(
            name: "SlabguardRuntime",
            dependencies: ["SlabguardCore", "CSlabguardShim"],
            swiftSettings: optimized
        ),
        .target(
            name: "CSlabguardPreload",
            dependencies: ["SlabguardRuntime", "CSlabguardShim"],
            cSettings: [.unsafeFlags(["-fno-builtin"])],
            // The Swift runtime goes inside libslabguard_rt.so (symbols kept private):
            // a preloaded process then loads no libswiftCore, gets no Swift crash
            // handlers, starts faster, and a Swift program keeps its own runtime.
            // Only the slabguard_rt product links this target, so nothing else is affected.
            // exports.map keeps every other symbol local (the exported list is tested).
            linkerSettings: [.unsafeFlags([
                "-static-stdlib",
                "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/CSlabguardPreload/exports.map",
            ])]
        ),
        // Plain C (SwiftPM still links the Swift runtime into the .so: the demo's victim,
        // the slabguard executable, has it loaded anyway).
        .target(name: "CSlabguardDemoPlugin"),
        .executableTarget(
            name: "slabguard",
            dependencies: ["SlabguardCore", "SlabguardFormats", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "slabguard-bench",
            dependencies: ["Slabguard", "SlabguardCore"],
            swiftSettings: optimized
        ),
        .testTarget(
            name: "SlabguardTests",
            dependencies: ["Slabguard", "SlabguardCore", "SlabguardRuntime", "SlabguardFormats"]
        ),
    ]
)
