import Crypto
import Foundation

/// AWS Signature Version 4 for S3 requests (header-based, the payload's SHA-256 signed).
enum SigV4 {
    struct Credentials: Sendable, Equatable {
        var accessKeyID: String
        var secretAccessKey: String
    }

    /// RFC 3986 unreserved characters stay; everything else is %XX (a path keeps its '/').
    static func encode(_ s: String, keepSlash: Bool) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || c == "-" || c == "_" || c == "." || c == "~" || (keepSlash && c == "/") {
                out.append(c)
            } else {
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    static func hex<D: Sequence>(_ d: D) -> String where D.Element == UInt8 {
        d.map { String(format: "%02x", $0) }.joined()
    }

    static func sha256Hex(_ data: Data) -> String { hex(SHA256.hash(data: data)) }

    /// The headers to add to a request: `x-amz-date`, `x-amz-content-sha256` and `Authorization`.
    /// `path` is already encoded; `query` pairs are not.
    static func sign(method: String, host: String, path: String, query: [(String, String)], payloadHash: String,
                     region: String, credentials: Credentials, date: Date = Date()) -> [(String, String)] {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let amzDate = f.string(from: date)
        let day = String(amzDate.prefix(8))
        var pairs: [(String, String)] = query.map { (encode($0.0, keepSlash: false), encode($0.1, keepSlash: false)) }
        pairs.sort { a, b in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
        let canonicalQuery = pairs.map { p in p.0 + "=" + p.1 }.joined(separator: "&")
        let headers = [("host", host), ("x-amz-content-sha256", payloadHash), ("x-amz-date", amzDate)]
        let canonicalHeaders = headers.map { "\($0.0):\($0.1)\n" }.joined()
        let signed = headers.map(\.0).joined(separator: ";")
        let canonical = [method, path, canonicalQuery, canonicalHeaders, signed, payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(region)/s3/aws4_request"
        let toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(Data(canonical.utf8))].joined(separator: "\n")
        func hmac(_ key: SymmetricKey, _ s: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(s.utf8), using: key)))
        }
        var key = SymmetricKey(data: Data(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, "s3", "aws4_request"] { key = hmac(key, part) }
        let signature = hex(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key))
        return [("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash),
                ("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signed), Signature=\(signature)")]
    }
}
