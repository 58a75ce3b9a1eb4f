import Foundation
import CairnClient

/// The apiserver's records as `cairn.io` custom resources, and back. Each resource shows the
/// record in its spec (as its CRD describes it, for kubectl) and carries the whole record, as
/// the state store keeps it, in the annotation `cairn.io/record`: the record is what a new
/// apiserver reads back, so the round trip is exact.
enum KubernetesState {
    static let recordAnnotation = "cairn.io/record"

    /// The resource kinds, in the order a restore inserts their records.
    static let kinds = ["CairnPool", "CairnVolume", "CairnReplica", "CairnSnapshot", "CairnBackup"]

    static func pool(_ p: PoolRecord, namespace: String) -> KubeValue {
        var spec: [(String, KubeValue)] = [("node", .string(p.labelMap[KubernetesOrchestrator.nodeLabel] ?? "")),
                                           ("path", .string(p.path)), ("state", .string(p.state))]
        if !p.labelMap.isEmpty { spec.append(("labels", .map(p.labelMap))) }
        return resource("CairnPool", p.name, namespace: namespace, labels: [:], spec: .object(spec), record: p)
    }

    static func volume(_ v: VolumeRecord, namespace: String) -> KubeValue {
        guard case .object(var fields) = KubernetesResources.volume(v, namespace: namespace),
              let i = fields.firstIndex(where: { $0.0 == "metadata" }), case .object(var metadata) = fields[i].1 else {
            return KubernetesResources.volume(v, namespace: namespace)
        }
        metadata.append(("annotations", .object([(recordAnnotation, .string(JSONText.encode(v)))])))
        metadata.append(("finalizers", .strings([KubeVolumeResource.finalizer])))
        fields[i].1 = .object(metadata)
        return .object(fields)
    }

    static func replica(_ r: ReplicaRecord, namespace: String) -> KubeValue {
        resource("CairnReplica", "\(r.volume)-\(r.id)", namespace: namespace, labels: ["cairn.io/volume": r.volume],
                 spec: ["volume": .string(r.volume), "pool": .string(r.pool), "port": .int(r.port), "role": .string(r.role)], record: r)
    }

    /// nil for a snapshot whose name cannot be part of a Kubernetes name (capitals, '_'): its
    /// record is not mirrored (the controller's replicas still know it).
    static func snapshot(_ s: SnapshotRecord, namespace: String) -> KubeValue? {
        let name = "\(s.volume).\(s.name)"
        guard name.utf8.count <= 253, name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x2e }),
              let last = name.utf8.last, last != 0x2d, last != 0x2e else { return nil }
        return resource("CairnSnapshot", name, namespace: namespace, labels: ["cairn.io/volume": s.volume],
                        spec: ["volume": .string(s.volume), "snapshotName": .string(s.name)], record: s)
    }

    static func backup(_ b: BackupRecord, namespace: String) -> KubeValue {
        var spec: [(String, KubeValue)] = [("volume", .string(b.volume)), ("snapshot", .string(b.snapshot)),
                                           ("target", ["url": .string(b.target)])]
        if b.snapshot.isEmpty { spec.remove(at: 1) }
        // Backup ids ("bk-20261207T041700Z-1a2b3c") hold capitals; Kubernetes names may not.
        return resource("CairnBackup", b.id.lowercased(), namespace: namespace, labels: ["cairn.io/volume": b.volume], spec: .object(spec), record: b)
    }

    /// The record a resource (as the API server returns it) carries; nil when it carries none.
    static func record<T: Decodable>(_ type: T.Type, from object: Data) -> T? {
        guard let json = try? JSONSerialization.jsonObject(with: object) as? [String: Any],
              let annotations = (json["metadata"] as? [String: Any])?["annotations"] as? [String: String],
              let text = annotations[recordAnnotation] else { return nil }
        return JSONText.decode(text, as: T.self)
    }

    static func hasRecord(_ object: Data) -> Bool {
        guard let json = try? JSONSerialization.jsonObject(with: object) as? [String: Any],
              let annotations = (json["metadata"] as? [String: Any])?["annotations"] as? [String: String] else { return false }
        return annotations[recordAnnotation] != nil
    }

    /// A pool from a CairnPool written by hand: its name, node, path, labels and state.
    static func importedPool(_ object: Data) -> PoolRecord? {
        guard let json = try? JSONSerialization.jsonObject(with: object) as? [String: Any],
              let name = (json["metadata"] as? [String: Any])?["name"] as? String, Names.isDNSLabel(name),
              let spec = json["spec"] as? [String: Any], let node = spec["node"] as? String, !node.isEmpty,
              let path = spec["path"] as? String, path.hasPrefix("/") else { return nil }
        var labels = spec["labels"] as? [String: String] ?? [:]
        labels[KubernetesOrchestrator.nodeLabel] = node
        let state = (spec["state"] as? String).flatMap { PoolState(rawValue: $0) } ?? .ready
        return PoolRecord(name: name, path: path, labels: JSONText.encode(labels), state: state.rawValue, createdAt: Timestamp.now())
    }

    private static func resource<R: Encodable>(_ kind: String, _ name: String, namespace: String, labels: [String: String],
                                               spec: KubeValue, record: R) -> KubeValue {
        [
            "apiVersion": .string(KubernetesResources.apiVersion), "kind": .string(kind),
            "metadata": [
                "name": .string(name), "namespace": .string(namespace),
                "labels": .map(labels.merging(["app.kubernetes.io/part-of": "cairn"]) { a, _ in a }),
                "annotations": .object([(recordAnnotation, .string(JSONText.encode(record)))]),
            ],
            "spec": spec,
        ]
    }
}
