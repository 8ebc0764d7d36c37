package import BulkWatchStore
import BulkWatchSupport
package import BulkWatchTransport
import Crypto
import Foundation

/// POSTs events to an HTTP endpoint as signed CloudEvents (DESIGN.md §5).
///
/// The sink only makes one attempt per `deliver` call and classifies the answer as a
/// ``DeliveryFailure``; the dispatcher owns the retry loop, backoff, max age and dead letters, so
/// every sink follows one policy engine and `bulkwatch redeliver` can reuse this exact code path.
///
/// - Unbatched (`batchSize` 1): body = the journal's CloudEvent bytes,
///   `Content-Type: application/cloudevents+json`, `webhook-id` = the event id.
/// - Batched: body = a JSON array of the events, `application/cloudevents-batch+json`, one
///   signature over the array, `webhook-id` = ``batchID(_:)``.
///
/// Every attempt is signed afresh (new `webhook-timestamp`), so receivers that reject stale
/// timestamps accept a late retry. Redirects are never followed: a 3xx is a refusal.
package final class WebhookSink: EventSink {
    package let name: String
    /// Where events are POSTed (the `--sink` URL without bulkwatch's own `batch=` parameter).
    package let url: String
    package let preferredBatchSize: Int
    package let deliveryPolicy: DeliveryPolicy
    private let signer: WebhookSigner
    private let transport: CurlTransport
    private let timeout: Duration
    /// CloudEvents, or a chat/template body (DESIGN.md §9); signing and policy are the same for all.
    private let body: WebhookBody

    package init(
        url: String, signer: WebhookSigner, transport: CurlTransport, batchSize: Int = 1,
        timeout: Duration = .seconds(10), policy: DeliveryPolicy = .webhook, body: WebhookBody = .cloudEvents
    ) {
        self.name = "webhook:\(url)"
        self.url = url
        self.signer = signer
        self.transport = transport
        self.body = body
        self.preferredBatchSize = max(1, min(batchSize, body.maxBatch ?? batchSize))
        self.timeout = timeout
        self.deliveryPolicy = policy
    }

    package func deliver(_ events: [JournalEvent]) async throws {
        guard let first = events.first else { return }
        let id: String
        let body: [UInt8]
        let contentType: String
        if let (rendered, type) = self.body.render(events) {
            (id, body, contentType) = (events.count == 1 ? first.id : Self.batchID(events), rendered, type)
        } else if preferredBatchSize == 1 && events.count == 1 {
            (id, body, contentType) = (first.id, first.body, "application/cloudevents+json")
        } else {
            var array: [UInt8] = [UInt8(ascii: "[")]
            array.reserveCapacity(events.reduce(2) { $0 + $1.body.count + 1 })
            for (index, event) in events.enumerated() {
                if index > 0 { array.append(UInt8(ascii: ",")) }
                array.append(contentsOf: event.body)
            }
            array.append(UInt8(ascii: "]"))
            (id, body, contentType) = (Self.batchID(events), array, "application/cloudevents-batch+json")
        }
        try await post(id: id, body: body, contentType: contentType)
    }

    /// The `webhook-id` of a batch: `batch_` + the first 32 hex digits of SHA-256 over the event
    /// ids joined by newlines. Stable for the same events (retries carry the same id), distinct for
    /// different ones; receivers should still dedupe on the event ids inside, because after a
    /// restart the same events may be grouped differently.
    package static func batchID(_ events: [JournalEvent]) -> String {
        let digest = SHA256.hash(data: Array(events.map(\.id).joined(separator: "\n").utf8))
        return "batch_"
            + digest.prefix(16).map { byte in
                let hex = String(byte, radix: 16)
                return byte < 16 ? "0" + hex : hex
            }.joined()
    }

    /// One signed POST; returns on 2xx, otherwise throws a classified ``DeliveryFailure``.
    private func post(id: String, body: [UInt8], contentType: String) async throws {
        let timestamp = Int64(Date().timeIntervalSince1970)
        var headers = HTTPHeaders()
        headers.add("Content-Type", contentType)
        headers.add("webhook-id", id)
        headers.add("webhook-timestamp", "\(timestamp)")
        headers.add("webhook-signature", signer.signature(id: id, timestamp: timestamp, body: body))
        let request = HTTPRequest(
            method: .post, url: url, headers: headers, body: .bytes(body, contentType: contentType), timeout: timeout,
            maxResponseBytes: 1 << 20, followRedirects: false)
        let response: HTTPResponse
        do {
            response = try await transport.send(request)
        } catch let error as TransportError {
            throw DeliveryFailure(.retry(retryAfter: nil), reason: "\(error)")
        }
        if let failure = Self.classify(status: response.status, headers: response.headers) { throw failure }
    }

    /// DESIGN.md §5 as a table: nil = delivered.
    static func classify(status: Int, headers: HTTPHeaders) -> DeliveryFailure? {
        switch status {
        case 200..<300:
            return nil
        case 410:
            return DeliveryFailure(.stopSink, reason: "410 Gone")
        case 408, 429, 500..<600:
            let retryAfter = RetryAfter.parse(headers["Retry-After"])
            return DeliveryFailure(.retry(retryAfter: retryAfter), reason: "HTTP \(status)")
        case 300..<400:
            let target = headers["Location"].map { " to \(URLRedaction.redact($0))" } ?? ""
            return DeliveryFailure(.reject, reason: "HTTP \(status) redirect\(target) (redirects are not followed)")
        default:
            return DeliveryFailure(.reject, reason: "HTTP \(status)")
        }
    }
}
