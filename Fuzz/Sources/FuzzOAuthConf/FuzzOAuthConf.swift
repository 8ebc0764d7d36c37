// libFuzzer target for OAuthConf.parse (see Fuzz/README.md).
//
// Input: an oauthconf.xml. Finding = any trap, or an answer that could send the client secret to
// a URL the file did not name for that purpose: a token URL or bulk endpoint that is not an
// http(s) URL without userinfo, a vendor-shape token URL without a `token_endpoint` in the file,
// a bulk endpoint without `api.activityid` or not ending in /v1/user/bulk, empty credentials, or
// an error that does not say which file it is about.
import BulkWatch
import Foundation

private let path = "fuzz.xml"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOAuthConf(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Data(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: input, as: UTF8.self)
    do {
        let conf = try OAuthConf.parse(input, path: path)
        guard !conf.clientID.isEmpty, !conf.clientSecret.revealed.isEmpty else {
            fatalError("OAuthConf oracle: empty client id or secret accepted")
        }
        for url in [conf.tokenURL, conf.bulkEndpoint].compactMap({ $0 }) {
            guard let components = URLComponents(string: url),
                ["http", "https"].contains(components.scheme?.lowercased() ?? ""),
                components.host?.isEmpty == false, components.user == nil, components.password == nil
            else {
                fatalError("OAuthConf oracle: accepted URL \(url.debugDescription)")
            }
        }
        if conf.tokenURL != nil, text.contains("oauth-config"), !text.contains("token_endpoint") {
            fatalError("OAuthConf oracle: a token URL without a token_endpoint in the file")
        }
        if let bulk = conf.bulkEndpoint {
            guard text.contains("api.activityid"), bulk.hasSuffix(OAuthConf.bulkPath) else {
                fatalError("OAuthConf oracle: bulk endpoint \(bulk.debugDescription) not from api.activityid")
            }
        }
    } catch {
        guard error.message.hasPrefix("oauthconf \(path): ") else {
            fatalError("OAuthConf oracle: error without the file's name: \(error.message.debugDescription)")
        }
    }
    return 0
}
