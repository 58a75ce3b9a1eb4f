import Foundation
@_implementationOnly import AsyncHTTPClient
@_implementationOnly import NIOCore
@_implementationOnly import NIOHTTP1
@_implementationOnly import NIOSSL

/// The Kubernetes API as a pod's service account reaches it: server-side apply, get, list and
/// delete of namespaced objects. The token is read again for every request (the kubelet rotates
/// it); the API server's certificate is checked against the service account's CA.
final class KubernetesAPI: Sendable {
    struct Endpoint: Sendable, Equatable {
        var baseURL: String
        var tokenFile: String
        var caFile: String?

        static let serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

        /// In a pod: KUBERNETES_SERVICE_HOST and _PORT, the mounted service account.
        static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Endpoint {
            guard let host = environment["KUBERNETES_SERVICE_HOST"], let port = environment["KUBERNETES_SERVICE_PORT"] else {
                throw KubernetesError(status: 0, message: "not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
            }
            let h = host.contains(":") ? "[\(host)]" : host
            return Endpoint(baseURL: "https://\(h):\(port)", tokenFile: serviceAccount + "/token", caFile: serviceAccount + "/ca.crt")
        }
    }

    let endpoint: Endpoint
    /// Named in every apply: the fields Cairn owns.
    let fieldManager: String
    private let client: any Sendable  // an HTTPClient (no NIO type in this class's layout)

    init(endpoint: Endpoint, fieldManager: String = "cairn-apiserver") throws {
        self.endpoint = endpoint
        self.fieldManager = fieldManager
        var config = HTTPClient.Configuration()
        config.timeout = .init(connect: .seconds(5), read: .seconds(30))
        if let ca = endpoint.caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(ca)
            config.tlsConfiguration = tls
        }
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        // A watch may be quiet for a minute (bookmarks come about that often); the server ends
        // it after `timeoutSeconds`, before this read timeout does.
        config.timeout = .init(connect: .seconds(5), read: .seconds(Int64(Self.watchSeconds) + 30))
        watchClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    private let watchClient: any Sendable
    private var http: HTTPClient { client as! HTTPClient }
    private var watchHTTP: HTTPClient { watchClient as! HTTPClient }
    /// How long the API server keeps one watch open (then the next starts where it ended).
    static let watchSeconds = 60

    func shutdown() async {
        try? await http.shutdown()
        try? await watchHTTP.shutdown()
    }

    /// The object at `path`, or nil when there is none.
    func get(_ path: String) async throws -> Data? {
        let (status, body) = try await send("GET", path)
        if status == 404 { return nil }
        try Self.check(status, body, "GET \(path)")
        return body
    }

    /// The items of the list at `path` (each an object's JSON), with a label selector.
    func list(_ path: String, labelSelector: String) async throws -> [Data] {
        try await listVersioned(path, labelSelector: labelSelector).items
    }

    /// The items of the list at `path` and the list's resourceVersion, where a watch goes on from.
    func listVersioned(_ path: String, labelSelector: String) async throws -> (items: [Data], resourceVersion: String) {
        let (status, body) = try await send("GET", path + "?labelSelector=" + Self.query(labelSelector))
        try Self.check(status, body, "GET \(path)")
        guard let object = try JSONSerialization.jsonObject(with: body) as? [String: Any] else { return ([], "") }
        let version = (object["metadata"] as? [String: Any])?["resourceVersion"] as? String ?? ""
        let items = try (object["items"] as? [Any] ?? []).map { try JSONSerialization.data(withJSONObject: $0) }
        return (items, version)
    }

    /// Watches the list at `path` from `resourceVersion` (with bookmarks), handing `handle` each
    /// event as it arrives, until the API server ends the watch after `watchSeconds` or `handle`
    /// returns false. A line that is not an event is skipped and logged by the caller (`handle`
    /// gets nil).
    func watch(_ path: String, labelSelector: String, resourceVersion: String,
               _ handle: @Sendable (KubeWatchEvent?) async -> Bool) async throws {
        let url = endpoint.baseURL + path + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=\(Self.watchSeconds)"
            + "&resourceVersion=" + Self.query(resourceVersion) + "&labelSelector=" + Self.query(labelSelector)
        let request = request(url, "GET", body: nil, contentType: nil)
        let response: HTTPClientResponse
        do {
            response = try await watchHTTP.execute(request, timeout: .seconds(Int64(Self.watchSeconds) + 30))
        } catch {
            throw KubernetesError(status: 0, message: "watch \(path): \(error)")
        }
        guard response.status.code == 200 else {
            let body = try await response.body.collect(upTo: 1 << 20)
            try Self.check(Int(response.status.code), Data(body.readableBytesView), "watch \(path)")
            return
        }
        var lines = KubeLineSplitter()
        do {
            for try await chunk in response.body {
                for line in try lines.feed(chunk.readableBytesView) {
                    guard await handle(KubeWatchEvent.parse(line)) else { return }
                }
            }
        } catch let e as KubernetesError {
            throw e
        } catch {
            throw KubernetesError(status: 0, message: "watch \(path): \(error)")
        }
    }

    private static func query(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "=,&+"))) ?? ""
    }

    /// Server-side apply of `object` (JSON is YAML): creates it, or sets the fields Cairn owns.
    /// Returns the object as the API server keeps it (with its uid).
    @discardableResult
    func apply(_ object: KubeValue, subresource: String? = nil) async throws -> Data {
        let path = try Self.path(of: object) + (subresource.map { "/" + $0 } ?? "")
        let body = try Self.applyBody(object)
        let (status, answer) = try await send("PATCH", path + "?fieldManager=\(fieldManager)&force=true", body: body,
                                              contentType: "application/apply-patch+yaml")
        try Self.check(status, answer, "apply \(path)")
        return answer
    }

    /// An apply body: JSON, which the API server reads as YAML, so never with a "\/" escape
    /// (JSON allows it; the API server's YAML parser refuses it: 400 for every apply).
    static func applyBody(_ object: KubeValue) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return try encoder.encode(object)
    }

    /// A JSON merge patch (RFC 7386) of the object at `path`: for the fields an apply does not own.
    func mergePatch(_ path: String, _ patch: Data) async throws {
        let (status, answer) = try await send("PATCH", path, body: patch, contentType: "application/merge-patch+json")
        if status == 404 { return }
        try Self.check(status, answer, "PATCH \(path)")
    }

    /// Deletes the object at `path`; what it owns goes too (in the background). Gone already is fine.
    func delete(_ path: String) async throws {
        let body = Data(#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#.utf8)
        let (status, answer) = try await send("DELETE", path, body: body, contentType: "application/json")
        if status == 404 { return }
        try Self.check(status, answer, "DELETE \(path)")
    }

    /// The REST path of a namespaced object: /api/v1/... for the core group, /apis/GROUP/VERSION/... else.
    static func path(apiVersion: String, kind: String, namespace: String, name: String? = nil) -> String {
        let plural = kind.lowercased() + (kind.hasSuffix("s") ? "es" : "s")
        let group = apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)"
        return "\(group)/namespaces/\(namespace)/\(plural)" + (name.map { "/" + $0 } ?? "")
    }

    static func path(of object: KubeValue) throws -> String {
        guard case .string(let apiVersion)? = object["apiVersion"], case .string(let kind)? = object["kind"],
              case .string(let namespace)? = object["metadata"]?["namespace"], case .string(let name)? = object["metadata"]?["name"] else {
            throw KubernetesError(status: 0, message: "an object needs apiVersion, kind, metadata.namespace and metadata.name")
        }
        return path(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name)
    }

    private func request(_ url: String, _ method: String, body: Data?, contentType: String?) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        if let token = try? String(contentsOfFile: endpoint.tokenFile, encoding: .utf8) {
            request.headers.add(name: "Authorization", value: "Bearer " + token.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: contentType ?? "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        return request
    }

    private func send(_ method: String, _ path: String, body: Data? = nil, contentType: String? = nil) async throws -> (Int, Data) {
        let request = request(endpoint.baseURL + path, method, body: body, contentType: contentType)
        do {
            let response = try await http.execute(request, timeout: .seconds(30))
            let buffer = try await response.body.collect(upTo: 32 << 20)
            return (Int(response.status.code), Data(buffer.readableBytesView))
        } catch {
            throw KubernetesError(status: 0, message: "\(method) \(path): \(error)")
        }
    }

    /// A status of 2xx passes; else the API server's Status message is thrown.
    private static func check(_ status: Int, _ body: Data, _ what: String) throws {
        guard !(200..<300).contains(status) else { return }
        let message = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["message"] as? String
        throw KubernetesError(status: status, message: "\(what): \(message ?? String(decoding: body.prefix(300), as: UTF8.self))")
    }
}

struct KubernetesError: Error, CustomStringConvertible {
    var status: Int
    var message: String
    var description: String { status > 0 ? "Kubernetes API \(status): \(message)" : message }
}
