// `bulkwatch-bench poll`: whole poll cycles (fetch, decode, diff, journal commit, file-sink delivery) with the
// real Watcher, Journal and FileSink; and `bulkwatch-bench idle`: the real `bulkwatch run` binary at rest.
// Figures are printed, never asserted.
//
// poll runs each size in a child process of this executable (`poll --single N`, hidden) so sizes never share a
// VmHWM. The DruID simulator lives in the parent: its world, its rendered 150 MB bodies and its server threads stay
// out of the child's RSS and CPU time, and the parent applies each round's mutations (and renders the new body)
// while the child waits, so mutation never lands inside a measurement. They talk over the child's stdin/stdout:
//   child → parent  "@@MUTATE"        parent mutates the world, pre-renders the body, answers "OK"
//   child → parent  "@@RESULT {json}" the child's figures, then it exits
import BulkWatch
import BulkWatchSimulator
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - poll (parent)

/// Entry point for `bulkwatch-bench poll [--sizes 1000,100000,1000000] [--runs N] [--warmup N]`.
func pollBenchmark(arguments: [String]) async throws {
    let usage = "poll [--sizes 1000,100000,1000000] [--runs N] [--warmup N] [--store sqlite|postgres]"
    let flags = try BenchFlags(
        arguments,
        known: [
            "--sizes", "--runs", "--warmup", "--single", "--endpoint", "--token-url", "--postgres-whole",
            "--postgres-pieces", "--store",
        ], usage: usage)
    let runs = try flags["--runs"].map { try Bench.positiveInt($0, "--runs") }
    let warmup = try flags["--warmup"].map { try Bench.positiveInt($0, "--warmup") } ?? 2
    if let single = flags["--single"] {
        guard let size = Int(single), size > 0, let endpoint = flags["--endpoint"], let tokenURL = flags["--token-url"]
        else { throw BenchError("--single needs a size, --endpoint and --token-url") }
        try await PollChild(
            size: size, endpoint: endpoint, tokenURL: tokenURL, runs: runs ?? 7, warmup: warmup,
            postgresWhole: flags["--postgres-whole"], postgresPieces: flags["--postgres-pieces"]
        ).run()
        return
    }
    let sizes = try flags["--sizes"].map(Bench.parseSizes) ?? [1_000, 100_000, 1_000_000]
    let backend = try flags["--store"].map(BenchBackend.init(parsing:)) ?? .sqlite

    print("poll: one whole cycle = Watcher.pollOnce (fetch + decode + diff + Journal.commit) + delivery of the new")
    print("events to a FileSink (Journal.events(after:limit: \(Dispatcher.defaultBatchSize)) → FileSink.deliver →")
    print("Journal.advanceCursor, as the Dispatcher does). Real store and FileSink (write + fsync) in a temp dir;")
    print(
        backend == .sqlite
            ? "store: SQLite (WAL, synchronous=FULL)."
            : "store: PostgreSQL on a throwaway loopback cluster (fsync, synchronous_commit on).")
    print("steady = 1 % changed, 1 % new, 1 % gone per poll, after \(warmup) warm-up polls (an item expires on its")
    print("2nd absent poll); wall and CPU are medians of the steady polls; CPU = getrusage user+sys of the whole")
    print("process (curl thread, SQLite, sink queue). Each size runs in its own child process; the simulator runs in")
    print("the parent (not in the child's RSS/CPU) and mutates + re-renders between polls, outside the timings.")
    print("After each cycle, as `bulkwatch run` does between polls: the state maintenance (the snapshot deltas folded")
    print("into an image when due, the WAL checkpoint), outside the timings but inside the peak RSS.")
    print("peak RSS = child's VmHWM: first = lifetime peak through the first poll; steady = VmHWM reset (clear_refs)")
    print("after the warm-ups, read after the steady polls. MB = 10^6 bytes.")
    print("")

    var results: [(size: Int, result: PollSizeResult?, failure: String?)] = []
    for size in sizes {
        let measuredRuns = runs ?? (size <= 10_000 ? 21 : 7)
        do {
            let result = try await runPollChild(size: size, runs: measuredRuns, warmup: warmup, backend: backend)
            results.append((size, result, nil))
        } catch {
            Bench.progress("poll \(size): \(error)")
            results.append((size, nil, "\(error)"))
        }
    }

    var table = BenchTable(
        ["items", "poll", "runs", "events", "wall ms", "watcher ms", "deliver ms", "CPU ms", "peak RSS MB", "target"],
        leftAligned: [1, 9])
    for (size, result, failure) in results {
        guard let result else {
            table.add(["\(size)", "failed", "", "", "", "", "", "", "", failure ?? ""])
            continue
        }
        table.add([
            "\(size)", "first", "1", "\(result.first.events)", Bench.millis(result.first.wall),
            Bench.millis(result.first.watcher), Bench.millis(result.first.deliver), Bench.millis(result.first.cpu),
            Bench.megabytes(result.first.peakRSS), pollTarget(size: size, steady: false),
        ])
        table.add([
            "\(size)", "steady", "\(result.runs)", "\(result.steady.events)", Bench.millis(result.steady.wall),
            Bench.millis(result.steady.watcher), Bench.millis(result.steady.deliver), Bench.millis(result.steady.cpu),
            Bench.megabytes(result.steady.peakRSS), pollTarget(size: size, steady: true),
        ])
    }
    print(table.render())
    print("wall = watcher + deliver; watcher = Watcher.pollOnce; deliver = journal read + FileSink.deliver + cursor.")
    if let result = results.compactMap(\.result).first, !result.peakResetWorked {
        print("note: /proc/self/clear_refs refused, so steady peak RSS is the lifetime peak (first poll included).")
    }
    print("")

    print("where the time goes: the same pipeline driven piece by piece in the same child, on its own fresh journal")
    print("and sink (BulkStatusClient.fetch, SnapshotDiffer.apply, Journal.commit, FileSink.deliver called directly;")
    print("transport = CurlTransport.send alone and decode = BulkListDecoder.decode on its bytes, a separate request).")
    print("")
    var pieces = BenchTable(
        [
            "items", "poll", "fetch ms", "(transport", "decode)", "diff ms", "commit ms", "sink ms", "read+cursor ms",
            "sum ms", "body MB", "commit written MB",
        ], leftAligned: [1])
    for (size, result, _) in results {
        guard let result else { continue }
        for (label, piece) in [("first", result.firstPieces), ("steady", result.steadyPieces)] {
            pieces.add([
                "\(size)", label, Bench.millis(piece.fetch), Bench.millis(piece.transport), Bench.millis(piece.decode),
                Bench.millis(piece.diff), Bench.millis(piece.commit), Bench.millis(piece.sink),
                Bench.millis(piece.dispatch), Bench.millis(piece.sum), Bench.megabytes(result.bodyBytes),
                Bench.megabytes(Int(piece.written)),
            ])
        }
    }
    print(pieces.render())
    print("sum = fetch + diff + commit + sink + read+cursor (transport and decode are a split of fetch, not added).")
    print("steady pieces are medians per piece over the steady polls; sink = FileSink.deliver (write + fsync per")
    print("\(Dispatcher.defaultBatchSize)-event batch); read+cursor = Journal.events(after:) + Journal.advanceCursor")
    print("per batch.")
    print("commit written = bytes Journal.commit passed to write(2) (/proc/self/io wchar): that commit's WAL frames.")
    for (size, result, _) in results {
        guard let result else { continue }
        print(
            "\(size): child RSS at start \(Bench.megabytes(result.baselineResident)) MB, after the steady polls"
                + " \(Bench.megabytes(result.steadyResident)) MB (\(Bench.megabytes(result.trimmedResident)) MB after"
                + " malloc_trim), of which the Snapshot holds \(Bench.megabytes(result.snapshotResident)) MB and the"
                + " Journal + FileSink \(Bench.megabytes(result.journalResident)) MB; last steady poll: "
                + result.lastStats)
    }
}

private func pollTarget(size: Int, steady: Bool) -> String {
    switch (size, steady) {
    case (100_000, false): "< 1 s"
    case (100_000, true): "< 80 ms, < 100 MB"
    case (1_000_000, true): "< 1 s"
    default: ""
    }
}

/// Starts the simulator for `size`, runs the child that measures it, mutates the world whenever the child asks.
/// `backend` postgres: each phase of the child gets a fresh database on the bench's PostgreSQL cluster.
/// With `turns` (`compare`'s lockstep), the start-up and first poll, then each poll with the world's move before it,
/// wait for bulkwatch's turn; a turn ends when the child asks for the next move.
func runPollChild(
    size: Int, runs: Int, warmup: Int, backend: BenchBackend = .sqlite, turns: PollTurns? = nil
) async throws -> PollSizeResult {
    await turns?.begin(.bulkwatch)
    var inTurn = true
    do {
        let result = try await measurePollChild(
            size: size, runs: runs, warmup: warmup, backend: backend,
            betweenPolls: {
                await turns?.end(.bulkwatch)
                inTurn = false
                await turns?.begin(.bulkwatch)
                inTurn = true
            })
        await turns?.finish(.bulkwatch, duringTurn: inTurn)
        return result
    } catch {
        await turns?.finish(.bulkwatch, duringTurn: inTurn)
        throw error
    }
}

private func measurePollChild(
    size: Int, runs: Int, warmup: Int, backend: BenchBackend, betweenPolls: () async -> Void
) async throws -> PollSizeResult {
    let postgresFlags =
        backend == .postgres
        ? [
            "--postgres-whole", try BenchPostgres.freshDatabaseURL(), "--postgres-pieces",
            try BenchPostgres.freshDatabaseURL(),
        ] : []
    Bench.progress("poll \(size): building the simulator")
    let simulator = DruIDSimulator(
        options: SimulatorOptions(
            initialOperations: size, creationsPerSecond: 0, automaticChurn: false, clockStart: Bench.clockStart,
            requestLogLimit: 1_000),
        logger: Bench.quietLogger("bulkwatch-bench.simulator"))
    try await simulator.start()
    _ = simulator.currentListBody()  // render now, not during the first poll
    var mutator = WorldMutator(size: size)
    let childArguments =
        [
            "poll", "--single", "\(size)", "--endpoint", simulator.bulkURL, "--token-url", simulator.tokenURL,
            "--runs", "\(runs)", "--warmup", "\(warmup)",
        ] + postgresFlags
    // A profiler around the child, e.g. `BULKWATCH_BENCH_CHILD_WRAPPER="/usr/bin/valgrind --tool=massif"`: the
    // child's own allocations, without the simulator, which stays in this process.
    let wrapper = (ProcessInfo.processInfo.environment["BULKWATCH_BENCH_CHILD_WRAPPER"] ?? "")
        .split(separator: " ").map(String.init)
    let child: BenchChild
    do {
        child = try BenchChild.spawn(
            wrapper.first ?? Bench.executablePath,
            wrapper.dropFirst() + (wrapper.isEmpty ? [] : [Bench.executablePath]) + childArguments, pipes: true)
    } catch {
        await simulator.stop()
        throw error
    }
    var result: PollSizeResult?
    // Kept until the child and the simulator are stopped, so a figures line that does not decode leaves neither
    // running.
    var unreadable: (any Error)?
    while let line = await child.output?.nextLine() {
        if line == "@@MUTATE" {
            await betweenPolls()
            mutator.step(simulator)
            _ = simulator.currentListBody()
            child.send("OK")
        } else if line.hasPrefix("@@RESULT ") {
            do {
                result = try JSONDecoder().decode(PollSizeResult.self, from: Data(line.dropFirst(9).utf8))
            } catch {
                unreadable = error
            }
        } else if line.hasPrefix("@@PROGRESS ") {
            Bench.progress("poll \(size): \(line.dropFirst(11))")
        }
    }
    child.closePipes()
    let exit = await child.wait()
    await simulator.stop()
    if let unreadable { throw unreadable }
    guard let result else {
        throw BenchError("child for \(size) items ended (\(exit?.description ?? "?")) without figures")
    }
    return result
}

/// Moves the simulated world by one round: 1 % of the live items changed (new status, newer `updatedOn`), 1 % new
/// items appended, 1 % removed. Seeded, so every run mutates the same items.
struct WorldMutator {
    private var live: [String]
    private var random = SplitMix64(seed: 0xB0_11C0)
    private var round = 0
    private var nextSerial: Int
    private let perRound: Int

    init(size: Int) {
        live = (1...size).map { number in
            let digits = String(number)
            return "b-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        }
        nextSerial = size + 1
        perRound = max(1, size / 100)
    }

    mutating func step(_ simulator: DruIDSimulator) {
        round += 1
        // An hour past the initial world, one second per round: strictly newer than anything listed before.
        let stamp = SimulatedField.date(Bench.clockStart + 3_600 + Double(round))
        let statuses = ["PROCESSING", "FINISHED", "FINISHED_WITH_ERRORS"]
        var chosen = Set<Int>()
        while chosen.count < min(perRound, live.count) { chosen.insert(random.below(live.count)) }
        for index in chosen {
            simulator.upsert(
                bulkId: live[index], status: .string(statuses[round % statuses.count]),
                createdOn: .date(Bench.clockStart), updatedOn: stamp)
        }
        for _ in 0..<perRound where !live.isEmpty {
            let index = random.below(live.count)
            live.swapAt(index, live.count - 1)
            simulator.remove(bulkId: live.removeLast())
        }
        for _ in 0..<perRound {
            let bulkId = "b-\(nextSerial)"
            nextSerial += 1
            simulator.upsert(bulkId: bulkId, status: "PENDING", createdOn: stamp, updatedOn: stamp)
            live.append(bulkId)
        }
    }
}

// MARK: - poll (child)

/// What one child measured, sent to the parent as one JSON line.
struct PollSizeResult: Codable {
    struct Cycle: Codable {
        var events = 0
        var wall = 0.0
        var watcher = 0.0
        var deliver = 0.0
        var cpu = 0.0
        var peakRSS = 0
    }

    struct Pieces: Codable {
        var fetch = 0.0
        var transport = 0.0
        var decode = 0.0
        var diff = 0.0
        var commit = 0.0
        var sink = 0.0
        var dispatch = 0.0
        /// Bytes the commit passed to write(2) (/proc/self/io `wchar` around the call): its WAL frames.
        var written = 0.0

        var sum: Double { fetch + diff + commit + sink + dispatch }

        static func median(_ all: [Pieces]) -> Pieces {
            func of(_ key: KeyPath<Pieces, Double>) -> Double { Bench.median(all.map { $0[keyPath: key] }) }
            return Pieces(
                fetch: of(\.fetch), transport: of(\.transport), decode: of(\.decode), diff: of(\.diff),
                commit: of(\.commit), sink: of(\.sink), dispatch: of(\.dispatch), written: of(\.written))
        }
    }

    var items: Int
    var runs: Int
    var bodyBytes = 0
    var first = Cycle()
    var steady = Cycle()
    var steadyResident = 0
    /// VmRSS when the child started, before any pipeline object existed (runtime + libraries).
    var baselineResident = 0
    /// VmRSS after the steady polls once malloc_trim gave cached free heap back: roughly what is live.
    var trimmedResident = 0
    /// Resident memory freed (after malloc_trim) by dropping the differ's Snapshot, then the Journal and FileSink,
    /// at the end of the piece-by-piece phase: what each holds between polls.
    var snapshotResident = 0
    var journalResident = 0
    var peakResetWorked = false
    var lastStats = ""
    var firstPieces = Pieces()
    var steadyPieces = Pieces()
}

/// The measuring side of `poll --single N`.
private struct PollChild {
    let size: Int
    let endpoint: BulkEndpoint
    let tokenURL: String
    let runs: Int
    let warmup: Int
    /// PostgreSQL databases for the two phases; nil: SQLite files in the temp dir.
    let postgresWhole: String?
    let postgresPieces: String?
    private let parent = BenchLineReader(fd: 0)
    private let logger = Bench.quietLogger("bulkwatch-bench.poll")

    init(
        size: Int, endpoint: String, tokenURL: String, runs: Int, warmup: Int, postgresWhole: String?,
        postgresPieces: String?
    ) {
        self.size = size
        // Bodies reach ~125 MB at 1M items, past the daemon's 64 MiB default limit.
        self.endpoint = BulkEndpoint(url: endpoint, timeout: .seconds(300), maxResponseBytes: 1 << 30)
        self.tokenURL = tokenURL
        self.runs = runs
        self.warmup = warmup
        self.postgresWhole = postgresWhole
        self.postgresPieces = postgresPieces
    }

    func run() async throws {
        let baseline = Bench.procStatus("VmRSS") ?? 0
        let directory = try Bench.makeTemporaryDirectory("bulkwatch-bench-poll")
        defer { Bench.removeTree(directory) }
        let transport = CurlTransport()
        defer { transport.shutdown() }
        let tokens = Bench.tokenProvider(tokenURL: tokenURL, transport: transport, logger: logger)
        let client = BulkStatusClient(endpoint: endpoint, transport: transport, tokens: tokens, logger: logger)

        var result = PollSizeResult(items: size, runs: runs)
        result.baselineResident = baseline
        try await measureWholeCycles(client: client, directory: directory, into: &result)
        let beforeJournalRelease = try await measurePieces(
            client: client, transport: transport, tokens: tokens, directory: directory, into: &result)
        Bench.resetPeakResident()
        result.journalResident = beforeJournalRelease - (Bench.procStatus("VmRSS") ?? 0)
        let json = String(decoding: try JSONEncoder().encode(result), as: UTF8.self)
        benchWriteLine("@@RESULT " + json, to: 1)
    }

    private func progress(_ message: String) {
        benchWriteLine("@@PROGRESS " + message, to: 1)
    }

    /// Asks the parent to move the world and waits until it has (and has rendered the new body).
    private func mutateWorld() async throws {
        benchWriteLine("@@MUTATE", to: 1)
        guard await parent.nextLine() == "OK" else { throw BenchError("parent went away") }
    }

    /// Phase 1: the real Watcher, then dispatcher-style delivery; wall, CPU and peak RSS.
    private func measureWholeCycles(client: BulkStatusClient, directory: String, into result: inout PollSizeResult)
        async throws
    {
        let opened = try await BenchStore.open(sqlitePath: directory + "/whole.db", postgresURL: postgresWhole)
        let journal = opened.store
        let sink = try FileSink(path: directory + "/whole.jsonl")
        let watcher = try await Watcher(
            target: WatchTarget(endpoint: endpoint, interval: .seconds(1)), client: client, store: journal,
            logger: logger)
        var delivery = Delivery(journal: journal, sink: sink)

        progress("first poll (whole cycle)")
        var cycle = try await timedCycle(watcher: watcher, delivery: &delivery)
        // As `bulkwatch run` does after each poll (the first poll's fold writes the first image): part of the
        // peak, not of the cycle's time.
        try await watcher.maintainState()
        cycle.peakRSS = Bench.procStatus("VmHWM") ?? 0
        result.first = cycle
        // As `bulkwatch run` does after its first successful poll: the pages only start-up ran go back.
        watcher.releaseStartupPages()

        var steady: [PollSizeResult.Cycle] = []
        progress("\(warmup) warm-up + \(runs) steady polls (whole cycle)")
        for round in 0..<(warmup + runs) {
            try await mutateWorld()
            if round == warmup { result.peakResetWorked = Bench.resetPeakResident() }
            let measured = try await timedCycle(watcher: watcher, delivery: &delivery)
            if round >= warmup { steady.append(measured) }
            // As `bulkwatch run` does between polls, after the events went out (fold when due, checkpoint):
            // not part of the cycle's time, part of its peak.
            try await watcher.maintainState()
        }
        result.steady = PollSizeResult.Cycle(
            events: Int(Bench.median(steady.map { Double($0.events) })), wall: Bench.median(steady.map(\.wall)),
            watcher: Bench.median(steady.map(\.watcher)), deliver: Bench.median(steady.map(\.deliver)),
            cpu: Bench.median(steady.map(\.cpu)), peakRSS: Bench.procStatus("VmHWM") ?? 0)
        result.steadyResident = Bench.procStatus("VmRSS") ?? 0
        Bench.resetPeakResident()
        result.trimmedResident = Bench.procStatus("VmRSS") ?? 0
        withExtendedLifetime(watcher) {}
        await sink.close()
        await opened.close()
    }

    private func timedCycle(watcher: Watcher, delivery: inout Delivery) async throws -> PollSizeResult.Cycle {
        let cpu = Bench.cpuSeconds()
        let start = ContinuousClock.now
        let report = try await watcher.pollOnce()
        let polled = ContinuousClock.now
        let delivered = try await delivery.drain()
        let end = ContinuousClock.now
        guard delivered == report.events.count else {
            throw BenchError("delivered \(delivered) events of \(report.events.count)")
        }
        return PollSizeResult.Cycle(
            events: report.events.count, wall: Bench.seconds(end - start), watcher: Bench.seconds(polled - start),
            deliver: Bench.seconds(end - polled), cpu: Bench.cpuSeconds() - cpu)
    }

    /// Phase 2: the same stages called one by one, on a fresh journal and sink.
    private func measurePieces(
        client: BulkStatusClient, transport: CurlTransport, tokens: TokenProvider, directory: String,
        into result: inout PollSizeResult
    ) async throws -> Int {
        let opened = try await BenchStore.open(sqlitePath: directory + "/pieces.db", postgresURL: postgresPieces)
        let journal = opened.store
        let sink = try FileSink(path: directory + "/pieces.jsonl")
        var delivery = Delivery(journal: journal, sink: sink)
        var snapshot = Snapshot()
        var hasBaseline = false
        let policy = DetectionPolicy()
        var steady: [PollSizeResult.Pieces] = []
        progress("first + \(warmup) warm-up + \(runs) steady polls (piece by piece)")
        for round in 0...(warmup + runs) {
            if round > 0 { try await mutateWorld() }
            var pieces = PollSizeResult.Pieces()

            let request = Bench.bulkRequest(endpoint: endpoint, token: try await tokens.token())
            var start = ContinuousClock.now
            let response = try await transport.send(request)
            pieces.transport = Bench.seconds(since: start)
            result.bodyBytes = response.body.count
            start = ContinuousClock.now
            let decoded = try BulkListDecoder.decode(response.body)
            pieces.decode = Bench.seconds(since: start)
            withExtendedLifetime((response, decoded)) {}

            start = ContinuousClock.now
            let listing = try await client.fetch()
            pieces.fetch = Bench.seconds(since: start)

            start = ContinuousClock.now
            // As the watcher diffs (a first poll's rows are read from the snapshot by the store).
            let outcome = SnapshotDiffer.apply(
                listing, to: &snapshot, policy: policy, isFirstRun: !hasBaseline, rowsOfNewSnapshot: false)
            pieces.diff = Bench.seconds(since: start)

            let writtenBefore = Bench.writtenChars()
            start = ContinuousClock.now
            let events = try await journal.commit(
                PollCommit(
                    target: "default", source: endpoint.url, outcome: outcome, snapshot: snapshot, detectedAt: Date()),
                fence: .exclusive)
            pieces.commit = Bench.seconds(since: start)
            if let before = writtenBefore, let after = Bench.writtenChars() { pieces.written = Double(after - before) }
            hasBaseline = true

            delivery.resetTimers()
            let delivered = try await delivery.drain()
            guard delivered == events.count else {
                throw BenchError("delivered \(delivered) events of \(events.count)")
            }
            pieces.sink = delivery.deliverTime
            pieces.dispatch = delivery.journalTime

            // Between polls, as `bulkwatch run` does: fold the deltas when due, checkpoint the WAL.
            try await journal.maintain(target: "default", snapshot: snapshot)
            if round == 0 { result.firstPieces = pieces }
            if round > warmup { steady.append(pieces) }
            let stats = outcome.stats
            result.lastStats =
                "\(stats.listed) listed, \(stats.created) created, \(stats.changed) changed, \(stats.expired) expired,"
                + " \(stats.newlyAbsent) newly absent; commit wrote \(outcome.upserted.count) snapshot rows and"
                + " \(outcome.absenceCounts.count) absence counters, deleted \(outcome.removed.count), \(events.count) events"
        }
        result.steadyPieces = PollSizeResult.Pieces.median(steady)
        await sink.close()
        Bench.resetPeakResident()
        let withSnapshot = Bench.procStatus("VmRSS") ?? 0
        snapshot = Snapshot()
        Bench.resetPeakResident()
        let withoutSnapshot = Bench.procStatus("VmRSS") ?? 0
        result.snapshotResident = withSnapshot - withoutSnapshot
        withExtendedLifetime((journal, delivery)) {}
        await opened.close()
        return withoutSnapshot
    }
}

/// What the Dispatcher does for one sink, inline: read a batch after the cursor, deliver it, advance the cursor.
private struct Delivery {
    let journal: any Store
    let sink: FileSink
    var cursor: Int64 = 0
    /// Time in FileSink.deliver, and in journal reads + cursor writes, since ``resetTimers()``.
    var deliverTime = 0.0
    var journalTime = 0.0

    init(journal: any Store, sink: FileSink) {
        self.journal = journal
        self.sink = sink
    }

    mutating func resetTimers() {
        deliverTime = 0
        journalTime = 0
    }

    /// Delivers everything committed; returns how many events.
    mutating func drain() async throws -> Int {
        var delivered = 0
        while true {
            var start = ContinuousClock.now
            let batch = try await journal.events(after: cursor, limit: Dispatcher.defaultBatchSize)
            journalTime += Bench.seconds(since: start)
            guard let last = batch.last else { return delivered }
            start = ContinuousClock.now
            try await sink.deliver(batch)
            deliverTime += Bench.seconds(since: start)
            start = ContinuousClock.now
            _ = try await journal.advanceCursor(sink: sink.name, from: cursor, to: last.sequence, fence: .exclusive)
            journalTime += Bench.seconds(since: start)
            cursor = last.sequence
            delivered += batch.count
        }
    }
}

// MARK: - idle

/// Entry point for `bulkwatch-bench idle [--seconds 20] [--warmup 5] [--items 1000]`: the real `bulkwatch run`
/// binary (found next to this executable) polling an in-process simulator every second, nothing changing.
func idleBenchmark(arguments: [String]) async throws {
    let usage = "idle [--seconds 20] [--warmup 5] [--items 1000]"
    let flags = try BenchFlags(arguments, known: ["--seconds", "--warmup", "--items"], usage: usage)
    let period = try flags["--seconds"].map { try Bench.positiveInt($0, "--seconds") } ?? 20
    let warmup = try flags["--warmup"].map { try Bench.positiveInt($0, "--warmup") } ?? 5
    let items = try flags["--items"].map { try Bench.positiveInt($0, "--items") } ?? 1_000

    let binary = try Bench.bulkwatchBinary()
    print("idle: \(binary) run --interval 1s --sink file:… --log-level warning against an in-process simulator")
    print("with \(items) items that never change; \(warmup) s warm-up (first poll and its \(items) created events),")
    print("then VmRSS (/proc/PID/status) sampled every second for \(period) s and CPU from /proc/PID/stat utime+stime.")
    print("")

    let logger = Bench.quietLogger("bulkwatch-bench.idle")
    let simulator = DruIDSimulator(
        options: SimulatorOptions(
            initialOperations: items, creationsPerSecond: 0, automaticChurn: false, clockStart: Bench.clockStart,
            requestLogLimit: 1_000),
        logger: logger)
    try await simulator.start()
    let directory = try Bench.makeTemporaryDirectory("bulkwatch-bench-idle")
    defer { Bench.removeTree(directory) }
    let name = "state"
    let child = try Bench.spawnIdleWatcher(binary: binary, simulator: simulator, directory: directory, name: name)

    Bench.progress("idle: warm-up \(warmup) s (pid \(child.pid))")
    try await Task.sleep(for: .seconds(warmup))
    if let exit = child.poll() {
        await simulator.stop()
        throw BenchError("bulkwatch run ended during warm-up (\(exit))")
    }
    let eventsLines =
        (try? String(contentsOfFile: "\(directory)/\(name).jsonl", encoding: .utf8))?.split(
            separator: "\n"
        ).count ?? 0

    Bench.progress("idle: sampling \(period) s")
    let requestsBefore = simulator.stats.bulkRequests
    let cpuBefore = Bench.cpuSeconds(pid: child.pid) ?? .nan
    let start = ContinuousClock.now
    var samples: [Int] = []
    var anonymous: [Double] = []
    var fileBacked: [Double] = []
    var proportional: [Double] = []
    for second in 1...period {
        try await Task.sleep(until: start + .seconds(second), clock: .continuous)
        if let rss = Bench.procStatus("VmRSS", pid: child.pid) { samples.append(rss) }
        if let anon = Bench.procStatus("RssAnon", pid: child.pid) { anonymous.append(Double(anon)) }
        if let file = Bench.procStatus("RssFile", pid: child.pid) { fileBacked.append(Double(file)) }
        if let pss = Bench.procStatus("Pss", pid: child.pid, file: "smaps_rollup") { proportional.append(Double(pss)) }
    }
    let elapsed = Bench.seconds(since: start)
    let cpuAfter = Bench.cpuSeconds(pid: child.pid) ?? .nan
    let polls = simulator.stats.bulkRequests - requestsBefore
    let peak = Bench.procStatus("VmHWM", pid: child.pid) ?? 0
    let (exit, killed) = await child.stop(grace: .seconds(3))
    await simulator.stop()

    let cpu = cpuAfter - cpuBefore
    let rssMedian = Bench.median(samples.map(Double.init))
    var table = BenchTable(
        [
            "items", "interval", "period s", "polls", "RSS median MB", "(anon", "file)", "PSS MB", "RSS max MB",
            "VmHWM MB",
            "CPU s", "CPU s/hour", "CPU %", "target",
        ], leftAligned: [13])
    table.add([
        "\(items)", "1s", Bench.fixed(elapsed, 1), "\(polls)", Bench.megabytes(Int(rssMedian)),
        Bench.megabytes(Int(Bench.median(anonymous))), Bench.megabytes(Int(Bench.median(fileBacked))),
        Bench.megabytes(Int(Bench.median(proportional))),
        Bench.megabytes(samples.max() ?? 0), Bench.megabytes(peak), Bench.fixed(cpu, 2),
        Bench.fixed(cpu / elapsed * 3_600, 0), Bench.fixed(100 * cpu / elapsed, 2), "RSS ≤ 25 MB",
    ])
    print(table.render())
    print(
        "events delivered to the file sink during warm-up: \(eventsLines) of \(items); stopped with "
            + (killed ? "SIGKILL after SIGTERM was ignored for 3 s" : "SIGTERM") + " (\(exit?.description ?? "?"))."
    )
    print("anon / file = RssAnon (heap, stacks) and RssFile (mapped binary and shared libraries) of that RSS;")
    print("PSS = proportional set size (/proc/PID/smaps_rollup): shared library pages divided among their users.")
    print("CPU s/hour = CPU seconds over the period × 3600 / period (each poll fetches and decodes the whole list).")
}
