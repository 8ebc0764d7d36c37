public import BulkWatchStore
import BulkWatchSupport

/// A destination for journal events: stdout, a JSON-lines file, a webhook.
///
/// The dispatcher, not the sink, owns cursors, retries and fan-out: it hands each sink batches in
/// journal order and advances that sink's durable cursor only after `deliver` returns. So a sink
/// must tolerate being handed an event again after a crash or a failed batch (receivers dedupe on
/// the stable event id), and must throw, not swallow, when a batch was not fully delivered.
///
/// A sink that knows *why* a delivery failed throws ``DeliveryFailure``; the dispatcher then
/// applies the sink's ``deliveryPolicy`` (retry with backoff, dead-letter, or stop the sink). Any
/// other error is treated as retryable.
public protocol EventSink: Sendable {
    /// Unique, stable name of this sink; it keys the sink's cursor in the journal (e.g. `file:/var/log/x`).
    var name: String { get }

    /// The most events the dispatcher hands to one `deliver` call (a file takes hundreds at once;
    /// an unbatched webhook takes one, so each event is retried and dead-lettered on its own).
    var preferredBatchSize: Int { get }

    /// How the dispatcher retries, dead-letters and backs off for this sink.
    var deliveryPolicy: DeliveryPolicy { get }

    /// Delivers `events` (non-empty, ascending sequence) completely, or throws.
    func deliver(_ events: [JournalEvent]) async throws

    /// The last event this sink knows it holds, if it can tell (a file sink reads its last complete
    /// line). The dispatcher resumes after it only when it is ahead of the cursor, is byte for byte
    /// this journal's event of that sequence, and no operator rewound the cursor: so a crash between
    /// writing and committing the cursor never repeats an event in the file, while a new journal
    /// (the state was reset) appends and a `redeliver --since` re-writes.
    func lastDelivered() async throws -> DeliveredMark?

    /// Flushes and releases resources; called once at shutdown.
    func close() async
}

extension EventSink {
    public var preferredBatchSize: Int { Dispatcher.defaultBatchSize }
    public var deliveryPolicy: DeliveryPolicy { .local }
    public func lastDelivered() async throws -> DeliveredMark? { nil }
    public func close() async {}
}

/// The last event a sink holds: its sequence and its exact bytes (the CloudEvent as journaled), so the
/// dispatcher can tell this journal's event from another journal's event with the same number.
public struct DeliveredMark: Sendable, Equatable {
    public var sequence: Int64
    public var body: [UInt8]

    public init(sequence: Int64, body: [UInt8]) {
        self.sequence = sequence
        self.body = body
    }
}

/// Why a batch was not delivered, as far as the sink can tell: the dispatcher decides what to do.
///
/// A struct with a nested disposition (not a bare enum) so a new disposition never breaks a
/// caller that only logs the failure.
public struct DeliveryFailure: Error, Sendable, CustomStringConvertible {
    public enum Disposition: Sendable, Equatable {
        /// Transient (timeouts, 5xx, 429): try again later, not before `retryAfter` when given.
        case retry(retryAfter: Duration?)
        /// The receiver refused this content (4xx, a redirect): a few attempts, then dead-letter it.
        case reject
        /// The destination is gone for good (410): stop this sink, keep its cursor, say so loudly.
        case stopSink
    }

    public var disposition: Disposition
    /// One line for the log, `cursors.last_error` and `dead_letters.reason`; never holds a secret.
    public var reason: String

    public init(_ disposition: Disposition, reason: String) {
        self.disposition = disposition
        self.reason = reason
    }

    public var description: String { reason }
}

/// How the dispatcher treats one sink's failures (DESIGN.md §5).
public struct DeliveryPolicy: Sendable, Equatable {
    /// Backoff before retry n is uniform in 0…min(cap, base·2ⁿ⁻¹) (full jitter), or `Retry-After` when longer.
    public var backoffBase: Duration
    public var backoffCap: Duration
    /// A retrying batch whose oldest event (by its CloudEvents `time`) is older than this is
    /// dead-lettered; nil retries forever (local sinks: a full disk must not lose events).
    public var maxAge: Duration?
    /// Attempts before a rejected batch (``DeliveryFailure/Disposition/reject``) is dead-lettered.
    public var rejectAttempts: Int

    public init(backoffBase: Duration, backoffCap: Duration, maxAge: Duration?, rejectAttempts: Int = 3) {
        self.backoffBase = backoffBase
        self.backoffCap = backoffCap
        self.maxAge = maxAge
        self.rejectAttempts = max(1, rejectAttempts)
    }

    /// Stdout and files: retry forever, 1 s to 30 s apart; nothing is ever dead-lettered.
    public static let local = DeliveryPolicy(
        backoffBase: .seconds(1), backoffCap: .seconds(30), maxAge: nil, rejectAttempts: .max)

    /// Webhooks by default: 1 s to 5 min apart, dead-letter after 24 h or 3 refusals.
    public static let webhook = DeliveryPolicy(
        backoffBase: .seconds(1), backoffCap: .seconds(300), maxAge: .seconds(86400), rejectAttempts: 3)
}
