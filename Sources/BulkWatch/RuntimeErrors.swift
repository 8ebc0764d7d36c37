/// Every sink stopped by itself (a closed stdout, a 410): nothing is left to deliver to, so `run`
/// ends with exit 1, as a filter whose reader went away does.
package struct EverySinkStopped: Error, Sendable, CustomStringConvertible {
    package var reasons: String
    package var description: String { "every sink has stopped (\(reasons)); exiting" }
}

/// `--once` polled, but a sink could not deliver everything: the cron job must hear about it (exit 1).
package struct OnceUndelivered: Error, Sendable, CustomStringConvertible {
    package var problems: [String]
    package var description: String { problems.joined(separator: "; ") }
}
