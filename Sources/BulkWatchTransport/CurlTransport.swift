import BulkWatchSupport
import CCurl
import Foundation
import Synchronization

/// Settings shared by every transfer of one ``CurlTransport``.
package struct TransportConfiguration: Sendable {
    /// Most simultaneous connections to one host; further transfers queue inside curl.
    package var maxConnectionsPerHost: Int = 4
    /// Idle connections kept for reuse across all hosts.
    package var maxIdleConnections: Int = 16
    /// Deadline for TCP + TLS connection establishment (the request's own timeout still applies).
    package var connectTimeout: Duration = .seconds(10)
    /// A transfer slower than `lowSpeedBytesPerSecond` for `lowSpeedWindow` is aborted as timed out,
    /// so a stalled peer cannot hold a transfer until its whole deadline.
    package var lowSpeedBytesPerSecond: Int = 1
    package var lowSpeedWindow: Duration = .seconds(30)
    /// Extra CA certificates (PEM) to trust *in addition to* the system bundle, e.g. a private CA.
    /// libcurl's `CURLOPT_CAINFO` would replace the system bundle, so the transport hands curl one
    /// in-memory bundle (`CURLOPT_CAINFO_BLOB`): the system's certificates followed by these.
    /// Verification itself can't be turned off.
    package var caFile: String?
    /// The system bundle that ``caFile`` is added to; nil: the one libcurl was built with
    /// (`CURLINFO_CAINFO`, e.g. `/etc/ssl/certs/ca-certificates.crt`).
    package var systemCABundle: String?
    package var userAgent: String = "bulkwatch/\(BulkWatchVersion.current)"

    package init() {}
}

/// An HTTP client over one libcurl multi handle, driven by a dedicated thread.
///
/// Why libcurl: it is the transport operators already trust (proxies via `http_proxy` /
/// `https_proxy` / `no_proxy`, the system CA store, gzip), and one multi handle gives every
/// watcher and sink a shared, capped connection pool.
///
/// Guarantees: TLS verification always on; redirects not followed unless the request asks;
/// the body limit is enforced while receiving, not only from `Content-Length`; a cancelled
/// awaiting task removes its transfer at once; only `http` and `https` URLs are accepted.
/// Call ``shutdown()`` once when done: pending transfers then fail with `CancellationError`.
package final class CurlTransport: Sendable {
    private enum Command {
        case start(Transfer)
        case cancel(Transfer)
    }

    private struct Inbox {
        var commands: [Command] = []
        var shuttingDown = false
    }

    private let multi: MultiHandle
    private let configuration: TransportConfiguration
    private let inbox: Mailbox
    private let stopped = Mutex(false)
    /// The thread that drives the multi handle.
    private let loop: JoinableThread
    /// System bundle + ``TransportConfiguration/caFile``, built once; nil without a `caFile`.
    private let caBundle: [UInt8]?
    private let spareBodies = SpareBody()

    package init(configuration: TransportConfiguration = TransportConfiguration()) {
        CurlGlobal.initializeOnce()
        self.configuration = configuration
        self.caBundle = configuration.caFile.flatMap {
            CABundle.combined(system: configuration.systemCABundle ?? CABundle.defaultSystemBundle, extra: $0)
        }
        guard let raw = curl_multi_init() else {
            fatalError("curl_multi_init failed: out of memory")
        }
        let multi = MultiHandle(raw: raw)
        self.multi = multi
        _ = ccurl_multi_setopt_long(raw, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost)
        _ = ccurl_multi_setopt_long(raw, CURLMOPT_MAXCONNECTS, configuration.maxIdleConnections)
        let inbox = Mailbox()
        self.inbox = inbox
        loop = JoinableThread(name: "bulkwatch-curl") { [multi, inbox] in
            var transferLoop = TransferLoop(multi: multi, inbox: inbox)
            transferLoop.run()
        }
    }

    /// Sends `request` and returns the complete response, whatever its status code.
    /// Throws ``TransportError`` when no response arrived, `CancellationError` when the calling
    /// task was cancelled or the transport shut down.
    package func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        try Task.checkCancellation()
        let transfer = try Transfer(
            request: request, configuration: configuration, caBundle: caBundle, spare: spareBodies)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                transfer.continuation = continuation
                submit(.start(transfer))
            }
        } onCancel: {
            transfer.cancelRequested.withLock { $0 = true }
            submit(.cancel(transfer))
        }
    }

    /// Stops the loop thread, failing transfers in flight with `CancellationError`. Idempotent.
    package func shutdown() {
        let first = stopped.withLock { wasStopped in
            defer { wasStopped = true }
            return !wasStopped
        }
        guard first else { return }
        inbox.state.withLock { box in
            box.shuttingDown = true
            curl_multi_wakeup(multi.raw)
        }
        loop.join()
        curl_multi_cleanup(multi.raw)
    }

    deinit {
        shutdown()
    }

    private func submit(_ command: Command) {
        // The wakeup happens while the inbox lock is held. shutdown() sets `shuttingDown` under the
        // same lock before it waits for the loop and frees the multi handle, so every wakeup that
        // gets this far runs on a live handle; waking after the unlock could touch a freed one.
        let accepted = inbox.state.withLock { [multi] box -> Bool in
            guard !box.shuttingDown else { return false }
            box.commands.append(command)
            curl_multi_wakeup(multi.raw)
            return true
        }
        if !accepted, case .start(let transfer) = command {
            transfer.finish(.failure(CancellationError()))
        }
    }

    /// The multi handle. Only the loop thread drives it; the one call other threads make,
    /// `curl_multi_wakeup`, is documented thread-safe by libcurl, and is only made under the inbox
    /// lock while `shuttingDown` is false, i.e. before `curl_multi_cleanup` can run.
    private struct MultiHandle: @unchecked Sendable {
        let raw: UnsafeMutableRawPointer
    }

    private final class Mailbox: Sendable {
        let state = Mutex(Inbox())
    }

    private struct TransferLoop {
        let multi: UnsafeMutableRawPointer
        let inbox: Mailbox
        var active: [UnsafeMutableRawPointer: Transfer] = [:]

        init(multi: MultiHandle, inbox: Mailbox) {
            self.multi = multi.raw
            self.inbox = inbox
        }

        mutating func run() {
            while true {
                let (commands, shuttingDown) = inbox.state.withLock { box in
                    defer { box.commands.removeAll(keepingCapacity: true) }
                    return (box.commands, box.shuttingDown)
                }
                if shuttingDown {
                    for command in commands {
                        if case .start(let transfer) = command { transfer.finish(.failure(CancellationError())) }
                    }
                    for transfer in active.values {
                        curl_multi_remove_handle(multi, transfer.easy)
                        transfer.finish(.failure(CancellationError()))
                    }
                    active.removeAll()
                    return
                }
                for command in commands {
                    apply(command)
                }
                var running: Int32 = 0
                curl_multi_perform(multi, &running)
                collectFinished()
                curl_multi_poll(multi, nil, 0, 1000, nil)
            }
        }

        private mutating func apply(_ command: Command) {
            switch command {
            case .start(let transfer):
                if transfer.cancelRequested.withLock({ $0 }) {
                    transfer.finish(.failure(CancellationError()))
                    return
                }
                let code = curl_multi_add_handle(multi, transfer.easy)
                if code != CURLM_OK {
                    let message = String(cString: curl_multi_strerror(code))
                    transfer.finish(
                        .failure(TransportError(code: .other, message: message, curlCode: Int(code.rawValue))))
                    return
                }
                active[transfer.easy] = transfer
            case .cancel(let transfer):
                guard active.removeValue(forKey: transfer.easy) != nil else { return }
                curl_multi_remove_handle(multi, transfer.easy)
                transfer.finish(.failure(CancellationError()))
            }
        }

        private mutating func collectFinished() {
            var remaining: Int32 = 0
            while let message = curl_multi_info_read(multi, &remaining) {
                var result = CURLE_OK
                guard let easy = ccurl_msg_done_handle(message, &result) else { continue }
                guard let transfer = active.removeValue(forKey: easy) else { continue }
                curl_multi_remove_handle(multi, easy)
                transfer.complete(with: result)
            }
        }
    }
}

/// One request in flight: the easy handle and everything curl's callbacks write into.
///
/// Confinement: after `send` hands it to the loop, only the curl thread touches the mutable
/// fields; `cancelRequested` is the one field other threads write, hence its lock.
private final class Transfer: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    var continuation: CheckedContinuation<HTTPResponse, any Error>?
    let cancelRequested = Mutex(false)
    private let maxResponseBytes: Int
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    private var body: [UInt8] = []
    private var headers = HTTPHeaders()
    private var exceededLimit = false
    private let spare: SpareBody
    /// Where the body is published while it arrives (``HTTPRequest/arrivingBody``); nil once the answer turned
    /// out not to be a 200 or a second response began.
    private var arriving: ArrivingBody?
    /// Whether the status was checked at the first body byte (``receive(_:count:)``).
    private var checkedStatus = false
    /// Whether ``arriving`` has been given a pointer into ``body``, which must then be withdrawn before it moves.
    private var published = false
    /// Below this a body grows like any array; past it, the buffer is sized for the whole limit
    /// at once (see ``receive(_:count:)``), and it is the transport's spare (see ``SpareBody``).
    fileprivate static let smallBodyBytes = 1 << 20

    init(request: HTTPRequest, configuration: TransportConfiguration, caBundle: [UInt8]?, spare: SpareBody) throws {
        self.spare = spare
        guard let scheme = request.url.split(separator: ":", maxSplits: 1).first?.lowercased(),
            scheme == "http" || scheme == "https"
        else {
            throw TransportError(code: .invalidRequest, message: "only http and https URLs are supported", curlCode: 0)
        }
        try Self.validateHeaders(request.headers)
        guard let easy = curl_easy_init() else {
            throw TransportError(code: .other, message: "curl_easy_init failed", curlCode: 0)
        }
        self.easy = easy
        self.maxResponseBytes = request.maxResponseBytes
        self.arriving = request.arrivingBody
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        configure(request: request, configuration: configuration, caBundle: caBundle)
    }

    /// The transport's edge: no header line leaves with CR, LF or NUL in it, whoever built the
    /// request (issue 11). The value is never quoted in the error; it may be a credential.
    private static func validateHeaders(_ headers: HTTPHeaders) throws {
        for (name, value) in headers {
            guard HeaderValidation.isValidName(name) else {
                throw TransportError(
                    code: .invalidRequest, message: "refused: a header name is not an HTTP token", curlCode: 0)
            }
            if let problem = HeaderValidation.problem(inValue: value) {
                throw TransportError(code: .invalidRequest, message: "refused: header \(name) \(problem)", curlCode: 0)
            }
        }
    }

    deinit {
        curl_easy_cleanup(easy)
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
    }

    private func configure(request: HTTPRequest, configuration: TransportConfiguration, caBundle: [UInt8]?) {
        let opaqueSelf = Unmanaged.passUnretained(self).toOpaque()
        _ = ccurl_easy_setopt_string(easy, CURLOPT_URL, request.url)
        _ = ccurl_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https")
        _ = ccurl_easy_setopt_string(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        _ = ccurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        // 128 KiB receive reads instead of curl's 16 KiB: a 12 MB listing takes ~100 reads and write callbacks,
        // not ~750 (transport of a 100k-item body on loopback: ~6 ms to ~5 in `bulkwatch-bench fetch`).
        _ = ccurl_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, 128 * 1024)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBuffer)
        _ = ccurl_easy_setopt_string(easy, CURLOPT_USERAGENT, configuration.userAgent)
        // "" = every encoding this libcurl can decode (gzip, deflate, ...); curl decompresses.
        _ = ccurl_easy_setopt_string(easy, CURLOPT_ACCEPT_ENCODING, "")
        _ = ccurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, configuration.connectTimeout.roundedUpMilliseconds)
        _ = ccurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, request.timeout.roundedUpMilliseconds)
        _ = ccurl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, configuration.lowSpeedBytesPerSecond)
        _ = ccurl_easy_setopt_long(
            easy, CURLOPT_LOW_SPEED_TIME, max(1, configuration.lowSpeedWindow.roundedUpMilliseconds / 1000))
        _ = ccurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1)
        _ = ccurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2)
        if let caBundle {
            caBundle.withUnsafeBytes { bytes in
                _ = ccurl_easy_setopt_blob_copy(easy, CURLOPT_CAINFO_BLOB, bytes.baseAddress!, bytes.count)
            }
        } else if let caFile = configuration.caFile {
            // The file could not be read when the transport started: let curl fail on it loudly.
            _ = ccurl_easy_setopt_string(easy, CURLOPT_CAINFO, caFile)
        }
        _ = ccurl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, request.followRedirects ? 1 : 0)
        _ = ccurl_easy_setopt_long(easy, CURLOPT_MAXREDIRS, 5)
        // Early refusal when the server announces a size; the write callback enforces it regardless.
        _ = ccurl_easy_setopt_offset(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(request.maxResponseBytes))
        if let basic = request.basicAuth {
            _ = ccurl_easy_setopt_long(easy, CURLOPT_HTTPAUTH, 1 /* CURLAUTH_BASIC */)
            _ = ccurl_easy_setopt_string(easy, CURLOPT_USERNAME, basic.user)
            _ = ccurl_easy_setopt_string(easy, CURLOPT_PASSWORD, basic.password)
        }

        var headers = request.headers
        switch request.method {
        case .get:
            _ = ccurl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1)
        case .post:
            let (bytes, contentType): ([UInt8], String)
            switch request.body {
            case .form(let pairs):
                bytes = Array(FormEncoding.encode(pairs).utf8)
                contentType = "application/x-www-form-urlencoded"
            case .bytes(let data, let type):
                (bytes, contentType) = (data, type)
            case nil:
                (bytes, contentType) = ([], "application/octet-stream")
            }
            if headers["Content-Type"] == nil { headers.add("Content-Type", contentType) }
            // Without this curl waits up to a second for "100 Continue" on larger bodies.
            headers.add("Expect", "")
            _ = ccurl_easy_setopt_long(easy, CURLOPT_POST, 1)
            _ = ccurl_easy_setopt_offset(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count))
            // COPYPOSTFIELDS copies now, so the Swift array need not outlive this call. The extra
            // byte keeps the pointer valid for an empty body.
            var padded = bytes
            padded.append(0)
            padded.withUnsafeMutableBytes { buffer in
                _ = ccurl_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, buffer.baseAddress)
            }
        }
        for (name, value) in headers {
            // "Name:" removes a header curl would add; "Name;" sends it with an empty value.
            let line = value.isEmpty ? "\(name):" : "\(name): \(value)"
            headerList = curl_slist_append(headerList, line)
        }
        _ = ccurl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, opaqueSelf)
        _ = ccurl_easy_setopt_write_function(easy, transferWriteCallback)
        _ = ccurl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, opaqueSelf)
        _ = ccurl_easy_setopt_header_function(easy, transferHeaderCallback)
    }

    /// Appends received (already decompressed) bytes; refusing them (returning 0) makes curl abort
    /// with a write error, so a compression bomb stops as soon as it passes the limit.
    ///
    /// Memory stays within the limit plus a little: doubling growth would, near the limit, hold
    /// the old buffer and one twice its size while copying (issue 11 saw 1.1 GB at a 512 MiB limit).
    /// So a body that outgrows ``smallBodyBytes`` gets one buffer of the full limit instead; its
    /// untouched pages are never resident, and it is never copied again.
    fileprivate func receive(_ pointer: UnsafePointer<UInt8>, count: Int) -> Int {
        let needed = body.count + count
        if needed > maxResponseBytes {
            exceededLimit = true
            return 0
        }
        if needed > body.capacity, needed > Self.smallBodyBytes {
            if published {
                arriving?.withdraw()
                published = false
            }
            growLarge(to: maxResponseBytes)
        }
        body.append(contentsOf: UnsafeBufferPointer(start: pointer, count: count))
        if arriving != nil { publishArrived() }
        return count
    }

    /// Publishes the body so far to ``arriving`` when it is a 200's and sits in its large buffer (small ones
    /// still move as they grow, and are not worth a second thread).
    private func publishArrived() {
        if !checkedStatus {
            checkedStatus = true
            var status = 0
            _ = ccurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            if status != 200 {
                arriving?.end(with: nil)
                arriving = nil
                return
            }
        }
        guard let arriving, body.capacity > Self.smallBodyBytes else { return }
        body.withUnsafeBufferPointer { arriving.publish($0.baseAddress!, count: $0.count) }
        published = true
    }

    fileprivate func receiveHeader(_ pointer: UnsafePointer<UInt8>, count: Int) {
        let line = String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            // A new response starts (after 100 Continue or a followed redirect): keep only the last.
            headers = HTTPHeaders()
            if checkedStatus {
                // Bytes of an earlier response may have been published: that reader is done.
                arriving?.end(with: nil)
                arriving = nil
            }
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].trimmingCharacters(in: .whitespaces)
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        headers.add(name, value)
        if name.caseInsensitiveEquals("content-length"), let length = Int(value), length <= maxResponseBytes {
            arriving?.expect(length: length)
            if length > Self.smallBodyBytes {
                growLarge(to: length)
            } else {
                body.reserveCapacity(length)
            }
        }
    }

    /// Gives the body room for `capacity` bytes, in the transport's spare buffer when it is free and large
    /// enough (its pages are already resident: no page faults, no zeroing), else in a new one.
    private func growLarge(to capacity: Int) {
        if body.capacity < capacity, var reused = spare.take() {
            reused.removeAll(keepingCapacity: true)  // a new buffer if the last response is still in use
            if reused.capacity >= capacity {
                reused.append(contentsOf: body)
                // Already advised when it is the kept buffer; a new one (the last response still in use) is not.
                // Advised while `reused` is the only reference: a mutable access to a shared array copies it.
                HugePages.adviseCapacity(of: &reused)
                body = reused
                return
            }
        }
        body.reserveCapacity(capacity)
        HugePages.adviseCapacity(of: &body)
    }

    func complete(with result: CURLcode) {
        if result == CURLE_OK {
            var status = 0
            _ = ccurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            if body.capacity > Self.smallBodyBytes { spare.keep(body) }
            arriving?.end(with: status == 200 ? body : nil)
            let response = HTTPResponse(status: status, headers: headers, body: body)
            // Let go at once: the curl thread may still hold this transfer when the caller is done with the
            // response, and a reference left here would keep the next transfer from reusing the buffer.
            body = []
            finish(.success(response))
            return
        }
        finish(.failure(error(for: result)))
    }

    private func error(for result: CURLcode) -> TransportError {
        let detail = String(cString: errorBuffer)
        let message = detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
        let code: TransportError.Code
        switch result {
        case CURLE_WRITE_ERROR where exceededLimit, CURLE_FILESIZE_EXCEEDED:
            return TransportError(
                code: .responseTooLarge, message: "body exceeds \(maxResponseBytes) bytes",
                curlCode: Int(result.rawValue))
        case CURLE_OPERATION_TIMEDOUT:
            code = .timedOut
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            code = .couldNotConnect
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_CRL_BADFILE,
            CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_INVALIDCERTSTATUS:
            code = .tls
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            code = .invalidRequest
        default:
            code = .other
        }
        return TransportError(code: code, message: message, curlCode: Int(result.rawValue))
    }

    /// Resumes the awaiting task exactly once.
    func finish(_ result: Result<HTTPResponse, any Error>) {
        // Before the buffer can be let go: a reader of the arriving body must be out of it (no-op after a success).
        arriving?.end(with: nil)
        guard let continuation else { return }
        self.continuation = nil
        continuation.resume(with: result)
    }
}

private let transferWriteCallback: ccurl_data_callback = { pointer, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    let bytes = UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self)
    return transfer.receive(bytes, count: size * count)
}

private let transferHeaderCallback: ccurl_data_callback = { pointer, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    transfer.receiveHeader(UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self), count: size * count)
    return size * count
}

/// The CA bundle for `--ca-file`: the system's certificates followed by the extra ones, because
/// libcurl can only take one bundle and `CURLOPT_CAINFO` alone would drop the system's.
enum CABundle {
    /// The bundle libcurl was built to use, or the usual distribution paths when it does not say.
    static let defaultSystemBundle: String? = {
        if let easy = curl_easy_init() {
            defer { curl_easy_cleanup(easy) }
            var path: UnsafeMutablePointer<CChar>?
            if ccurl_easy_getinfo_string(easy, CURLINFO_CAINFO, &path) == CURLE_OK, let path {
                return String(cString: path)
            }
        }
        let known = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]
        return known.first { FileManager.default.isReadableFile(atPath: $0) }
    }()

    /// `system` (when readable) + `extra`, PEM concatenated; nil when `extra` cannot be read.
    static func combined(system: String?, extra: String) -> [UInt8]? {
        guard let extraBytes = FileManager.default.contents(atPath: extra) else { return nil }
        var bundle: [UInt8] = system.flatMap { FileManager.default.contents(atPath: $0) }.map(Array.init) ?? []
        if let last = bundle.last, last != UInt8(ascii: "\n") { bundle.append(UInt8(ascii: "\n")) }
        bundle.append(contentsOf: extraBytes)
        return bundle
    }
}

/// `curl_global_init` must run once, before any other thread uses curl.
enum CurlGlobal {
    private static let initialized: Bool = {
        ccurl_ignore_sigpipe()
        return curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
    }()

    static func initializeOnce() {
        precondition(initialized, "curl_global_init failed")
    }
}

/// `application/x-www-form-urlencoded`, percent-encoding everything but RFC 3986 unreserved bytes.
enum FormEncoding {
    static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return out
    }
}

/// The last large response body, kept for the next one: a poll's body of 12 MB (100k operations) to 122 MB
/// (1M) was a new allocation every time, and the kernel zeroed every page of it again as the bytes arrived
/// (at 1M, more time than copying them). Kept here, the buffer is shared with the response: the next
/// large transfer reuses it only once the caller has let go of the last response (Array's copy-on-write
/// decides, see ``Transfer``), else it gets a new one. The cost: the buffer stays resident between polls.
private final class SpareBody: Sendable {
    private let body = Mutex<[UInt8]?>(nil)

    func keep(_ buffer: [UInt8]) {
        body.withLock { $0 = buffer }
    }

    func take() -> [UInt8]? {
        body.withLock { spare in
            defer { spare = nil }
            return spare
        }
    }
}
