import ArgumentParser
import BulkWatch

/// Prints a fresh Standard Webhooks secret, for `--webhook-secret-file` and the receiver.
struct WebhookSecretCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook-secret",
        abstract: "Print a new webhook signing secret (whsec_ + base64 of 32 random bytes).",
        discussion: "Example: bulkwatch webhook-secret > webhook.secret && chmod 600 webhook.secret")

    func run() throws {
        print(WebhookSecret.generate())
    }
}
