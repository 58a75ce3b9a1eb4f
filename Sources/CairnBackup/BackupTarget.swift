import Foundation

/// Where backups live: objects under keys, as S3 has them (a directory mirrors the keys as
/// paths). Writes are whole objects, atomic: a reader sees all of an object or none.
public protocol BackupTarget: Sendable {
    var description: String { get }
    func put(_ key: String, _ data: Data) async throws(BackupError)
    /// nil when there is no such object.
    func get(_ key: String) async throws(BackupError) -> Data?
    func exists(_ key: String) async throws(BackupError) -> Bool
    /// Keys under `prefix`, with when each was last written.
    func list(_ prefix: String) async throws(BackupError) -> [(key: String, modified: Date)]
    func delete(_ key: String) async throws(BackupError)
    func close() async
}

/// A target as a user names it: `file:///dir` or `s3://bucket/prefix`, with an S3 endpoint,
/// region and credentials.
public struct TargetSpec: Codable, Sendable, Equatable {
    public var url: String
    /// S3: `http(s)://host:port` (default `https://s3.REGION.amazonaws.com`).
    public var endpoint: String?
    public var region: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?

    public init(url: String, endpoint: String? = nil, region: String? = nil, accessKeyID: String? = nil,
                secretAccessKey: String? = nil) {
        self.url = url
        self.endpoint = endpoint
        self.region = region
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
    }

    /// The spec without its secrets (what may be logged or stored beside a backup).
    public var redacted: TargetSpec {
        TargetSpec(url: url, endpoint: endpoint, region: region, accessKeyID: accessKeyID, secretAccessKey: nil)
    }

    /// Opens the target it names.
    public func open() throws(BackupError) -> any BackupTarget {
        if url.hasPrefix("file://") {
            let path = String(url.dropFirst("file://".count))
            guard path.hasPrefix("/"), path.count > 1 else { throw .invalid("a file target is file:///ABSOLUTE/DIR, not \(url)") }
            return try FileTarget(root: path)
        }
        if url.hasPrefix("s3://") {
            let rest = url.dropFirst("s3://".count)
            let bucket = String(rest.prefix { $0 != "/" })
            var prefix = String(rest.dropFirst(bucket.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            if !prefix.isEmpty { prefix += "/" }
            guard !bucket.isEmpty else { throw .invalid("an S3 target is s3://BUCKET[/PREFIX], not \(url)") }
            guard let key = accessKeyID, let secret = secretAccessKey, !key.isEmpty, !secret.isEmpty else {
                throw .invalid("S3 target \(url) needs credentials (an access key id and a secret access key)")
            }
            let region = self.region ?? "us-east-1"
            let endpoint = self.endpoint ?? "https://s3.\(region).amazonaws.com"
            guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
                throw .invalid("an S3 endpoint is http(s)://HOST[:PORT], not \(endpoint)")
            }
            return S3Target(endpoint: endpoint, region: region, bucket: bucket, prefix: prefix,
                            credentials: SigV4.Credentials(accessKeyID: key, secretAccessKey: secret))
        }
        throw .invalid("a backup target is file:///DIR or s3://BUCKET/PREFIX, not \(url)")
    }
}

extension TargetSpec {
    /// S3 credentials from a file of `KEY=VALUE` lines (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`; `#` comments), else from the environment's variables of those
    /// names. Returns the spec with them (unchanged for a file target or when there are none).
    public func withCredentials(file: String?, environment: [String: String]) throws(BackupError) -> TargetSpec {
        var s = self
        var values: [String: String] = [:]
        if let file {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw .invalid("cannot read the credentials file \(file)")
            }
            for line in text.split(whereSeparator: \.isNewline) {
                let t = line.trimmingCharacters(in: .whitespaces)
                guard !t.isEmpty, !t.hasPrefix("#"), let eq = t.firstIndex(of: "=") else { continue }
                values[String(t[..<eq]).trimmingCharacters(in: .whitespaces)] = String(t[t.index(after: eq)...])
                    .trimmingCharacters(in: .whitespaces)
            }
        }
        s.accessKeyID = s.accessKeyID ?? values["AWS_ACCESS_KEY_ID"] ?? environment["AWS_ACCESS_KEY_ID"]
        s.secretAccessKey = s.secretAccessKey ?? values["AWS_SECRET_ACCESS_KEY"] ?? environment["AWS_SECRET_ACCESS_KEY"]
        s.region = s.region ?? values["AWS_REGION"] ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"]
        s.endpoint = s.endpoint ?? values["AWS_ENDPOINT_URL"] ?? environment["AWS_ENDPOINT_URL"]
        return s
    }

    /// The credentials as a `KEY=VALUE` file's text (what the apiserver gives a restore).
    public var credentialsFileText: String {
        "AWS_ACCESS_KEY_ID=\(accessKeyID ?? "")\nAWS_SECRET_ACCESS_KEY=\(secretAccessKey ?? "")\n"
    }
}
