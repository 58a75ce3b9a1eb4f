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

    init(api: KubernetesAPI, namespace: String, store: StateStore, logger: Logger) {
        self.api = api
        self.namespace = namespace
        self.store = store
        self.logger = logger
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
    func sync() async {
        guard restored else { return }
        await importPools()
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
            return
        }
        if applied.isEmpty { await seedFromCluster() }
        for (path, object) in desired.sorted(by: { $0.key < $1.key }) where applied[path] != object {
            do {
                try await api.apply(object)
                applied[path] = object
            } catch {
                logger.warning("state mirror: \(error)")
            }
        }
        for path in applied.keys.sorted() where desired[path] == nil {
            do {
                try await api.delete(path)
                applied[path] = nil
            } catch {
                logger.warning("state mirror: \(error)")
            }
        }
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
