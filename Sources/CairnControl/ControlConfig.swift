import Foundation

/// The apiserver's settings (from `cairn apiserver`'s options).
public struct ControlConfig: Sendable {
    /// Holds state.db, the token, and per volume its secret and process logs (volumes/NAME/).
    public var dataDir: String
    /// Where the iSCSI portals listen, and the host in the volumes' URLs.
    public var portalHost: String
    /// Where the replicas listen for their controller.
    public var replicaHost: String
    /// Ports handed to portals, controller APIs and replicas.
    public var ports: ClosedRange<Int>
    /// Pools must be directories under this one, when set.
    public var poolRoot: String?
    /// The log level given to the volumes' processes.
    public var processLogLevel: String
    /// How often the reconcile loop runs while anything is unsettled (a volume not healthy, a
    /// replacement or spec change pending, a process down); it also runs at once after each change
    /// through the API and each exit of a child process.
    public var tickSeconds: Double
    /// How often it runs while everything is settled (processes that are not its children, adopted
    /// from a previous apiserver, are seen to exit within this).
    public var idleTickSeconds: Double
    /// How often a healthy volume's controller is asked for its status (a volume that is not
    /// healthy, or has work pending, every tick).
    public var pollSeconds: Double
    /// How the volumes' processes reach each other.
    public var network: Network

    /// On this machine, each process on a port of its own; or as Kubernetes pods, each with its
    /// own address, on fixed ports behind a Service whose DNS name stays when the pod moves.
    public enum Network: Sendable, Equatable {
        case local
        case kubernetes(namespace: String)
    }

    public init(dataDir: String, portalHost: String = "127.0.0.1", replicaHost: String = "127.0.0.1",
                ports: ClosedRange<Int> = 20000...29999, poolRoot: String? = nil, processLogLevel: String = "info",
                tickSeconds: Double = 0.25, idleTickSeconds: Double = 1, pollSeconds: Double = 2,
                network: Network = .local) {
        self.dataDir = dataDir
        self.portalHost = portalHost
        self.replicaHost = replicaHost
        self.ports = ports
        self.poolRoot = poolRoot
        self.processLogLevel = processLogLevel
        self.tickSeconds = tickSeconds
        self.idleTickSeconds = idleTickSeconds
        self.pollSeconds = pollSeconds
        self.network = network
    }

    /// Pools are on other nodes (a cluster): their filesystems are not measured from here.
    var poolsAreRemote: Bool {
        if case .kubernetes = network { return true }
        return false
    }

    func volumeDir(_ name: String) -> String { "\(dataDir)/volumes/\(name)" }
    /// A restore's S3 credentials (KEY=VALUE lines, 0600).
    func restoreCredentialsFile(_ volume: String) -> String { volumeDir(volume) + "/restore-credentials" }

    /// A clone's copy of its source volume's secret.
    func cloneSecretFile(_ volume: String) -> String { volumeDir(volume) + "/clone-secret" }

    func secretFile(_ name: String) -> String { "\(volumeDir(name))/secret" }

    static func iqn(_ volume: String) -> String { "iqn.2026-11.io.cairn:\(volume)" }
    func url(_ v: VolumeRecord) -> String { "iscsi://\(portal(v))/\(Self.iqn(v.name))/0" }

    /// Where initiators reach the volume's target.
    func portal(_ v: VolumeRecord) -> String {
        switch network {
        case .local: return "\(portalHost):\(v.portalPort)"
        case .kubernetes(let ns): return "\(KubernetesNames.controller(v.name)).\(ns).svc:\(KubernetesPorts.portal)"
        }
    }

    /// Where the controller's portal listens.
    func portalListen(_ v: VolumeRecord) -> String {
        if case .kubernetes = network { return "0.0.0.0:\(KubernetesPorts.portal)" }
        return portal(v)
    }

    /// The controller's HTTP API as the apiserver reaches it.
    func controllerAPI(_ v: VolumeRecord) -> String {
        switch network {
        case .local: return "http://127.0.0.1:\(v.apiPort)"
        case .kubernetes(let ns): return "http://\(KubernetesNames.controller(v.name)).\(ns).svc:\(KubernetesPorts.api)"
        }
    }

    /// Where the controller's HTTP API listens (loopback on a shared machine: it has no authentication).
    func controllerAPIListen(_ v: VolumeRecord) -> String {
        if case .kubernetes = network { return "0.0.0.0:\(KubernetesPorts.api)" }
        return "127.0.0.1:\(v.apiPort)"
    }

    /// Where the controller reaches a replica.
    func replicaAddress(_ r: ReplicaRecord) -> String {
        switch network {
        case .local: return "\(replicaHost):\(r.port)"
        case .kubernetes(let ns): return "\(KubernetesNames.replica(r.volume, r.id)).\(ns).svc:\(KubernetesPorts.replica)"
        }
    }

    /// Where a replica listens.
    func replicaListen(_ r: ReplicaRecord) -> String {
        if case .kubernetes = network { return "0.0.0.0:\(KubernetesPorts.replica)" }
        return replicaAddress(r)
    }

    /// The files a volume's processes read their secrets from: the apiserver's own copies on this
    /// machine; in a pod, the Secrets the orchestrator mounts (KubernetesObjects).
    func processSecretFile(_ volume: String) -> String {
        if case .kubernetes = network { return KubernetesPaths.secret }
        return secretFile(volume)
    }

    func processCloneSecretFile(_ volume: String) -> String {
        if case .kubernetes = network { return KubernetesPaths.cloneSecret }
        return cloneSecretFile(volume)
    }

    func processRestoreCredentialsFile(_ volume: String) -> String {
        if case .kubernetes = network { return KubernetesPaths.restoreCredentials }
        return restoreCredentialsFile(volume)
    }
}

/// The orchestrator's key of a volume's processes.
enum ProcessKey {
    static func controller(_ volume: String) -> String { "\(volume)/controller" }
    static func replica(_ r: ReplicaRecord) -> String { "\(r.volume)/replica/\(r.id)" }
}
