import BulkWatchSupport
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing

@testable import BulkWatchAuth

/// A token endpoint answered by hand: every fetch waits until the test answers or fails it, and a
/// fetch whose task is cancelled ends with `CancellationError`, as a transfer on `CurlTransport` does.
private final class ManualTokenEndpoint: Sendable {
    private struct State {
        var calls = 0
        var nextID: UInt64 = 0
        var pending: [(id: UInt64, continuation: CheckedContinuation<TokenResponse, any Error>)] = []
    }

    private let state = Mutex(State())

    /// Fetches started so far.
    var calls: Int { state.withLock { $0.calls } }
    /// Fetches waiting for an answer.
    var pending: Int { state.withLock { $0.pending.count } }

    func fetch(_ credentials: ClientCredentials) async throws -> TokenResponse {
        let id = state.withLock { state in
            state.calls += 1
            defer { state.nextID += 1 }
            return state.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                state.withLock { $0.pending.append((id, continuation)) }
                if Task.isCancelled, let mine = take(id) { mine.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            take(id)?.resume(throwing: CancellationError())
        }
    }

    /// Answers every pending fetch with `token`, valid for an hour. Every one, not the first: were the
    /// provider to fetch twice, the test fails on its count instead of hanging on the second fetch.
    func answer(_ token: String) {
        for fetch in takeAll() {
            fetch.resume(
                returning: TokenResponse(accessToken: Secret(token), lifetime: 3600, refreshAfter: .seconds(3240)))
        }
    }

    /// Fails every pending fetch.
    func fail(_ error: any Error) {
        for fetch in takeAll() { fetch.resume(throwing: error) }
    }

    private func takeAll() -> [CheckedContinuation<TokenResponse, any Error>] {
        state.withLock { state in
            defer { state.pending.removeAll() }
            return state.pending.map(\.continuation)
        }
    }

    private func take(_ id: UInt64) -> CheckedContinuation<TokenResponse, any Error>? {
        state.withLock { state in
            guard let index = state.pending.firstIndex(where: { $0.id == id }) else { return nil }
            return state.pending.remove(at: index).continuation
        }
    }
}

private func provider(_ endpoint: ManualTokenEndpoint) -> TokenProvider {
    let credentials = ClientCredentials(tokenURL: "http://127.0.0.1:1/token", clientID: "c", clientSecret: Secret("s"))
    return TokenProvider(
        source: .clientCredentials(credentials), logger: Logger(label: "test"), clock: TestClock(),
        fetch: { try await endpoint.fetch($0) })
}

/// Waits, on a generous real-time budget, until the fetch is open and `waiting` callers queue on it.
private func settle(_ endpoint: ManualTokenEndpoint, _ tokens: TokenProvider, waiting: Int) async -> Bool {
    await ChildProcess.eventually(timeout: .seconds(30)) {
        endpoint.pending == 1 ? await tokens.waiting == waiting : false
    }
}

@Suite("Token provider: one fetch shared by concurrent callers", .timeLimit(.minutes(1)))
struct TokenProviderTests {
    @Test func concurrentCallersShareOneFetch() async throws {
        let endpoint = ManualTokenEndpoint()
        let tokens = provider(endpoint)
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<10 { group.addTask { try await tokens.token().revealed } }
            #expect(await settle(endpoint, tokens, waiting: 9))
            endpoint.answer("t-1")
            var seen: [String] = []
            for try await token in group { seen.append(token) }
            #expect(seen == Array(repeating: "t-1", count: 10))
        }
        #expect(endpoint.calls == 1)
        #expect(await tokens.refreshCount == 1)
        #expect(await tokens.waiting == 0)
        // Fresh now: served from the cache.
        #expect(try await tokens.token().revealed == "t-1")
        #expect(endpoint.calls == 1)
    }

    @Test func aFailedFetchFailsEveryWaiterOnceAndTheNextCallTriesAgain() async throws {
        let endpoint = ManualTokenEndpoint()
        let tokens = provider(endpoint)
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    do {
                        _ = try await tokens.token()
                        return false
                    } catch {
                        return (error as? TokenError)?.status == 503
                    }
                }
            }
            #expect(await settle(endpoint, tokens, waiting: 4))
            endpoint.fail(TokenError(status: 503, detail: "down"))
            var failedAlike = 0
            for await failed in group where failed { failedAlike += 1 }
            #expect(failedAlike == 5, "every caller got the one fetch's error")
        }
        #expect(endpoint.calls == 1, "an outage costs the endpoint one request, not one per caller")
        async let retried = tokens.token()
        #expect(await ChildProcess.eventually(timeout: .seconds(30)) { endpoint.pending == 1 })
        endpoint.answer("t-2")
        #expect(try await retried.revealed == "t-2")
        #expect(endpoint.calls == 2)
    }

    @Test func aCancelledFetcherHandsTheFetchToOneOfItsWaiters() async throws {
        let endpoint = ManualTokenEndpoint()
        let tokens = provider(endpoint)
        let leader = Task { try await tokens.token() }
        #expect(await settle(endpoint, tokens, waiting: 0))
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<3 { group.addTask { try await tokens.token().revealed } }
            #expect(await settle(endpoint, tokens, waiting: 3))
            leader.cancel()
            await #expect(throws: CancellationError.self) { try await leader.value }
            // One waiter takes over with a fetch of its own; the other two wait for it.
            #expect(await settle(endpoint, tokens, waiting: 2))
            #expect(endpoint.calls == 2)
            endpoint.answer("t-3")
            var seen: [String] = []
            for try await token in group { seen.append(token) }
            #expect(seen == ["t-3", "t-3", "t-3"])
        }
        #expect(endpoint.calls == 2)
        #expect(await tokens.refreshCount == 1)
    }

    @Test func aCancelledWaiterStopsWaitingAndTheFetchGoesOn() async throws {
        let endpoint = ManualTokenEndpoint()
        let tokens = provider(endpoint)
        let leader = Task { try await tokens.token().revealed }
        #expect(await settle(endpoint, tokens, waiting: 0))
        let waiter = Task { try await tokens.token().revealed }
        #expect(await settle(endpoint, tokens, waiting: 1))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(await tokens.waiting == 0)
        endpoint.answer("t-4")
        #expect(try await leader.value == "t-4")
        #expect(endpoint.calls == 1)
    }

    @Test func aTokenIsRefetchedAtNinetyPercentOfItsLifetimeOnTheInjectedClock() async throws {
        let endpoint = ManualTokenEndpoint()
        let clock = TestClock()
        let credentials = ClientCredentials(
            tokenURL: "http://127.0.0.1:1/token", clientID: "c", clientSecret: Secret("s"))
        let tokens = TokenProvider(
            source: .clientCredentials(credentials), logger: Logger(label: "test"), clock: clock,
            fetch: { try await endpoint.fetch($0) })
        async let first = tokens.token()
        #expect(await ChildProcess.eventually(timeout: .seconds(30)) { endpoint.pending == 1 })
        endpoint.answer("t-5")
        #expect(try await first.revealed == "t-5")
        clock.advance(by: .seconds(3239))
        #expect(try await tokens.token().revealed == "t-5")
        clock.advance(by: .seconds(1))
        async let second = tokens.token()
        #expect(await ChildProcess.eventually(timeout: .seconds(30)) { endpoint.pending == 1 })
        endpoint.answer("t-6")
        #expect(try await second.revealed == "t-6")
        #expect(endpoint.calls == 2)
    }
}
