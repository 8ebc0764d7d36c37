/// A destination for journal events: stdout, a JSON-lines file, a webhook.
///
/// The dispatcher, not the sink, owns cursors, retries and fan-out: it hands each sink batches in
/// journal order and advances that sink's durable cursor only after `deliver` returns. So a sink
/// must tolerate being handed an event again after a crash or a failed batch (receivers dedupe on
/// the stable event id), and must throw, not swallow, when a batch was not fully delivered.
public protocol EventSink: Sendable {
    /// Unique, stable name of this sink; it keys the sink's cursor in the journal (e.g. `file:/var/log/x`).
    var name: String { get }

    /// Delivers `events` (non-empty, ascending sequence) completely, or throws.
    func deliver(_ events: [JournalEvent]) async throws

    /// The highest sequence this sink knows it already holds, if it can tell (a file sink reads its
    /// last complete line). The dispatcher resumes after max(cursor, this), so a crash between
    /// writing and committing the cursor never repeats an event in the file.
    func alreadyDelivered() async throws -> Int64?

    /// Flushes and releases resources; called once at shutdown.
    func close() async
}

extension EventSink {
    public func alreadyDelivered() async throws -> Int64? { nil }
    public func close() async {}
}
