// The two watchers' polls in `bulkwatch-bench compare`, taken in turns: pywatcher's poll k, then bulkwatch's poll k,
// then pywatcher's poll k + 1, and so on.
//
// Why: this machine is shared, and its speed moves by a third within minutes. Measured one after the other (all of
// pywatcher's polls, then all of bulkwatch's), each side met other minutes, and the same code's steady 100k ratio
// came out anywhere from 6.8x to 9.7x in runs minutes apart. Alternated poll by poll, both sides meet the same
// minutes, as the A/B pairs of every other measurement here do. Only one side is active at a time: the other's
// child waits on its pipe, and its simulator is idle, and what it wrote is on disk before the turn passes
// (``Bench/settleWrites()``).

/// Strict alternation between the two sides of a `compare`, pywatcher first. A side that called ``finish(_:duringTurn:)`` takes
/// no more turns, and the other then goes on alone.
actor PollTurns {
    enum Side: Sendable { case python, bulkwatch }

    private var next: Side = .python
    private var busy = false
    private var finished: Set<Side> = []
    private var waiting: [CheckedContinuation<Void, Never>] = []

    /// Waits until it is `side`'s turn (or the other side has finished), then takes it.
    func begin(_ side: Side) async {
        while busy || (next != side && !finished.contains(Self.other(side))) {
            await withCheckedContinuation { waiting.append($0) }
        }
        busy = true
    }

    /// Ends `side`'s turn: the other side's is next, once `side`'s writes are on disk. The `sync(2)` blocks the
    /// actor's thread while it lasts (up to a few hundred ms after a first poll); by design nothing of either side
    /// runs meanwhile, and the simulators serve from threads of their own.
    func end(_ side: Side) {
        Bench.settleWrites()
        busy = false
        next = Self.other(side)
        wakeAll()
    }

    /// `side` takes no more turns (also on failure, so the other side never waits for it); ends its turn if it was in one.
    func finish(_ side: Side, duringTurn: Bool) {
        Bench.settleWrites()
        finished.insert(side)
        if duringTurn { busy = false }
        next = Self.other(side)
        wakeAll()
    }

    /// Waits until `side` has finished.
    func waitUntilFinished(_ side: Side) async {
        while !finished.contains(side) {
            await withCheckedContinuation { waiting.append($0) }
        }
    }

    private func wakeAll() {
        let woken = waiting
        waiting.removeAll()
        for continuation in woken { continuation.resume() }
    }

    private static func other(_ side: Side) -> Side { side == .python ? .bulkwatch : .python }
}
