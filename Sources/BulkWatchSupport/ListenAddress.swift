import Foundation

/// Where `/metrics`, `/healthz` and `/readyz` are served: `127.0.0.1:9464`, `[::1]:9464`, or a
/// bare port, which binds loopback — exposing metrics beyond the host must be asked for.
package struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    package init(parsing text: String) throws(SettingError) {
        var host = "127.0.0.1"
        var portText = Substring(text)
        if let colon = text.lastIndex(of: ":") {
            let hostPart = text[..<colon]
            portText = text[text.index(after: colon)...]
            if !hostPart.isEmpty {
                host = String(hostPart)
                if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            }
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw SettingError("invalid listen address '\(text)': expected HOST:PORT or PORT, e.g. 127.0.0.1:9464")
        }
        self.host = host
        self.port = port
    }

    package var isLoopback: Bool { host == "127.0.0.1" || host == "::1" || host == "localhost" }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
