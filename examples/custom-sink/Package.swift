// swift-tools-version:6.0
// An embedding program with a sink of its own: bulkwatch's events go into this program's SQLite
// table, with bulkwatch's cursors, retries and dead letters. Depends on bulkwatch by path.
import PackageDescription

let package = Package(
    name: "custom-sink",
    platforms: [.macOS(.v15)],
    dependencies: [
        // `name:` because a path dependency is otherwise named after its folder (the clone's name).
        .package(name: "bulkwatch", path: "../.."),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "custom-sink",
            dependencies: [
                .product(name: "BulkWatch", package: "bulkwatch"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
