import Foundation

/// A raw setting as it arrives from a flag, an environment variable or the configuration file.
package enum SettingValue: Sendable, Equatable {
    case scalar(String)
    /// A YAML sequence or a repeated flag (`--sink`).
    case list([String])

    /// List keys also take one comma-separated string (environment variables, one-line YAML).
    package var items: [String] {
        switch self {
        case .scalar(let text):
            text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case .list(let items): items
        }
    }
}

/// Why one setting is invalid; the caller prefixes where it came from (file and line, flag, variable).
package struct SettingError: Error, Sendable, CustomStringConvertible {
    package var message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}
