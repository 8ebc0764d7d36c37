import Foundation
import TestSupport
import Testing

@testable import BulkWatch
@testable import BulkWatchTransport

/// `--ca-file` adds to the system bundle instead of replacing it (issue 11). The "system" bundle is
/// a test CA here, so that both halves can be observed with real TLS peers on loopback.
@Suite("--ca-file adds to the system CA bundle")
struct CABundleTests {
    @Test func bothTheSystemBundleAndTheExtraFileAreTrusted() async throws {
        let system = try SelfSignedTLSServer.start()
        defer { system.stop() }
        let extra = try SelfSignedTLSServer.start()
        defer { extra.stop() }
        var configuration = TransportConfiguration()
        configuration.systemCABundle = system.certificatePath
        configuration.caFile = extra.certificatePath
        let transport = CurlTransport(configuration: configuration)
        defer { transport.shutdown() }
        #expect(try await transport.send(HTTPRequest(url: extra.url, timeout: .seconds(10))).status == 200)
        #expect(try await transport.send(HTTPRequest(url: system.url, timeout: .seconds(10))).status == 200)
    }

    @Test func aPeerInNeitherBundleIsStillRefused() async throws {
        let system = try SelfSignedTLSServer.start()
        defer { system.stop() }
        let extra = try SelfSignedTLSServer.start()
        defer { extra.stop() }
        let stranger = try SelfSignedTLSServer.start()
        defer { stranger.stop() }
        var configuration = TransportConfiguration()
        configuration.systemCABundle = system.certificatePath
        configuration.caFile = extra.certificatePath
        let transport = CurlTransport(configuration: configuration)
        defer { transport.shutdown() }
        let refused = await #expect(throws: TransportError.self) {
            try await transport.send(HTTPRequest(url: stranger.url, timeout: .seconds(10)))
        }
        #expect(refused?.code == .tls)
    }

    @Test func theDefaultSystemBundleIsTheOneLibcurlUses() throws {
        let path = try #require(CABundle.defaultSystemBundle)
        #expect(FileManager.default.isReadableFile(atPath: path), "\(path)")
        let extra = try makeTemporaryDirectory("ca") + "/extra.pem"
        try Data("-----BEGIN CERTIFICATE-----\nextra\n-----END CERTIFICATE-----\n".utf8)
            .write(to: URL(fileURLWithPath: extra))
        let combined = try #require(CABundle.combined(system: path, extra: extra))
        let systemBytes = try #require(FileManager.default.contents(atPath: path))
        #expect(combined.starts(with: systemBytes))
        #expect(String(decoding: combined.suffix(60), as: UTF8.self).contains("extra"))
    }
}
