// `bulkwatch-bench fetch`: the source stage over real loopback HTTP. BulkStatusClient.fetch (curl transport,
// cached token, decode) against an in-process DruIDSimulator, next to the transport alone (same request, no decode)
// and the decoder alone on the bytes that request returned, so the decode share is visible. Printed, never asserted.
import BulkWatch
import BulkWatchSimulator
import Foundation

/// Entry point for `bulkwatch-bench fetch [--sizes 1000,100000,1000000] [--runs N]`.
func fetchBenchmark(arguments: [String]) async throws {
    let usage = "fetch [--sizes 1000,100000,1000000] [--runs N]"
    let flags = try BenchFlags(arguments, known: ["--sizes", "--runs"], usage: usage)
    let sizes = try flags["--sizes"].map(Bench.parseSizes) ?? [1_000, 100_000, 1_000_000]
    let fixedRuns = try flags["--runs"].map { try Bench.positiveInt($0, "--runs") }

    print("fetch: BulkStatusClient.fetch (curl over loopback + BulkListDecoder) against an in-process DruIDSimulator;")
    print("transport = CurlTransport.send of the same request (token cached, connection reused), no decode;")
    print("decode = BulkListDecoder.decode on that response's bytes. Medians after 1 warm-up fetch (token, connect,")
    print("render). The simulator serves from a cached body but shares the 2 cores with the client.")
    print("MB = 10^6 bytes.")
    print("")
    var table = BenchTable([
        "items", "body MB", "runs", "fetch+decode ms", "MB/s", "transport ms", "MB/s", "decode ms", "decode share",
    ])
    for size in sizes {
        let runs = fixedRuns ?? (size <= 10_000 ? 51 : size <= 200_000 ? 11 : 5)
        Bench.progress("fetch \(size) items: building the simulator")
        let row = try await measureFetch(size: size, runs: runs)
        table.add([
            "\(size)", Bench.megabytes(row.bodyBytes), "\(runs)", Bench.millis(row.fetch),
            Bench.fixed(Double(row.bodyBytes) / 1e6 / row.fetch, 0), Bench.millis(row.transport),
            Bench.fixed(Double(row.bodyBytes) / 1e6 / row.transport, 0), Bench.millis(row.decode),
            Bench.fixed(100 * row.decode / row.fetch, 0) + " %",
        ])
    }
    print(table.render())
    print("decode share = decode ms / fetch+decode ms (the rest is HTTP: request, server write, curl receive).")
}

private struct FetchRow {
    var bodyBytes: Int
    var fetch: Double
    var transport: Double
    var decode: Double
}

private func measureFetch(size: Int, runs: Int) async throws -> FetchRow {
    let logger = Bench.quietLogger("bulkwatch-bench.fetch")
    let simulator = DruIDSimulator(
        options: SimulatorOptions(
            initialOperations: size, creationsPerSecond: 0, automaticChurn: false, clockStart: Bench.clockStart,
            requestLogLimit: 1_000),
        logger: logger)
    try await simulator.start()
    let transport = CurlTransport()
    defer { transport.shutdown() }
    let tokens = Bench.tokenProvider(tokenURL: simulator.tokenURL, transport: transport, logger: logger)
    // The 1M body (~122 MB) is over the daemon's 64 MiB default limit; the poll bench allows as much.
    let endpoint = BulkEndpoint(url: simulator.bulkURL, timeout: .seconds(300), maxResponseBytes: 1 << 30)
    let client = BulkStatusClient(endpoint: endpoint, transport: transport, tokens: tokens, logger: logger)

    do {
        let bodyBytes = simulator.currentListBody().count
        let warm = try await client.fetch()
        guard warm.count == size else {
            throw BenchError("fetch returned \(warm.count) of \(size) items")
        }
        Bench.progress("fetch \(size) items: \(runs) runs")
        var fetchTimes: [Double] = []
        var transportTimes: [Double] = []
        var decodeTimes: [Double] = []
        for _ in 0..<runs {
            var start = ContinuousClock.now
            let listing = try await client.fetch()
            fetchTimes.append(Bench.seconds(since: start))
            withExtendedLifetime(listing) {}

            let request = Bench.bulkRequest(endpoint: endpoint, token: try await tokens.token())
            start = ContinuousClock.now
            let response = try await transport.send(request)
            transportTimes.append(Bench.seconds(since: start))
            guard response.status == 200, response.body.count == bodyBytes else {
                throw BenchError("transport got HTTP \(response.status), \(response.body.count) of \(bodyBytes) bytes")
            }

            start = ContinuousClock.now
            let decoded = try BulkListDecoder.decode(response.body)
            decodeTimes.append(Bench.seconds(since: start))
            withExtendedLifetime(decoded) {}
        }
        await simulator.stop()
        return FetchRow(
            bodyBytes: bodyBytes, fetch: Bench.median(fetchTimes), transport: Bench.median(transportTimes),
            decode: Bench.median(decodeTimes))
    } catch {
        await simulator.stop()
        throw error
    }
}
