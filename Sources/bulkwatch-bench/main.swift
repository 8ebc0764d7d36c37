// bulkwatch-bench: performance figures printed as a table, never asserted.
// Usage: swift run -c release bulkwatch-bench <suite> [options]
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
let suite = arguments.first ?? "help"
let rest = Array(arguments.dropFirst())

do {
    switch suite {
    case "decode":
        try await decodeBenchmark(arguments: rest)
    default:
        print("usage: bulkwatch-bench decode [--sizes 1000,100000,1000000] [--runs N]")
        exit(suite == "help" ? 0 : 64)
    }
} catch {
    FileHandle.standardError.write(Data("bulkwatch-bench: \(error)\n".utf8))
    exit(1)
}
