import Foundation

/// The Kubernetes objects that run one volume, as the Kubernetes orchestrator applies them: per
/// volume a Secret (the replica links' key), the controller's Deployment and Service; per replica
/// a Deployment pinned to its pool's node (the pool's directory as a hostPath, never two of one
/// volume's replicas on a node) and a Service (its stable address). Each is owned by the
/// volume's CairnVolume, so deleting that collects them.
struct KubernetesObjects {
    var namespace: String
    /// The image of the volumes' pods (the apiserver's own).
    var image: String
    /// The CairnVolume that owns the objects.
    var owner: Owner

    struct Owner {
        var name: String
        var uid: String
    }

    /// One replica's placement: the node its pool is on, and the pool's directory there.
    struct ReplicaPlacement {
        var record: ReplicaRecord
        var node: String
        var poolPath: String
    }

    static let labelVolume = "cairn.io/volume"
    static let labelReplica = "cairn.io/replica"
    static let labelComponent = "app.kubernetes.io/component"

    /// Every object of the volume: its secret, each replica's Deployment and Service, then the
    /// controller's (the order the orchestrator applies them in).
    func all(volume v: VolumeRecord, replicas: [ReplicaPlacement], secret: String, config: ControlConfig) -> [KubeValue] {
        var out = [self.secret(v.name, secret)]
        for r in replicas {
            out += self.replica(config.replicaSpec(v, r.record), r)
        }
        out += controller(config.controllerSpec(v, replicas.map(\.record)), volume: v)
        return out
    }

    /// The volume's secret (the replica links' key), or another of its secrets by name and key.
    func secret(_ volume: String, _ value: String, name: String? = nil, key: String = "secret") -> KubeValue {
        [
            "apiVersion": "v1", "kind": "Secret",
            "metadata": metadata(name ?? KubernetesNames.secret(volume), labels: labels(volume, component: "volume")),
            "type": "Opaque",
            "data": .object([(key, .string(Data(value.utf8).base64EncodedString()))]),
        ]
    }

    func controller(_ spec: ProcessSpec, volume v: VolumeRecord) -> [KubeValue] {
        let name = KubernetesNames.controller(v.name)
        let podLabels = labels(v.name, component: "controller")
        var mounts: [KubeValue] = [mount("secret", KubernetesPaths.secret)]
        var volumes: [KubeValue] = [secretVolume("secret", KubernetesNames.secret(v.name))]
        if let s = v.cloneSource {
            mounts.append(mount("clone-source", KubernetesPaths.cloneSecret))
            volumes.append(secretVolume("clone-source", KubernetesNames.secret(s.volume)))
        }
        if let r = v.restoreSource, r.target.url.hasPrefix("s3://") {
            mounts.append(.object([("name", "restore"), ("mountPath", .string(dirname(KubernetesPaths.restoreCredentials))),
                                   ("readOnly", true)]))
            volumes.append(["name": "restore", "secret": ["secretName": .string(KubernetesNames.restoreCredentials(v.name)),
                                                         "items": [["key": "credentials", "path": "credentials"]]]])
        }
        let container = self.container("controller", args: spec.arguments,
                                       ports: [("iscsi", KubernetesPorts.portal), ("api", KubernetesPorts.api)],
                                       probe: "api", cpu: "250m", memory: "256Mi", mounts: mounts)
        return [deployment(name, labels: podLabels, scrapePort: KubernetesPorts.api, pod: podSpec([container], volumes: volumes)),
                service(name, labels: podLabels, ports: [("iscsi", KubernetesPorts.portal), ("api", KubernetesPorts.api)])]
    }

    func replica(_ spec: ProcessSpec, _ r: ReplicaPlacement) -> [KubeValue] {
        let name = KubernetesNames.replica(r.record.volume, r.record.id)
        var podLabels = labels(r.record.volume, component: "replica")
        podLabels[Self.labelReplica] = r.record.id
        let container = self.container("replica", args: spec.arguments + ["--http", "0.0.0.0:\(KubernetesPorts.replicaHTTP)"],
                                       ports: [("replica", KubernetesPorts.replica), ("http", KubernetesPorts.replicaHTTP)],
                                       probe: "http", cpu: "100m", memory: "128Mi",
                                       mounts: [mount("secret", KubernetesPaths.secret), mount("pool", r.poolPath, readOnly: false)])
        let affinity: KubeValue = [
            "nodeAffinity": nodeAffinity(r.node),
            // Two replicas of a volume on one node would fail together.
            "podAntiAffinity": [
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    ["labelSelector": ["matchLabels": selector(labels(r.record.volume, component: "replica"))],
                     "topologyKey": "kubernetes.io/hostname"],
                ],
            ],
        ]
        let pod = podSpec([container], volumes: [
            secretVolume("secret", KubernetesNames.secret(r.record.volume)),
            ["name": "pool", "hostPath": ["path": .string(r.poolPath), "type": "Directory"]],
        ], affinity: affinity)
        return [deployment(name, labels: podLabels, scrapePort: KubernetesPorts.replicaHTTP, pod: pod),
                service(name, labels: podLabels, ports: [("replica", KubernetesPorts.replica)])]
    }

    /// The Job that removes a replica's directory on its pool's node once its Deployment is gone
    /// (`cairn replica wipe`, which refuses while a replica process holds the directory, so the
    /// Job retries until the pod has stopped). Not owned by the volume: it outlives it, and goes
    /// an hour after it finished.
    func wipe(_ r: ReplicaPlacement) -> KubeValue {
        var labels = labels(r.record.volume, component: "wipe")
        labels[Self.labelReplica] = r.record.id
        let container: KubeValue = [
            "name": "wipe",
            "image": .string(image),
            "args": .strings(["replica", "wipe", "--dir", r.record.directory, "--volume", r.record.volume]),
            "resources": ["requests": ["cpu": "10m", "memory": "32Mi"]],
            "volumeMounts": [mount("pool", r.poolPath, readOnly: false)],
        ]
        var pod = podSpec([container], volumes: [["name": "pool", "hostPath": ["path": .string(r.poolPath), "type": "Directory"]]],
                          affinity: ["nodeAffinity": nodeAffinity(r.node)])
        if case .object(var fields) = pod {
            fields.append(("restartPolicy", "OnFailure"))
            pod = .object(fields)
        }
        return [
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": ["name": .string(KubernetesNames.wipe(r.record.volume, r.record.id)), "namespace": .string(namespace),
                         "labels": .map(labels)],
            "spec": [
                "backoffLimit": 10,
                "ttlSecondsAfterFinished": 3600,
                "template": ["metadata": ["labels": .map(labels)], "spec": pod],
            ],
        ]
    }

    // MARK: parts

    private func nodeAffinity(_ node: String) -> KubeValue {
        [
            "requiredDuringSchedulingIgnoredDuringExecution": [
                "nodeSelectorTerms": [["matchExpressions": [["key": "kubernetes.io/hostname", "operator": "In",
                                                             "values": .strings([node])]]]],
            ],
        ]
    }

    /// One pod of a volume. Recreate: never two controllers of one volume at once (epochs would
    /// fence the older, but its initiators would see it fail first), never two processes on one
    /// replica directory.
    private func deployment(_ name: String, labels: [String: String], scrapePort: Int, pod: KubeValue) -> KubeValue {
        [
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(name, labels: labels),
            "spec": [
                "replicas": 1,
                "strategy": ["type": "Recreate"],
                "selector": ["matchLabels": selector(labels)],
                "template": ["metadata": ["labels": .map(labels), "annotations": scrape(scrapePort)], "spec": pod],
            ],
        ]
    }

    private func service(_ name: String, labels: [String: String], ports: [(String, Int)]) -> KubeValue {
        [
            "apiVersion": "v1", "kind": "Service",
            "metadata": metadata(name, labels: labels),
            "spec": [
                "type": "ClusterIP",
                "selector": selector(labels),
                "ports": .array(ports.map { ["name": .string($0.0), "port": .int($0.1), "targetPort": .string($0.0), "protocol": "TCP"] }),
            ],
        ]
    }

    private func container(_ name: String, args: [String], ports: [(String, Int)], probe: String, cpu: String, memory: String,
                           mounts: [KubeValue]) -> KubeValue {
        [
            "name": .string(name),
            "image": .string(image),
            "args": .strings(args),
            "ports": .array(ports.map { ["name": .string($0.0), "containerPort": .int($0.1), "protocol": "TCP"] }),
            "readinessProbe": ["httpGet": ["path": "/healthz", "port": .string(probe)], "periodSeconds": 5],
            "livenessProbe": ["httpGet": ["path": "/healthz", "port": .string(probe)], "periodSeconds": 10, "failureThreshold": 6],
            "resources": ["requests": ["cpu": .string(cpu), "memory": .string(memory)]],
            "volumeMounts": .array(mounts),
        ]
    }

    private func labels(_ volume: String, component: String) -> [String: String] {
        ["app.kubernetes.io/name": "cairn", "app.kubernetes.io/part-of": "cairn", Self.labelComponent: component,
         Self.labelVolume: volume]
    }

    /// The labels that pick a pod: the volume, the component, and the replica id if any.
    private func selector(_ labels: [String: String]) -> KubeValue {
        .map(labels.filter { [Self.labelVolume, Self.labelComponent, Self.labelReplica].contains($0.key) })
    }

    private func metadata(_ name: String, labels: [String: String]) -> KubeValue {
        [
            "name": .string(name),
            "namespace": .string(namespace),
            "labels": .map(labels),
            "ownerReferences": [[
                "apiVersion": "cairn.io/v1alpha1", "kind": "CairnVolume", "name": .string(owner.name),
                "uid": .string(owner.uid), "controller": true, "blockOwnerDeletion": true,
            ]],
        ]
    }

    private func podSpec(_ containers: [KubeValue], volumes: [KubeValue], affinity: KubeValue? = nil) -> KubeValue {
        var spec: [(String, KubeValue)] = [
            // The volume's pods talk to nothing in the cluster's API.
            ("automountServiceAccountToken", false),
            ("terminationGracePeriodSeconds", 30),
            ("containers", .array(containers)),
            ("volumes", .array(volumes)),
        ]
        if let affinity { spec.append(("affinity", affinity)) }
        return .object(spec)
    }

    private func scrape(_ port: Int) -> KubeValue {
        ["prometheus.io/scrape": "true", "prometheus.io/port": .string(String(port)), "prometheus.io/path": "/metrics"]
    }

    private func mount(_ name: String, _ file: String, readOnly: Bool = true) -> KubeValue {
        // A secret's file: its directory is the mount; a pool: the directory itself.
        .object([("name", .string(name)), ("mountPath", .string(readOnly ? dirname(file) : file)), ("readOnly", .bool(readOnly))])
    }

    private func secretVolume(_ name: String, _ secret: String) -> KubeValue {
        ["name": .string(name), "secret": ["secretName": .string(secret), "items": [["key": "secret", "path": "secret"]]]]
    }

    private func dirname(_ path: String) -> String { (path as NSString).deletingLastPathComponent }
}
