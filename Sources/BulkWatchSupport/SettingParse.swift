import Foundation

/// Value parsers shared by every layer, so a flag, a variable and a file key fail the same way.
package enum SettingParse {
    package static func scalar(_ value: SettingValue) throws(SettingError) -> String {
        guard case .scalar(let text) = value else { throw SettingError("expected a single value, not a list") }
        return text
    }

    package static func nonEmpty(_ value: SettingValue) throws(SettingError) -> String {
        let text = try scalar(value).trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { throw SettingError("must not be empty") }
        return text
    }

    package static func duration(_ value: SettingValue, atLeast minimum: Duration) throws(SettingError) -> Duration {
        let text = try scalar(value)
        guard let duration = Duration(parsing: text) else {
            throw SettingError("invalid duration '\(text)': use e.g. 300ms, 30s, 5m, 1h, 7d")
        }
        guard duration >= minimum else {
            throw SettingError("\(text) is too short (at least \(minimum.shortDescription))")
        }
        return duration
    }

    package static func httpURL(_ value: SettingValue) throws(SettingError) -> String {
        let text = try nonEmpty(value)
        try validateHTTPURL(text)
        return text
    }

    package static func validateHTTPURL(_ text: String) throws(SettingError) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            url.host?.isEmpty == false
        else {
            throw SettingError("invalid URL '\(text)': expected an http(s) URL")
        }
    }

    /// Refuses `https://user:pass@host/…` for an upstream URL: curl would not even use it (the
    /// Bearer header wins), and a password in a URL ends up in logs, `ps` and shell history.
    /// The URL is not echoed, since it holds the password.
    package static func validateNoUserinfo(_ text: String) throws(SettingError) {
        guard let components = URLComponents(string: text) else { return }
        if components.user != nil || components.password != nil {
            throw SettingError(
                "must not contain a user name or password (user:pass@host); "
                    + "credentials go in client-id and client-secret")
        }
    }

    package static func path(_ path: String, relativeTo directory: String?) -> String {
        guard let directory, !path.hasPrefix("/") else { return path }
        return URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path
    }
}
