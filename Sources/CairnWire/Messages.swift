#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A version of the replica set's membership. Persisted on every member before it is used, so a
/// restarted controller can tell the newest data (invariant 4). `membershipID` is random: two
/// controllers that chose the same epoch number after a crash still tell their records apart.
public struct EpochRecord: Codable, Equatable, Sendable, CustomStringConvertible {
    public var epoch: UInt64
    public var membershipID: UInt64
    /// Replica ids of the healthy set at this epoch.
    public var members: [String]

    public init(epoch: UInt64, membershipID: UInt64, members: [String]) {
        self.epoch = epoch
        self.membershipID = membershipID
        self.members = members
    }

    public func same(as other: EpochRecord?) -> Bool {
        guard let other else { return false }
        return epoch == other.epoch && membershipID == other.membershipID
    }

    public var description: String { "epoch \(epoch) [\(members.joined(separator: ","))]" }
}

/// Controller -> replica, the first frame of a connection.
public struct Hello: Codable, Equatable, Sendable {
    public var protocolVersion: Int
    public var volume: String
    public var size: UInt64
    public var blockSize: Int
    /// The controller's current epoch (0 before it has one): used for fencing older controllers.
    public var epoch: UInt64
    /// After an `auth` exchange: the controller's proof of the volume's secret, hex (see `ReplicaSecret`).
    public var proof: String?
    /// A reader, not the volume's controller: another volume's controller copying a snapshot
    /// (a clone). It may list snapshots and read their views; nothing else.
    public var reader: Bool?

    public init(volume: String, size: UInt64, blockSize: Int, epoch: UInt64, proof: String? = nil, reader: Bool? = nil) {
        self.protocolVersion = Int(WireHeader.version)
        self.volume = volume
        self.size = size
        self.blockSize = blockSize
        self.epoch = epoch
        self.proof = proof
        self.reader = reader
    }
}

/// What a replica says about itself in answer to `Hello`.
public struct HelloReply: Codable, Equatable, Sendable {
    public var replicaID: String
    public var volume: String
    public var size: UInt64
    public var blockSize: Int
    /// The newest membership this replica persisted; nil for a new or wiped replica.
    public var record: EpochRecord?
    /// Members this replica keeps dirty-region maps for (valid only if the replica is current).
    public var dirtyMaps: [DirtyMapInfo]

    public init(replicaID: String, volume: String, size: UInt64, blockSize: Int, record: EpochRecord?,
                dirtyMaps: [DirtyMapInfo]) {
        self.replicaID = replicaID
        self.volume = volume
        self.size = size
        self.blockSize = blockSize
        self.record = record
        self.dirtyMaps = dirtyMaps
    }
}

/// One dirty-region map a replica keeps for an absent member.
public struct DirtyMapInfo: Codable, Equatable, Sendable {
    /// The absent member's replica id.
    public var member: String
    /// The record the member last held as a member: a returning replica whose record is this one
    /// missed exactly the regions marked here.
    public var base: EpochRecord
    public var granularity: UInt64
    public var dirtyRegions: UInt64

    public init(member: String, base: EpochRecord, granularity: UInt64, dirtyRegions: UInt64) {
        self.member = member
        self.base = base
        self.granularity = granularity
        self.dirtyRegions = dirtyRegions
    }
}

/// Start tracking the writes an absent member misses.
public struct TrackRequest: Codable, Equatable, Sendable {
    public var member: String
    public var base: EpochRecord
    /// Writes that were in flight to the member when it left, not acknowledged by it.
    public var initialExtents: [Extent]

    public init(member: String, base: EpochRecord, initialExtents: [Extent]) {
        self.member = member
        self.base = base
        self.initialExtents = initialExtents
    }
}

/// A new membership for a replica to persist (atomically) before it replies.
public struct MembershipUpdate: Codable, Equatable, Sendable {
    public var record: EpochRecord
    public var startTracking: [TrackRequest]
    /// Members that are back in the healthy set (or removed): their maps go.
    public var stopTracking: [String]
    /// This replica was away: the maps it kept are incomplete, drop them all.
    public var dropAllMaps: Bool
    /// The volume grows to this many bytes at this epoch (persisted with the record, in one write).
    public var size: UInt64?

    public init(record: EpochRecord, startTracking: [TrackRequest] = [], stopTracking: [String] = [],
                dropAllMaps: Bool = false, size: UInt64? = nil) {
        self.record = record
        self.startTracking = startTracking
        self.stopTracking = stopTracking
        self.dropAllMaps = dropAllMaps
        self.size = size
    }
}

/// A byte range.
public struct Extent: Codable, Equatable, Sendable, CustomStringConvertible {
    public var offset: UInt64
    public var length: UInt64

    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }

    public var end: UInt64 { offset + length }
    public var description: String { "[\(offset), +\(length))" }
}

/// Reply payload of `dirtyExtents` and `allocatedExtents`.
public struct ExtentList: Codable, Equatable, Sendable {
    public var extents: [Extent]
    /// For dirty extents: whether a valid map for the member exists at all.
    public var found: Bool

    public init(extents: [Extent], found: Bool = true) {
        self.extents = extents
        self.found = found
    }

    public var totalBytes: UInt64 { extents.reduce(0) { $0 + $1.length } }
}

/// Request payload of `dirtyExtents`.
public struct DirtyQuery: Codable, Equatable, Sendable {
    public var member: String
    public var base: EpochRecord

    public init(member: String, base: EpochRecord) {
        self.member = member
        self.base = base
    }
}

/// Reply payload of `status`.
public struct ReplicaStatus: Codable, Equatable, Sendable {
    public var replicaID: String
    public var volume: String?
    public var size: UInt64
    public var record: EpochRecord?
    public var dirtyMaps: [DirtyMapInfo]
    public var allocatedBytes: UInt64
    public var reads: UInt64
    public var writes: UInt64
    public var rebuildBytesWritten: UInt64
    /// Regions marked in the write-intent map (see `WireOpcode.intentMap`).
    public var intentRegions: UInt64?

    public init(replicaID: String, volume: String?, size: UInt64, record: EpochRecord?, dirtyMaps: [DirtyMapInfo],
                allocatedBytes: UInt64, reads: UInt64, writes: UInt64, rebuildBytesWritten: UInt64,
                intentRegions: UInt64? = nil) {
        self.replicaID = replicaID
        self.volume = volume
        self.size = size
        self.record = record
        self.dirtyMaps = dirtyMaps
        self.allocatedBytes = allocatedBytes
        self.reads = reads
        self.writes = writes
        self.rebuildBytesWritten = rebuildBytesWritten
        self.intentRegions = intentRegions
    }
}

/// JSON for control messages (never on the data path).
public enum WireJSON {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? Array(e.encode(value))) ?? []
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer) throws(WireError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw .badMessage("\(T.self): \(error)")
        }
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws(WireError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw .badMessage("\(T.self): \(error)")
        }
    }
}
