// swift-tools-version:6.0
// libFuzzer targets for bulkwatch. A package of its own, so the root package's `swift build` and
// `swift test` (and CI) never compile them; build and run with ../scripts/fuzz.sh (see README.md).
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "bulkwatch-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        // By path, so the fuzzers always exercise the library as it is in this checkout.
        .package(name: "bulkwatch", path: "..")
    ],
    targets: ["FuzzBulkListDecoder", "FuzzTokenResponse", "FuzzConfigFile", "FuzzOAuthConf"].map { name in
        .executableTarget(
            name: name, dependencies: [.product(name: "BulkWatch", package: "bulkwatch")], swiftSettings: strict)
    },
    swiftLanguageModes: [.v6]
)
