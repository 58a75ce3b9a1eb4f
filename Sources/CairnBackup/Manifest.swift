import Foundation

/// One backup: the volume in fixed blocks, each named by the SHA-256 of its content (nil: a
/// block that reads as zeros, not stored). Written last, once every block it names is stored:
/// a backup exists when its manifest does.
public struct Manifest: Codable, Sendable, Equatable {
    public var format = 1
    public var id: String
    public var volume: String
    public var snapshot: String
    public var snapshotID: String
    /// RFC 3339, UTC.
    public var createdAt: String
    public var size: UInt64
    public var blockSize: Int
    public var blocks: [String?]
    /// The backup whose blocks this one reused where the snapshots did not differ.
    public var previous: String?
    public var stats: Stats

    public struct Stats: Codable, Sendable, Equatable {
        /// Blocks holding data, and bytes in them.
        public var dataBlocks: Int
        public var dataBytes: UInt64
        /// Bytes read from the snapshot, and blocks and bytes (compressed) stored anew.
        public var readBytes: UInt64
        public var newBlocks: Int
        public var uploadedBytes: UInt64
        public var seconds: Double

        public init(dataBlocks: Int = 0, dataBytes: UInt64 = 0, readBytes: UInt64 = 0, newBlocks: Int = 0,
                    uploadedBytes: UInt64 = 0, seconds: Double = 0) {
            self.dataBlocks = dataBlocks
            self.dataBytes = dataBytes
            self.readBytes = readBytes
            self.newBlocks = newBlocks
            self.uploadedBytes = uploadedBytes
            self.seconds = seconds
        }
    }

    public init(id: String, volume: String, snapshot: String, snapshotID: String, createdAt: String, size: UInt64,
                blockSize: Int, blocks: [String?], previous: String?, stats: Stats) {
        self.id = id
        self.volume = volume
        self.snapshot = snapshot
        self.snapshotID = snapshotID
        self.createdAt = createdAt
        self.size = size
        self.blockSize = blockSize
        self.blocks = blocks
        self.previous = previous
        self.stats = stats
    }

    /// The byte range of block `i`.
    public func range(_ i: Int) -> (offset: UInt64, length: Int) {
        let off = UInt64(i) * UInt64(blockSize)
        return (off, Int(min(UInt64(blockSize), size - off)))
    }
}

/// A backup as lists show it (the manifest without its block list).
public struct BackupSummary: Codable, Sendable, Equatable {
    public var id: String
    public var volume: String
    public var snapshot: String
    public var createdAt: String
    public var size: UInt64
    public var dataBytes: UInt64
    public var uploadedBytes: UInt64
    public var previous: String?

    public init(_ m: Manifest) {
        id = m.id
        volume = m.volume
        snapshot = m.snapshot
        createdAt = m.createdAt
        size = m.size
        dataBytes = m.stats.dataBytes
        uploadedBytes = m.stats.uploadedBytes
        previous = m.previous
    }
}
