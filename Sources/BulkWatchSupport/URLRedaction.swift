/// Webhook URLs as they may be shown: in logs, metric labels, `/healthz` and `deliveries`
/// (DESIGN.md §5). Receivers often authenticate with `https://user:token@host/…` or `?token=…`; the
/// scheme, host, port and path stay visible so an operator can still tell sinks apart.
///
/// The sink's *name* (its cursor key in the journal) keeps the full URL, so upgrading bulkwatch
/// neither loses a cursor nor merges two sinks; only what is displayed is redacted.
package enum URLRedaction {
    package static let placeholder = "<redacted>"

    /// `https://u:p@h/p?token=abc&x#f` → `https://<redacted>@h/p?token=<redacted>&x=<redacted>#<redacted>`.
    /// A parameter without `=` is redacted whole (it may be a bare token).
    package static func redact(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        var out = String(url[..<schemeEnd.upperBound])
        var rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") {
            out += placeholder + authority[at...]
        } else {
            out += authority
        }
        rest = rest[authorityEnd...]
        var fragment: Substring?
        if let hash = rest.firstIndex(of: "#") {
            fragment = rest[rest.index(after: hash)...]
            rest = rest[..<hash]
        }
        if let question = rest.firstIndex(of: "?") {
            out += rest[..<question] + "?"
            let items = rest[rest.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false)
            out += items.map { item in
                guard let equals = item.firstIndex(of: "=") else { return item.isEmpty ? "" : placeholder }
                return item[...equals] + placeholder
            }.joined(separator: "&")
        } else {
            out += rest
        }
        if let fragment { out += fragment.isEmpty ? "#" : "#" + placeholder }
        return out
    }

    /// A sink name for display: `webhook:URL` with the URL redacted; every other name as is.
    package static func sinkName(_ name: String) -> String {
        guard name.hasPrefix("webhook:") else { return name }
        return "webhook:" + redact(String(name.dropFirst("webhook:".count)))
    }
}
