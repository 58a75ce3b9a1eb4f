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
    }

    private var http: HTTPClient { client as! HTTPClient }

    func shutdown() async { try? await http.shutdown() }

    /// The object at `path`, or nil when there is none.
    func get(_ path: String) async throws -> Data? {
        let (status, body) = try await send("GET", path)
        if status == 404 { return nil }
        try Self.check(status, body, "GET \(path)")
        return body
    }

    /// The items of the list at `path` (each an object's JSON), with a label selector.
    func list(_ path: String, labelSelector: String) async throws -> [Data] {
        let query = labelSelector.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "=,&+"))) ?? ""
        let (status, body) = try await send("GET", path + "?labelSelector=" + query)
        try Self.check(status, body, "GET \(path)")
        guard let object = try JSONSerialization.jsonObject(with: body) as? [String: Any],
              let items = object["items"] as? [Any] else { return [] }
        return try items.map { try JSONSerialization.data(withJSONObject: $0) }
    }

    /// Server-side apply of `object` (JSON is YAML): creates it, or sets the fields Cairn owns.
    /// Returns the object as the API server keeps it (with its uid).
    @discardableResult
    func apply(_ object: KubeValue, subresource: String? = nil) async throws -> Data {
        let path = try Self.path(of: object) + (subresource.map { "/" + $0 } ?? "")
        let body = try JSONEncoder().encode(object)
        let (status, answer) = try await send("PATCH", path + "?fieldManager=\(fieldManager)&force=true", body: body,
                                              contentType: "application/apply-patch+yaml")
        try Self.check(status, answer, "apply \(path)")
        return answer
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

    private func send(_ method: String, _ path: String, body: Data? = nil, contentType: String? = nil) async throws -> (Int, Data) {
        var request = HTTPClientRequest(url: endpoint.baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        if let token = try? String(contentsOfFile: endpoint.tokenFile, encoding: .utf8) {
            request.headers.add(name: "Authorization", value: "Bearer " + token.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: contentType ?? "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
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
