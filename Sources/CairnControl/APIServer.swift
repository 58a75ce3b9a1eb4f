import CairnClient
import Crypto
import Dispatch
import Foundation
@_implementationOnly import Hummingbird
import Logging
@_implementationOnly import NIOCore
@_implementationOnly import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// `cairn apiserver`: the desired state, the reconcile loop over it, and the REST API.
public enum APIServer {
    public struct Options: Sendable {
        public var control: ControlConfig
        public var host: String
        public var port: Int
        /// The bearer token's file; default DATA/token, made on first start.
        public var tokenFile: String?
        /// Stop every volume's processes when the apiserver stops (`make run`); by default they
        /// go on serving, and the next apiserver adopts them.
        public var stopVolumesOnExit: Bool
        /// With `control.network` kubernetes: how to reach the Kubernetes API, and the volumes' image.
        public var kubernetes: KubernetesOptions?

        public init(control: ControlConfig, host: String, port: Int, tokenFile: String?, stopVolumesOnExit: Bool,
                    kubernetes: KubernetesOptions? = nil) {
            self.control = control
            self.host = host
            self.port = port
            self.tokenFile = tokenFile
            self.stopVolumesOnExit = stopVolumesOnExit
            self.kubernetes = kubernetes
        }
    }

    /// The Kubernetes orchestrator's settings.
    public struct KubernetesOptions: Sendable {
        /// The volumes' pods' image; nil: the image of this pod's own container (POD_NAME).
        public var image: String?
        /// The API server's URL, token file and CA file; nil: the pod's service account.
        public var apiURL: String?
        public var tokenFile: String?
        public var caFile: String?

        public init(image: String?, apiURL: String?, tokenFile: String?, caFile: String?) {
            self.image = image
            self.apiURL = apiURL
            self.tokenFile = tokenFile
            self.caFile = caFile
        }
    }

    /// Runs until SIGINT or SIGTERM. Prints `cairn: apiserver http://HOST:PORT` once listening.
    public static func run(_ options: Options, logger: Logger) async throws {
        let config = options.control
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(config.dataDir)/volumes", withIntermediateDirectories: true)
        let token = try Token.load(options.tokenFile ?? "\(config.dataDir)/token", create: options.tokenFile == nil,
                                   logger: logger)
        let store = try StateStore(path: "\(config.dataDir)/state.db")
        let events = EventLog(store: store, logger: logger)
        let orchestrator: any Orchestrator
        var mirror: ClusterStateMirror?
        switch config.network {
        case .local:
            orchestrator = LocalOrchestrator(store: store, logger: logger)
        case .kubernetes(let namespace):
            let k = options.kubernetes ?? KubernetesOptions(image: nil, apiURL: nil, tokenFile: nil, caFile: nil)
            let endpoint = try k.apiURL.map {
                KubernetesAPI.Endpoint(baseURL: $0, tokenFile: k.tokenFile ?? KubernetesAPI.Endpoint.serviceAccount + "/token", caFile: k.caFile)
            } ?? .inCluster()
            let api = try KubernetesAPI(endpoint: endpoint)
            var image = k.image ?? ""
            if image.isEmpty { image = try await KubernetesOrchestrator.ownImage(api: api) }
            logger.notice("Kubernetes orchestrator: namespace \(namespace), image \(image), API \(endpoint.baseURL)")
            orchestrator = KubernetesOrchestrator(api: api, namespace: namespace, image: image, store: store, config: config, logger: logger)
            // The cluster holds the desired state: read it back before anything is reconciled.
            let m = ClusterStateMirror(api: api, namespace: namespace, store: store, config: config, logger: logger)
            _ = try await m.restoreIfEmpty()
            mirror = m
        }
        let reconciler = Reconciler(store: store, orchestrator: orchestrator, events: events, config: config, logger: logger)
        await mirror?.attach(reconciler, events: events)
        let metrics = APIServerMetrics()

        let router = Router()
        router.middlewares.add(RequestCounter(metrics: metrics))
        router.get("/healthz") { _, _ in Answer.text("ok\n") }
        router.get("/readyz") { _, _ in
            await reconciler.ready ? Answer.text("ready\n") : Answer.text("adopting processes\n", status: .serviceUnavailable)
        }
        router.get("/openapi.json") { _, _ in
            Answer.text(OpenAPIDocument.json, contentType: "application/json")
        }
        router.get("/metrics") { _, _ in
            Answer.text(await metrics.render(store: store, reconciler: reconciler),
                        contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        let v1 = router.group("/v1").add(middleware: BearerAuth(token: token, logger: logger))
        if let mirror { v1.add(middleware: WriteThrough(mirror: mirror, logger: logger)) }
        APIRoutes(store: store, reconciler: reconciler, events: events, config: config, logger: logger).add(to: v1)

        let host = options.host
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: options.port), serverName: "cairn-apiserver"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? options.port
                let hp = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
                print("cairn: apiserver http://\(hp)")
                fflush(nil)
            },
            logger: logger
        )
        // A child that exits wakes the loop at once (adopted processes are not children: the
        // loop's idle tick sees them go).
        let sigchld = DispatchSource.makeSignalSource(signal: SIGCHLD, queue: .global())
        sigchld.setEventHandler { reconciler.wake() }
        sigchld.resume()
        defer { sigchld.cancel() }
        let loop = ReconcileService(reconciler: reconciler)
        var services: [any Service] = [app, loop]
        if let mirror { services.append(MirrorService(mirror: mirror)) }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        try await group.run()
        events.finishFollowers()
        if options.stopVolumesOnExit {
            logger.notice("stopping every volume's processes (--stop-volumes-on-exit)")
            await reconciler.stopAll()
        } else {
            logger.notice("stopped; the volumes' processes go on serving")
        }
    }
}

/// The state mirror's passes, every two seconds, as a service of the apiserver's group.
struct MirrorService: Service {
    let mirror: ClusterStateMirror

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await mirror.sync()
            try? await Task.sleep(for: .seconds(2))
        }
    }
}

/// With the state in the cluster, a change made through the API is written to its custom
/// resources before it is answered: an answered create survives the apiserver pod's loss. When
/// the cluster does not take it, the answer is 503: the change is made here and the mirror goes
/// on trying, but only a repeat of the request (every write is idempotent) that succeeds says it
/// is kept.
struct WriteThrough: RouterMiddleware {
    typealias Context = BasicRequestContext
    let mirror: ClusterStateMirror
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await next(request, context)
        guard request.method != .get, request.method != .head, (200..<300).contains(response.status.code) else {
            return response
        }
        if await mirror.sync() { return response }
        logger.warning("\(request.method) \(request.uri.path): made, but the cluster did not take it yet; answered 503")
        var refused = Answer.problem(.serviceUnavailable, "cluster-write-pending",
                                     "the change is made in the apiserver, but the Kubernetes API did not take its custom resources yet (tried again every 2 s); repeat the request to know it is kept")
        refused.headers[.retryAfter] = "2"
        return refused
    }
}

/// The reconcile loop as a service of the apiserver's group: ends when the group shuts down.
struct ReconcileService: Service {
    let reconciler: Reconciler

    func run() async throws {
        let task = Task { await reconciler.run() }
        await withGracefulShutdownHandler {
            await task.value
        } onGracefulShutdown: {
            task.cancel()
        }
    }
}

/// The API's bearer token: generated into the data directory on first start (32 random bytes,
/// hex, mode 0600), or read from `--token-file`.
enum Token {
    static func load(_ path: String, create: Bool, logger: Logger) throws -> String {
        if create && !FileManager.default.fileExists(atPath: path) {
            try RandomSecret.create(at: path)
            logger.notice("made a new API token in \(path)")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ControlError.io("cannot read the token file \(path)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.count >= 16 else { throw ControlError.io("the token in \(path) is shorter than 16 characters") }
        return token
    }
}

/// Every /v1 request must carry `Authorization: Bearer <token>`; a missing or wrong one gets 401.
/// The SHA-256 digests of the two are compared in constant time (no length or prefix leaks).
struct BearerAuth: RouterMiddleware {
    typealias Context = BasicRequestContext
    let expected: [UInt8]
    let logger: Logger

    init(token: String, logger: Logger) {
        expected = Array(SHA256.hash(data: Data(token.utf8)))
        self.logger = logger
    }

    private func matches(_ given: Substring) -> Bool {
        let digest = Array(SHA256.hash(data: Data(given.utf8)))
        var diff: UInt8 = 0
        for (a, b) in zip(digest, expected) { diff |= a ^ b }
        return diff == 0
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard header.hasPrefix(prefix) else {
            logger.notice("refused \(request.method) \(request.uri.path): no bearer token")
            return unauthorized("this API needs a bearer token (Authorization: Bearer ...; `cairn` reads CAIRN_TOKEN or --token-file)")
        }
        guard matches(header.dropFirst(prefix.count)) else {
            logger.notice("refused \(request.method) \(request.uri.path): wrong bearer token")
            return unauthorized("the bearer token is not this apiserver's")
        }
        return try await next(request, context)
    }

    private func unauthorized(_ detail: String) -> Response {
        var r = Answer.problem(.unauthorized, "unauthorized", detail)
        r.headers[.wwwAuthenticate] = #"Bearer realm="cairn""#
        return r
    }
}
