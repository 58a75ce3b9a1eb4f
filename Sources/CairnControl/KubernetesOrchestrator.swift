import Foundation
import Logging

/// Runs each volume's processes as Kubernetes objects (`cairn apiserver --orchestrator
/// kubernetes`): per volume a CairnVolume that owns a Secret and the controller's Deployment and
/// Service, per replica a Deployment pinned to its pool's node and a Service (KubernetesObjects).
/// Kubernetes restarts the pods; this reads their state back. A pool's node is its
/// `kubernetes.io/hostname` label.
actor KubernetesOrchestrator: Orchestrator {
    static let nodeLabel = "kubernetes.io/hostname"

    private let api: KubernetesAPI
    private let namespace: String
    private let image: String
    private let store: StateStore
    private let config: ControlConfig
    private let logger: Logger

    /// The volumes' Deployments and pods as watches keep them: the reconcile loop reads them up
    /// to four times a second without asking the API server.
    private let deploymentWatch: KubeInformer<KubeDeployment>
    private let podWatch: KubeInformer<KubePod>
    static let selector = "app.kubernetes.io/part-of=cairn,cairn.io/volume"

    init(api: KubernetesAPI, namespace: String, image: String, store: StateStore, config: ControlConfig, logger: Logger) {
        self.api = api
        self.namespace = namespace
        self.image = image
        self.store = store
        self.config = config
        self.logger = logger
        deploymentWatch = KubeInformer(api: api, path: KubernetesAPI.path(apiVersion: "apps/v1", kind: "Deployment", namespace: namespace),
                                       labelSelector: Self.selector, logger: logger) { try JSONDecoder().decode(KubeDeployment.self, from: $0) }
        podWatch = KubeInformer(api: api, path: KubernetesAPI.path(apiVersion: "v1", kind: "Pod", namespace: namespace),
                                labelSelector: Self.selector, logger: logger) { try JSONDecoder().decode(KubePod.self, from: $0) }
    }

    /// The image of this pod's `apiserver` container (POD_NAME and POD_NAMESPACE from the
    /// downward API): the volumes' pods run the same release.
    static func ownImage(api: KubernetesAPI, environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> String {
        guard let pod = environment["POD_NAME"], let namespace = environment["POD_NAMESPACE"] else {
            throw KubernetesError(status: 0, message: "give --image, or run in a pod with POD_NAME and POD_NAMESPACE set")
        }
        guard let data = try await api.get(KubernetesAPI.path(apiVersion: "v1", kind: "Pod", namespace: namespace, name: pod)),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let containers = (object["spec"] as? [String: Any])?["containers"] as? [[String: Any]],
              let image = (containers.first { $0["name"] as? String == "apiserver" } ?? containers.first)?["image"] as? String else {
            throw KubernetesError(status: 0, message: "cannot read the image of pod \(namespace)/\(pod)")
        }
        return image
    }

    /// Deployments outlive the apiserver on their own: nothing to take over.
    func adopt() async -> [ProcessChange] { [] }

    func ensure(_ specs: [ProcessSpec]) async -> (status: [ProcessStatus], changes: [ProcessChange]) {
        await deploymentWatch.start()
        await podWatch.start()
        // Until both lists arrived nothing is known: nothing is applied (a Deployment not seen
        // yet is not a missing one).
        guard let d = await deploymentWatch.objects, let p = await podWatch.objects else {
            return (specs.map { ProcessStatus(key: $0.key, pid: nil, running: false, restarts: 0, crashLooping: false,
                                              lastExit: "waiting for the Kubernetes API") }, [])
        }
        let deployments = Self.byKey(d.values), pods = Dictionary(grouping: p.values) { Self.key($0.metadata.labels ?? [:]) ?? "" }
        var status: [ProcessStatus] = [], changes: [ProcessChange] = []
        for spec in specs {
            if Self.needsApply(spec, deployments[spec.key]) {
                do {
                    try await apply(spec)
                    changes.append(.started(key: spec.key, pid: 0))
                } catch {
                    logger.warning("\(spec.key): cannot apply its objects: \(error)")
                    status.append(ProcessStatus(key: spec.key, pid: nil, running: false, restarts: 0, crashLooping: false,
                                                lastExit: "\(error)"))
                    continue
                }
            }
            status.append(Self.status(spec.key, deployments[spec.key], pods[spec.key] ?? []))
        }
        return (status, changes)
    }

    func stop(_ key: String, graceSeconds: Double) async {
        guard let (volume, replica) = Self.parse(key) else { return }
        let name = replica.map { KubernetesNames.replica(volume, $0) } ?? KubernetesNames.controller(volume)
        do {
            try await api.delete(KubernetesAPI.path(apiVersion: "apps/v1", kind: "Deployment", namespace: namespace, name: name))
            try await api.delete(KubernetesAPI.path(apiVersion: "v1", kind: "Service", namespace: namespace, name: name))
            // A volume on its way out: its CairnVolume goes last, and what it owns with it.
            if replica == nil, (try? store.volume(volume))??.phase != "active" {
                try await api.delete(KubernetesAPI.path(apiVersion: "cairn.io/v1alpha1", kind: "CairnVolume", namespace: namespace, name: volume))
            }
        } catch {
            logger.warning("\(key): cannot delete its objects: \(error)")
        }
    }

    func keys() async -> [String] {
        if let d = await deploymentWatch.objects { return Self.byKey(d.values).keys.sorted() }
        guard let items = try? await api.list(KubernetesAPI.path(apiVersion: "apps/v1", kind: "Deployment", namespace: namespace),
                                              labelSelector: Self.selector) else { return [] }
        return Self.byKey(items.compactMap { try? JSONDecoder().decode(KubeDeployment.self, from: $0) }).keys.sorted()
    }

    /// A Job on the pool's node removes the directory (`cairn replica wipe`), retried by
    /// Kubernetes until the replica's pod has stopped; its result is in the Job, not awaited here.
    func removeData(_ r: ReplicaRecord) async {
        do {
            guard let pool = try store.pool(r.pool), let node = pool.labelMap[Self.nodeLabel] else {
                logger.warning("\(r.volume)/\(r.id): pool \(r.pool) has no node label: its directory \(r.directory) stays")
                return
            }
            let objects = KubernetesObjects(namespace: namespace, image: image, owner: .init(name: r.volume, uid: ""))
            try await api.apply(objects.wipe(.init(record: r, node: node, poolPath: pool.path)))
            logger.info("\(r.volume)/\(r.id): a Job on \(node) removes \(r.directory)")
        } catch {
            logger.warning("\(r.volume)/\(r.id): cannot start the Job that removes \(r.directory): \(error)")
        }
    }

    // MARK: objects

    /// Applies the objects of one process: the volume's CairnVolume first (its uid owns the rest),
    /// its Secret unless this volume's exists (the replicas' key never changes; one an earlier
    /// volume of the name left, which the garbage collector is about to take, is replaced), then
    /// the Deployment and Service.
    private func apply(_ spec: ProcessSpec) async throws {
        guard let v = try store.volume(spec.volume) else { throw KubernetesError(status: 0, message: "no volume \(spec.volume)") }
        let owner = try await applyVolume(v)
        let objects = KubernetesObjects(namespace: namespace, image: image, owner: owner)
        let secretPath = KubernetesAPI.path(apiVersion: "v1", kind: "Secret", namespace: namespace, name: KubernetesNames.secret(v.name))
        if try await api.get(secretPath).map({ Self.ownerUIDs($0).contains(owner.uid) }) != true {
            let value = try String(contentsOfFile: config.secretFile(v.name), encoding: .utf8)
            try await api.apply(objects.secret(v.name, value.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        // A restore from S3 reads its credentials from a Secret of the volume's own.
        if spec.role == .controller, let r = v.restoreSource, r.target.url.hasPrefix("s3://"),
           let credentials = try? String(contentsOfFile: config.restoreCredentialsFile(v.name), encoding: .utf8) {
            try await api.apply(objects.secret(v.name, credentials, name: KubernetesNames.restoreCredentials(v.name), key: "credentials"))
        }
        let made: [KubeValue]
        switch spec.role {
        case .controller:
            made = objects.controller(spec, volume: v)
        case .replica:
            guard let (_, id) = Self.parse(spec.key), let id, let r = try store.replicas(of: v.name).first(where: { $0.id == id }),
                  let pool = try store.pool(r.pool) else {
                throw KubernetesError(status: 0, message: "no replica record for \(spec.key)")
            }
            guard let node = pool.labelMap[Self.nodeLabel] else {
                throw KubernetesError(status: 0, message: "pool \(pool.name) has no \(Self.nodeLabel) label: the node its directory is on")
            }
            made = objects.replica(spec, .init(record: r, node: node, poolPath: pool.path))
        }
        for o in made {
            let answer = try await api.apply(o)
            if case .string("Deployment")? = o["kind"], let d = try? JSONDecoder().decode(KubeDeployment.self, from: answer) {
                await deploymentWatch.insertIfAbsent(d.metadata.name, d)
            }
        }
        logger.info("\(spec.key): applied \(made.count) objects")
    }

    /// Applies the volume's CairnVolume and returns it as the owner of the rest. The same object
    /// the state mirror applies (record annotation included): an apply by one field manager
    /// drops the fields its previous apply set and this one leaves out.
    private func applyVolume(_ v: VolumeRecord) async throws -> KubernetesObjects.Owner {
        let answer = try await api.apply(KubernetesState.volume(v, namespace: namespace))
        guard let object = try JSONSerialization.jsonObject(with: answer) as? [String: Any],
              let uid = (object["metadata"] as? [String: Any])?["uid"] as? String else {
            throw KubernetesError(status: 0, message: "the CairnVolume \(v.name) came back without a uid")
        }
        return .init(name: v.name, uid: uid)
    }

    // MARK: reading back

    /// The uids in an object's ownerReferences.
    static func ownerUIDs(_ object: Data) -> [String] {
        guard let json = try? JSONSerialization.jsonObject(with: object) as? [String: Any],
              let refs = (json["metadata"] as? [String: Any])?["ownerReferences"] as? [[String: Any]] else { return [] }
        return refs.compactMap { $0["uid"] as? String }
    }

    /// Deployments by process key (from their labels).
    static func byKey<S: Sequence<KubeDeployment>>(_ deployments: S) -> [String: KubeDeployment] {
        var out: [String: KubeDeployment] = [:]
        for d in deployments { if let key = key(d.metadata.labels ?? [:]) { out[key] = d } }
        return out
    }

    /// Whether a process's objects are applied now: when its Deployment is missing, or when a
    /// controller's arguments changed (its replica set after a replacement) and its pod is not
    /// ready, so that the new pod starts with them. A ready pod keeps running: a changed
    /// template would restart it, and the reconciler changes a live controller through its API.
    /// Replicas keep the arguments they were made with: the `--size` they were created at is one
    /// they always had (a newer one, from a growth they missed, they would refuse).
    static func needsApply(_ spec: ProcessSpec, _ d: KubeDeployment?) -> Bool {
        guard let d else { return true }
        guard spec.role == .controller, let args = d.spec?.template.spec.containers.first?.args else { return false }
        return args != spec.arguments && (d.status?.readyReplicas ?? 0) == 0
    }

    /// A process's state from its Deployment and pods: running when a pod is ready; restarts the
    /// pods' containers' restarts; crash looping when kubelet backs off restarting it.
    static func status(_ key: String, _ d: KubeDeployment?, _ pods: [KubePod]) -> ProcessStatus {
        let containers = pods.flatMap { $0.status?.containerStatuses ?? [] }
        let waiting = containers.compactMap { $0.state?.waiting?.reason }.first
        let terminated = containers.compactMap { $0.lastState?.terminated }.first
        return ProcessStatus(key: key, pid: nil, running: (d?.status?.readyReplicas ?? 0) >= 1,
                             restarts: containers.reduce(0) { $0 + $1.restartCount },
                             crashLooping: waiting == "CrashLoopBackOff",
                             lastExit: waiting ?? terminated.map { "\($0.reason ?? "exited") (\($0.exitCode ?? 0))" })
    }

    /// "VOLUME/controller" or "VOLUME/replica/ID" from an object's labels.
    static func key(_ labels: [String: String]) -> String? {
        guard let volume = labels[KubernetesObjects.labelVolume] else { return nil }
        switch labels[KubernetesObjects.labelComponent] {
        case "controller": return "\(volume)/controller"
        case "replica": return labels[KubernetesObjects.labelReplica].map { "\(volume)/replica/\($0)" }
        default: return nil
        }
    }

    /// The volume and, for a replica, its id, of a process key.
    static func parse(_ key: String) -> (String, String?)? {
        let parts = key.split(separator: "/").map(String.init)
        if parts.count == 2, parts[1] == "controller" { return (parts[0], nil) }
        if parts.count == 3, parts[1] == "replica" { return (parts[0], parts[2]) }
        return nil
    }
}

/// The parts of a Deployment and a Pod the orchestrator reads.
struct KubeDeployment: Decodable, Sendable {
    struct Status: Decodable { var readyReplicas: Int? }
    struct Spec: Decodable {
        struct Template: Decodable {
            struct PodSpec: Decodable {
                struct Container: Decodable { var args: [String]? }
                var containers: [Container]
            }
            var spec: PodSpec
        }
        var template: Template
    }
    var metadata: KubeMetadata
    var spec: Spec?
    var status: Status?
}

struct KubePod: Decodable, Sendable {
    struct ContainerStatus: Decodable {
        struct State: Decodable {
            struct Waiting: Decodable { var reason: String? }
            struct Terminated: Decodable { var reason: String?; var exitCode: Int? }
            var waiting: Waiting?
            var terminated: Terminated?
        }
        var restartCount: Int
        var state: State?
        var lastState: State?
    }
    struct Status: Decodable { var containerStatuses: [ContainerStatus]? }
    var metadata: KubeMetadata
    var status: Status?
}

struct KubeMetadata: Decodable, Sendable {
    var name: String
    var labels: [String: String]?
    var uid: String?
}
