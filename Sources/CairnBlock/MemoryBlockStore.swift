import CairnIO
import Glibc

/// Blocks in memory, for tests and benchmarks of the layers above. Tracks which blocks were
/// ever written so thin-provisioning answers are meaningful. Optional injected faults.
public final class MemoryBlockStore: BlockStore, @unchecked Sendable {
    // Used from one event loop only (the LUN's); the caller guarantees no concurrent access.
    public let blockSize: Int
    public let blockCount: UInt64
    public let supportsUnmap = true
    private let data: UnsafeMutableRawPointer
    private var mapped: [Bool]
    /// When set, the next I/O fails with it (then clears).
    public var injectedFault: BlockStoreError?
    public private(set) var flushes = 0

    public init(blockCount: UInt64, blockSize: Int = 512) {
        self.blockSize = blockSize
        self.blockCount = blockCount
        let bytes = Int(blockCount) * blockSize
        data = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 4096)
        memset(data, 0, bytes)
        mapped = Array(repeating: false, count: Int(blockCount))
    }

    deinit { data.deallocate() }

    private func fault() throws(BlockStoreError) {
        if let f = injectedFault { injectedFault = nil; throw f }
    }

    nonisolated(nonsending)
    public func read(lba: UInt64, count: Int, into buffer: IOBuffer) async throws(BlockStoreError) {
        try fault()
        memcpy(buffer.base, data + Int(lba) * blockSize, count * blockSize)
    }

    nonisolated(nonsending)
    public func write(lba: UInt64, count: Int, from buffer: IOBuffer, fua: Bool) async throws(BlockStoreError) {
        try fault()
        memcpy(data + Int(lba) * blockSize, buffer.base, count * blockSize)
        for i in Int(lba)..<(Int(lba) + count) { mapped[i] = true }
    }

    nonisolated(nonsending)
    public func flush() async throws(BlockStoreError) {
        try fault()
        flushes += 1
    }

    nonisolated(nonsending)
    public func unmap(lba: UInt64, count: UInt64) async throws(BlockStoreError) {
        try fault()
        memset(data + Int(lba) * blockSize, 0, Int(count) * blockSize)
        for i in Int(lba)..<Int(lba + count) { mapped[i] = false }
    }

    nonisolated(nonsending)
    public func allocation(at lba: UInt64) async throws(BlockStoreError) -> (mapped: Bool, count: UInt64) {
        let state = mapped[Int(lba)]
        var n: UInt64 = 0
        var i = Int(lba)
        while i < mapped.count && mapped[i] == state { n += 1; i += 1 }
        return (state, n)
    }

    nonisolated(nonsending)
    public func close() async {}

    /// Direct access for tests.
    public func bytes(lba: UInt64, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: data + Int(lba) * blockSize, count: count * blockSize))
    }
}
