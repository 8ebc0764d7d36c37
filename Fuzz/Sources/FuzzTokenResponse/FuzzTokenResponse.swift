// libFuzzer target for TokenResponse.parse (see Fuzz/README.md).
//
// Input: the first byte picks the HTTP status, the rest is the body. Finding = any trap, or an
// answer the provider could not use: a token that is empty, or a refresh delay outside the lifetime.
import BulkWatch
import Foundation

private let statuses = [200, 200, 200, 200, 400, 401, 403, 500]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenResponse(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let first = input.first else { return 0 }
    let status = statuses[Int(first) % statuses.count]
    let body = Array(input.dropFirst())
    do {
        let answer = try TokenResponse.parse(status: status, body: body)
        guard status == 200, !answer.accessToken.revealed.isEmpty else {
            fatalError("TokenResponse oracle: accepted status \(status) or an empty token")
        }
        guard answer.refreshAfter > .zero else {
            fatalError("TokenResponse oracle: refresh delay \(answer.refreshAfter) is not positive")
        }
        // TokenProvider logs the lifetime as an Int.
        guard Int(exactly: answer.lifetime.rounded(.towardZero)) != nil else {
            fatalError("TokenResponse oracle: lifetime \(answer.lifetime) does not fit an Int")
        }
    } catch {
        guard error.status == status else { fatalError("TokenResponse oracle: error carries the wrong status") }
        _ = error.description
    }
    return 0
}
