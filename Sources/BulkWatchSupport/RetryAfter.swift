import Foundation

/// The one parser of an HTTP `Retry-After` header, for the DruID client and the webhook sink alike.
///
/// Delay-seconds only: an HTTP-date is rare for APIs and is ignored (treated as absent). The delay
/// is capped at ``cap`` so that a misconfigured or hostile server cannot park a watcher or a sink
/// for days with `Retry-After: 99999999`.
package enum RetryAfter {
    /// The longest delay a server can ask for.
    package static let cap: Duration = .seconds(3600)

    /// nil when the header is absent, malformed, negative or an HTTP-date.
    package static func parse(_ value: String?) -> Duration? {
        guard let value, let seconds = Int(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 else {
            return nil
        }
        return min(.seconds(seconds), cap)
    }
}
