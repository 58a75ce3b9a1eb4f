import CairnClient
import Foundation
import GRDB
import Logging

/// With the Kubernetes orchestrator, the cluster's etcd holds the desired state: every record of
/// the state store is written through to its custom resource (`sync`, after changes, applying
/// only what changed since the last pass), and an apiserver that starts with an empty store (its
/// pod moved: the store is on an emptyDir) reads the records back from the resources first
/// (`restoreIfEmpty`). SQLite stays the apiserver's working copy (transactions, uniqueness).
actor ClusterStateMirror {
    private let api: KubernetesAPI
    private let namespace: String
    private let store: StateStore
    private let logger: Logger
    /// What the last pass applied, by path: applied again only when it changes.
    private var applied: [String: KubeValue] = [:]
    /// Set by a restore (or a check that there was nothing to restore): until then no pass runs,
    /// so an empty store never deletes the cluster's resources (nor, through their owner
    /// references, the volumes' pods).
    private var restored = false
    private let config: ControlConfig
    /// Set once the apiserver's reconciler exists (it is made after the restore).
    private var reconciler: Reconciler?
    private var events: EventLog?
    /// Why a CairnVolume written by hand is not a volume (yet), by name: shown in its status.
    private var refused: [String: String] = [:]
    /// CairnVolumes' metadata.generation as last listed (their status's observedGeneration).
    private var generations: [String: Int] = [:]
    /// The status last applied, and since when each volume has been Ready or not.
    private var appliedStatus: [String: KubeValue] = [:]
    private var readiness: [String: (ready: Bool, since: String)] = [:]

    init(api: KubernetesAPI, namespace: String, store: StateStore, config: ControlConfig, logger: Logger) {
        self.api = api
        self.namespace = namespace
        self.store = store
        self.config = config
        self.logger = logger
    }

    func attach(_ reconciler: Reconciler, events: EventLog) {
        self.reconciler = reconciler
        self.events = events
    }

    /// Reads the records back from the resources when the store holds no pool and no volume.
    /// Returns how many records it inserted (all in one transaction).
    func restoreIfEmpty() async throws -> Int {
        guard try store.pools().isEmpty, try store.volumes().isEmpty else {
            restored = true
            return 0
        }
        var pools: [PoolRecord] = [], volumes: [VolumeRecord] = [], replicas: [ReplicaRecord] = []
        var snapshots: [SnapshotRecord] = [], backups: [BackupRecord] = []
        for kind in KubernetesState.kinds {
            let path = KubernetesAPI.path(apiVersion: KubernetesResources.apiVersion, kind: kind, namespace: namespace)
            for item in try await api.list(path, labelSelector: "app.kubernetes.io/part-of=cairn") {
                switch kind {
                case "CairnPool": KubernetesState.record(PoolRecord.self, from: item).map { pools.append($0) }
                case "CairnVolume": KubernetesState.record(VolumeRecord.self, from: item).map { volumes.append($0) }
                case "CairnReplica": KubernetesState.record(ReplicaRecord.self, from: item).map { replicas.append($0) }
                case "CairnSnapshot": KubernetesState.record(SnapshotRecord.self, from: item).map { snapshots.append($0) }
                default: KubernetesState.record(BackupRecord.self, from: item).map { backups.append($0) }
                }
            }
        }
        let count = pools.count + volumes.count + replicas.count + snapshots.count + backups.count
        try store.write { db in
            for p in pools { try p.insert(db) }
            for v in volumes { try v.insert(db) }
            for r in replicas { try r.insert(db) }
            for s in snapshots { try s.insert(db) }
            for b in backups { try b.insert(db) }
        }
        restored = true
        if count > 0 {
            logger.notice("state restored from the cluster: \(pools.count) pools, \(volumes.count) volumes, \(replicas.count) replicas, \(snapshots.count) snapshots, \(backups.count) backups")
        }
        return count
    }

    /// One pass: applies each record's resource that changed, deletes the resources of records
    /// that are gone. Errors are logged and the next pass tries again.
    /// Returns whether the cluster now holds every record (false: something is left for the
    /// next pass).
    @discardableResult
    func sync() async -> Bool {
        guard restored else { return false }
        await importPools()
        await followVolumes()
        var desired: [String: KubeValue] = [:]
        do {
            var objects: [KubeValue] = try store.pools().map { KubernetesState.pool($0, namespace: namespace) }
            objects += try store.volumes().map { KubernetesState.volume($0, namespace: namespace) }
            objects += try store.replicas().map { KubernetesState.replica($0, namespace: namespace) }
            for v in try store.volumes() {
                objects += try store.snapshots(of: v.name).compactMap { KubernetesState.snapshot($0, namespace: namespace) }
                objects += try store.backups(of: v.name).map { KubernetesState.backup($0, namespace: namespace) }
            }
            for o in objects { desired[try KubernetesAPI.path(of: o)] = o }
        } catch {
            logger.warning("state mirror: cannot read the store: \(error)")
            return false
        }
        if applied.isEmpty { await seedFromCluster() }
        var written = true
        for (path, object) in desired.sorted(by: { $0.key < $1.key }) where applied[path] != object {
            do {
                try await api.apply(object)
                applied[path] = object
            } catch {
                written = false
                logger.warning("state mirror: \(error)")
            }
        }
        for path in applied.keys.sorted() where desired[path] == nil {
            do {
                try await api.delete(path)
                applied[path] = nil
            } catch {
                written = false
                logger.warning("state mirror: \(error)")
            }
        }
        await writeStatus()
        return written
    }

    /// CairnVolumes as users write them: a new one (no record) becomes a volume, as POST
    /// /v1/volumes would make it; an edited size or QoS is a PATCH; a deleted one (held by the
    /// finalizer) is a DELETE, and once the volume is gone the finalizer is removed.
    private func followVolumes() async {
        let path = KubernetesAPI.path(apiVersion: KubernetesResources.apiVersion, kind: "CairnVolume", namespace: namespace)
        guard let items = try? await api.list(path, labelSelector: "") else { return }
        var seen = Set<String>()
        for item in items {
            guard let cr = KubeVolumeResource(item) else { continue }
            seen.insert(cr.name)
            generations[cr.name] = cr.generation
            do {
                try await follow(cr, path: path + "/" + cr.name)
            } catch {
                let why = (error as? APIFailure)?.detail ?? "\(error)"
                if refused[cr.name] != why {
                    logger.warning("CairnVolume \(cr.name): \(why)")
                    events?.record("volume.refused", volume: cr.name, "CairnVolume \(cr.name) refused: \(why)")
                }
                refused[cr.name] = why
                // An edit refused: the next pass writes the resource from the record again.
                applied[path + "/" + cr.name] = nil
            }
        }
        for name in refused.keys where !seen.contains(name) { refused[name] = nil }
        // A volume whose resource is gone (deleted by hand, or a terminating one of an earlier
        // volume of that name that just went): written again on this pass.
        for v in (try? store.volumes()) ?? [] where !seen.contains(v.name) {
            applied[path + "/" + v.name] = nil
            appliedStatus[v.name] = nil
        }
    }

    private func follow(_ cr: KubeVolumeResource, path: String) async throws {
        let current = try store.volume(cr.name)
        // A resource of an earlier volume of this name (deleted, then made again) is not this one's.
        let ours = current.map { v in cr.record.map { $0.createdAt == v.createdAt } ?? true } ?? false
        if cr.deleting {
            if let v = current, ours, !v.deleting {
                try VolumeSpec.markDeleting(cr.name, store: store)
                events?.record("volume.deleting", volume: cr.name, "volume \(cr.name) deleted through its CairnVolume")
                reconciler?.wake()
            } else if !ours, cr.finalizers.contains(KubeVolumeResource.finalizer) {
                // Its volume is gone: let it go. The resource version makes the patch fail (and the
                // next pass try again) if the finalizers changed meanwhile.
                let rest = cr.finalizers.filter { $0 != KubeVolumeResource.finalizer }
                let patch = try JSONSerialization.data(withJSONObject: [
                    "metadata": ["finalizers": rest, "resourceVersion": cr.resourceVersion ?? ""] as [String: Any]])
                try await api.mergePatch(path, patch)
            }
            return
        }
        guard let spec = cr.spec else {
            throw APIFailure.invalid("invalid-spec", "its spec cannot be read as a volume's")
        }
        if cr.record == nil, current == nil {
            guard spec.fromBackup == nil else {
                throw APIFailure.invalid("unsupported", "fromBackup: restore with `cairn volume create --from-backup` (a CairnVolume cannot name its target's credentials yet)")
            }
            let create = try VolumeSpec.normalized(cr.create(spec))
            if case .created(let v) = try VolumeSpec.create(create, store: store, config: config) {
                let pools = try store.replicas(of: v.name).map(\.pool).joined(separator: ", ")
                events?.record("volume.created", volume: v.name,
                               "volume \(v.name) created from its CairnVolume: \(v.size) bytes, \(v.replicaCount) replica(s) on \(pools)")
                reconciler?.wake()
            }
            refused[cr.name] = nil
        } else if let v = current, !v.deleting, let record = cr.record, let wrote = KubeVolumeResource.spec(of: record),
                  let change = try KubeVolumeResource.change(from: wrote, to: spec) {
            // Edited since the apiserver last wrote it: what can change after creation is applied
            // (the next pass writes the resource from the record again).
            try VolumeSpec.patch(v.name, change, store: store, config: config)
            events?.record("volume.changed", volume: v.name, "volume \(v.name) changed through its CairnVolume")
            reconciler?.wake()
            refused[cr.name] = nil
        }
    }

    /// Writes each CairnVolume's status (applied only when it changed): the volume's state from
    /// the reconciler, or why a hand-written one is not a volume.
    private func writeStatus() async {
        guard let reconciler else { return }
        var desired: [String: KubeValue] = [:]
        do {
            let nodes = Dictionary(try store.pools().map { ($0.name, $0.labelMap[KubernetesOrchestrator.nodeLabel] ?? "") },
                                   uniquingKeysWith: { a, _ in a })
            for v in try store.volumes() {
                let s = await reconciler.status(v, try store.replicas(of: v.name))
                desired[v.name] = KubeVolumeResource.status(v.name, namespace: namespace, state: s.state, message: s.message, volume: s,
                                                            nodes: nodes, observedGeneration: generations[v.name],
                                                            since: since(v.name, ready: s.serves))
            }
            for (name, why) in refused where desired[name] != nil {
                // An edit refused on an existing volume: its status says so.
                if case .object(var fields)? = desired[name], let i = fields.firstIndex(where: { $0.0 == "status" }),
                   case .object(var status) = fields[i].1 {
                    status.removeAll { $0.0 == "message" }
                    status.append(("message", .string("the last edit was refused: " + why)))
                    fields[i].1 = .object(status)
                    desired[name] = .object(fields)
                }
            }
            for (name, why) in refused where desired[name] == nil {
                desired[name] = KubeVolumeResource.status(name, namespace: namespace, state: "refused", message: why, volume: nil,
                                                          nodes: [:], observedGeneration: generations[name], since: since(name, ready: false))
            }
        } catch {
            logger.warning("state mirror: cannot read the store: \(error)")
            return
        }
        for (name, status) in desired.sorted(by: { $0.key < $1.key }) where appliedStatus[name] != status {
            do {
                try await api.apply(status, subresource: "status")
                appliedStatus[name] = status
            } catch let e as KubernetesError where e.status == 404 {
                // Not written yet (or gone): the next pass.
            } catch {
                logger.warning("state mirror: status of \(name): \(error)")
            }
        }
        for name in appliedStatus.keys where desired[name] == nil { appliedStatus[name] = nil; readiness[name] = nil }
    }

    /// When the volume's Ready condition last changed (now, when it changes).
    private func since(_ name: String, ready: Bool) -> String {
        if let r = readiness[name], r.ready == ready { return r.since }
        let now = Timestamp.now()
        readiness[name] = (ready, now)
        return now
    }

    /// CairnPools written with kubectl (no record yet) become pools: a pool names its node in
    /// `spec.node`, kept as its `kubernetes.io/hostname` label.
    private func importPools() async {
        let path = KubernetesAPI.path(apiVersion: KubernetesResources.apiVersion, kind: "CairnPool", namespace: namespace)
        guard let items = try? await api.list(path, labelSelector: "") else { return }
        for item in items where KubernetesState.record(PoolRecord.self, from: item) == nil {
            guard let pool = KubernetesState.importedPool(item) else { continue }
            do {
                let inserted = try store.write { db -> Bool in
                    guard try PoolRecord.fetchOne(db, key: pool.name) == nil else { return false }
                    try pool.insert(db)
                    return true
                }
                if inserted { logger.notice("pool \(pool.name) added from its CairnPool (node \(pool.labelMap[KubernetesOrchestrator.nodeLabel] ?? "?"))") }
            } catch {
                logger.warning("CairnPool \(pool.name): \(error)")
            }
        }
    }

    /// The resources a previous apiserver left (so a record deleted meanwhile has its resource
    /// deleted too); marked as needing an apply. Only those carrying a record: what a user wrote
    /// by hand is never deleted here.
    private func seedFromCluster() async {
        for kind in KubernetesState.kinds {
            let path = KubernetesAPI.path(apiVersion: KubernetesResources.apiVersion, kind: kind, namespace: namespace)
            guard let items = try? await api.list(path, labelSelector: "app.kubernetes.io/part-of=cairn") else { continue }
            for item in items {
                guard KubernetesState.hasRecord(item), let json = try? JSONSerialization.jsonObject(with: item) as? [String: Any],
                      let name = (json["metadata"] as? [String: Any])?["name"] as? String else { continue }
                applied[path + "/" + name] = .object([])
            }
        }
    }
}
