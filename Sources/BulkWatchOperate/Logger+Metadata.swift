package import Logging

extension Logger {
    /// A copy of this logger that tags every line with `key=value` (the target, the sink), so each
    /// layer names what a line is about without threading metadata through every call.
    package func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}
