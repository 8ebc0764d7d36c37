/// Every built-in default in one place. The settings resolution, the layers' initializers, the
/// commands and the README's tables all read them from here, so a default cannot drift between the
/// four or five files that used to repeat it.
package enum Defaults {
    /// The SQLite file in the working directory: `demo` and a first `run` need no flag.
    package static let state = "./bulkwatch.db"
    /// How often a target is polled.
    package static let interval = Duration.seconds(30)
    /// One upstream request, connection to last byte.
    package static let timeout = Duration.seconds(30)
    /// 64 MiB: a DruID list item is a few hundred bytes, so this is some 200 000 operations, far more
    /// than one application keeps, while the answer, its decoded snapshot and the transfer buffer
    /// still fit the examples' `MemoryMax=512M` (the buffer never exceeds the limit, issue 11).
    package static let maxBodySize = 64 << 20
    /// How long journaled events are kept once every sink has passed them.
    package static let retain = Duration.seconds(7 * 86400)
    /// Consecutive polls an item must be missing before it is reported `expired`.
    package static let expireAfter = 2
    /// The statuses after which a bulk operation no longer changes (adaptive polling).
    package static let terminalStatuses: [String] = [
        "FINISHED", "FINISHED_WITH_ERRORS", "FAILED", "ERROR", "CANCELLED", "COMPLETED", "DONE",
    ]
    /// A target failing this long is reported as `bulkwatch.target.failing`.
    package static let failingAfter = Duration.seconds(300)
    /// A JSON-lines file sink rotates past this size and keeps this many rotated files.
    package static let fileMaxSize = 64 << 20
    package static let fileKeep = 5
    package static let webhookTimeout = Duration.seconds(10)
    package static let webhookBackoffBase = Duration.seconds(1)
    package static let webhookBackoffCap = Duration.seconds(300)
    package static let webhookMaxAge = Duration.seconds(86400)
    /// How long an `exec:` sink's program may run before it is stopped and retried.
    package static let execTimeout = Duration.seconds(30)
    /// How far a signed webhook's timestamp may be from now for `verify` (Standard Webhooks).
    package static let signatureTolerance = Duration.seconds(300)
    /// systemd credential names looked up when nothing else names a secret.
    package static let clientSecretCredential = "client-secret"
    package static let webhookSecretCredential = "webhook-secret"
}
