import CairnSCSI
import CairnVolume
import CairnWire
import Foundation

// The JSON bodies of the controller's API. Built from one `VolumeSnapshot` each; optional fields
// are written as `null`, not left out, so clients see every key.

/// `GET /v1/volume`.
struct VolumeView: Encodable {
    var name: String
    var size: UInt64
    var blockSize: Int
    /// healthy | degraded | read-only | offline
    var state: String
    /// The newest membership epoch persisted on the RW replicas (0 before the first).
    var epoch: UInt64
    /// Replica ids of that membership.
    var members: [String]
    var minHealthy: Int
    var replicaCount: Int
    var healthyCount: Int
    /// After a controller start: the copy that makes the replicas agree where a write may have
    /// reached some of them only (the one running, or the last one).
    var resync: RebuildProgress?
    /// A new volume's first copy (kind "clone" or "restore"): it serves once this is finished.
    var populate: RebuildProgress?
    /// Why that copy last failed.
    var populateError: String?

    init(_ s: VolumeSnapshot) {
        name = s.name
        size = s.size
        blockSize = s.blockSize
        state = s.state.rawValue
        epoch = s.epoch
        members = s.members
        minHealthy = s.minHealthy
        replicaCount = s.replicas.count
        healthyCount = s.healthyCount
        resync = s.resync
        populate = s.populate
        populateError = s.populateError
    }
}

/// `GET /v1/status`: the volume and its replicas, taken from one snapshot.
struct StatusView: Encodable {
    var volume: VolumeView
    var replicas: [ReplicaView]
}

/// One element of `GET /v1/replicas`.
struct ReplicaView: Encodable {
    var address: String
    var id: String?
    /// RW | WO | ERR
    var mode: String
    var connected: Bool
    var lastError: String?
    var rebuild: RebuildView?
    /// Requests sent to the replica and not answered yet.
    var outstanding: Int

    init(_ r: ReplicaInfo) {
        address = r.address
        id = r.id
        mode = r.mode.rawValue
        connected = r.connected
        lastError = r.lastError
        rebuild = r.rebuild.map(RebuildView.init)
        outstanding = r.outstanding
    }

    enum CodingKeys: String, CodingKey { case address, id, mode, connected, lastError, rebuild, outstanding }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(address, forKey: .address)
        try c.encode(id, forKey: .id)
        try c.encode(mode, forKey: .mode)
        try c.encode(connected, forKey: .connected)
        try c.encode(lastError, forKey: .lastError)
        try c.encode(rebuild, forKey: .rebuild)
        try c.encode(outstanding, forKey: .outstanding)
    }
}

/// The replica's latest rebuild (kept once finished, until the next one).
struct RebuildView: Encodable {
    /// delta (dirty regions only) | full (every allocated extent)
    var kind: String
    /// The RW replica it copies from.
    var source: String
    var totalBytes: UInt64
    var copiedBytes: UInt64
    var percent: Double
    var finished: Bool

    init(_ p: RebuildProgress) {
        kind = p.kind
        source = p.source
        totalBytes = p.totalBytes
        copiedBytes = p.copiedBytes
        percent = p.percent
        finished = p.finished
    }
}

/// `GET /v1/stats`: the fields of Jiva's controller `/v1/stats` that Cairn fills honestly, with
/// Jiva's names and JSON types (Jiva sends most numbers as decimal strings; OpenEBS's exporter
/// reads them either way). Counters run since the controller started. Left out: Jiva's
/// `RevisionCounter` (a per-write counter on Jiva's replicas; Cairn's epoch is not one),
/// `SCSIIOCount` (per-opcode counts: not kept) and `IsClientConnected` (not known to the volume).
struct VolumeStatsView: Encodable {
    /// The volume's name.
    var Name: String
    /// Reads completed (a count, not a rate, as in Jiva).
    var ReadIOPS: String
    /// Sum of the reads' latencies in nanoseconds, from the volume receiving a read to its data
    /// being in the buffer (as Jiva: nanoseconds).
    var TotalReadTime: String
    /// Logical blocks (of `SectorSize` bytes) read: what the name and OpenEBS's exporter's
    /// documentation say. (Jiva's own frontend adds bytes here; `TotalReadBytes` has those.)
    var TotalReadBlockCount: String
    /// Bytes read (the cStor target's field of that name).
    var TotalReadBytes: String
    /// Writes completed (acknowledged to the initiator), a count.
    var WriteIOPS: String
    /// Sum of the writes' latencies in nanoseconds, until acknowledged by the replica set.
    var TotalWriteTime: String
    /// Logical blocks written (see `TotalReadBlockCount`).
    var TotalWriteBlockCount: String
    /// Bytes written.
    var TotalWriteBytes: String
    /// Logical blocks allocated in the volume: one RW replica's allocated bytes / `SectorSize`,
    /// asked at most every 5 s (`Recent`). "0" when no RW replica answers the status request.
    var UsedLogicalBlocks: String
    /// Blocks used on the replica's disk. Cairn keeps no snapshots yet, so this is the same as
    /// `UsedLogicalBlocks` (in Jiva it also counts the snapshots' blocks).
    var UsedBlocks: String
    /// The volume's logical block size in bytes.
    var SectorSize: String
    /// The volume's size in bytes.
    var Size: String
    /// Seconds since the controller started.
    var UpTime: Double
    /// Replicas in the controller's set, whatever their mode (Jiva: the length of its replica list).
    var ReplicaCounter: Int
    /// Each replica's address and mode (RW, WO, ERR), as OpenEBS's exporter reads Jiva's list.
    var Replicas: [ReplicaEntry]
    /// "RW" while writes are accepted (healthy or degraded), "RO" otherwise (read-only or offline):
    /// Jiva's controller status, under the key OpenEBS's exporter reads.
    var Status: String

    struct ReplicaEntry: Encodable {
        var Address: String
        var Mode: String
    }

    init(_ s: VolumeSnapshot, usedBytes: UInt64?) {
        let bs = UInt64(s.blockSize)
        let c = s.counters
        Name = s.name
        ReadIOPS = "\(c.reads)"
        TotalReadTime = "\(c.readNanos)"
        TotalReadBlockCount = "\(c.readBlocks)"
        TotalReadBytes = "\(c.readBlocks &* bs)"
        WriteIOPS = "\(c.writes)"
        TotalWriteTime = "\(c.writeNanos)"
        TotalWriteBlockCount = "\(c.writeBlocks)"
        TotalWriteBytes = "\(c.writeBlocks &* bs)"
        let used = (usedBytes ?? 0) / bs
        UsedLogicalBlocks = "\(used)"
        UsedBlocks = "\(used)"
        SectorSize = "\(s.blockSize)"
        Size = "\(s.size)"
        UpTime = s.uptimeSeconds
        ReplicaCounter = s.replicas.count
        Replicas = s.replicas.map { ReplicaEntry(Address: $0.address, Mode: $0.mode.rawValue) }
        Status = (s.state == .healthy || s.state == .degraded) ? "RW" : "RO"
    }
}

/// One snapshot: `GET /v1/snapshots`, and the answer of `POST /v1/snapshots`.
struct SnapshotView: Encodable {
    var name: String
    var id: String
    /// RFC 3339, UTC.
    var createdAt: String
    /// The snapshot it sits on (by name), if any.
    var parent: String?
    /// The volume's size when it was taken.
    var size: UInt64
    /// Bytes of data this snapshot alone holds (its layer, on one replica).
    var bytes: UInt64
    var deleting: Bool
    /// In the answer to a create: how long new writes were held for it, µs.
    var pauseMicros: UInt64?

    init(_ s: SnapshotInfo, names: [String: String]) {
        name = s.name
        id = s.id
        createdAt = rfc3339(s.createdAt)
        parent = s.parent.map { names[$0] ?? $0 }
        size = s.size
        bytes = s.allocatedBytes
        deleting = s.deleting
    }
}

/// `GET /v1/snapshots`: oldest first, and the one the volume reads through (its head's parent).
struct SnapshotListView: Encodable {
    var snapshots: [SnapshotView]
    var current: String?
    /// Bytes written since `current` (the head layer, on one replica).
    var headBytes: UInt64

    init(_ l: SnapshotList) {
        let names = Dictionary(l.snapshots.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
        snapshots = l.snapshots.map { SnapshotView($0, names: names) }
        current = l.headParent.map { names[$0] ?? $0 }
        headBytes = l.headAllocatedBytes
    }
}

/// A backup job: `POST /v1/backups` and `GET /v1/backups[/{id}]`.
struct BackupView: Encodable {
    var id: String
    var volume: String
    var snapshot: String
    var target: String
    /// running | done | failed
    var state: String
    var previous: String?
    var totalBytes: UInt64
    var readBytes: UInt64
    var newBlocks: Int
    var uploadedBytes: UInt64
    var seconds: Double
    var mibPerSecond: Double
    var error: String?

    init(_ p: BackupProgress) {
        id = p.id
        volume = p.volume
        snapshot = p.snapshot
        target = p.target
        state = p.state
        previous = p.previous
        totalBytes = p.totalBytes
        readBytes = p.readBytes
        newBlocks = p.newBlocks
        uploadedBytes = p.uploadedBytes
        seconds = p.seconds
        mibPerSecond = p.mibPerSecond
        error = p.error
    }
}

func rfc3339(_ seconds: Double) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: Date(timeIntervalSince1970: seconds))
}

/// `{"size": BYTES}`, the body of `PUT /v1/volume/size`.
struct ResizeRequest: Decodable {
    var size: UInt64
}

/// `{"address": "HOST:PORT"}`, the body of `POST /v1/replicas`.
struct AddReplicaRequest: Decodable {
    var address: String
}

/// The body of every error answer: an RFC 9457 problem document (`application/problem+json`)
/// whose `type` names the error for good (`https://cairn.io/problems/<slug>`).
struct ProblemView: Encodable {
    var type: String
    var title: String
    var status: Int
    var detail: String
}

/// `GET /v1/qos`: the limits in force (null: no limit; bandwidths in bytes per second) and what
/// the limiter did so far. `PUT /v1/qos` takes the limits alone (`QoSLimitsBody`).
struct QoSView: Encodable {
    var iops: UInt64?
    var readIops: UInt64?
    var writeIops: UInt64?
    var bandwidth: UInt64?
    var readBandwidth: UInt64?
    var writeBandwidth: UInt64?
    var burstSeconds: Double
    /// Commands waiting for the limit now.
    var queueDepth: Int
    var throttledCommands: UInt64
    var throttledSeconds: Double

    init(_ s: QoSStatus) {
        iops = s.limits.iops
        readIops = s.limits.readIOPS
        writeIops = s.limits.writeIOPS
        bandwidth = s.limits.bandwidth
        readBandwidth = s.limits.readBandwidth
        writeBandwidth = s.limits.writeBandwidth
        burstSeconds = s.limits.burstSeconds
        queueDepth = s.queueDepth
        throttledCommands = s.throttledCommands
        throttledSeconds = Double(s.throttledNanos) / 1e9
    }
}

/// The body of `PUT /v1/qos`: the new limits, whole (a field left out or null is no limit;
/// `burstSeconds` defaults to 1). Unknown fields are refused.
struct QoSLimitsBody: Decodable {
    var iops: UInt64?
    var readIops: UInt64?
    var writeIops: UInt64?
    var bandwidth: UInt64?
    var readBandwidth: UInt64?
    var writeBandwidth: UInt64?
    var burstSeconds: Double?

    static let fields: Set<String> = ["iops", "readIops", "writeIops", "bandwidth", "readBandwidth", "writeBandwidth",
                                      "burstSeconds"]

    var limits: QoSLimits {
        QoSLimits(iops: iops, readIOPS: readIops, writeIOPS: writeIops, bandwidth: bandwidth, readBandwidth: readBandwidth,
                  writeBandwidth: writeBandwidth, burstSeconds: burstSeconds ?? QoSLimits.defaultBurstSeconds)
    }
}
