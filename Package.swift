// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// How the daemon's release binary is linked (BENCHMARKS.md, "Idle footprint"): the Swift runtime and Foundation
/// linked in, so that no other Swift process shares their pages and the daemon can give back what only start-up
/// ran (`StartupPages`); lld with packed relative relocations (RELR) and no exported dynamic symbols, which the
/// loader would otherwise read and search at every start. Release only: debug builds and tests link as usual.
/// SwiftPM's `--static-swift-stdlib` cannot be asked for per target (it recompiles every module), so the static
/// runtime is linked here and Foundation's own static libraries, which that flag would pull in through the
/// modules' autolink entries, are named (those of Swift 6.x's swift-corelibs-foundation).
let leanDaemonLink: [LinkerSetting] = [
    .unsafeFlags(
        [
            "-static-stdlib", "-l_CFXMLInterface", "-lxml2", "-l_FoundationICU", "-l_FoundationCShims",
            "-l_FoundationCollections", "-lCoreFoundation", "-lFoundationEssentials",
            "-lFoundationInternationalization", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
            "-Xlinker",
            "--no-export-dynamic",
        ],
        .when(platforms: [.linux], configuration: .release))
]

let package = Package(
    name: "bulkwatch",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "bulkwatch", targets: ["bulkwatch"]),
        .library(name: "BulkWatch", targets: ["BulkWatch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // One target per layer (docs/ARCHITECTURE.md): the graph below is the architecture, and the
        // compiler refuses an upward edge. Data flows Transport ← Auth ← Source ← Watcher → Detect →
        // Store → Delivery; Config is read by the app and the command line only.
        .target(
            name: "BulkWatchSupport",
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchTransport",
            dependencies: ["CCurl", "BulkWatchSupport"],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchAuth",
            dependencies: ["BulkWatchTransport", "BulkWatchSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchSource",
            dependencies: [
                "BulkWatchAuth", "BulkWatchTransport", "BulkWatchSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchDetect",
            dependencies: ["BulkWatchSupport"],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchStore",
            dependencies: [
                "BulkWatchDetect", "BulkWatchSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchOperate",
            dependencies: [
                "BulkWatchSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchDelivery",
            dependencies: [
                "BulkWatchStore", "BulkWatchDetect", "BulkWatchTransport", "BulkWatchOperate", "BulkWatchSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchWatcher",
            dependencies: [
                "BulkWatchSource", "BulkWatchAuth", "BulkWatchDetect", "BulkWatchStore", "BulkWatchOperate",
                "BulkWatchSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchConfig",
            dependencies: [
                "BulkWatchWatcher", "BulkWatchDelivery", "BulkWatchSource", "BulkWatchAuth", "BulkWatchDetect",
                "BulkWatchTransport", "BulkWatchSupport",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        // The composition root: builds every layer from a configuration and runs them as one
        // ServiceGroup. Only the executables (and tests) depend on it.
        .target(
            name: "BulkWatch",
            dependencies: [
                "BulkWatchSupport", "BulkWatchTransport", "BulkWatchAuth", "BulkWatchSource", "BulkWatchDetect",
                "BulkWatchStore", "BulkWatchOperate", "BulkWatchDelivery", "BulkWatchWatcher", "BulkWatchConfig",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BulkWatchSimulator",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bulkwatch",
            dependencies: [
                "BulkWatch",
                "BulkWatchSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict,
            linkerSettings: leanDaemonLink
        ),
        .executableTarget(
            name: "bulkwatch-bench",
            dependencies: [
                "BulkWatch",
                "BulkWatchSimulator",
                // PostgresCluster: the throwaway server of the PostgreSQL figures, the same one the tests start.
                "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict,
            // Linked as the daemon is, so the poll child's resident pages (runtime and Foundation) are the ones
            // `bulkwatch run` has, not those of the shared libraries.
            linkerSettings: leanDaemonLink
        ),
        .target(
            name: "TestSupport",
            dependencies: ["BulkWatch", "BulkWatchSimulator", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TransportTests",
            dependencies: ["BulkWatch", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SourceTests",
            dependencies: ["BulkWatch", "BulkWatchSimulator", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DetectTests",
            dependencies: ["BulkWatch", "BulkWatchSimulator", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DeliveryTests",
            dependencies: ["BulkWatch", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "JournalTests",
            dependencies: ["BulkWatch", "TestSupport", .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "BulkWatch", "BulkWatchSimulator", "TestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ConfigTests",
            dependencies: ["BulkWatch", "TestSupport"],
            swiftSettings: strict
        ),
        // Only the public API (issue 16): without package access, as another package sees BulkWatch.
        .testTarget(
            name: "PublicAPITests",
            dependencies: ["BulkWatch", "BulkWatchSimulator", .product(name: "Logging", package: "swift-log")],
            packageAccess: false,
            swiftSettings: strict
        ),
        .testTarget(
            name: "SimulatorTests",
            dependencies: ["BulkWatch", "BulkWatchSimulator", "TestSupport"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
