// swift-tools-version:6.0
import PackageDescription

// A standalone package (not part of the root Package.swift, to keep bulkwatch's CI short).
let package = Package(
    name: "webhook-receiver",
    platforms: [.macOS(.v15)],
    dependencies: [.package(url: "https://github.com/apple/swift-crypto", from: "3.0.0")],
    targets: [
        .executableTarget(
            name: "WebhookReceiver",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        )
    ],
    swiftLanguageModes: [.v6]
)
