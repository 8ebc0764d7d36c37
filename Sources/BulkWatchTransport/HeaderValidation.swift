/// The rules for what may go into an HTTP header, in one place (issue 11).
///
/// libcurl copies header lines to the wire as given, so a value with CR or LF would end the
/// header early and let whoever controls that value (a configuration file, the environment, the
/// token endpoint) add headers or even a second request. ``CurlTransport`` refuses such a request
/// before any byte is sent; configuration resolution and token parsing call the same functions so
/// that a bad value is reported where it came from instead of at the first request.
package enum HeaderValidation {
    /// Why `value` cannot be a header value (CR, LF or NUL), or nil when it can. Never echoes the
    /// value: it may be a credential.
    package static func problem(inValue value: String) -> String? {
        for byte in value.utf8 {
            switch byte {
            case 0x0D: return "contains a carriage return (CR)"
            case 0x0A: return "contains a line feed (LF)"
            case 0x00: return "contains a NUL byte"
            default: continue
            }
        }
        return nil
    }

    /// True when `name` is an RFC 9110 token: the only names that cannot change a header's meaning.
    package static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy(isTokenByte)
    }

    /// True when `token` matches RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
    /// "+" / "/" ) *"="`. An access token outside it is not a bearer token this client should send.
    package static func isB64Token(_ token: String) -> Bool {
        let bytes = Array(token.utf8)
        let padding = bytes.reversed().prefix { $0 == UInt8(ascii: "=") }.count
        let body = bytes.dropLast(padding)
        guard !body.isEmpty else { return false }
        return body.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                true
            default:
                false
            }
        }
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
