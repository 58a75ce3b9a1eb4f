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

    public init(dataDir: String, portalHost: String = "127.0.0.1", replicaHost: String = "127.0.0.1",
                ports: ClosedRange<Int> = 20000...29999, poolRoot: String? = nil, processLogLevel: String = "info",
                tickSeconds: Double = 0.25, idleTickSeconds: Double = 1, pollSeconds: Double = 2) {
        self.dataDir = dataDir
        self.portalHost = portalHost
        self.replicaHost = replicaHost
        self.ports = ports
        self.poolRoot = poolRoot
        self.processLogLevel = processLogLevel
        self.tickSeconds = tickSeconds
        self.idleTickSeconds = idleTickSeconds
        self.pollSeconds = pollSeconds
    }

    func volumeDir(_ name: String) -> String { "\(dataDir)/volumes/\(name)" }
    /// A restore's S3 credentials (KEY=VALUE lines, 0600).
    func restoreCredentialsFile(_ volume: String) -> String { volumeDir(volume) + "/restore-credentials" }

    /// A clone's copy of its source volume's secret.
    func cloneSecretFile(_ volume: String) -> String { volumeDir(volume) + "/clone-secret" }

    func secretFile(_ name: String) -> String { "\(volumeDir(name))/secret" }

    static func iqn(_ volume: String) -> String { "iqn.2026-11.io.cairn:\(volume)" }
    func portal(_ v: VolumeRecord) -> String { "\(portalHost):\(v.portalPort)" }
    func url(_ v: VolumeRecord) -> String { "iscsi://\(portal(v))/\(Self.iqn(v.name))/0" }
    func replicaAddress(_ r: ReplicaRecord) -> String { "\(replicaHost):\(r.port)" }
}

/// The orchestrator's key of a volume's processes.
enum ProcessKey {
    static func controller(_ volume: String) -> String { "\(volume)/controller" }
    static func replica(_ r: ReplicaRecord) -> String { "\(r.volume)/replica/\(r.id)" }
}
