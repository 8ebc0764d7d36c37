// bulkwatch-bench: performance figures printed as tables, never asserted.
// Usage: swift build -c release --product bulkwatch-bench && .build/release/bulkwatch-bench <suite> [options]
import BulkWatch
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
let suite = arguments.first ?? "help"
let rest = Array(arguments.dropFirst())
if suite == "poll" && rest.contains("--single") {
    // The measuring child is set up like the daemon: `bulkwatch`'s main caps glibc's arenas first thing.
    FreedMemory.limitArenas(to: 2)
    FreedMemory.fixMmapThreshold(at: 1 << 20)
}

let benchUsage = """
    usage: bulkwatch-bench <suite> [options]
      decode [--sizes 1000,100000,1000000] [--runs N]   BulkListDecoder vs JSONDecoder on in-memory bodies
      diff   [--sizes 1000,100000,1000000] [--runs N]   SnapshotDiffer first and steady polls
      fetch  [--sizes 1000,100000,1000000] [--runs N]   fetch + decode over loopback, transport and decode split
      poll   [--sizes 1000,100000,1000000] [--runs N] [--warmup N] [--store sqlite|postgres]
                                                        whole poll cycles (Watcher, Journal, FileSink), RSS, CPU
      idle   [--seconds 20] [--warmup 5] [--items 1000] the real `bulkwatch run` at rest: RSS and CPU per hour
      compare [--sizes 1000,100000,1000000] [--runs N] [--warmup N] [--once-sizes 100000|none] [--once-runs 3]
              [--idle-seconds 30] [--webhook-events 5000] [--python python3] [--script bench/pywatcher.py]
                                                        bulkwatch side by side with bench/pywatcher.py (stdlib
                                                        Python): phases, whole polls, WAL bytes, run --once,
                                                        peak RSS, idle, unbatched webhook; ratios; issue 12's
                                                        goals as met / not met
      webhook [--events N] [--batch N] [--paced N] [--rate N] [--store sqlite|postgres]
                                                        Dispatcher + WebhookSink to a loopback receiver:
                                                        events/s, order, commit → 2xx latency
      stores [--sizes 100000] [--runs N] [--warmup N] [--webhook-events 5000]
                                                        first and steady polls and the unbatched webhook on
                                                        SQLite and on PostgreSQL (a throwaway durable cluster
                                                        the bench starts), side by side
      all                                               every suite above with its defaults
    """

/// Runs one suite, preceded by the command that reproduces it.
func runSuite(_ name: String, _ options: [String]) async throws {
    print("== bulkwatch-bench \(([name] + options).joined(separator: " ")) ==")
    switch name {
    case "decode": try await decodeBenchmark(arguments: options)
    case "diff": try await diffBenchmark(arguments: options)
    case "fetch": try await fetchBenchmark(arguments: options)
    case "poll": try await pollBenchmark(arguments: options)
    case "idle": try await idleBenchmark(arguments: options)
    case "compare": try await compareBenchmark(arguments: options)
    case "stores": try await storesBenchmark(arguments: options)
    default: throw BenchError("unknown suite \(name)")
    }
    print("")
    fflush(nil)
}

do {
    switch suite {
    case "poll" where rest.contains("--single"):
        // A measuring child of `poll`: its stdout is the protocol to the parent, so no banner.
        try await pollBenchmark(arguments: rest)
    case "webhook":
        print("== bulkwatch-bench webhook \(rest.joined(separator: " ")) ==")
        try await webhookBenchmark(arguments: rest)
    case "decode", "diff", "fetch", "poll", "idle", "compare", "stores":
        try await runSuite(suite, rest)
    case "all":
        guard rest.isEmpty else { throw BenchError("all takes no options; run a suite alone to pass options") }
        for name in ["decode", "diff", "fetch", "poll", "idle"] {
            try await runSuite(name, [])
        }
    default:
        print(benchUsage)
        exit(suite == "help" || suite == "--help" || suite == "-h" ? 0 : 64)
    }
} catch {
    fflush(nil)
    FileHandle.standardError.write(Data("bulkwatch-bench: \(error)\n".utf8))
    exit(1)
}
