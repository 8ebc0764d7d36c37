/// A credential that never prints itself: `description` and string interpolation show
/// `<redacted>`, so a secret cannot leak into a log line by accident.
package struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The actual value; the name makes every use of it easy to find.
    package let revealed: String

    package init(_ value: String) {
        self.revealed = value
    }

    package var description: String { "<redacted>" }
    package var debugDescription: String { "<redacted>" }
}
