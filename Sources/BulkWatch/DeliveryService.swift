import BulkWatchDelivery
import BulkWatchSupport
import ServiceLifecycle
import Synchronization

/// Runs the dispatcher as a child of its own task group and swaps it when a reload changes the
/// sinks: the old one drains for a moment, then the new one starts from the stored cursors.
///
/// Graceful shutdown reaches the running dispatcher through the task group (it drains as far as it
/// can, DESIGN.md §5). The service group shuts it down after the watcher supervisor, so every
/// event the watchers committed is offered to the sinks before the process exits.
final class DeliveryService: Service {
    private struct Running: Sendable {
        var dispatcher: Dispatcher
        var finished = OneShot()
    }

    private let current = Mutex<Running?>(nil)
    private let starts: AsyncStream<Running>
    private let startContinuation: AsyncStream<Running>.Continuation

    init() {
        (starts, startContinuation) = AsyncStream.makeStream(of: Running.self)
    }

    /// The dispatcher running now (or about to run).
    var dispatcher: Dispatcher? { current.withLock { $0?.dispatcher } }

    /// Wakes the running dispatcher: a watcher committed new events.
    func notify() { dispatcher?.notify() }

    /// Starts `dispatcher` in place of the running one, which first drains for at most
    /// `drainTimeout` (its unfinished events stay journaled for the new one).
    func replace(with dispatcher: Dispatcher, drainTimeout: Duration = .milliseconds(1500)) async {
        if let old = current.withLock({ $0 }) {
            old.dispatcher.finish(drainTimeout: drainTimeout)
            await old.finished.wait()
        }
        let running = Running(dispatcher: dispatcher)
        current.withLock { $0 = running }
        startContinuation.yield(running)
        dispatcher.notify()
    }

    /// Lets the running dispatcher deliver what is journaled (each sink's delivery policy applies
    /// within `drainTimeout`, or without limit when nil), waits for it, and reports each sink's outcome.
    func finish(drainTimeout: Duration?) async -> [Dispatcher.SinkOutcome] {
        guard let running = current.withLock({ $0 }) else { return [] }
        running.dispatcher.finish(drainTimeout: drainTimeout)
        await running.finished.wait()
        return running.dispatcher.sinkOutcomes
    }

    func run() async {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await running in starts {
                    group.addTask {
                        try? await running.dispatcher.run()
                        running.finished.fire()
                    }
                }
            }
        } onGracefulShutdown: {
            self.startContinuation.finish()
        }
        current.withLock { $0 }?.finished.fire()
    }
}
