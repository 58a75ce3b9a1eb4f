import Foundation
// AsyncHTTPClient and NIO stay out of this module's public interface (see CairnAPI's
// HTTPServer.swift: NIO's C module and CCairn's cannot be loaded in one compilation).
@_implementationOnly import AsyncHTTPClient
@_implementationOnly import NIOCore
@_implementationOnly import NIOHTTP1

/// An S3 bucket (path-style requests, Signature V4) as a backup target. Each request is tried
/// up to five times, 0.2 s apart and doubling, on a connection failure, a 5xx or a 429.
public final class S3Target: BackupTarget, Sendable {
    let endpoint: String
    let host: String
    let region: String
    let bucket: String
    let prefix: String
    let credentials: SigV4.Credentials
    public var description: String { "s3://\(bucket)/\(prefix) at \(endpoint)" }

    init(endpoint: String, region: String, bucket: String, prefix: String, credentials: SigV4.Credentials) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        host = String(self.endpoint.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first ?? "")
        self.region = region
        self.bucket = bucket
        self.prefix = prefix
        self.credentials = credentials
    }

    /// The process's shared client (its connections pooled for every target, never shut down:
    /// a target opened only to check its URL leaves nothing behind).
    private var http: HTTPClient { HTTPClient.shared }

    public func close() async {}

    private struct Answer {
        var status: Int
        var body: Data
    }

    /// One request, signed, with the retries.
    private func send(_ method: String, key: String?, query: [(String, String)] = [], body: Data? = nil) async throws(BackupError) -> Answer {
        let path = "/" + SigV4.encode(bucket, keepSlash: false) + (key.map { "/" + SigV4.encode(prefix + $0, keepSlash: true) } ?? "")
        let queryText = query.map { "\(SigV4.encode($0.0, keepSlash: false))=\(SigV4.encode($0.1, keepSlash: false))" }
            .joined(separator: "&")
        let url = endpoint + path + (queryText.isEmpty ? "" : "?" + queryText)
        var delay: UInt64 = 200_000_000
        var last = ""
        for attempt in 1...5 {
            var request = HTTPClientRequest(url: url)
            request.method = HTTPMethod(rawValue: method)
            let payloadHash = SigV4.sha256Hex(body ?? Data())
            for (k, v) in SigV4.sign(method: method, host: host, path: path, query: query, payloadHash: payloadHash,
                                     region: region, credentials: credentials) {
                request.headers.add(name: k, value: v)
            }
            if let body {
                request.headers.add(name: "Content-Length", value: "\(body.count)")
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            do {
                let response = try await http.execute(request, timeout: .seconds(120))
                let buffer = try await response.body.collect(upTo: 256 << 20)
                let answer = Answer(status: Int(response.status.code), body: Data(buffer.readableBytesView))
                if answer.status >= 500 || answer.status == 429 {
                    last = "HTTP \(answer.status): \(String(decoding: answer.body.prefix(300), as: UTF8.self))"
                } else {
                    return answer
                }
            } catch {
                last = "\(error)"
            }
            if attempt < 5 {
                try? await Task.sleep(nanoseconds: delay)
                delay *= 2
            }
        }
        throw .target("\(method) \(url): \(last)")
    }

    private func check(_ a: Answer, _ what: String) throws(BackupError) {
        guard a.status < 300 else {
            throw .target("\(what): HTTP \(a.status): \(String(decoding: a.body.prefix(300), as: UTF8.self))")
        }
    }

    public func put(_ key: String, _ data: Data) async throws(BackupError) {
        try check(try await send("PUT", key: key, body: data), "PUT \(key)")
    }

    public func get(_ key: String) async throws(BackupError) -> Data? {
        let a = try await send("GET", key: key)
        if a.status == 404 { return nil }
        try check(a, "GET \(key)")
        return a.body
    }

    public func exists(_ key: String) async throws(BackupError) -> Bool {
        let a = try await send("HEAD", key: key)
        if a.status == 404 { return false }
        try check(a, "HEAD \(key)")
        return true
    }

    public func delete(_ key: String) async throws(BackupError) {
        let a = try await send("DELETE", key: key)
        if a.status != 404 { try check(a, "DELETE \(key)") }
    }

    public func list(_ under: String) async throws(BackupError) -> [(key: String, modified: Date)] {
        var out: [(key: String, modified: Date)] = []
        var token: String?
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        repeat {
            var q = [("list-type", "2"), ("prefix", prefix + under)]
            if let t = token { q.append(("continuation-token", t)) }
            let a = try await send("GET", key: nil, query: q)
            try check(a, "LIST \(under)")
            let xml = String(decoding: a.body, as: UTF8.self)
            for item in Self.elements("Contents", in: xml) {
                guard let k = Self.elements("Key", in: item).first.map(Self.unescape) else { continue }
                let m = Self.elements("LastModified", in: item).first
                let date = m.flatMap { iso.date(from: $0) ?? ISO8601DateFormatter().date(from: $0) } ?? Date()
                out.append((String(k.dropFirst(prefix.count)), date))
            }
            token = Self.elements("IsTruncated", in: xml).first == "true" ? Self.elements("NextContinuationToken", in: xml).first : nil
        } while token != nil
        return out
    }

    /// The texts of every <name>...</name> in `xml` (S3's list answers are flat enough).
    static func elements(_ name: String, in xml: String) -> [String] {
        var out: [String] = []
        var rest = xml[...]
        while let open = rest.range(of: "<\(name)>"), let close = rest[open.upperBound...].range(of: "</\(name)>") {
            out.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return out
    }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
