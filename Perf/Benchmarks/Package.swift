// swift-tools-version:6.1
// Cairn's micro benchmarks (ordo-one/benchmark), a package of their own so the main build never
// compiles the benchmark framework. `make bench` runs them and checks the allocation thresholds
// in Thresholds/; see README.md ("Micro benchmarks").
//
// One executable per kind of fixture, each benchmark in a process of its own (the tool's way):
//   Codec      PDU headers, CRC32C, replica frames: pure CPU, no threads
//   Loop       the event loop: io_uring NOP, 4 KiB O_DIRECT reads pinned to the loop vs from the pool
//   WritePath  one 4 KiB WRITE(10) through iSCSI, SCSI and a MemoryBlockStore
//
// BenchFixtures holds everything that touches the event loop, behind an API of plain Swift
// types. A benchmark executable must not look into EventLoop (or import CCairn) itself: the
// framework brings swift-system, whose C module includes the kernel's <linux/io_uring.h>, and
// CCairn includes liburing's copy of it; clang refuses the two io_uring_sqe definitions in one
// module ("rw_flags ... is not present in definition").
import PackageDescription

let benchmarkDependencies: [Target.Dependency] = [
    .product(name: "Benchmark", package: "benchmark"),
]

let package = Package(
    name: "CairnBenchmarks",
    dependencies: [
        // The main package, by path; named so the products resolve whatever the checkout's folder is called.
        .package(name: "Cairn", path: "../.."),
        // The malloc interposer counts allocations (no jemalloc needed); the runtime interposer is left off.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(
            name: "BenchFixtures",
            dependencies: [
                .product(name: "CairnIO", package: "Cairn"),
                .product(name: "CairnBlock", package: "Cairn"),
                .product(name: "CairnSCSI", package: "Cairn"),
                .product(name: "CairnISCSI", package: "Cairn"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "Codec",
            dependencies: benchmarkDependencies + [
                .product(name: "CairnIO", package: "Cairn"),
                .product(name: "CairnSCSI", package: "Cairn"),
                .product(name: "CairnISCSI", package: "Cairn"),
                .product(name: "CairnWire", package: "Cairn"),
            ],
            path: "Benchmarks/Codec",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Loop",
            dependencies: benchmarkDependencies + ["BenchFixtures"],
            path: "Benchmarks/Loop",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WritePath",
            dependencies: benchmarkDependencies + ["BenchFixtures"],
            path: "Benchmarks/WritePath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
