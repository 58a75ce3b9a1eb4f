import CairnClient
import Foundation
@_implementationOnly import Hummingbird

/// Snapshots under /v1/volumes/{name}/snapshots: asked of the volume's controller (which asks
/// the replicas, where they live), and the answer kept in the state so `GET /v1/volumes/{name}`
/// shows them while the controller is down.
extension APIRoutes {
    func addSnapshotRoutes(to router: RouterGroup<BasicRequestContext>) {
        router.get("/volumes/:name/snapshots") { _, context in
            await handle("list snapshots") { Answer.json(try await refreshSnapshots(try param(context, "name"))) }
        }
        router.post("/volumes/:name/snapshots") { request, context in
            await handle("create snapshot") { try await createSnapshot(try param(context, "name"), request) }
        }
        router.delete("/volumes/:name/snapshots/:snapshot") { _, context in
            await handle("delete snapshot") {
                try await deleteSnapshot(try param(context, "name"), try param(context, "snapshot"))
            }
        }
        router.post("/volumes/:name/snapshots/:snapshot/revert") { _, context in
            await handle("revert volume") { try await revert(try param(context, "name"), try param(context, "snapshot")) }
        }
    }

    /// Runs `body` against the volume's controller: its problem documents pass through with
    /// their status; no answer at all is a 503.
    func viaController<T>(_ v: VolumeRecord, _ body: (ControllerClient) async throws -> T) async throws -> T {
        guard !v.deleting else { throw APIFailure.notFound("no volume \(v.name)") }
        do {
            return try await body(await reconciler.client(v))
        } catch ClientError.problem(let p) {
            let slug = p.type.split(separator: "/").last.map(String.init) ?? "controller"
            throw APIFailure(HTTPResponse.Status(code: p.status), slug, p.detail)
        } catch {
            throw APIFailure(.serviceUnavailable, "controller-unavailable", "volume \(v.name)'s controller does not answer: \(error)")
        }
    }

    /// The controller's list, stored; the stored one when the controller does not answer.
    @discardableResult
    func refreshSnapshots(_ name: String) async throws -> [Snapshot] {
        let v = try record(name)
        do {
            let list = try await viaController(v) { try await $0.snapshots() }
            try store.setSnapshots(list, of: name)
            return list
        } catch let f as APIFailure where f.status == .serviceUnavailable || f.status == .conflict {
            return try store.snapshots(of: name).map(\.snapshot)
        }
    }

    private func createSnapshot(_ name: String, _ request: Request) async throws -> Response {
        let body = try await Body.decode(request, as: SnapshotRequest.self, fields: SnapshotRequest.fields)
        let v = try record(name)
        let s = try await viaController(v) { try await $0.createSnapshot(body.name) }
        _ = try? await refreshSnapshots(name)
        events.record("snapshot.created", volume: name, "snapshot \(s.name) of \(name) taken")
        return Answer.json(s, status: .created)
    }

    private func deleteSnapshot(_ name: String, _ snapshot: String) async throws -> Response {
        let v = try record(name)
        try await refuseWhileCloning(from: name, snapshot: snapshot)
        try await viaController(v) { try await $0.deleteSnapshot(snapshot) }
        _ = try? await refreshSnapshots(name)
        events.record("snapshot.deleted", volume: name, "snapshot \(snapshot) of \(name) deleted (its data merged away in the background)")
        return Response(status: .noContent)
    }

    /// A clone still copying needs its source: neither the volume nor the snapshot may go.
    func refuseWhileCloning(from volume: String, snapshot: String?) async throws {
        for c in try store.volumes() where !c.deleting {
            guard let s = c.cloneSource, s.volume == volume, snapshot == nil || s.snapshot == snapshot else { continue }
            if await !reconciler.hasServed(c.name) {
                throw APIFailure(.conflict, "clone-in-progress",
                                 "volume \(c.name) is still being cloned from \(s.volume)/\(s.snapshot): wait until it serves")
            }
        }
    }

    private func revert(_ name: String, _ snapshot: String) async throws -> Response {
        let v = try record(name)
        try await viaController(v) { try await $0.revert(to: snapshot) }
        _ = try? await refreshSnapshots(name)
        events.record("volume.reverted", volume: name, "volume \(name) reverted to snapshot \(snapshot)")
        return Answer.json(try await volumeView(name))
    }
}
