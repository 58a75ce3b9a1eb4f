// swift-tools-version:6.1
// Cairn: replicated block storage. One module per layer, as in DESIGN.md:
// CCairn (C shim) -> CairnIO (event loop) -> CairnBlock (block stores) -> CairnSCSI -> CairnISCSI -> cairn;
// CairnWire (replica protocol) -> CairnReplica (replica store, server) and CairnVolume (replica set) -> cairn;
// CairnVolume and CairnReplica -> CairnAPI (HTTP API and /metrics, Hummingbird) -> cairn;
// CairnBackup (backup targets: a directory, S3; the block format; zstd through CZstd) -> CairnVolume;
// CairnClient (the apiserver's REST models and HTTP client) -> CairnControl (apiserver, state store,
// orchestrators) -> cairn; CairnClient -> CairnCSI (the CSI plugin: gRPC, attach, mount) -> cairn.
// The control plane knows nothing of the data path's modules.
import PackageDescription

// The data-path modules skip Swift's dynamic exclusivity checks in release builds: the profile of
// a replicated write put them at about 5% of the controller's CPU (swift_beginAccess/endAccess and
// the thread-local access set behind them). Debug builds, which the tests run, keep the checks.
let dataPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Cairn",
    products: [
        .executable(name: "cairn", targets: ["cairn"]),
        // For Perf/Benchmarks, a package of its own that depends on this one by path: the layers
        // it measures, exported as they are (nothing else uses these products).
        .library(name: "CairnIO", targets: ["CairnIO"]),
        .library(name: "CairnBlock", targets: ["CairnBlock"]),
        .library(name: "CairnSCSI", targets: ["CairnSCSI"]),
        .library(name: "CairnISCSI", targets: ["CairnISCSI"]),
        .library(name: "CairnWire", targets: ["CairnWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // HTTP API and /metrics (CairnAPI only; no data-path module depends on these). Hummingbird's
        // default traits (swift-configuration support, full Foundation) are not needed: off.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Both already required by Hummingbird; named here for NIOPosix (the API's own one-thread
        // loop group) and ServiceLifecycle (to stop the server gracefully without signal handlers).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // TLS to the Kubernetes API (its CA), for the Kubernetes orchestrator; already required by
        // async-http-client.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // The control plane: desired state in SQLite, HTTP clients (CLI -> apiserver -> controllers),
        // YAML output of the CLI.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The CSI plugin: gRPC over a unix socket (HTTP/2 on NIO), messages from csi.proto.
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .target(
            name: "CCairn",
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("uring")]
        ),
        .target(
            name: "CairnIO",
            dependencies: [
                "CCairn",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: dataPath
        ),
        .target(
            name: "CairnBlock",
            dependencies: ["CairnIO", "CCairn", .product(name: "Logging", package: "swift-log")],
            swiftSettings: dataPath
        ),
        .target(
            name: "CairnSCSI",
            dependencies: ["CairnBlock", "CairnIO", .product(name: "Logging", package: "swift-log"),
                           .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: dataPath
        ),
        .target(
            name: "CairnISCSI",
            dependencies: [
                "CairnSCSI", "CairnIO", "CCairn",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: dataPath
        ),
        .target(
            name: "CairnWire",
            dependencies: ["CairnIO", "CCairn", .product(name: "DequeModule", package: "swift-collections"),
                           // HMAC-SHA256 for the replica link's handshake (ReplicaAuth.swift).
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: dataPath
        ),
        .target(
            name: "CairnReplica",
            dependencies: [
                "CairnWire", "CairnBlock", "CairnIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: dataPath
        ),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "CairnBackup",
            dependencies: [
                "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "CairnVolume",
            dependencies: ["CairnWire", "CairnBlock", "CairnIO", "CairnBackup", .product(name: "Logging", package: "swift-log")],
            swiftSettings: dataPath
        ),
        .target(
            name: "CairnAPI",
            dependencies: [
                "CairnVolume", "CairnReplica", "CairnWire", "CairnIO", "CairnSCSI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "CProcess", cSettings: [.define("_GNU_SOURCE")]),
        .target(
            name: "CairnClient",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "CairnControl",
            dependencies: [
                "CairnClient", "CProcess", "CairnBackup",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "CairnCSI",
            dependencies: [
                "CairnClient", "CProcess",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["csi.proto"]
        ),
        .executableTarget(
            name: "cairn",
            dependencies: [
                "CairnISCSI", "CairnSCSI", "CairnBlock", "CairnIO", "CairnWire", "CairnReplica", "CairnVolume", "CairnAPI",
                "CairnClient", "CairnControl", "CairnBackup", "CairnCSI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CairnIOTests", dependencies: ["CairnIO", "CCairn"]),
        .testTarget(name: "CairnBackupTests", dependencies: ["CairnBackup"]),
        .testTarget(name: "CairnControlTests", dependencies: ["CairnControl", "CairnClient"]),
        .testTarget(name: "CairnBlockTests", dependencies: ["CairnBlock", "CairnIO"]),
        .testTarget(name: "CairnSCSITests", dependencies: ["CairnSCSI", "CairnBlock", "CairnIO"]),
        .testTarget(name: "CairnWireTests", dependencies: ["CairnWire", "CairnIO"]),
        .testTarget(name: "CairnReplicaTests", dependencies: ["CairnReplica", "CairnWire", "CairnIO",
                                                           .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "CairnISCSITests", dependencies: ["CairnISCSI", "CairnSCSI", "CairnBlock", "CairnIO"]),
        .systemLibrary(name: "CLibiSCSI", path: "Sources/CLibiSCSI", providers: [.apt(["libiscsi-dev"])]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["CairnIO", "CairnWire", "CLibiSCSI"],
            linkerSettings: [.linkedLibrary("iscsi")]
        ),
    ]
)
