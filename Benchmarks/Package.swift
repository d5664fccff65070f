// swift-tools-version: 6.2
// Micro-benchmarks of Pollwire's hot path (ordo-one/benchmark), a package of their own so the
// server's build does not carry the benchmark tooling:
//
//   cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
//   cd Benchmarks && swift package benchmark thresholds check     (fails on a regression)
//
// Thresholds/ holds the checked-in p90 limits (allocation counts: exact and machine-independent).
import Foundation
import PackageDescription

// A package at a path is known by its directory's name: whatever the clone is called.
let pollwire = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

// Every benchmark target: the same language settings, the benchmark plugin, and what they all use.
let swiftSettings: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]
let plugins: [Target.PluginUsage] = [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
let common: [Target.Dependency] = [
    .product(name: "Benchmark", package: "benchmark"),
    .product(name: "PollwireCore", package: pollwire),
    .product(name: "PollwireEngine", package: pollwire),
    .product(name: "NIOCore", package: "swift-nio"),
]

let package = Package(
    name: "pollwire-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
    ],
    targets: [
        .executableTarget(
            name: "HotPath",
            dependencies: common + [.product(name: "Metrics", package: "swift-metrics")],
            path: "Benchmarks/HotPath",
            swiftSettings: swiftSettings,
            plugins: plugins
        ),
        // Whole HTTP requests against a real server in the same process.
        .executableTarget(
            name: "Requests",
            dependencies: common + [
                .product(name: "PollwireHTTP", package: pollwire),
                .product(name: "PollwireSQLite", package: pollwire),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "Benchmarks/Requests",
            swiftSettings: swiftSettings,
            plugins: plugins
        ),
    ]
)
