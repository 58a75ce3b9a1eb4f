import CairnBlock
import CairnIO

/// The replica set behind the SCSI layer: the same `BlockStore` seam as a local file. Every call
/// hops into the `Volume` actor, which runs on the same loop (about 30 ns, no thread switch).
public final class ReplicatedStore: BlockStore {
    public let volume: Volume
    public let blockSize: Int
    public let blockCount: UInt64
    public let supportsUnmap = true

    public init(volume: Volume) {
        self.volume = volume
        blockSize = volume.config.blockSize
        blockCount = volume.config.size / UInt64(volume.config.blockSize)
    }

    nonisolated(nonsending)
    public func read(lba: UInt64, count: Int, into buffer: IOBuffer) async throws(BlockStoreError) {
        try await volume.read(lba: lba, count: count, into: buffer)
    }

    nonisolated(nonsending)
    public func write(lba: UInt64, count: Int, from buffer: IOBuffer, fua: Bool) async throws(BlockStoreError) {
        try await volume.write(lba: lba, count: count, from: buffer, fua: fua)
    }

    nonisolated(nonsending)
    public func flush() async throws(BlockStoreError) {
        try await volume.flush()
    }

    nonisolated(nonsending)
    public func unmap(lba: UInt64, count: UInt64) async throws(BlockStoreError) {
        try await volume.unmap(lba: lba, count: count)
    }

    nonisolated(nonsending)
    public func allocation(at lba: UInt64) async throws(BlockStoreError) -> (mapped: Bool, count: UInt64) {
        try await volume.allocation(at: lba)
    }

    nonisolated(nonsending)
    public func readiness() async -> BlockStoreError? {
        await volume.readiness()
    }

    nonisolated(nonsending)
    public func close() async {
        await volume.close()
    }
}
