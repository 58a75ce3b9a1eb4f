import CairnBackup
import CairnClient
import Foundation
@_implementationOnly import GRDB
@_implementationOnly import Hummingbird
import Logging

/// The apiserver's REST API under /v1 (documented in `OpenAPIDocument`). Handlers check the
/// request, write the desired state in one transaction, wake the reconciler, and answer; they
/// never start or stop a process themselves.
struct APIRoutes: Sendable {
    let store: StateStore
    let reconciler: Reconciler
    let events: EventLog
    let config: ControlConfig
    let logger: Logger

    /// Runs `body`, turning an `APIFailure` into its problem document and anything else into a
    /// logged 500 (a bug, never the client's input).
    func handle(_ what: String, _ body: () async throws -> Response) async -> Response {
        do { return try await body() } catch let f as APIFailure {
            return f.response
        } catch {
            logger.error("\(what): \(error)")
            return Answer.problem(.internalServerError, "internal", "\(what) failed: \(error)")
        }
    }

    func add(to router: RouterGroup<BasicRequestContext>) {
        router.get("/pools") { _, _ in await handle("list pools") { Answer.json(try poolViews()) } }
        router.post("/pools") { request, _ in await handle("add pool") { try await addPool(request) } }
        router.get("/pools/:name") { _, context in
            await handle("get pool") { Answer.json(try poolView(try param(context, "name"))) }
        }
        router.patch("/pools/:name") { request, context in
            await handle("change pool") { try await patchPool(try param(context, "name"), request) }
        }
        router.delete("/pools/:name") { _, context in
            await handle("remove pool") { try removePool(try param(context, "name")) }
        }
        router.get("/volumes") { _, _ in await handle("list volumes") { Answer.json(try await volumeViews()) } }
        router.post("/volumes") { request, _ in await handle("create volume") { try await createVolume(request) } }
        router.get("/volumes/:name") { _, context in
            await handle("get volume") { Answer.json(try await volumeView(try param(context, "name"))) }
        }
        router.patch("/volumes/:name") { request, context in
            await handle("change volume") { try await patchVolume(try param(context, "name"), request) }
        }
        router.delete("/volumes/:name") { _, context in
            await handle("delete volume") { try await deleteVolume(try param(context, "name")) }
        }
        router.get("/volumes/:name/stats") { _, context in
            await handle("volume stats") { try await stats(try param(context, "name")) }
        }
        router.get("/volumes/:name/replicas") { _, context in
            await handle("list replicas") { Answer.json(try await volumeView(try param(context, "name")).status.replicas) }
        }
        router.post("/volumes/:name/replicas") { _, context in
            await handle("add replica") { try await addReplica(try param(context, "name")) }
        }
        router.delete("/volumes/:name/replicas/:id") { _, context in
            await handle("replace replica") { try await replaceReplica(try param(context, "name"), try param(context, "id")) }
        }
        addSnapshotRoutes(to: router)
        addBackupRoutes(to: router)
        router.get("/events") { request, _ in await handle("events") { try eventsAnswer(request) } }
    }

    func param(_ context: BasicRequestContext, _ name: String) throws -> String {
        guard let raw = context.parameters.get(name) else { throw APIFailure(.badRequest, "bad-request", "no \(name)") }
        return raw.removingPercentEncoding ?? raw
    }

    // MARK: - Pools

    private func poolViews() throws -> [Pool] {
        let replicas = try store.replicas()
        let sizes = Dictionary(uniqueKeysWithValues: try store.volumes().map { ($0.name, UInt64($0.size)) })
        return try store.pools().map { Placement.view($0, replicas: replicas, sizes: sizes, fs: Placement.filesystem($0.path)) }
    }

    private func poolView(_ name: String) throws -> Pool {
        guard let view = try poolViews().first(where: { $0.name == name }) else { throw APIFailure.notFound("no pool \(name)") }
        return view
    }

    private func addPool(_ request: Request) async throws -> Response {
        let body = try await Body.decode(request, as: PoolCreate.self, fields: ["name", "path", "labels"])
        try Names.check(body.name, what: "pool name")
        let labels = body.labels ?? [:]
        try Names.checkLabels(labels, what: "labels")
        if config.poolsAreRemote, labels[KubernetesOrchestrator.nodeLabel]?.isEmpty ?? true {
            throw APIFailure.invalid("invalid-labels", "in a cluster a pool names its node: the label \(KubernetesOrchestrator.nodeLabel)")
        }
        let path = try checkPoolPath(body.path)
        let created: Bool = try store.write { db in
            if let p = try PoolRecord.fetchOne(db, key: body.name) {
                guard p.path == path, p.labelMap == labels else {
                    throw APIFailure(.conflict, "pool-exists", "pool \(body.name) exists with another path or labels")
                }
                return false
            }
            if try PoolRecord.filter(Column("path") == path).fetchCount(db) > 0 {
                throw APIFailure(.conflict, "pool-path-taken", "another pool has the path \(path)")
            }
            try PoolRecord(name: body.name, path: path, labels: JSONText.encode(labels), state: PoolState.ready.rawValue,
                           createdAt: Timestamp.now()).insert(db)
            return true
        }
        if created { events.record("pool.added", "pool \(body.name) added at \(path)") }
        return Answer.json(try poolView(body.name), status: created ? .created : .ok)
    }

    /// The pool's directory, resolved: absolute, existing, a directory, under --pool-root when set.
    private func checkPoolPath(_ raw: String) throws -> String {
        guard raw.hasPrefix("/"), raw.utf8.count < 4096, !raw.contains("\0") else {
            throw APIFailure.invalid("invalid-path", "path must be an absolute directory path")
        }
        // In a cluster the directory is on its node, not here (it must exist there: the replica
        // pods mount it as a hostPath of type Directory). Its components as the CairnPool CRD takes them.
        if config.poolsAreRemote {
            let path = URL(fileURLWithPath: raw).standardizedFileURL.path
            guard path != "/" else { throw APIFailure.invalid("invalid-path", "/ cannot be a pool") }
            let plain = path.split(separator: "/").allSatisfy { c in
                c.first != "." && c.first != "-" && c.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
            }
            guard plain else {
                throw APIFailure.invalid("invalid-path", "in a cluster a pool's path is made of letters, digits, '.', '_' and '-' (not first)")
            }
            if let root = config.poolRoot, path != root, !path.hasPrefix(root + "/") {
                throw APIFailure.invalid("invalid-path", "pools must be under \(root) (--pool-root)")
            }
            return path
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: raw, isDirectory: &isDir), isDir.boolValue else {
            throw APIFailure.invalid("invalid-path", "\(raw.prefix(200)) is not an existing directory")
        }
        let resolved = URL(fileURLWithPath: raw).resolvingSymlinksInPath().standardizedFileURL.path
        if let root = config.poolRoot {
            let r = URL(fileURLWithPath: root).resolvingSymlinksInPath().standardizedFileURL.path
            guard resolved == r || resolved.hasPrefix(r + "/") else {
                throw APIFailure.invalid("invalid-path", "pools must be under \(r) (--pool-root)")
            }
        }
        guard resolved != "/" else { throw APIFailure.invalid("invalid-path", "/ cannot be a pool") }
        return resolved
    }

    private func patchPool(_ name: String, _ request: Request) async throws -> Response {
        let body = try await Body.decode(request, as: PoolPatch.self, fields: ["state", "labels"])
        if let labels = body.labels { try Names.checkLabels(labels, what: "labels") }
        let before: PoolRecord = try store.write { db in
            guard var p = try PoolRecord.fetchOne(db, key: name) else { throw APIFailure.notFound("no pool \(name)") }
            let old = p
            if let s = body.state { p.state = s.rawValue }
            if let l = body.labels {
                // In a cluster the node label says where the pool's directory is: it cannot move.
                let node = KubernetesOrchestrator.nodeLabel
                if config.poolsAreRemote, l[node] != p.labelMap[node] {
                    throw APIFailure.invalid("invalid-labels", "the label \(node) is where pool \(name)'s directory is: it cannot change")
                }
                p.labels = JSONText.encode(l)
            }
            try p.update(db)
            return old
        }
        if let s = body.state, s != before.poolState {
            events.record("pool.changed", "pool \(name): \(before.state) -> \(s.rawValue)")
            reconciler.wake()
        }
        return Answer.json(try poolView(name))
    }

    private func removePool(_ name: String) throws -> Response {
        try store.write { db in
            guard try PoolRecord.fetchOne(db, key: name) != nil else { throw APIFailure.notFound("no pool \(name)") }
            let n = try ReplicaRecord.filter(Column("pool") == name).fetchCount(db)
            guard n == 0 else {
                throw APIFailure(.conflict, "pool-in-use", "pool \(name) holds \(n) replica(s): drain it first")
            }
            _ = try PoolRecord.deleteOne(db, key: name)
        }
        events.record("pool.removed", "pool \(name) removed")
        return Response(status: .noContent)
    }

    // MARK: - Volumes

    private func view(_ v: VolumeRecord, _ replicas: [ReplicaRecord]) async -> Volume {
        Volume(name: v.name, size: UInt64(v.size), replicaCount: v.replicaCount, minHealthy: v.minHealthy, qos: v.qosValue,
               poolSelector: v.selector, createdAt: v.createdAt, status: await reconciler.status(v, replicas),
               snapshots: ((try? store.snapshots(of: v.name)) ?? []).map(\.snapshot),
               source: v.sourceText, backups: ((try? store.backups(of: v.name)) ?? []).map(\.backup))
    }

    private func volumeViews() async throws -> [Volume] {
        let volumes = try store.volumes()
        let replicas = Dictionary(grouping: try store.replicas(), by: \.volume)
        var out: [Volume] = []
        for v in volumes { out.append(await view(v, replicas[v.name] ?? [])) }
        return out
    }

    func record(_ name: String) throws -> VolumeRecord {
        guard let v = try store.volume(name) else { throw APIFailure.notFound("no volume \(name)") }
        return v
    }

    func volumeView(_ name: String) async throws -> Volume {
        let v = try record(name)
        return await view(v, try store.replicas(of: name))
    }

    private func createVolume(_ request: Request) async throws -> Response {
        let body = try VolumeSpec.normalized(try await Body.decode(request, as: VolumeCreate.self, fields: VolumeCreate.fields,
                                                                     nested: ["qos": QoS.fields]))
        // A clone: the source's snapshots as its controller lists them now.
        if let ref = body.fromSnapshot, let source = ref.split(separator: "/").first, try store.volume(String(source)) != nil {
            _ = try? await refreshSnapshots(String(source))
        }
        let restore = try await restoreSource(body)
        switch try VolumeSpec.create(body, restore: restore, store: store, config: config) {
        case .existing(let v):
            return Answer.json(await view(v, try store.replicas(of: v.name)))
        case .created(let v):
            let replicas = try store.replicas(of: v.name)
            events.record("volume.created", volume: v.name,
                          "volume \(v.name) created: \(v.size) bytes, \(v.replicaCount) replica(s) on \(replicas.map(\.pool).joined(separator: ", "))")
            reconciler.wake()
            return Answer.json(await view(v, replicas), status: .created)
        }
    }

    private func patchVolume(_ name: String, _ request: Request) async throws -> Response {
        let body = try await Body.decode(request, as: VolumePatch.self, fields: VolumePatch.fields, nested: ["qos": QoS.fields])
        try VolumeSpec.patch(name, body, store: store, config: config)
        reconciler.wake()
        return Answer.json(try await volumeView(name))
    }

    private func deleteVolume(_ name: String) async throws -> Response {
        try await refuseWhileCloning(from: name, snapshot: nil)
        try VolumeSpec.markDeleting(name, store: store)
        reconciler.wake()
        // Answer once it is gone (processes stopped, data removed), or 202 if that takes longer.
        let deadline = Monotonic.seconds() + 30
        while Monotonic.seconds() < deadline {
            if try store.volume(name) == nil { return Response(status: .noContent) }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return Answer.json(try await volumeView(name), status: .accepted)
    }

    private func stats(_ name: String) async throws -> Response {
        let v = try record(name)
        do { return Answer.json(try await reconciler.stats(v)) } catch {
            throw APIFailure(.serviceUnavailable, "controller-unavailable", "volume \(name)'s controller does not answer: \(error)")
        }
    }

    private func addReplica(_ name: String) async throws -> Response {
        let added: ReplicaRecord = try store.write { db in
            guard var v = try VolumeRecord.fetchOne(db, key: name), !v.deleting else { throw APIFailure.notFound("no volume \(name)") }
            let all = try ReplicaRecord.fetchAll(db)
            let mine = all.filter { $0.volume == name }
            guard mine.count < VolumeSpec.maxReplicas else {
                throw APIFailure(.conflict, "too-many-replicas", "volume \(name) has \(mine.count) replicas, the most there can be")
            }
            let sizes = try VolumeRecord.sizes(db)
            guard let pool = Placement.candidates(pools: try PoolRecord.fetchAll(db), replicas: all, sizes: sizes,
                                                  size: UInt64(v.size), selector: v.selector,
                                                  excluded: Set(mine.map(\.pool)), remote: config.poolsAreRemote).first else {
                throw APIFailure.invalid("not-enough-pools", "no ready pool without a replica of \(name) can take one")
            }
            let port = try Placement.allocatePorts(db, count: 1, range: config.ports, host: config.replicaHost)[0]
            let r = ReplicaRecord.new(volume: name, pool: pool, port: port, role: "active")
            try r.insert(db)
            v.replicaCount = mine.count + 1
            try v.update(db)
            return r
        }
        events.record("replica.added", volume: name, replica: added.id, "replica \(added.id) added on pool \(added.pool)")
        reconciler.wake()
        let view = try await volumeView(name)
        return Answer.json(view.status.replicas.first { $0.id == added.id }, status: .created)
    }

    private func replaceReplica(_ name: String, _ id: String) async throws -> Response {
        let marked: Bool = try store.write { db in
            guard try VolumeRecord.fetchOne(db, key: name) != nil else { throw APIFailure.notFound("no volume \(name)") }
            guard var r = try ReplicaRecord.fetchOne(db, key: id), r.volume == name else {
                throw APIFailure.notFound("volume \(name) has no replica \(id)")
            }
            if r.role == "replacing" { return false }
            r.role = "replacing"
            try r.update(db)
            return true
        }
        if marked {
            events.record("replica.replacing", volume: name, replica: id, "replacing replica \(id): asked through the API")
        }
        reconciler.wake()
        let view = try await volumeView(name)
        return Answer.json(view.status.replicas.first { $0.id == id }, status: .accepted)
    }

    // MARK: - Events

    private func eventsAnswer(_ request: Request) throws -> Response {
        let q = request.uri.queryParameters
        var after: Int64 = 0
        if let s = q.get("after") {
            guard let n = Int64(s), n >= 0 else { throw APIFailure(.badRequest, "bad-query", "after must be a non-negative integer") }
            after = n
        }
        var limit = 1000
        if let s = q.get("limit") {
            guard let n = Int(s), (1...10_000).contains(n) else { throw APIFailure(.badRequest, "bad-query", "limit must be 1 to 10000") }
            limit = n
        }
        let follow: Bool
        switch q.get("follow") {
        case nil, "0", "false": follow = false
        case "1", "true": follow = true
        default: throw APIFailure(.badRequest, "bad-query", "follow must be 1 or 0")
        }
        guard follow else { return Answer.json(try events.events(after: after, limit: limit)) }
        // Subscribe first, then send what is stored: no event falls between the two.
        let stream = events.follow()
        let stored = try events.events(after: after, limit: limit)
        let sentUpTo = stored.last?.id ?? after
        let body = ResponseBody { writer in
            let encoder = WireJSON.encoder()
            for e in stored {
                var line = ByteBuffer(bytes: try encoder.encode(e))
                line.writeString("\n")
                try await writer.write(line)
            }
            for await e in stream where e.id > sentUpTo {
                var line = ByteBuffer(bytes: try encoder.encode(e))
                line.writeString("\n")
                try await writer.write(line)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: body)
    }
}
