import BulkWatchSupport
package import Foundation

/// Checks a received webhook request the way a Standard Webhooks receiver should (DESIGN.md §5):
/// the receivers' side of ``WebhookSigner``, behind `bulkwatch verify`.
///
/// It answers the usual support question — "why does my endpoint reject your signature?" — with
/// every reason at once: a missing header, a stale or future timestamp, no `v1,` entry matching
/// any configured secret (often a body altered by a proxy, or a secret pasted without `whsec_`).
package struct WebhookVerifier: Sendable {
    package var secrets: [WebhookSecret]
    /// How far `webhook-timestamp` may be from now, either way.
    package var tolerance: Duration

    package init(secrets: [WebhookSecret], tolerance: Duration = Defaults.signatureTolerance) {
        self.secrets = secrets
        self.tolerance = tolerance
    }

    /// The verdict: valid when `problems` is empty.
    package struct Verdict: Sendable, Equatable {
        package var problems: [String]
        /// What checked out (the matching signature, the timestamp's age), for the report.
        package var notes: [String]
        package var isValid: Bool { problems.isEmpty }
    }

    /// A request as captured: header names (any case) and the exact body bytes.
    package struct CapturedRequest: Sendable, Equatable {
        package var headers: [(name: String, value: String)]
        package var body: [UInt8]

        package static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.body == rhs.body
                && lhs.headers.map { "\($0.name):\($0.value)" } == rhs.headers.map { "\($0.name):\($0.value)" }
        }

        package func header(_ name: String) -> String? {
            headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
        }

        /// Parses `[METHOD PATH HTTP/1.1]`, `Name: value` lines, an empty line, then the body (CRLF or
        /// LF line ends). With `Content-Length` the body is that many bytes; without it, the rest
        /// (a single trailing newline left by an editor or `echo` is dropped).
        package init(parsing bytes: [UInt8]) throws(WebhookVerifierError) {
            var index = 0
            var headers: [(String, String)] = []
            var first = true
            var sawBlank = false
            while index < bytes.count {
                var end = index
                while end < bytes.count, bytes[end] != 0x0A { end += 1 }
                var line = bytes[index..<end]
                if line.last == 0x0D { line = line.dropLast() }
                index = min(bytes.count, end + 1)
                if line.isEmpty {
                    if headers.isEmpty && first { continue }
                    sawBlank = true
                    break
                }
                let text = String(decoding: line, as: UTF8.self)
                defer { first = false }
                if first, !text.contains(":") || text.hasPrefix("POST ") || text.hasPrefix("PUT ") {
                    continue  // the request line
                }
                guard let colon = text.firstIndex(of: ":") else {
                    throw WebhookVerifierError(description: "line '\(text.prefix(60))' is not a header (Name: value)")
                }
                headers.append(
                    (
                        String(text[..<colon]).trimmingCharacters(in: .whitespaces),
                        String(text[text.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                    ))
            }
            guard sawBlank || index >= bytes.count else {
                throw WebhookVerifierError(description: "no empty line between the headers and the body")
            }
            self.headers = headers.map { (name: $0.0, value: $0.1) }
            var body = Array(bytes[index...])
            if let length = headers.first(where: { $0.0.lowercased() == "content-length" }).flatMap({ Int($0.1) }) {
                guard length <= body.count else {
                    throw WebhookVerifierError(
                        description: "Content-Length is \(length) but only \(body.count) body bytes were captured")
                }
                body = Array(body.prefix(length))
            } else if body.last == 0x0A {
                body.removeLast()
                if body.last == 0x0D { body.removeLast() }
            }
            self.body = body
        }

        package init(headers: [(name: String, value: String)], body: [UInt8]) {
            self.headers = headers
            self.body = body
        }
    }

    package func verify(_ request: CapturedRequest, now: Date = Date()) -> Verdict {
        var problems: [String] = []
        var notes: [String] = []
        let id = request.header("webhook-id")
        let timestampText = request.header("webhook-timestamp")
        let signatures = request.header("webhook-signature")
        for (name, value) in [
            ("webhook-id", id), ("webhook-timestamp", timestampText), ("webhook-signature", signatures),
        ]
        where value == nil || value?.isEmpty == true {
            problems.append("the \(name) header is missing")
        }
        guard let id, let timestampText, let signatures, !problems.contains(where: { $0.hasSuffix("missing") }) else {
            return Verdict(problems: problems, notes: notes)
        }
        guard let timestamp = Int64(timestampText) else {
            problems.append("webhook-timestamp '\(timestampText.prefix(40))' is not Unix seconds")
            return Verdict(problems: problems, notes: notes)
        }
        let age = Int64(now.timeIntervalSince1970.rounded(.down)) - timestamp
        let allowed = Int64(tolerance.components.seconds)
        if age > allowed {
            problems.append(
                "webhook-timestamp is \(age) s old, more than the tolerance of \(allowed) s (stale or replayed)")
        } else if -age > allowed {
            problems.append(
                "webhook-timestamp is \(-age) s in the future, more than the tolerance of \(allowed) s (clock skew?)")
        } else {
            notes.append("timestamp \(age) s old (tolerance \(allowed) s)")
        }
        let entries = signatures.split(separator: " ").map(String.init)
        let v1 = entries.filter { $0.hasPrefix("v1,") }
        if v1.isEmpty {
            problems.append("webhook-signature has no v1, entry (got '\(signatures.prefix(40))')")
            return Verdict(problems: problems, notes: notes)
        }
        var matched: (entry: Int, secret: Int)?
        for (secretIndex, secret) in secrets.enumerated() {
            let expected = WebhookSigner(secrets: [secret]).signature(id: id, timestamp: timestamp, body: request.body)
            if let entry = v1.firstIndex(where: { Self.constantTimeEqual($0, expected) }) {
                matched = (entry, secretIndex)
                break
            }
        }
        if let matched {
            notes.append(
                "signature \(matched.entry + 1) of \(v1.count) matches secret \(matched.secret + 1) of \(secrets.count)"
            )
        } else {
            problems.append(
                "no signature matches: \(v1.count) v1 signature(s) checked against \(secrets.count) secret(s) over "
                    + "\(request.body.count) body bytes (wrong secret, or the body or webhook-id was altered)")
        }
        return Verdict(problems: problems, notes: notes)
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess was right.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

/// A captured request that cannot be read as one. One line.
package struct WebhookVerifierError: Error, Sendable, CustomStringConvertible {
    package var description: String
}
