import BulkWatchConfig
import BulkWatchSupport
import BulkWatchWatcher
import Logging
import ServiceLifecycle
import Synchronization

/// Runs the watchers as children of one task group and starts, stops and restarts them on demand
/// (a reload today, lease changes in replicated mode), so that graceful shutdown and cancellation
/// reach every watcher and nothing runs outside the service group.
final class WatcherSupervisor: Service {
    private struct Child: Sendable {
        var plan: TargetPlan
        var watcher: Watcher
        var stop = OneShot()
        var finished = OneShot()
    }

    private struct State {
        var children: [String: Child] = [:]
        /// Children the task group has not picked up yet (started before `run`, or just now).
        var unspawned: Set<String> = []
        /// Every child started so far, in order, for ``waitForAll()``.
        var started: [Child] = []
        var failures: [String: any Error] = [:]
        var ended = false
    }

    private let state = Mutex(State())
    private let spawns: AsyncStream<String>
    private let spawnContinuation: AsyncStream<String>.Continuation
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
        (spawns, spawnContinuation) = AsyncStream.makeStream(of: String.self)
    }

    /// The plans of the watchers running now, by target name.
    var plans: [String: TargetPlan] { state.withLock { $0.children.mapValues(\.plan) } }

    /// Starts `watcher` for `plan` (replacing nothing: stop a target's old watcher first).
    func start(_ plan: TargetPlan, _ watcher: Watcher) {
        let name = plan.target.name
        let accepted = state.withLock { state -> Bool in
            guard !state.ended, state.children[name] == nil else { return false }
            let child = Child(plan: plan, watcher: watcher)
            state.children[name] = child
            state.unspawned.insert(name)
            state.started.append(child)
            return true
        }
        if accepted {
            spawnContinuation.yield(name)
        } else {
            logger.error("target \(name) was not started: the supervisor is stopping or it already runs")
        }
    }

    /// Stops the watcher of `name` and returns once it has stopped.
    func stop(_ name: String) async {
        guard let child = state.withLock({ $0.children[name] }) else { return }
        child.stop.fire()
        await child.finished.wait()
    }

    /// Stops every watcher (every sink stopped by itself: polling on would only fill the journal).
    func stopAll() async {
        for name in state.withLock({ Array($0.children.keys) }) { await stop(name) }
    }

    /// Waits until every watcher started so far has returned by itself (`--once`: one poll each)
    /// and gives the first failure, in start order.
    func waitForAll() async -> (any Error)? {
        let started = state.withLock { $0.started }
        for child in started { await child.finished.wait() }
        let failures = state.withLock { $0.failures }
        return started.lazy.compactMap { failures[$0.plan.target.name] }.first
    }

    func run() async {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await name in spawns {
                    let child = state.withLock { state -> Child? in
                        guard state.unspawned.remove(name) != nil else { return nil }
                        return state.children[name]
                    }
                    guard let child else { continue }
                    group.addTask { await self.runChild(child) }
                }
            }
        } onGracefulShutdown: {
            self.spawnContinuation.finish()
        }
        // Children started after the group closed never ran: nobody may wait for them forever.
        let leftovers = state.withLock { state -> [Child] in
            state.ended = true
            defer { state.unspawned = [] }
            return state.unspawned.compactMap { state.children.removeValue(forKey: $0) }
        }
        for child in leftovers { child.finished.fire() }
    }

    private func runChild(_ child: Child) async {
        let name = child.plan.target.name
        let failure: (any Error)? = await withTaskGroup(of: ChildEnd.self) { group in
            group.addTask {
                do {
                    try await child.watcher.run()
                    return .returned(nil)
                } catch {
                    return .returned(error)
                }
            }
            group.addTask {
                await child.stop.wait()
                return .stopped
            }
            let first = await group.next() ?? .stopped
            group.cancelAll()
            if case .returned(let error) = first { return error }
            return nil
        }
        state.withLock { state in
            if let failure { state.failures[name] = failure }
            if state.children[name]?.finished === child.finished { state.children[name] = nil }
        }
        child.finished.fire()
    }

    private enum ChildEnd: Sendable {
        case returned((any Error)?)
        case stopped
    }
}
