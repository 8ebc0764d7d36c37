import Foundation
import Synchronization

/// How a ``FaultyReceiver`` answers webhook requests right now.
package enum ReceiverMode: Sendable, Equatable {
    /// 200: accepted.
    case accept
    /// This status with an empty body (500, 410, 400, ...).
    case status(Int)
    /// 302 to another URL, which a webhook sender must not follow.
    case redirect
    /// Waits this long, then answers 200 (a sender with a shorter timeout has given up by then).
    case slow(seconds: Double)
    /// Reads the request and never answers.
    case neverAnswer
}

/// A webhook receiver on a fixed loopback port that can misbehave, go down and come back, for fault tests.
///
/// It records the `webhook-id` of every request it accepted (answered 2xx), across restarts, so a test can
/// check that every journaled event reached it and what arrived twice.
package final class FaultyReceiver: Sendable {
    package let port: Int
    private let state: Shared

    private final class Shared: Sendable {
        let mutex = Mutex(State())
        func withLock<T>(_ body: (inout State) -> T) -> T { mutex.withLock { body(&$0) } }
    }

    private struct State {
        var mode: ReceiverMode = .accept
        var server: LoopbackHTTPServer?
        var accepted: [String] = []
        /// The distinct bodies accepted under each `webhook-id`.
        var bodies: [String: Set<[UInt8]>] = [:]
        var requests = 0
    }

    /// Starts listening on a free port, accepting everything.
    package init() throws {
        let state = Shared()
        self.state = state
        let server = try LoopbackHTTPServer(handler: Self.handler(state))
        port = server.port
        state.withLock { $0.server = server }
    }

    /// `http://127.0.0.1:PORT/hook`.
    package var url: String { "http://127.0.0.1:\(port)/hook" }
    /// The sink's name in `bulkwatch deliveries` and in the journal's cursors.
    package var sinkName: String { "webhook:" + url }

    /// Changes how following requests are answered.
    package func set(_ mode: ReceiverMode) {
        state.withLock { $0.mode = mode }
    }

    /// Stops listening: connections are refused until ``comeUp()``.
    package func goDown() {
        let server = state.withLock { state -> LoopbackHTTPServer? in
            defer { state.server = nil }
            return state.server
        }
        server?.stop()
    }

    /// Listens again on the same port (retrying briefly while the old socket is released).
    package func comeUp() throws {
        var lastError: (any Error)?
        for _ in 0..<50 {
            do {
                let server = try LoopbackHTTPServer(port: port, handler: Self.handler(state))
                state.withLock { $0.server = server }
                return
            } catch {
                lastError = error
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        throw lastError ?? POSIXError(.EADDRINUSE)
    }

    /// `webhook-id`s of accepted requests, in arrival order (repeats included).
    package var acceptedIDs: [String] { state.withLock { $0.accepted } }
    /// The distinct bodies accepted under each `webhook-id` (a redelivery must repeat the same bytes).
    package var acceptedBodies: [String: Set<[UInt8]>] { state.withLock { $0.bodies } }
    /// Requests received, whatever the answer.
    package var requestCount: Int { state.withLock { $0.requests } }

    package func stop() { goDown() }

    private static func handler(_ state: Shared) -> LoopbackHTTPServer.Handler {
        { request in
            let id = request.header("webhook-id") ?? ""
            let mode = state.withLock { state -> ReceiverMode in
                state.requests += 1
                if state.mode == .accept {
                    state.accepted.append(id)
                    state.bodies[id, default: []].insert(request.body)
                }
                return state.mode
            }
            switch mode {
            case .accept:
                return .respond(status: 200)
            case .status(let code):
                return .respond(status: code)
            case .redirect:
                return .respond(status: 302, headers: [("Location", "http://127.0.0.1:9/elsewhere")])
            case .slow(let seconds):
                // Counted as accepted only if the sender is still there: it is not, by construction of the tests.
                return .delayed(seconds: seconds, status: 200, body: [])
            case .neverAnswer:
                return .neverAnswer
            }
        }
    }
}
