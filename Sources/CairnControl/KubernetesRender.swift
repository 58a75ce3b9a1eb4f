import Foundation

/// `cairn kubernetes objects`: the objects the Kubernetes orchestrator applies for a volume,
/// printed without a cluster (to read, to validate, to apply by hand).
public enum KubernetesRender {
    /// A pool as the orchestrator places replicas on it: its node and its directory there.
    public struct Pool: Sendable {
        public var name: String
        public var node: String
        public var path: String
        public init(name: String, node: String, path: String) {
            self.name = name
            self.node = node
            self.path = path
        }
    }

    /// A `v1` List of the volume's state resources (its pools, CairnVolume, CairnReplicas) and the
    /// objects its CairnVolume owns. One replica per pool, in order; replica ids and the
    /// secret are made up (stable for one volume name), as is the owner's uid.
    /// With `wipeJobs`, also the Jobs that remove the replicas' directories once the volume is deleted.
    public static func volume(name: String, size: UInt64, replicas: Int, minHealthy: Int?, pools: [Pool],
                              namespace: String, image: String, wipeJobs: Bool = false) throws -> some Encodable & Sendable {
        guard replicas >= 1, replicas <= pools.count else {
            throw RenderError("\(replicas) replicas need as many pools; \(pools.count) given")
        }
        let config = ControlConfig(dataDir: "/var/lib/cairn-apiserver", network: .kubernetes(namespace: namespace))
        let v = VolumeRecord(name: name, size: Int64(size), replicaCount: replicas, minHealthy: minHealthy ?? replicas / 2 + 1,
                             qos: "{}", poolSelector: "{}", phase: "active", portalPort: KubernetesPorts.portal,
                             apiPort: KubernetesPorts.api, generation: 1, createdAt: "1970-01-01T00:00:00Z", source: nil)
        let placed = pools.prefix(replicas).enumerated().map { i, p in
            let id = "r" + String(format: "%07x", 0x100_0000 + i)
            return KubernetesObjects.ReplicaPlacement(
                record: ReplicaRecord(id: id, volume: name, pool: p.name, port: KubernetesPorts.replica,
                                      directory: "\(p.path)/\(name)/\(id)", role: "active", replaces: nil, createdAt: v.createdAt),
                node: p.node, poolPath: p.path)
        }
        let objects = KubernetesObjects(namespace: namespace, image: image,
                                        owner: .init(name: name, uid: "00000000-0000-4000-8000-000000000000"))
        // The state the apiserver keeps in the cluster (ClusterStateMirror), then what it applies
        // to run the volume.
        let poolRecords = pools.prefix(replicas).map {
            PoolRecord(name: $0.name, path: $0.path, labels: JSONText.encode([KubernetesOrchestrator.nodeLabel: $0.node]),
                       state: "ready", createdAt: v.createdAt)
        }
        let items = poolRecords.map { KubernetesState.pool($0, namespace: namespace) }
            + [KubernetesState.volume(v, namespace: namespace)]
            + placed.map { KubernetesState.replica($0.record, namespace: namespace) }
            + objects.all(volume: v, replicas: placed, secret: String(repeating: "0", count: 64), config: config)
            + (wipeJobs ? placed.map { objects.wipe($0) } : [])
        return KubernetesList(value: ["apiVersion": "v1", "kind": "List", "items": .array(items)])
    }

    public struct RenderError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }
}

/// Objects to print (Encodable, as the CLI's JSON and YAML output take them).
struct KubernetesList: Encodable, Sendable {
    let value: KubeValue
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}
