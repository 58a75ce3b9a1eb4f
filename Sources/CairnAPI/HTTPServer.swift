import CairnIO
import CairnReplica
import CairnSCSI
import CairnVolume
import CairnWire
import Foundation
import Logging
// Hummingbird, NIO and ServiceLifecycle are implementation-only: none of their types is in this module's public
// interface, so a client (the `cairn` executable) does not load them. It must not: NIO's
// dependency swift-system has a C module (CSystem) that includes the kernel's
// <linux/io_uring.h>, and CCairn includes liburing's own copy of it; both define
// `struct io_uring_sqe`, differently, and a compilation that loads both C modules fails.
// Hence the compiler's warning about `@_implementationOnly` without library evolution: it is
// safe here because no public or inlinable declaration of CairnAPI mentions these modules.
@_implementationOnly import Hummingbird
@_implementationOnly import HummingbirdCore
@_implementationOnly import NIOPosix
@_implementationOnly import ServiceLifecycle

/// An HTTP server (Hummingbird) on its own NIO event loop group of one thread, apart from the
/// data path's event loop: a slow client or a large scrape never runs on the loop that serves
/// I/O. Handlers reach the data path only through actor hops (`await volume.snapshot()`).
///
/// Started after the data path is up and stopped before it: `stop()` shuts the server down
/// gracefully (the listener closes, requests in flight finish, idle connections close; after a
/// deadline the server's task is cancelled), then ends the thread. No signal handler is
/// installed here: the process's signals stay with the data path's loop, which calls `stop()`.
public final class HTTPEndpoint: Sendable {
    /// The bound port (the one asked for, or the one the kernel chose for port 0).
    public let port: Int
    public let host: String
    // Only standard types in this public class's layout: NIO's stay out of the interface (see
    // the imports above). It is a `MultiThreadedEventLoopGroup`.
    private let group: any Sendable
    /// A `ServiceGroup` running the Hummingbird application.
    private let services: any Sendable
    private let task: Task<Void, Never>
    private let logger: Logger

    private init(port: Int, host: String, group: MultiThreadedEventLoopGroup, services: ServiceGroup,
                 task: Task<Void, Never>, logger: Logger) {
        self.port = port
        self.host = host
        self.group = group
        self.services = services
        self.task = task
        self.logger = logger
    }

    /// `http://HOST:PORT` with the bound port ([v6] in brackets).
    public var url: String { host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)" }

    /// Binds HOST:PORT and serves `router`; returns once the listener is bound, or throws (after
    /// cleaning up) when it cannot be.
    static func start(router: Router<BasicRequestContext>, host: String, port: Int,
                             logger: Logger) async throws -> HTTPEndpoint {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (bound, boundCont) = AsyncStream<Result<Int, any Error>>.makeStream()
        // The server without Hummingbird's `Application`: that one also runs a cache of the Date
        // header, a timer on the global executor every second, which woke an idle controller's
        // threads about 0.4 ms a second (2% of a CPU for 50 volumes). At the few requests a
        // controller gets, the header is formatted per response instead.
        let responder = router.buildResponder()
        let server = try HTTPServerBuilder.http1().buildServer(
            configuration: .init(address: .hostname(host, port: port), serverName: "cairn"),
            eventLoopGroup: group,
            logger: logger,
            responder: { request, writer, channel in
                let context = BasicRequestContext(source: .init(channel: channel, logger: logger))
                var response: Response
                do { response = try await responder.respond(to: request, context: context) } catch {
                    response = Response(status: .internalServerError)
                }
                response.headers[.date] = httpDate()
                response.headers[.server] = "cairn"
                try await writer.write(response: response.head, body: response.body)
            },
            onServerRunning: { channel in boundCont.yield(.success(channel.localAddress?.port ?? port)) }
        )
        // No shutdown or cancellation signals: `stop()` triggers the graceful shutdown.
        let services = ServiceGroup(configuration: .init(services: [server], logger: logger))
        let task = Task<Void, Never> {
            do {
                try await services.run()
                boundCont.yield(.failure(HTTPEndpointError.stopped))
            } catch {
                boundCont.yield(.failure(error))
            }
            boundCont.finish()
        }
        var it = bound.makeAsyncIterator()
        switch await it.next() {
        case .success(let p):
            return HTTPEndpoint(port: p, host: host, group: group, services: services, task: task, logger: logger)
        case .failure(let error):
            await task.value
            try? await group.shutdownGracefully()
            throw error
        case nil:
            task.cancel()
            try? await group.shutdownGracefully()
            throw HTTPEndpointError.stopped
        }
    }

    /// Stops serving: a graceful shutdown, then (if it has not ended within `timeoutSeconds`)
    /// cancellation; then ends the thread.
    public func stop(timeoutSeconds: Double = 5) async {
        if let services = services as? ServiceGroup { await services.triggerGracefulShutdown() }
        if !(await ended(within: timeoutSeconds)) {
            logger.warning("HTTP server still running \(timeoutSeconds) s after its shutdown began: cancelling it")
            task.cancel()
            _ = await ended(within: 2)
        }
        if let group = group as? MultiThreadedEventLoopGroup {
            do { try await group.shutdownGracefully() } catch { logger.warning("HTTP loop shutdown: \(error)") }
        }
    }

    /// Whether the server's task ends within `seconds`. Unstructured waits, so a server that does
    /// not end cannot hold this call past the deadline.
    private func ended(within seconds: Double) async -> Bool {
        let (first, firstCont) = AsyncStream<Bool>.makeStream()
        Task { [task] in
            await task.value
            firstCont.yield(true)
        }
        Task {
            try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            firstCont.yield(false)
        }
        var it = first.makeAsyncIterator()
        return await it.next() ?? false
    }
}

/// Now as an HTTP date (RFC 9110: `Sun, 06 Nov 1994 08:49:37 GMT`).
func httpDate() -> String {
    var t = time(nil)
    var tm = tm()
    gmtime_r(&t, &tm)
    var buf = [CChar](repeating: 0, count: 40)
    let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S GMT", &tm)
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

public enum HTTPEndpointError: Error, CustomStringConvertible {
    case stopped

    public var description: String { "the HTTP server stopped before it was listening" }
}

/// The controller's HTTP API (REST + `/metrics` + `/healthz`) over one `Volume`. Every handler
/// takes what it shows from one hop into the volume actor (`snapshot()`, or the change it
/// asks for); `/v1/stats` adds one status request to an RW replica for the space in use (at
/// most one per `Recent.maxAge`).
///
/// | route | answer |
/// |---|---|
/// | `GET /v1/volume` | `VolumeView` |
/// | `PUT /v1/volume/size` `{"size":BYTES}` | 200 + `VolumeView` once grown; 409 smaller or not writable; 422 not a block multiple |
/// | `GET /v1/qos`, `PUT /v1/qos` | `QoSView`; PUT takes `QoSLimitsBody` (400 bad body or unknown field, 422 bad value) |
/// | `GET /v1/replicas` | `[ReplicaView]` |
/// | `GET /v1/status` | `StatusView`: both of the above from one snapshot (what the apiserver polls) |
/// | `POST /v1/replicas` `{"address":"HOST:PORT"}` | 201 + the replica list; 409 if present; 400 bad body |
/// | `DELETE /v1/replicas/{id or address}` | 204; 404 unknown; 409 if quorum would break |
/// | `GET /v1/stats` | `VolumeStatsView` (Jiva's `/v1/stats` fields) |
/// | `GET /v1/snapshots` | `SnapshotListView` |
/// | `POST /v1/snapshots` `{"name":NAME}` | 201 + `SnapshotView`; 409 name taken, offline or busy; 422 bad name |
/// | `DELETE /v1/snapshots/{name}` | 204 (merged away in the background); 404 unknown |
/// | `POST /v1/snapshots/{name}/revert` | 200 + `VolumeView`; 409 while an initiator is logged in; 404 unknown |
/// | `POST /v1/backups` `{"snapshot":NAME,"target":{...}}` | 202 + `BackupView` (it runs in the background); 404 no snapshot; 422 a bad target |
/// | `GET /v1/backups`, `GET /v1/backups/{id}` | `[BackupView]`, `BackupView` (this controller's jobs since it started) |
/// | `GET /metrics` | Prometheus text (`ControllerMetrics`) |
/// | `GET /healthz` | 200 `ok` unless the volume is offline, then 503 |
public enum ControllerAPI {
    /// Largest request body accepted (the only body is a replica address).
    static let maxBody = 64 << 10

    /// Serves the API for `volume` on HOST:PORT (see `HTTPEndpoint`).
    /// `loggedIn` counts the initiators logged in now (a revert is refused while any is).
    public static func serve(volume: Volume, target: SCSITarget, host: String, port: Int,
                             loggedIn: @escaping @Sendable () async -> Int = { 0 },
                             logger: Logger) async throws -> HTTPEndpoint {
        try await HTTPEndpoint.start(router: router(volume: volume, target: target, loggedIn: loggedIn, logger: logger),
                                     host: host, port: port,
                                     logger: logger)
    }

    static func router(volume: Volume, target: SCSITarget, loggedIn: @escaping @Sendable () async -> Int = { 0 },
                       logger: Logger) -> Router<BasicRequestContext> {
        let router = Router()
        let metrics = ControllerMetrics(volumeName: volume.config.name)
        let usedBytes = Recent<UInt64?>()

        router.get("/v1/volume") { _, _ -> Response in
            json(VolumeView(await volume.snapshot()))
        }
        router.put("/v1/volume/size") { request, _ -> Response in
            let expected = #"expected a JSON body {"size": BYTES}"#
            let (data, object): (Data, [String: Any])
            switch await jsonBody(request, expected) {
            case .problem(let p): return p
            case .object(let d, let o): (data, object) = (d, o)
            }
            guard Set(object.keys) == ["size"], let resize = try? JSONDecoder().decode(ResizeRequest.self, from: data) else {
                return problem(.badRequest, "bad-body", expected)
            }
            let started = monotonicNanos()
            do throws(VolumeError) {
                try await volume.grow(to: resize.size)
            } catch {
                return volumeProblem(error)
            }
            logger.notice("volume size set to \(resize.size) bytes through the API (\((monotonicNanos() &- started) / 1_000_000) ms)")
            return json(VolumeView(await volume.snapshot()))
        }
        router.get("/v1/replicas") { _, _ -> Response in
            json(await volume.snapshot().replicas.map(ReplicaView.init))
        }
        router.get("/v1/status") { _, _ -> Response in
            let s = await volume.snapshot()
            return json(StatusView(volume: VolumeView(s), replicas: s.replicas.map(ReplicaView.init)))
        }
        router.post("/v1/replicas") { request, _ -> Response in
            let expected = #"expected a JSON body {"address":"HOST:PORT"}"#
            let data: Data
            switch await jsonBody(request, expected) {
            case .problem(let p): return p
            case .object(let d, _): data = d
            }
            guard let add = try? JSONDecoder().decode(AddReplicaRequest.self, from: data) else {
                return problem(.badRequest, "bad-body", expected)
            }
            guard let address = ReplicaAddress(add.address.trimmingCharacters(in: .whitespaces)) else {
                return problem(.badRequest, "bad-address", "not a HOST:PORT address: \(add.address)")
            }
            do throws(VolumeError) {
                try await volume.addReplica(address)
            } catch {
                return volumeProblem(error)
            }
            return json(await volume.snapshot().replicas.map(ReplicaView.init), status: .created)
        }
        router.delete("/v1/replicas/:id") { _, context -> Response in
            guard let raw = context.parameters.get("id") else { return problem(.badRequest, "bad-request", "no replica id") }
            let id = raw.removingPercentEncoding ?? raw
            do throws(VolumeError) {
                try await volume.removeReplica(id)
            } catch {
                return volumeProblem(error)
            }
            return Response(status: .noContent)
        }
        router.get("/v1/stats") { _, _ -> Response in
            let s = await volume.snapshot()
            let used = await usedBytes.get { await volume.usedBytes() }
            return json(VolumeStatsView(s, usedBytes: used))
        }
        router.get("/v1/qos") { _, _ -> Response in
            json(QoSView(await target.qosStatus()))
        }
        router.put("/v1/qos") { request, _ -> Response in
            let (data, object): (Data, [String: Any])
            switch await jsonBody(request, "expected a JSON object of QoS limits") {
            case .problem(let p): return p
            case .object(let d, let o): (data, object) = (d, o)
            }
            let unknown = Set(object.keys).subtracting(QoSLimitsBody.fields)
            guard unknown.isEmpty else {
                return problem(.badRequest, "unknown-field", "unknown field(s): \(unknown.sorted().joined(separator: ", "))")
            }
            let limits: QoSLimits
            do { limits = try JSONDecoder().decode(QoSLimitsBody.self, from: data).limits } catch {
                return problem(.badRequest, "bad-body", "limits are whole numbers (bandwidths in bytes per second), burstSeconds a number: \(error)")
            }
            if let why = limits.validate() { return problem(.unprocessableContent, "bad-qos", why) }
            await target.setQoS(limits)
            logger.notice("QoS limits changed: \(limits.summary)")
            return json(QoSView(await target.qosStatus()))
        }
        router.get("/v1/snapshots") { _, _ -> Response in
            do throws(VolumeError) {
                return json(SnapshotListView(try await volume.snapshots()))
            } catch {
                return volumeProblem(error)
            }
        }
        router.post("/v1/snapshots") { request, _ -> Response in
            let expected = #"expected a JSON body {"name": NAME}"#
            let object: [String: Any]
            switch await jsonBody(request, expected) {
            case .problem(let p): return p
            case .object(_, let o): object = o
            }
            guard Set(object.keys) == ["name"], let name = object["name"] as? String else {
                return problem(.badRequest, "bad-body", expected)
            }
            do throws(VolumeError) {
                let (info, pause) = try await volume.createSnapshot(name: name)
                var view = SnapshotView(info, names: [:])
                view.pauseMicros = pause / 1000
                return json(view, status: .created)
            } catch {
                return volumeProblem(error)
            }
        }
        router.delete("/v1/snapshots/:name") { _, context -> Response in
            guard let name = context.parameters.get("name")?.removingPercentEncoding else {
                return problem(.badRequest, "bad-request", "no snapshot name")
            }
            do throws(VolumeError) {
                try await volume.deleteSnapshot(name: name)
            } catch {
                return volumeProblem(error)
            }
            return Response(status: .noContent)
        }
        router.post("/v1/snapshots/:name/revert") { _, context -> Response in
            guard let name = context.parameters.get("name")?.removingPercentEncoding else {
                return problem(.badRequest, "bad-request", "no snapshot name")
            }
            let sessions = await loggedIn()
            guard sessions == 0 else {
                return problem(.conflict, "initiator-logged-in",
                               "\(sessions) initiator session(s) logged in: log them out before a revert (their caches would not match the volume)")
            }
            do throws(VolumeError) {
                try await volume.revert(to: name)
            } catch {
                return volumeProblem(error)
            }
            return json(VolumeView(await volume.snapshot()))
        }
        router.post("/v1/backups") { request, _ -> Response in
            let expected = #"expected a JSON body {"snapshot": NAME, "target": {"url": URL, ...}}"#
            let data: Data
            switch await jsonBody(request, expected) {
            case .problem(let p): return p
            case .object(let d, let o):
                guard Set(o.keys).isSubset(of: ["snapshot", "target"]) else { return problem(.badRequest, "unknown-field", expected) }
                data = d
            }
            guard let r = try? JSONDecoder().decode(BackupRequest.self, from: data) else {
                return problem(.badRequest, "bad-body", expected)
            }
            do throws(VolumeError) {
                return json(BackupView(try await volume.startBackup(r)), status: .accepted)
            } catch {
                return volumeProblem(error)
            }
        }
        router.get("/v1/backups") { _, _ -> Response in
            json(await volume.backups().map(BackupView.init))
        }
        router.get("/v1/backups/:id") { _, context -> Response in
            guard let id = context.parameters.get("id")?.removingPercentEncoding, let p = await volume.backup(id) else {
                return problem(.notFound, "not-found", "no backup job with that id on this controller")
            }
            return json(BackupView(p))
        }
        router.get("/metrics") { _, _ -> Response in
            let s = await volume.snapshot()
            return text(metrics.render(s, qos: await target.qosStatus(), loop: await volume.loopIdleStats()),
                        contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.get("/healthz") { _, _ -> Response in
            let state = await volume.state
            return state == .offline ? text("offline\n", status: .serviceUnavailable) : text("ok\n")
        }
        return router
    }

    enum JSONBody {
        case object(Data, [String: Any])
        case problem(Response)
    }

    /// The request's body, at most `maxBody` bytes, as a JSON object; or the problem to answer
    /// (413, or 400 with `expected` as the detail).
    static func jsonBody(_ request: Request, _ expected: String) async -> JSONBody {
        var request = request
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: maxBody) } catch {
            return .problem(problem(.contentTooLarge, "body-too-large", "the body is larger than \(maxBody) bytes"))
        }
        let data = Data(body.readableBytesView)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return .problem(problem(.badRequest, "bad-body", expected))
        }
        return .object(data, object)
    }

    static func volumeProblem(_ error: VolumeError) -> Response {
        switch error {
        case .notFound: return problem(.notFound, "not-found", error.description)
        case .conflict: return problem(.conflict, "conflict", error.description)
        case .invalid: return problem(.unprocessableContent, "invalid", error.description)
        }
    }
}

// MARK: - Response helpers (shared with the replica's endpoints)

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    guard let data = try? e.encode(value) else {
        return text("could not encode the answer\n", status: .internalServerError)
    }
    var body = ByteBuffer()
    body.writeBytes(data)
    body.writeString("\n")
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
}

func text(_ s: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
    Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: s)))
}

/// An RFC 9457 problem document: `type` is the error's stable slug under https://cairn.io/problems/.
func problem(_ status: HTTPResponse.Status, _ type: String, _ detail: String) -> Response {
    let p = ProblemView(type: "https://cairn.io/problems/\(type)", title: status.reasonPhrase, status: status.code, detail: detail)
    var r = json(p, status: status)
    r.headers[.contentType] = "application/problem+json"
    return r
}

/// What the replica's endpoints show, taken in one hop into the store's actor.
struct ReplicaHTTPSnapshot: Sendable {
    var status: ReplicaStatus
    var reads: UInt64
    var writes: UInt64
    var readBytes: UInt64
    var writeBytes: UInt64
    var rebuildBytesWritten: UInt64
    var errors: UInt64
    var refusedHandshakes: [HandshakeRefusal: UInt64]
    var loop: LoopIdleStats
}

extension ReplicaStore {
    /// The counters, read in one hop into the store's actor, with `status`.
    func httpSnapshot(status: ReplicaStatus) -> ReplicaHTTPSnapshot {
        ReplicaHTTPSnapshot(status: status, reads: reads, writes: writes, readBytes: readBytes,
                            writeBytes: writeBytes, rebuildBytesWritten: rebuildBytesWritten, errors: errors,
                            refusedHandshakes: refusedHandshakes, loop: loop.idleStats)
    }
}

extension Volume {
    /// The controller's event loop's idle periods (the volume runs on that loop).
    func loopIdleStats() -> LoopIdleStats { loop.idleStats }
}

/// The last value of a query that costs a request to a replica, reused while it is younger than
/// `maxAge`; concurrent callers of a stale one share one computation.
///
/// Used for the controller's space in use (`UsedLogicalBlocks`): it asks an RW replica over the
/// replica link, on the data path's connection. Through this, however many clients scrape, the
/// volume sends at most one such request per `maxAge`; the counters are read fresh every time.
actor Recent<Value: Sendable> {
    static var maxAge: Duration { .seconds(5) }
    private var value: Value?
    private var at: ContinuousClock.Instant?
    private var inFlight: Task<Value, Never>?

    func get(_ compute: @escaping @Sendable () async -> Value) async -> Value {
        if let value, let at, ContinuousClock.now - at < Self.maxAge { return value }
        if let inFlight { return await inFlight.value }
        let t = Task { await compute() }
        inFlight = t
        let v = await t.value
        value = v
        at = .now
        inFlight = nil
        return v
    }
}

/// The replica's HTTP endpoints: `GET /healthz` (200, `ok <replica id>`) and `GET /metrics`.
public enum ReplicaHTTP {
    /// Serves them for `store` on HOST:PORT (see `HTTPEndpoint`).
    public static func serve(store: ReplicaStore, host: String, port: Int, logger: Logger) async throws -> HTTPEndpoint {
        try await HTTPEndpoint.start(router: router(store: store), host: host, port: port, logger: logger)
    }

    static func router(store: ReplicaStore) -> Router<BasicRequestContext> {
        let router = Router()
        let metrics = ReplicaMetrics(replicaID: store.replicaID)
        router.get("/healthz") { _, _ -> Response in
            text("ok \(store.replicaID)\n")
        }
        router.get("/v1/snapshots") { _, _ -> Response in
            json(SnapshotListView(await store.snapshotList()))
        }
        router.get("/metrics") { _, _ -> Response in
            // A replica's status is cheap (its allocated bytes come from one fstat): asked every time.
            let status = await store.status()
            return text(metrics.render(await store.httpSnapshot(status: status)),
                        contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
        return router
    }
}
