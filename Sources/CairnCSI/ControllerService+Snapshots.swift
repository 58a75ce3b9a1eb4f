import CairnClient
import Foundation
import GRPCCore
import SwiftProtobuf

/// CSI snapshots are Cairn snapshots, id "VOLUME/SNAPSHOT"; a clone of a volume is made from a
/// snapshot taken for it and deleted once the clone has served.
extension ControllerService {
    func createSnapshot(request: Csi_V1_CreateSnapshotRequest, context: ServerContext) async throws -> Csi_V1_CreateSnapshotResponse {
        guard !request.name.isEmpty else { throw CSIFailure.invalid("CreateSnapshot: name is required") }
        guard !request.sourceVolumeID.isEmpty else { throw CSIFailure.invalid("CreateSnapshot: source_volume_id is required") }
        guard request.parameters.isEmpty else {
            throw CSIFailure.invalid("CreateSnapshot: unknown parameters \(request.parameters.keys.sorted().joined(separator: ", "))")
        }
        let name = CSINames.snapshot(request.name)
        // A snapshot name is one across the plugin: the same name on another volume is another snapshot.
        let all = try await volumes("CreateSnapshot")
        for v in all where v.name != request.sourceVolumeID && v.snapshots.contains(where: { $0.name == name }) {
            throw CSIFailure.exists("CreateSnapshot: snapshot \(request.name) exists on volume \(v.name)")
        }
        guard let source = all.first(where: { $0.name == request.sourceVolumeID }) else {
            throw CSIFailure.notFound("CreateSnapshot: no volume \(request.sourceVolumeID)")
        }
        let snap = try await takeSnapshot(name, of: source.name, what: "CreateSnapshot")
        return .with { $0.snapshot = Self.csiSnapshot(snap, volume: source.name) }
    }

    func deleteSnapshot(request: Csi_V1_DeleteSnapshotRequest, context: ServerContext) async throws -> Csi_V1_DeleteSnapshotResponse {
        guard !request.snapshotID.isEmpty else { throw CSIFailure.invalid("DeleteSnapshot: snapshot_id is required") }
        guard let ref = CSINames.parseSnapshotID(request.snapshotID) else { return .init() }
        do {
            try await api.call("DELETE", "/v1/volumes/\(ref.volume)/snapshots/\(ref.snapshot)")
            logger.info("DeleteSnapshot \(request.snapshotID)")
        } catch {
            if CSIFailure.slug(of: error) == "not-found" { return .init() }
            throw CSIFailure.from(error, "DeleteSnapshot \(request.snapshotID)")
        }
        return .init()
    }

    func listSnapshots(request: Csi_V1_ListSnapshotsRequest, context: ServerContext) async throws -> Csi_V1_ListSnapshotsResponse {
        var found: [(volume: String, snapshot: CairnClient.Snapshot)] = []
        if !request.snapshotID.isEmpty {
            if let ref = CSINames.parseSnapshotID(request.snapshotID),
               request.sourceVolumeID.isEmpty || request.sourceVolumeID == ref.volume,
               let s = try await snapshot(ref.volume, ref.snapshot) {
                found = [(ref.volume, s)]
            }
        } else if !request.sourceVolumeID.isEmpty {
            found = (try await volume(request.sourceVolumeID)).map { v in v.snapshots.map { (v.name, $0) } } ?? []
        } else {
            found = try await volumes("ListSnapshots").flatMap { v in v.snapshots.map { (v.name, $0) } }
        }
        found = found.filter { $0.snapshot.state != "deleting" }
            .sorted { ($0.snapshot.createdAt, $0.volume, $0.snapshot.name) < ($1.snapshot.createdAt, $1.volume, $1.snapshot.name) }
        let (page, next) = try Self.page(found, max: request.maxEntries, token: request.startingToken)
        return .with {
            $0.entries = page.map { f in .with { $0.snapshot = Self.csiSnapshot(f.snapshot, volume: f.volume) } }
            $0.nextToken = next
        }
    }

    // MARK: helpers

    func volumes(_ what: String) async throws -> [CairnClient.Volume] {
        do { return try await api.call("GET", "/v1/volumes") } catch { throw CSIFailure.from(error, what) }
    }

    /// The snapshot `name` of `volume`, or nil when either is missing or it is being deleted.
    func snapshot(_ volume: String, _ name: String) async throws -> CairnClient.Snapshot? {
        guard let v = try await self.volume(volume) else { return nil }
        return v.snapshots.first { $0.name == name && $0.state != "deleting" }
    }

    /// Takes snapshot `name` of `volume`, or finds it taken by an earlier try.
    func takeSnapshot(_ name: String, of volume: String, what: String) async throws -> CairnClient.Snapshot {
        if let s = try await snapshot(volume, name) { return s }
        try await waitServing(volume, what: what)
        do {
            let s: CairnClient.Snapshot = try await api.call("POST", "/v1/volumes/\(volume)/snapshots", body: SnapshotRequest(name: name))
            logger.info("\(what): snapshot \(volume)/\(name) taken")
            return s
        } catch {
            // Taken meanwhile by a concurrent try: that one is the answer.
            if CSIFailure.slug(of: error) == "conflict", let s = try await snapshot(volume, name) { return s }
            throw CSIFailure.from(error, "\(what) \(volume)/\(name)")
        }
    }

    /// Returns once `volume` serves (a snapshot needs its replicas writable): a volume created a
    /// moment ago, or one that is restarting, is waited for up to 30 s, then UNAVAILABLE.
    func waitServing(_ volume: String, what: String) async throws {
        try await wait(volume, seconds: 30, what: what, until: "serving") { $0.status.serves }
    }

    /// The snapshot a clone `clone` of `source` is copied from.
    func cloneSnapshot(of source: CairnClient.Volume, for clone: String) async throws -> CairnClient.Snapshot {
        try await takeSnapshot(CSINames.cloneSnapshot(forVolume: clone), of: source.name, what: "CreateVolume \(clone)")
    }

    /// Deletes the snapshots taken for clones of `source` whose clones have served (or were never
    /// made: ten minutes after it was taken, so a create in progress keeps its snapshot).
    func sweepCloneSnapshots(of source: CairnClient.Volume) async throws {
        let temporary = source.snapshots.filter { $0.name.hasPrefix(CSINames.clonePrefix) && $0.state != "deleting" }
        guard !temporary.isEmpty else { return }
        let all = try await volumes("sweep")
        for s in temporary {
            let ref = CSINames.snapshotID(volume: source.name, snapshot: s.name)
            let clones = all.filter { $0.source == ref }
            if clones.contains(where: { $0.status.state == "cloning" }) { continue }
            if clones.isEmpty, let taken = Self.date(s.createdAt), Date().timeIntervalSince(taken) < 600 { continue }
            do {
                try await api.call("DELETE", "/v1/volumes/\(source.name)/snapshots/\(s.name)")
                logger.info("snapshot \(ref) taken for a clone deleted")
            } catch {
                logger.info("snapshot \(ref) taken for a clone kept for now: \(error)")
            }
        }
    }

    /// One sweep over every volume (the controller runs it every minute).
    func sweepCloneSnapshots() async {
        guard let all = try? await volumes("sweep") else { return }
        for v in all { try? await sweepCloneSnapshots(of: v) }
    }

    static func csiSnapshot(_ s: CairnClient.Snapshot, volume: String) -> Csi_V1_Snapshot {
        .with {
            $0.snapshotID = CSINames.snapshotID(volume: volume, snapshot: s.name)
            $0.sourceVolumeID = volume
            $0.sizeBytes = Int64(clamping: s.size)
            $0.creationTime = Google_Protobuf_Timestamp(date: date(s.createdAt) ?? Date(timeIntervalSince1970: 0))
            $0.readyToUse = s.state == "ready"
        }
    }

    static func date(_ rfc3339: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: rfc3339) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: rfc3339)
    }
}
