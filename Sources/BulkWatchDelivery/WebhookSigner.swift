import Crypto
import Foundation

/// Why a `whsec_…` secret was refused. Never contains the secret itself.
package struct WebhookSecretError: Error, Sendable, CustomStringConvertible {
    package var description: String
}

/// One Standard Webhooks signing secret: `whsec_` followed by the base64 of the HMAC key.
///
/// Only the decoded key is kept; `description` never reveals it, so a secret can't leak into a log
/// line by accident.
package struct WebhookSecret: Sendable, Equatable, CustomStringConvertible {
    let key: [UInt8]

    /// Parses `whsec_<base64>`; throws on a missing prefix, invalid base64 or an empty key.
    package init(parsing text: String) throws(WebhookSecretError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix("whsec_") else {
            throw WebhookSecretError(description: "a webhook secret must start with 'whsec_'")
        }
        let encoded = trimmed.dropFirst(6)
        let alphabet = encoded.utf8.allSatisfy { byte in
            (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
                || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
        }
        guard alphabet, !encoded.hasPrefix("="), let data = Data(base64Encoded: String(encoded)) else {
            throw WebhookSecretError(description: "a webhook secret is not valid base64 after 'whsec_'")
        }
        guard !data.isEmpty else {
            throw WebhookSecretError(description: "a webhook secret has an empty key")
        }
        key = Array(data)
    }

    /// Parses every secret in `text`, separated by whitespace or newlines (several during rotation).
    package static func parseList(_ text: String) throws(WebhookSecretError) -> [WebhookSecret] {
        var secrets: [WebhookSecret] = []
        for part in text.split(whereSeparator: { $0.isWhitespace || $0.isNewline }) {
            secrets.append(try WebhookSecret(parsing: String(part)))
        }
        guard !secrets.isEmpty else { throw WebhookSecretError(description: "no webhook secret given") }
        return secrets
    }

    /// A fresh secret: `whsec_` + base64 of 32 random bytes (`bulkwatch webhook-secret`).
    package static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return "whsec_" + Data(bytes).base64EncodedString()
    }

    package var description: String { "whsec_(redacted)" }
}

/// Signs webhook bodies per Standard Webhooks (DESIGN.md §5): `v1,` + base64 of
/// HMAC-SHA256(key, "{id}.{timestamp}.{body}"), one entry per secret, space-separated, so a
/// receiver rotating secrets accepts either the old or the new one.
package struct WebhookSigner: Sendable {
    package let secrets: [WebhookSecret]

    package init(secrets: [WebhookSecret]) {
        self.secrets = secrets
    }

    /// The `webhook-signature` header value for one attempt.
    package func signature(id: String, timestamp: Int64, body: [UInt8]) -> String {
        var message = Array("\(id).\(timestamp).".utf8)
        message.append(contentsOf: body)
        return secrets.map { secret in
            let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret.key))
            return "v1," + Data(code).base64EncodedString()
        }.joined(separator: " ")
    }
}
