public import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The client id, secret and token endpoint from the `oauthconf.xml` DruID issues to a client
/// application (`--oauthconf FILE`), so a DruID user does not retype them.
///
/// We have no schema for that file, so the reader is deliberately tolerant: it accepts the values
/// as element text (`<client_id>app</client_id>`), as attributes (`<client client_id="app" .../>`)
/// or as named entries (`<string name="client_id">app</string>`, `<entry key="clientId">…`). Names
/// match ignoring case, `_`, `-` and `.`: `client_id`/`clientId`, `client_secret`/`clientSecret`,
/// `token_endpoint`/`token_url`/`tokenUri`/`token`. When only an OAuth base URL is given
/// (`oauth_url`/`auth_url`/`auth_server`/`issuer`/`server`), the token endpoint is
/// `{base}/oauth2/token` as DESIGN.md §2 documents.
///
/// The file holds the client secret, so like every secret file it must not be readable by group
/// or others.
public struct OAuthConf: Sendable, Equatable {
    public var clientID: String
    public var clientSecret: Secret
    public var tokenURL: String

    public static func load(path: String) throws(SettingError) -> OAuthConf {
        let text = try SecretReference.readPrivateFile(path, what: "oauthconf")
        return try parse(Data(text.utf8), path: path)
    }

    public static func parse(_ data: Data, path: String) throws(SettingError) -> OAuthConf {
        let collector = ValueCollector()
        let parser = XMLParser(data: data)
        parser.delegate = collector
        parser.shouldResolveExternalEntities = false
        // corelibs' XMLParser may return true for a document libxml2 had to recover from.
        guard parser.parse(), parser.parserError == nil, collector.sawRoot, collector.balanced else {
            let reason = parser.parserError.map { "\($0.localizedDescription)" } ?? "unknown error"
            throw SettingError("oauthconf \(path): not valid XML (line \(parser.lineNumber)): \(reason)")
        }
        let values = collector.values
        func first(_ names: [String]) -> String? {
            for name in names { if let value = values[name], !value.isEmpty { return value } }
            return nil
        }
        guard let clientID = first(["clientid", "client"]) else {
            throw SettingError("oauthconf \(path): no client id (expected an element or attribute named client_id)")
        }
        guard let secret = first(["clientsecret", "secret"]) else {
            throw SettingError("oauthconf \(path): no client secret (expected client_secret)")
        }
        var tokenURL = first(["tokenendpoint", "tokenurl", "tokenuri", "token", "accesstokenuri", "accesstokenurl"])
        if tokenURL == nil, let base = first(["oauthurl", "authurl", "authserver", "oauthserver", "issuer", "server", "baseurl"]) {
            tokenURL = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/oauth2/token"
        }
        guard let tokenURL else {
            throw SettingError("oauthconf \(path): no token endpoint (expected token_endpoint or an OAuth base URL)")
        }
        do {
            try SettingParse.validateHTTPURL(tokenURL)
        } catch {
            throw SettingError("oauthconf \(path): token endpoint: \(error.message)")
        }
        return OAuthConf(clientID: clientID, clientSecret: Secret(secret), tokenURL: tokenURL)
    }

    static func normalize(_ name: String) -> String {
        String(name.lowercased().unicodeScalars.filter { !"_-.:".unicodeScalars.contains($0) })
    }

    /// Collects `normalized name → value` from elements, attributes and named entries; the first
    /// occurrence wins. Used only during one synchronous `parse()`.
    private final class ValueCollector: NSObject, XMLParserDelegate {
        var values: [String: String] = [:]
        var sawRoot = false
        var balanced: Bool { stack.isEmpty }
        private var stack: [(name: String, entryKey: String?, text: String)] = []

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            var entryKey: String?
            for (name, value) in attributes {
                let key = OAuthConf.normalize(name)
                if key == "name" || key == "key" {
                    entryKey = OAuthConf.normalize(value)
                } else {
                    store(key, value)
                }
            }
            if let value = attributes["value"], let entryKey { store(entryKey, value) }
            sawRoot = true
            stack.append((OAuthConf.normalize(elementName), entryKey, ""))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].text += string
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            guard let element = stack.popLast() else { return }
            let text = element.text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty else { return }
            store(element.entryKey ?? element.name, text)
        }

        private func store(_ key: String, _ value: String) {
            let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
            if values[key] == nil, !trimmed.isEmpty { values[key] = trimmed }
        }
    }
}
