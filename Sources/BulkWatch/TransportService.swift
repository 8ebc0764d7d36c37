import BulkWatchTransport
import ServiceLifecycle

/// Owns the lifetime of the shared libcurl multi loop inside the service group. It is the first
/// service of the group, so it is shut down last: the watchers, the dispatcher and the operations
/// server have stopped using it by then, and transfers still in flight end with a cancellation
/// rather than a crash.
struct TransportService: Service {
    let transport: CurlTransport

    init(transport: CurlTransport) {
        self.transport = transport
    }

    func run() async {
        // Returns on graceful shutdown, or throws when the group is cancelled: stop the loop either way.
        try? await gracefulShutdown()
        transport.shutdown()
    }
}
