import BulkWatch
import Foundation

/// What `run` warns about once at start (issue 11): things that work but expose data, which an
/// operator should hear about without bulkwatch refusing to start.
enum StartupWarnings {
    static func all(_ configuration: RuntimeConfiguration) -> [String] {
        plainHTTP(configuration) + statePermissions(configuration.statePath)
    }

    /// One line per distinct `http://` URL whose host is not loopback: the token, the client
    /// secret or the events cross the network readable by anyone on the path.
    static func plainHTTP(_ configuration: RuntimeConfiguration) -> [String] {
        var urls: [String] = []
        for plan in configuration.targets {
            urls.append(plan.target.endpoint.url)
            if case .clientCredentials(let credentials) = plan.tokenSource { urls.append(credentials.tokenURL) }
            for spec in plan.sinks {
                if case .webhook(let url, _) = spec.destination { urls.append(url) }
            }
        }
        var seen = Set<String>()
        return urls.filter { isPlainHTTPBeyondLoopback($0) && seen.insert($0).inserted }.map { url in
            "plain http to a non-loopback host: \(URLRedaction.redact(url)); "
                + "credentials and events cross the network unencrypted (use https)"
        }
    }

    static func isPlainHTTPBeyondLoopback(_ url: String) -> Bool {
        guard let components = URLComponents(string: url), components.scheme?.lowercased() == "http" else {
            return false
        }
        let host = (components.host ?? "").lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let loopback = host == "localhost" || host.hasSuffix(".localhost") || host == "::1" || host.hasPrefix("127.")
        return !loopback
    }

    /// The state file is made private when the journal opens it; this says that it was not.
    static func statePermissions(_ path: String) -> [String] {
        guard let mode = StateFileCheck.loosePermissions(path) else { return [] }
        return ["state \(path) was readable by group or others (mode \(String(mode, radix: 8))); setting it to 0600"]
    }
}
