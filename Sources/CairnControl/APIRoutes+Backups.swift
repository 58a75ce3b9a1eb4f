import CairnBackup
import CairnClient
import Foundation
@_implementationOnly import Hummingbird

/// Backups: a volume's are made by its controller (`POST /v1/volumes/{name}/backups`) and kept
/// in the state; a target's are listed, shown and deleted by the apiserver itself
/// (`/v1/backups?target=URL`, S3 settings in the query and the credentials in headers), and a
/// restore is a volume created `fromBackup`.
extension APIRoutes {
    static let accessKeyHeader = "X-Cairn-Access-Key-Id"
    static let secretKeyHeader = "X-Cairn-Secret-Access-Key"

    func addBackupRoutes(to router: RouterGroup<BasicRequestContext>) {
        router.get("/volumes/:name/backups") { _, context in
            await handle("list volume backups") { Answer.json(try await volumeBackups(try param(context, "name"))) }
        }
        router.post("/volumes/:name/backups") { request, context in
            await handle("create backup") { try await createBackup(try param(context, "name"), request) }
        }
        router.get("/backups") { request, _ in
            await handle("list backups") { try await storedBackups(request) }
        }
        router.get("/backups/:id") { request, context in
            await handle("get backup") { try await storedBackup(try param(context, "id"), request) }
        }
        router.delete("/backups/:id") { request, context in
            await handle("delete backup") { try await deleteStoredBackup(try param(context, "id"), request) }
        }
    }

    static func spec(_ t: TargetRef) -> TargetSpec {
        TargetSpec(url: t.url, endpoint: t.endpoint, region: t.region, accessKeyID: t.accessKeyID, secretAccessKey: t.secretAccessKey)
    }

    /// Opens a target, a bad one answering 422.
    static func repository(_ t: TargetRef) throws -> BackupRepository {
        do { return BackupRepository(target: try spec(t).open()) } catch {
            throw APIFailure.invalid("invalid-target", "\(error)")
        }
    }

    /// A target's errors as answers: no such backup 404, a corrupt one 422, an unreachable target 503.
    static func failure(_ error: BackupError) -> APIFailure {
        switch error {
        case .notFound(let s): return APIFailure.notFound(s)
        case .invalid(let s): return APIFailure.invalid("invalid-target", s)
        case .target(let s): return APIFailure(.serviceUnavailable, "target-unavailable", s)
        case .corrupt(let s), .format(let s): return APIFailure.invalid("backup-corrupt", s)
        }
    }

    /// The target a request names: `?target=URL[&endpoint=...&region=...]`, credentials in headers.
    private func target(_ request: Request) throws -> TargetRef {
        let q = request.uri.queryParameters
        guard let url = q.get("target"), !url.isEmpty else {
            throw APIFailure(.badRequest, "bad-query", "give the target: ?target=file:///DIR or s3://BUCKET/PREFIX")
        }
        return TargetRef(url: url, endpoint: q.get("endpoint"), region: q.get("region"),
                         accessKeyID: header(request, Self.accessKeyHeader), secretAccessKey: header(request, Self.secretKeyHeader))
    }

    private func header(_ request: Request, _ name: String) -> String? {
        request.headers.first { $0.name.canonicalName == name.lowercased() }?.value
    }

    private func createBackup(_ name: String, _ request: Request) async throws -> Response {
        let body = try await Body.decode(request, as: BackupCreate.self, fields: BackupCreate.fields,
                                         nested: ["target": TargetRef.fields])
        let v = try record(name)
        _ = try Self.repository(body.target)  // a bad target answers before a snapshot is taken
        var snapshot = body.snapshot
        if snapshot == nil {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = "yyyyMMdd-HHmmss"
            let made = try await viaController(v) { try await $0.createSnapshot("backup-" + f.string(from: Date())) }
            snapshot = made.name
            events.record("snapshot.created", volume: name, "snapshot \(made.name) of \(name) taken for a backup")
        }
        let job = try await viaController(v) { try await $0.startBackup(snapshot: snapshot!, target: body.target) }
        let r = Self.record(job, createdAt: Timestamp.now())
        try store.saveBackup(r)
        events.record("backup.started", volume: name, "backup \(job.id) of \(name)/\(job.snapshot) to \(job.target) started")
        return Answer.json(r.backup, status: .accepted)
    }

    static func record(_ j: ControllerClient.BackupJobAnswer, createdAt: String) -> BackupRecord {
        BackupRecord(id: j.id, volume: j.volume, snapshot: j.snapshot, target: j.target, createdAt: createdAt, state: j.state,
                     totalBytes: Int64(j.totalBytes), readBytes: Int64(j.readBytes), uploadedBytes: Int64(j.uploadedBytes),
                     newBlocks: j.newBlocks, mibPerSecond: j.mibPerSecond, previous: j.previous, error: j.error)
    }

    /// The volume's backups, running ones asked of its controller first.
    func volumeBackups(_ name: String) async throws -> [Backup] {
        let v = try record(name)
        for var b in try store.backups(of: name) where b.state == "running" {
            let j: ControllerClient.BackupJobAnswer
            do { j = try await viaController(v, { try await $0.backupJob(b.id) }) } catch let f as APIFailure where f.status == .notFound {
                // The controller restarted meanwhile: the job is gone (its manifest was never written).
                b.state = "failed"
                b.error = "the volume's controller restarted during the backup"
                try store.saveBackup(b)
                events.record("backup.failed", volume: name, "backup \(b.id) of \(name): \(b.error!)")
                continue
            } catch {
                continue
            }
            try store.saveBackup(Self.record(j, createdAt: b.createdAt))
            if j.state != "running" {
                events.record(j.state == "done" ? "backup.finished" : "backup.failed", volume: name,
                              "backup \(j.id) of \(name)/\(j.snapshot): \(j.state)\(j.error.map { ": \($0)" } ?? "")")
            }
        }
        return try store.backups(of: name).map(\.backup)
    }

    private func storedBackups(_ request: Request) async throws -> Response {
        let repo = try Self.repository(try target(request))
        defer { Task { await repo.target.close() } }
        do {
            return Answer.json(try await repo.manifests().map(Self.stored))
        } catch { throw Self.failure(error) }
    }

    private func storedBackup(_ id: String, _ request: Request) async throws -> Response {
        let repo = try Self.repository(try target(request))
        defer { Task { await repo.target.close() } }
        do { return Answer.json(Self.stored(try await repo.manifest(id))) } catch { throw Self.failure(error) }
    }

    private func deleteStoredBackup(_ id: String, _ request: Request) async throws -> Response {
        let repo = try Self.repository(try target(request))
        defer { Task { await repo.target.close() } }
        let removed: Int
        do { removed = try await repo.delete(id) } catch { throw Self.failure(error) }
        try store.write { db in _ = try BackupRecord.deleteOne(db, key: id) }
        events.record("backup.deleted", "backup \(id) deleted from \(repo.target.description); \(removed) block(s) no other backup used removed")
        return Response(status: .noContent)
    }

    /// A restore's source, checked: the backup is there and fits the size asked for. S3
    /// credentials go to a file of the volume's (0600) that its controller reads.
    func restoreSource(_ body: VolumeCreate) async throws -> RestoreSource? {
        guard let id = body.fromBackup else {
            if body.backupTarget != nil { throw APIFailure.invalid("invalid-source", "backupTarget goes with fromBackup") }
            return nil
        }
        guard body.fromSnapshot == nil else {
            throw APIFailure.invalid("invalid-source", "a volume is a clone or a restore, not both")
        }
        guard let t = body.backupTarget else { throw APIFailure.invalid("invalid-source", "fromBackup needs backupTarget") }
        let repo = try Self.repository(t)
        let found: Result<Manifest, BackupError>
        do { found = .success(try await repo.manifest(id)) } catch { found = .failure(error) }
        await repo.target.close()
        let m: Manifest
        switch found {
        case .success(let x): m = x
        case .failure(let e): throw Self.failure(e)
        }
        guard body.size >= m.size else {
            throw APIFailure.invalid("invalid-size", "a restore of \(id) needs at least \(m.size) bytes (the backup's size), not \(body.size)")
        }
        if t.url.hasPrefix("s3://") {
            try FileManager.default.createDirectory(atPath: config.volumeDir(body.name), withIntermediateDirectories: true)
            try RandomSecret.writeAtomically(Self.spec(t).credentialsFileText, to: config.restoreCredentialsFile(body.name))
        }
        return RestoreSource(backup: id, target: TargetRef(url: t.url, endpoint: t.endpoint, region: t.region),
                             volume: m.volume, snapshot: m.snapshot)
    }

    static func stored(_ m: Manifest) -> StoredBackup {
        StoredBackup(id: m.id, volume: m.volume, snapshot: m.snapshot, createdAt: m.createdAt, size: m.size,
                     dataBytes: m.stats.dataBytes, uploadedBytes: m.stats.uploadedBytes, previous: m.previous,
                     blocks: m.blocks.filter { $0 != nil }.count)
    }
}
