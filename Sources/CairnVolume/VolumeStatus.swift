import CairnWire

/// What the volume can do right now.
public enum VolumeState: String, Sendable, Codable {
    /// Every replica is RW.
    case healthy
    /// Writes go on (a quorum is RW) but some replicas are missing or rebuilding.
    case degraded
    /// Fewer than --min-healthy replicas are RW: reads work, writes fail.
    case readOnly = "read-only"
    /// No replica can be trusted to hold the newest data: nothing is served.
    case offline
}

/// A replica's role in the set (Jiva's names).
public enum ReplicaMode: String, Sendable, Codable {
    /// Healthy: in the epoch's membership, serves reads, acknowledges writes.
    case rw = "RW"
    /// Rebuilding: receives every new write, catches up in the background, serves no read.
    case wo = "WO"
    /// Absent, failed, or waiting for a rebuild to start.
    case err = "ERR"
}

public struct ReplicaInfo: Sendable, Codable, Equatable {
    public var address: String
    public var id: String?
    public var mode: ReplicaMode
    public var connected: Bool
    public var lastError: String?
    public var rebuild: RebuildProgress?
    public var outstanding: Int
}

public struct RebuildProgress: Sendable, Codable, Equatable {
    /// "delta" (dirty regions only) or "full" (every allocated extent).
    public var kind: String
    public var source: String
    public var totalBytes: UInt64
    public var copiedBytes: UInt64
    public var startedAt: Double
    public var finished: Bool
    public var percent: Double { totalBytes == 0 ? 100 : Double(copiedBytes) * 100 / Double(totalBytes) }
}

/// Latency histogram with fixed buckets (upper bounds in microseconds), owned by the volume actor.
public struct LatencyHistogram: Sendable, Codable, Equatable {
    public static let boundsMicros: [UInt64] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000,
                                                100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000]
    /// counts[i] = observations <= boundsMicros[i] and > the previous bound; the last is +Inf.
    public var counts: [UInt64] = [UInt64](repeating: 0, count: boundsMicros.count + 1)
    public var sumNanos: UInt64 = 0
    public var count: UInt64 = 0

    @inline(__always)
    mutating func record(nanos: UInt64) {
        let us = nanos / 1000
        var i = 0
        while i < Self.boundsMicros.count && us > Self.boundsMicros[i] { i += 1 }
        counts[i] &+= 1
        sumNanos &+= nanos
        count &+= 1
    }
}

/// Counters since the controller started.
public struct VolumeCounters: Sendable, Codable, Equatable {
    public var reads: UInt64 = 0
    public var writes: UInt64 = 0
    public var readBlocks: UInt64 = 0
    public var writeBlocks: UInt64 = 0
    public var readNanos: UInt64 = 0
    public var writeNanos: UInt64 = 0
    public var readLatency = LatencyHistogram()
    public var writeLatency = LatencyHistogram()
    public var ejections: UInt64 = 0
    public var membershipChanges: UInt64 = 0
    public var rebuildBytes: UInt64 = 0
    public var rebuildsCompleted: UInt64 = 0
    /// The longest time new writes were held while a rebuilt replica turned healthy.
    public var longestSwitchPauseNanos: UInt64 = 0
    public var lastSwitchPauseNanos: UInt64 = 0
    /// Bytes copied by resyncs, and regions settled on the replicas (write intent).
    public var resyncBytes: UInt64 = 0
    public var settledRegions: UInt64 = 0
    /// Snapshots taken, and how long new writes were held for each (the drain included).
    public var snapshotsTaken: UInt64 = 0
    public var snapshotPause = LatencyHistogram()
    public var lastSnapshotPauseNanos: UInt64 = 0
    /// Bytes backups read from snapshots, and stored (compressed) on their targets.
    public var backupReadBytes: UInt64 = 0
    public var backupUploadedBytes: UInt64 = 0
    /// Bytes restores wrote to a new volume.
    public var restoreBytes: UInt64 = 0
}

/// Everything the API and metrics need, taken in one hop to the volume's loop.
public struct VolumeSnapshot: Sendable, Codable, Equatable {
    public var name: String
    public var size: UInt64
    public var blockSize: Int
    public var state: VolumeState
    public var epoch: UInt64
    public var members: [String]
    public var minHealthy: Int
    public var replicas: [ReplicaInfo]
    public var counters: VolumeCounters
    public var uptimeSeconds: Double
    /// The resync running, or the last one (after a controller start; see Volume+Intent.swift).
    public var resync: RebuildProgress? = nil
    /// A new volume's first copy (a clone, a restore), and why it last failed.
    public var populate: RebuildProgress? = nil
    public var populateError: String? = nil
    public var healthyCount: Int { replicas.filter { $0.mode == .rw }.count }
    public var degradedCount: Int { replicas.filter { $0.mode == .wo }.count }
}
