import Foundation

// The apiserver's REST resources, as JSON on the wire. Shared by the apiserver (CairnControl),
// which writes them, and the CLI, which reads them; the OpenAPI document (CairnControl's
// OpenAPIDocument.swift) describes the same shapes and the tests hold both to it.
// An optional field with no value is left out of the JSON.

/// The state of a pool: where new replicas may go.
public enum PoolState: String, Codable, Sendable, CaseIterable {
    /// Takes new replicas.
    case ready
    /// Takes no new replica; those on it stay.
    case cordoned
    /// Takes no new replica, and the ones on it are replaced on other pools.
    case draining
}

/// A directory where replicas keep their data.
public struct Pool: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    public var labels: [String: String]
    public var state: PoolState
    /// Size and free bytes of the filesystem the pool is on (statvfs, as the apiserver's user sees it).
    public var capacityBytes: UInt64
    public var freeBytes: UInt64
    /// The sizes of the replicas placed on it, added up (thin: their files hold less).
    public var provisionedBytes: UInt64
    public var replicaCount: Int

    public init(name: String, path: String, labels: [String: String], state: PoolState, capacityBytes: UInt64,
                freeBytes: UInt64, provisionedBytes: UInt64, replicaCount: Int) {
        self.name = name
        self.path = path
        self.labels = labels
        self.state = state
        self.capacityBytes = capacityBytes
        self.freeBytes = freeBytes
        self.provisionedBytes = provisionedBytes
        self.replicaCount = replicaCount
    }
}

/// `POST /v1/pools`.
public struct PoolCreate: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    public var labels: [String: String]?

    public init(name: String, path: String, labels: [String: String]? = nil) {
        self.name = name
        self.path = path
        self.labels = labels
    }
}

/// `PATCH /v1/pools/{name}`: the fields given change.
public struct PoolPatch: Codable, Sendable, Equatable {
    public var state: PoolState?
    public var labels: [String: String]?

    public init(state: PoolState? = nil, labels: [String: String]? = nil) {
        self.state = state
        self.labels = labels
    }
}

/// A volume's QoS limits (null: none). Bandwidths in bytes per second.
public struct QoS: Codable, Sendable, Equatable {
    public var iops: UInt64?
    public var readIops: UInt64?
    public var writeIops: UInt64?
    public var bandwidth: UInt64?
    public var readBandwidth: UInt64?
    public var writeBandwidth: UInt64?
    /// What an idle volume may save up and spend above a limit, in seconds at the limit (default 1).
    public var burstSeconds: Double?

    public init(iops: UInt64? = nil, readIops: UInt64? = nil, writeIops: UInt64? = nil, bandwidth: UInt64? = nil,
                readBandwidth: UInt64? = nil, writeBandwidth: UInt64? = nil, burstSeconds: Double? = nil) {
        self.iops = iops
        self.readIops = readIops
        self.writeIops = writeIops
        self.bandwidth = bandwidth
        self.readBandwidth = readBandwidth
        self.writeBandwidth = writeBandwidth
        self.burstSeconds = burstSeconds
    }

    public static let fields: Set<String> = ["iops", "readIops", "writeIops", "bandwidth", "readBandwidth",
                                             "writeBandwidth", "burstSeconds"]

    public var isEmpty: Bool { self == QoS() }
}

/// `POST /v1/volumes`.
public struct VolumeCreate: Codable, Sendable, Equatable {
    public var name: String
    public var size: UInt64
    /// 1...5; default 3.
    public var replicas: Int?
    /// RW replicas needed to acknowledge a write; default a majority of `replicas`.
    public var minHealthy: Int?
    public var qos: QoS?
    /// Only pools with every one of these labels take the volume's replicas.
    public var poolSelector: [String: String]?
    /// A clone: "VOLUME/SNAPSHOT", copied to the new volume's replicas before it serves (its
    /// size at least the snapshot's).
    public var fromSnapshot: String?
    /// A restore: this backup's id on `backupTarget`, copied (every block checked) before it serves.
    public var fromBackup: String?
    public var backupTarget: TargetRef?

    public init(name: String, size: UInt64, replicas: Int? = nil, minHealthy: Int? = nil, qos: QoS? = nil,
                poolSelector: [String: String]? = nil, fromSnapshot: String? = nil, fromBackup: String? = nil,
                backupTarget: TargetRef? = nil) {
        self.name = name
        self.size = size
        self.replicas = replicas
        self.minHealthy = minHealthy
        self.qos = qos
        self.poolSelector = poolSelector
        self.fromSnapshot = fromSnapshot
        self.fromBackup = fromBackup
        self.backupTarget = backupTarget
    }

    public static let fields: Set<String> = ["name", "size", "replicas", "minHealthy", "qos", "poolSelector", "fromSnapshot",
                                             "fromBackup", "backupTarget"]
}

/// `PATCH /v1/volumes/{name}`: a larger size (grown online), and/or new QoS limits (whole).
public struct VolumePatch: Codable, Sendable, Equatable {
    public var size: UInt64?
    public var qos: QoS?

    public init(size: UInt64? = nil, qos: QoS? = nil) {
        self.size = size
        self.qos = qos
    }

    public static let fields: Set<String> = ["size", "qos"]
}

/// A volume: its spec and the status folded in from its controller.
public struct Volume: Codable, Sendable, Equatable {
    public var name: String
    public var size: UInt64
    public var replicaCount: Int
    public var minHealthy: Int
    public var qos: QoS
    public var poolSelector: [String: String]
    public var createdAt: String
    public var status: VolumeStatus
    /// The volume's snapshots, oldest first, as the apiserver last saw them.
    public var snapshots: [Snapshot]
    /// A clone's source, "VOLUME/SNAPSHOT", or a restore's, "TARGET BACKUP".
    public var source: String?
    /// Backups of the volume made through the apiserver, oldest first.
    public var backups: [Backup]

    public init(name: String, size: UInt64, replicaCount: Int, minHealthy: Int, qos: QoS,
                poolSelector: [String: String], createdAt: String, status: VolumeStatus, snapshots: [Snapshot] = [],
                source: String? = nil, backups: [Backup] = []) {
        self.name = name
        self.size = size
        self.replicaCount = replicaCount
        self.minHealthy = minHealthy
        self.qos = qos
        self.poolSelector = poolSelector
        self.createdAt = createdAt
        self.status = status
        self.snapshots = snapshots
        self.source = source
        self.backups = backups
    }
}

/// A point-in-time copy of a whole volume, the same on every replica.
public struct Snapshot: Codable, Sendable, Equatable {
    public var name: String
    public var id: String
    /// RFC 3339, UTC.
    public var createdAt: String
    /// The snapshot it sits on, by name.
    public var parent: String?
    /// The volume's size when it was taken.
    public var size: UInt64
    /// Bytes this snapshot alone holds (what a delete gives back, about).
    public var bytes: UInt64
    /// ready | deleting (merged away in the background)
    public var state: String

    public init(name: String, id: String, createdAt: String, parent: String?, size: UInt64, bytes: UInt64, state: String) {
        self.name = name
        self.id = id
        self.createdAt = createdAt
        self.parent = parent
        self.size = size
        self.bytes = bytes
        self.state = state
    }
}

/// Where backups live: `file:///DIR` or `s3://BUCKET/PREFIX` (with an S3 endpoint, region and
/// credentials).
public struct TargetRef: Codable, Sendable, Equatable {
    public var url: String
    public var endpoint: String?
    public var region: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public static let fields: Set<String> = ["url", "endpoint", "region", "accessKeyID", "secretAccessKey"]

    public init(url: String, endpoint: String? = nil, region: String? = nil, accessKeyID: String? = nil,
                secretAccessKey: String? = nil) {
        self.url = url
        self.endpoint = endpoint
        self.region = region
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
    }
}

/// `POST /v1/volumes/{name}/backups`: back up `snapshot` (default: a new one) to `target`.
public struct BackupCreate: Codable, Sendable, Equatable {
    public var snapshot: String?
    public var target: TargetRef
    public static let fields: Set<String> = ["snapshot", "target"]

    public init(snapshot: String?, target: TargetRef) {
        self.snapshot = snapshot
        self.target = target
    }
}

/// A backup made through the apiserver (its job's progress, then its outcome).
public struct Backup: Codable, Sendable, Equatable {
    public var id: String
    public var volume: String
    public var snapshot: String
    /// The target's URL.
    public var target: String
    public var createdAt: String
    /// running | done | failed
    public var state: String
    /// Bytes to read from the snapshot (what changed since the previous backup, or all its data).
    public var totalBytes: UInt64
    public var readBytes: UInt64
    /// Bytes stored anew on the target (compressed), and how many blocks.
    public var uploadedBytes: UInt64
    public var newBlocks: Int
    public var mibPerSecond: Double
    /// The backup it is incremental on.
    public var previous: String?
    public var error: String?

    public init(id: String, volume: String, snapshot: String, target: String, createdAt: String, state: String,
                totalBytes: UInt64, readBytes: UInt64, uploadedBytes: UInt64, newBlocks: Int, mibPerSecond: Double,
                previous: String?, error: String?) {
        self.id = id
        self.volume = volume
        self.snapshot = snapshot
        self.target = target
        self.createdAt = createdAt
        self.state = state
        self.totalBytes = totalBytes
        self.readBytes = readBytes
        self.uploadedBytes = uploadedBytes
        self.newBlocks = newBlocks
        self.mibPerSecond = mibPerSecond
        self.previous = previous
        self.error = error
    }
}

/// A backup as its target holds it (`GET /v1/backups`).
public struct StoredBackup: Codable, Sendable, Equatable {
    public var id: String
    public var volume: String
    public var snapshot: String
    public var createdAt: String
    /// The volume's size.
    public var size: UInt64
    /// Bytes of data in it (holes left out), and bytes its own run stored.
    public var dataBytes: UInt64
    public var uploadedBytes: UInt64
    public var previous: String?
    /// Blocks it names (2 MiB each), data blocks only.
    public var blocks: Int

    public init(id: String, volume: String, snapshot: String, createdAt: String, size: UInt64, dataBytes: UInt64,
                uploadedBytes: UInt64, previous: String?, blocks: Int) {
        self.id = id
        self.volume = volume
        self.snapshot = snapshot
        self.createdAt = createdAt
        self.size = size
        self.dataBytes = dataBytes
        self.uploadedBytes = uploadedBytes
        self.previous = previous
        self.blocks = blocks
    }
}

/// `POST /v1/volumes/{name}/snapshots`.
public struct SnapshotRequest: Codable, Sendable, Equatable {
    public var name: String
    public static let fields: Set<String> = ["name"]
    public init(name: String) { self.name = name }
}

public struct VolumeStatus: Codable, Sendable, Equatable {
    /// pending (processes starting, controller not answering yet) | healthy | degraded | read-only |
    /// offline | deleting
    public var state: String
    /// The membership epoch persisted on the RW replicas (0 before the first; null when unknown).
    public var epoch: UInt64?
    /// Bytes the controller serves (it may lag a PATCH while a grow runs).
    public var servedSize: UInt64?
    public var portal: String
    public var iqn: String
    public var url: String
    /// The controller's HTTP API.
    public var controllerAPI: String
    public var controllerPid: Int32?
    public var replicas: [Replica]
    /// What the apiserver is waiting for, when anything (a free pool for a replacement, a rebuild).
    public var message: String?
    /// A new volume's first copy (kind clone or restore): it serves once this is finished.
    public var populate: RebuildStatus?

    public init(state: String, epoch: UInt64?, servedSize: UInt64?, portal: String, iqn: String, url: String,
                controllerAPI: String, controllerPid: Int32?, replicas: [Replica], message: String?,
                populate: RebuildStatus? = nil) {
        self.state = state
        self.epoch = epoch
        self.servedSize = servedSize
        self.portal = portal
        self.iqn = iqn
        self.url = url
        self.controllerAPI = controllerAPI
        self.controllerPid = controllerPid
        self.replicas = replicas
        self.message = message
        self.populate = populate
    }

    public var healthyReplicas: Int { replicas.filter { $0.mode == "RW" }.count }

    /// The controller serves reads and writes: healthy or degraded, with an epoch of its own (a
    /// clone or restore has copied its data; its replicas are writable).
    public var serves: Bool { ["healthy", "degraded"].contains(state) && (epoch ?? 0) > 0 }
}

/// One replica of a volume.
public struct Replica: Codable, Sendable, Equatable {
    public var id: String
    public var volume: String
    public var pool: String
    public var address: String
    public var directory: String
    /// active | replacing (a new one is being added and rebuilt; this one goes after) | replacement
    /// (added to take another's place)
    public var role: String
    /// The controller's view: RW | WO | ERR; null before the controller answers.
    public var mode: String?
    public var pid: Int32?
    public var restarts: Int
    public var rebuild: RebuildStatus?

    public init(id: String, volume: String, pool: String, address: String, directory: String, role: String,
                mode: String?, pid: Int32?, restarts: Int, rebuild: RebuildStatus?) {
        self.id = id
        self.volume = volume
        self.pool = pool
        self.address = address
        self.directory = directory
        self.role = role
        self.mode = mode
        self.pid = pid
        self.restarts = restarts
        self.rebuild = rebuild
    }
}

public struct RebuildStatus: Codable, Sendable, Equatable {
    /// delta | full
    public var kind: String
    public var totalBytes: UInt64
    public var copiedBytes: UInt64
    public var percent: Double
    public var finished: Bool

    public init(kind: String, totalBytes: UInt64, copiedBytes: UInt64, percent: Double, finished: Bool) {
        self.kind = kind
        self.totalBytes = totalBytes
        self.copiedBytes = copiedBytes
        self.percent = percent
        self.finished = finished
    }
}

/// `GET /v1/volumes/{name}/stats`: the figures of Jiva's `/v1/stats` and `mayactl volume stats`,
/// from the volume's controller, counters since it started.
public struct VolumeStats: Codable, Sendable, Equatable {
    public var name: String
    public var readOps: UInt64
    public var writeOps: UInt64
    public var readBytes: UInt64
    public var writeBytes: UInt64
    /// Average latency since the controller started, in microseconds.
    public var readLatencyMicros: Double
    public var writeLatencyMicros: Double
    /// Bytes allocated on an RW replica.
    public var usedBytes: UInt64
    public var size: UInt64
    public var sectorSize: Int
    public var uptimeSeconds: Double
    public var replicaCount: Int
    /// RW while writes are accepted, RO otherwise.
    public var status: String

    public init(name: String, readOps: UInt64, writeOps: UInt64, readBytes: UInt64, writeBytes: UInt64,
                readLatencyMicros: Double, writeLatencyMicros: Double, usedBytes: UInt64, size: UInt64,
                sectorSize: Int, uptimeSeconds: Double, replicaCount: Int, status: String) {
        self.name = name
        self.readOps = readOps
        self.writeOps = writeOps
        self.readBytes = readBytes
        self.writeBytes = writeBytes
        self.readLatencyMicros = readLatencyMicros
        self.writeLatencyMicros = writeLatencyMicros
        self.usedBytes = usedBytes
        self.size = size
        self.sectorSize = sectorSize
        self.uptimeSeconds = uptimeSeconds
        self.replicaCount = replicaCount
        self.status = status
    }
}

/// Something that happened, in `GET /v1/events` (oldest first; `?follow=1` streams new ones as
/// they happen, one JSON object a line).
public struct Event: Codable, Sendable, Equatable {
    public var id: Int64
    /// RFC 3339, UTC.
    public var time: String
    /// volume.created | volume.deleted | volume.expanded | volume.qos-changed | replica.ejected |
    /// rebuild.started | rebuild.finished | process.restarted | process.adopted | replica.added |
    /// replica.replaced | replica.replacement-blocked | pool.added | pool.changed | pool.removed
    public var type: String
    public var volume: String?
    public var replica: String?
    public var message: String

    public init(id: Int64, time: String, type: String, volume: String?, replica: String?, message: String) {
        self.id = id
        self.time = time
        self.type = type
        self.volume = volume
        self.replica = replica
        self.message = message
    }
}

/// The body of every error answer: an RFC 9457 problem document (`application/problem+json`)
/// whose `type` names the error for good (`https://cairn.io/problems/<slug>`).
public struct Problem: Codable, Sendable, Equatable, Error, CustomStringConvertible {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String

    public init(type: String, title: String, status: Int, detail: String) {
        self.type = type
        self.title = title
        self.status = status
        self.detail = detail
    }

    public var description: String { "\(title) (\(status)): \(detail)" }
}

/// The encoder both sides use: sorted keys, so answers and CLI output are stable.
public enum WireJSON {
    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
