// `bulkwatch-bench stores`: the same poll cycles and webhook drain on each store backend, side by side: the
// embedded SQLite file and PostgreSQL (replicated mode's shared database, a throwaway durable cluster on loopback).
// Printed, never asserted.
import BulkWatch
import Foundation

/// Entry point for `bulkwatch-bench stores [--sizes 100000] [--runs N] [--warmup N] [--webhook-events N]`.
func storesBenchmark(arguments: [String]) async throws {
    let usage = "stores [--sizes 100000] [--runs N] [--warmup N] [--webhook-events 5000]"
    let flags = try BenchFlags(arguments, known: ["--sizes", "--runs", "--warmup", "--webhook-events"], usage: usage)
    let sizes = try flags["--sizes"].map(Bench.parseSizes) ?? [100_000]
    let runs = try flags["--runs"].map { try Bench.positiveInt($0, "--runs") } ?? 5
    let warmup = try flags["--warmup"].map { try Bench.positiveInt($0, "--warmup") } ?? 2
    let webhookEvents = try flags["--webhook-events"].map { try Bench.positiveInt($0, "--webhook-events") } ?? 5_000
    let load = LoadAverage.sample()

    print("stores: the poll child of `poll` (real Watcher, store and FileSink; the simulator in the parent) and the")
    print("unbatched webhook drain of `webhook`, once per backend, one after the other in this run:")
    print("  sqlite    the embedded default: one file, WAL, synchronous=FULL")
    print("  postgres  replicated mode's backend: a throwaway cluster this bench starts on loopback with PostgreSQL's")
    print("            durable defaults (fsync, synchronous_commit, full_page_writes on), fresh database per phase")
    print("first = the first poll (every item a created event); steady = 1 % changed, 1 % new, 1 % gone per poll,")
    print(
        "median of \(runs) after \(warmup) warm-ups. Times are wall clock; commit = Store.commit alone, read+cursor =")
    print("the dispatcher's journal reads and cursor writes. Load average at start: \(load.description).")
    print("")

    var table = BenchTable(
        [
            "store", "items", "first poll ms", "first commit ms", "steady poll ms", "steady commit ms",
            "read+cursor ms", "steady peak RSS MB", "webhook events/s", "order",
        ], leftAligned: [0, 9])
    var steady: [BenchBackend: [Int: Double]] = [:]
    var webhook: [BenchBackend: Double] = [:]
    for backend in BenchBackend.allCases {
        for size in sizes {
            do {
                let result = try await runPollChild(size: size, runs: runs, warmup: warmup, backend: backend)
                steady[backend, default: [:]][size] = result.steady.wall
                table.add([
                    backend.rawValue, "\(size)", Bench.millis(result.first.wall),
                    Bench.millis(result.firstPieces.commit),
                    Bench.millis(result.steady.wall), Bench.millis(result.steadyPieces.commit),
                    Bench.millis(result.steadyPieces.dispatch), Bench.megabytes(result.steady.peakRSS), "", "",
                ])
            } catch {
                table.add([backend.rawValue, "\(size)", "failed: \(error)", "", "", "", "", "", "", ""])
            }
        }
        do {
            let throughput = try await webhookUnbatchedThroughput(events: webhookEvents, backend: backend)
            webhook[backend] = throughput.eventsPerSecond
            table.add([
                backend.rawValue, "\(webhookEvents) ev", "", "", "", "", "", "",
                Bench.fixed(throughput.eventsPerSecond, 0), throughput.inOrder ? "kept" : "BROKEN",
            ])
        } catch {
            table.add([backend.rawValue, "webhook", "failed: \(error)", "", "", "", "", "", "", ""])
        }
    }
    print(table.render())
    for size in sizes {
        if let sqlite = steady[.sqlite]?[size], let postgres = steady[.postgres]?[size] {
            print("steady poll \(size): postgres / sqlite = \(Bench.fixed(postgres / sqlite, 2))x the time")
        }
    }
    if let sqlite = webhook[.sqlite], let postgres = webhook[.postgres] {
        print("unbatched webhook: postgres / sqlite = \(Bench.fixed(postgres / sqlite, 2))x the rate")
    }
}
