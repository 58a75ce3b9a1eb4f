#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Which layer a read, write, unmap or allocation query of a rebuild or a backup addresses, in
/// the request header's `status` field (unused in requests otherwise).
public enum LayerSelector {
    /// What the volume reads as (every request of the data path).
    public static let view: UInt32 = 0
    /// The head layer alone: what was written since its parent snapshot. An unmap here
    /// deallocates (the layers below show through); a read of a hole gives zeros.
    public static let head: UInt32 = .max
    /// 1...n: the n-th snapshot of the replica's list (the order both sides of a rebuild share).
    /// With this bit (and not `head`): a view handle from `openSnapshotView` (what a snapshot
    /// reads as).
    public static let viewHandleBit: UInt32 = 1 << 31

    public static func isViewHandle(_ layer: UInt32) -> Bool {
        layer != head && layer & viewHandleBit != 0
    }
}

/// Payload of `openSnapshotView`: what snapshot `id` reads as, and (with `base`, an older
/// snapshot it sits on) which of its regions may differ from `base`'s.
public struct SnapshotViewRequest: Codable, Equatable, Sendable {
    public var id: String
    public var base: String?

    public init(id: String, base: String? = nil) {
        self.id = id
        self.base = base
    }
}

/// Reply of `openSnapshotView`: a handle for reads and allocation queries (`LayerSelector`).
public struct SnapshotView: Codable, Equatable, Sendable {
    public var handle: UInt32
    /// The volume's size when the snapshot was taken.
    public var size: UInt64
    /// Whether `base` was found below the snapshot: the allocation then lists only what may
    /// differ from it; otherwise all the snapshot's data.
    public var incremental: Bool

    public init(handle: UInt32, size: UInt64, incremental: Bool) {
        self.handle = handle
        self.size = size
        self.incremental = incremental
    }
}

extension WireHeader {
    /// Requests: the layer addressed (`LayerSelector`); replies use the field for their status.
    public var layer: UInt32 {
        get { status }
        set { status = newValue }
    }
}

/// One snapshot as a replica holds it.
public struct SnapshotInfo: Codable, Equatable, Sendable {
    public var id: String
    public var name: String
    /// Seconds since 1970 (the controller's clock when it was taken).
    public var createdAt: Double
    /// The snapshot it sits on; nil for the oldest of its chain.
    public var parent: String?
    /// The volume's size when it was taken.
    public var size: UInt64
    /// Bytes its layer holds: data written between its parent and it that no other layer has.
    public var allocatedBytes: UInt64
    /// Being deleted: its data is being merged into the layers on it.
    public var deleting: Bool

    public init(id: String, name: String, createdAt: Double, parent: String?, size: UInt64, allocatedBytes: UInt64,
                deleting: Bool) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.parent = parent
        self.size = size
        self.allocatedBytes = allocatedBytes
        self.deleting = deleting
    }
}

/// Reply of `snapshots`; payload of `installSnapshots`.
public struct SnapshotList: Codable, Equatable, Sendable {
    /// Changes with every change of the layers (a snapshot taken, deleted, merged, reverted to):
    /// a rebuild that copied layers checks it did not change meanwhile.
    public var generation: UInt64
    /// The snapshot the head sits on (what the volume reads through).
    public var headParent: String?
    /// Set by the last revert (see `SnapshotRef.headID`).
    public var headID: String?
    public var headAllocatedBytes: UInt64
    public var snapshots: [SnapshotInfo]

    public init(generation: UInt64, headParent: String?, headID: String?, headAllocatedBytes: UInt64, snapshots: [SnapshotInfo]) {
        self.generation = generation
        self.headParent = headParent
        self.headID = headID
        self.headAllocatedBytes = headAllocatedBytes
        self.snapshots = snapshots
    }

    /// The same snapshots in the same tree (what a delta rebuild needs on both sides).
    public func sameLayers(as other: SnapshotList) -> Bool {
        headParent == other.headParent && headID == other.headID && snapshots.count == other.snapshots.count
            && zip(snapshots, other.snapshots).allSatisfy { $0.id == $1.id && $0.parent == $1.parent && !$0.deleting && !$1.deleting }
    }
}

/// Payload of `snapshot`: freeze the head as this snapshot and start a new head on it.
public struct SnapshotCreate: Codable, Equatable, Sendable {
    public var id: String
    public var name: String
    public var createdAt: Double

    public init(id: String, name: String, createdAt: Double) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
    }
}

/// Payload of `deleteSnapshot` and `revert`.
public struct SnapshotRef: Codable, Equatable, Sendable {
    public var id: String
    /// Delete: the pace of the merge into its children (0: the replica's default).
    public var bytesPerSecond: UInt64?
    /// Revert: an id for the new head, the same on every replica (a restarted controller tells
    /// a revert some replicas took and others did not by it).
    public var headID: String?

    public init(id: String, bytesPerSecond: UInt64? = nil, headID: String? = nil) {
        self.id = id
        self.bytesPerSecond = bytesPerSecond
        self.headID = headID
    }
}
