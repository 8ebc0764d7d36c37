package import BulkWatchSupport
package import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// What bulkwatch takes from the `oauthconf.xml` DruID issues to a client application
/// (`--oauthconf FILE`): with it, nothing else is needed to watch that application.
///
/// The shape is the one DruID issues and its own SDK reads (DESIGN.md §2; dru-id/druid-php-sdk,
/// `OAuthConfigFactory`):
///
/// ```xml
/// <oauth-config version="1.4">
///   <credentials><clientid>…</clientid><clientsecret>…</clientsecret></credentials>
///   <endpoints><url id="token_endpoint">https://auth.example.com/oauth2/token</url>…</endpoints>
///   <apis><api name="api.activityid" base-url="https://api.example.com/activityid">…</api>…</apis>
/// </oauth-config>
/// ```
///
/// Every value is found by its path, never by "the first URL-looking thing": a file has several
/// `base-url`s and endpoints (the user API's, authorization, logout), and taking the wrong one would
/// send the client secret to the wrong URL. Two elements where one is expected are an error for
/// the same reason. A flat file with `client_id`, `client_secret` and `token_endpoint` (element
/// text under the root, or attributes of the root) is still read, since those names are
/// unambiguous; it has no bulk endpoint, so `endpoint` must then be given.
///
/// The file holds the client secret, so it is read like every secret file (see
/// ``SecretReference/readPrivateFile(_:what:systemdCredential:)``).
package struct OAuthConf: Sendable, Equatable {
    package var clientID: String
    package var clientSecret: Secret
    /// `endpoints/url[@id="token_endpoint"]`; nil when the file has none (then `token-url` must be given).
    package var tokenURL: String?
    /// `apis/api[@name="api.activityid"]/@base-url` + `/v1/user/bulk`; nil when the file has none
    /// (then `endpoint` must be given).
    package var bulkEndpoint: String?

    /// The element paths named in error messages, so an operator can find what is missing.
    package enum Element {
        package static let clientID = "credentials/clientid"
        package static let clientSecret = "credentials/clientsecret"
        package static let tokenEndpoint = #"endpoints/url[@id="token_endpoint"]"#
        package static let activityAPI = #"apis/api[@name="api.activityid"]"#
    }

    /// Appended to the activity API's `base-url` (DESIGN.md §2).
    package static let bulkPath = "/v1/user/bulk"

    package init(clientID: String, clientSecret: Secret, tokenURL: String?, bulkEndpoint: String? = nil) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.tokenURL = tokenURL
        self.bulkEndpoint = bulkEndpoint
    }

    /// Reads and parses the file; `systemdCredential` when it is a `credential:` (see
    /// ``SecretReference/readPrivateFile(_:what:systemdCredential:)``).
    package static func load(path: String, systemdCredential: Bool = false) throws(SettingError) -> OAuthConf {
        let text = try SecretReference.readPrivateFile(path, what: "oauthconf", systemdCredential: systemdCredential)
        return try parse(Data(text.utf8), path: path)
    }

    package static func parse(_ data: Data, path: String) throws(SettingError) -> OAuthConf {
        let root = try XMLTree.parse(data, path: path)
        if root.name == "oauth-config" {
            return try vendorShape(root, path: path)
        }
        return try flatShape(root, path: path)
    }

    /// The token endpoint, or an error naming the element the file lacks.
    package func requireTokenURL(path: String) throws(SettingError) -> String {
        guard let tokenURL else {
            throw SettingError("oauthconf \(path): no \(Element.tokenEndpoint) (or give token-url)")
        }
        return tokenURL
    }

    /// The bulk endpoint, or an error naming the element the file lacks.
    package func requireBulkEndpoint(path: String) throws(SettingError) -> String {
        guard let bulkEndpoint else {
            throw SettingError("oauthconf \(path): no \(Element.activityAPI) with a base-url (or give endpoint)")
        }
        return bulkEndpoint
    }

    // MARK: - The vendor shape

    private static func vendorShape(_ root: XMLTree, path: String) throws(SettingError) -> OAuthConf {
        func fail(_ message: String) -> SettingError { SettingError("oauthconf \(path): \(message)") }
        guard let version = root.attributes["version"], !version.isEmpty else {
            throw fail("<oauth-config> has no version attribute: not a file DruID issued")
        }
        let credentials = try single(root.children(named: "credentials"), "credentials", path: path)
        guard let credentials else { throw fail("no \(Element.clientID)") }
        let clientID = try single(credentials.children(named: "clientid"), Element.clientID, path: path)?.text
        guard let clientID, !clientID.isEmpty else { throw fail("no \(Element.clientID)") }
        let secret = try single(credentials.children(named: "clientsecret"), Element.clientSecret, path: path)?.text
        guard let secret, !secret.isEmpty else { throw fail("no \(Element.clientSecret)") }

        var tokenURL: String?
        if let endpoints = try single(root.children(named: "endpoints"), "endpoints", path: path) {
            let urls = endpoints.children(named: "url").filter { $0.attributes["id"] == "token_endpoint" }
            if let url = try single(urls, Element.tokenEndpoint, path: path) {
                guard !url.text.isEmpty else { throw fail("\(Element.tokenEndpoint) is empty") }
                tokenURL = try checked(url.text, Element.tokenEndpoint, path: path)
            }
        }
        var bulkEndpoint: String?
        if let apis = try single(root.children(named: "apis"), "apis", path: path) {
            let matching = apis.children(named: "api").filter { $0.attributes["name"] == "api.activityid" }
            if let api = try single(matching, Element.activityAPI, path: path) {
                guard let base = api.attributes["base-url"]?.trimmingCharacters(in: .whitespaces), !base.isEmpty else {
                    throw fail("\(Element.activityAPI) has no base-url")
                }
                let trimmed = base.hasSuffix("/") ? String(base.dropLast()) : base
                bulkEndpoint = try checked(trimmed + bulkPath, Element.activityAPI + "/@base-url", path: path)
            }
        }
        return OAuthConf(
            clientID: clientID, clientSecret: Secret(secret), tokenURL: tokenURL, bulkEndpoint: bulkEndpoint)
    }

    /// At most one of `elements`: two would leave it to chance which one is used.
    private static func single(_ elements: [XMLTree], _ name: String, path: String) throws(SettingError) -> XMLTree? {
        guard elements.count <= 1 else {
            throw SettingError("oauthconf \(path): \(elements.count) \(name) elements where one is expected")
        }
        return elements.first
    }

    /// An http(s) URL without userinfo, or an error naming `element`.
    private static func checked(_ url: String, _ element: String, path: String) throws(SettingError) -> String {
        do {
            try SettingParse.validateHTTPURL(url)
            try SettingParse.validateNoUserinfo(url)
        } catch {
            throw SettingError("oauthconf \(path): \(element): \(error.message)")
        }
        return url
    }

    // MARK: - The flat shape

    /// `client_id`, `client_secret`, `token_endpoint` as the root's attributes or the text of its
    /// direct children; names compare ignoring case, `_`, `-` and `.` (`clientId`, `token-url`).
    private static func flatShape(_ root: XMLTree, path: String) throws(SettingError) -> OAuthConf {
        var values: [String: [String]] = [:]
        for (name, value) in root.attributes { values[normalize(name), default: []].append(value) }
        for child in root.children where !child.text.isEmpty {
            values[normalize(child.name), default: []].append(child.text)
        }
        func value(_ names: [String], _ label: String) throws(SettingError) -> String? {
            let found = Set(names.flatMap { values[$0] ?? [] }.map { $0.trimmingCharacters(in: .whitespaces) })
                .filter { !$0.isEmpty }
            guard found.count <= 1 else {
                throw SettingError("oauthconf \(path): \(found.count) different \(label) values where one is expected")
            }
            return found.first
        }
        guard let clientID = try value(["clientid"], "client_id") else {
            throw SettingError(
                "oauthconf \(path): no client id (expected <oauth-config> with \(Element.clientID), or client_id)")
        }
        guard let secret = try value(["clientsecret"], "client_secret") else {
            throw SettingError(
                "oauthconf \(path): no client secret (expected \(Element.clientSecret), or client_secret)")
        }
        let token = try value(
            ["tokenendpoint", "tokenurl", "tokenuri", "accesstokenuri", "accesstokenurl"], "token_endpoint")
        return OAuthConf(
            clientID: clientID, clientSecret: Secret(secret),
            tokenURL: try token.map { url throws(SettingError) in try checked(url, "token_endpoint", path: path) })
    }

    static func normalize(_ name: String) -> String {
        String(name.lowercased().unicodeScalars.filter { !"_-.:".unicodeScalars.contains($0) })
    }
}

/// A minimal element tree: enough to address `oauthconf.xml` by path. External entities are never
/// resolved; text is trimmed.
private final class XMLTree {
    let name: String
    let attributes: [String: String]
    var children: [XMLTree] = []
    var text = ""

    init(name: String, attributes: [String: String]) {
        self.name = name
        self.attributes = attributes
    }

    func children(named name: String) -> [XMLTree] { children.filter { $0.name == name } }

    static func parse(_ data: Data, path: String) throws(SettingError) -> XMLTree {
        // corelibs' XMLParser traps on an element name that is not valid UTF-8 (found by the
        // oauthconf fuzz target: `<oauth-confi\u{E1}\u{E1}…g …>`); DruID issues UTF-8, so anything
        // else is refused before the parser sees it.
        guard String(validating: data, as: UTF8.self) != nil else {
            throw SettingError("oauthconf \(path): not valid XML: the file is not UTF-8")
        }
        // It also crashes (strlen of NULL) on a processing instruction without data, `<?x?>`
        // (fuzz finding). An oauthconf.xml has none, so every `<?` but the leading declaration is
        // refused; this also refuses `<?` inside a comment or CDATA, which DruID never writes.
        var bytes = Array(data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        let declaration = Array("<?xml ".utf8)
        let start = bytes.starts(with: declaration) ? declaration.count : 0
        let open = UInt8(ascii: "<")
        let question = UInt8(ascii: "?")
        var opensInstruction = false
        for index in start..<max(start, bytes.count - 1) where bytes[index] == open && bytes[index + 1] == question {
            opensInstruction = true
            break
        }
        if opensInstruction {
            throw SettingError("oauthconf \(path): not valid XML: processing instructions (<?…?>) are not accepted")
        }
        let builder = Builder()
        let parser = XMLParser(data: data)
        parser.delegate = builder
        parser.shouldResolveExternalEntities = false
        // corelibs' XMLParser may return true for a document libxml2 had to recover from.
        guard parser.parse(), parser.parserError == nil, let root = builder.root, builder.stack.isEmpty else {
            let reason = parser.parserError.map { "\($0.localizedDescription)" } ?? "unknown error"
            throw SettingError("oauthconf \(path): not valid XML (line \(parser.lineNumber)): \(reason)")
        }
        return root
    }

    /// Used only during one synchronous `parse()`.
    private final class Builder: NSObject, XMLParserDelegate {
        var root: XMLTree?
        var stack: [XMLTree] = []

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            let element = XMLTree(name: elementName, attributes: attributes)
            if let parent = stack.last {
                parent.children.append(element)
            } else if root == nil {
                root = element
            }
            stack.append(element)
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack.last?.text += string
        }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
            stack.last?.text += String(decoding: CDATABlock, as: UTF8.self)
        }

        func parser(
            _ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?
        ) {
            guard let element = stack.popLast() else { return }
            element.text = element.text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}
