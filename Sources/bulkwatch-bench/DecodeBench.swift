func decodeBenchmark(arguments: [String]) async throws {}
