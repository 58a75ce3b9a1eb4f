import CairnIO

/// What the SCSI layer needs of the storage under a LUN: a flat array of logical blocks.
/// `FileBlockStore` keeps them in one local sparse file; the replica set of CairnVolume
/// implements the same protocol so it slots in behind the same SCSI layer.
///
/// All calls are made from the event loop that owns the LUN; buffers are loop-owned and stay
/// valid until the call returns. Errors are `BlockStoreError`, mapped to sense data above.
/// Every requirement is `nonisolated(nonsending)`: it runs on the caller's executor (the loop),
/// so a store call costs no hop to the global pool and back (about 10 µs and two thread wake-ups).
public protocol BlockStore: AnyObject, Sendable {
    /// Bytes per logical block (512 or 4096).
    var blockSize: Int { get }
    /// Number of logical blocks.
    var blockCount: UInt64 { get }
    /// Whether the store can deallocate blocks (UNMAP, WRITE SAME with UNMAP).
    var supportsUnmap: Bool { get }

    /// Reads `count` blocks at `lba` into `buffer` (at least `count * blockSize` bytes).
    nonisolated(nonsending)
    func read(lba: UInt64, count: Int, into buffer: IOBuffer) async throws(BlockStoreError)
    /// Writes `count` blocks at `lba` from `buffer`. With `fua`, the data is durable on return.
    nonisolated(nonsending)
    func write(lba: UInt64, count: Int, from buffer: IOBuffer, fua: Bool) async throws(BlockStoreError)
    /// Makes every completed write durable.
    nonisolated(nonsending)
    func flush() async throws(BlockStoreError)
    /// Deallocates `count` blocks at `lba`; they read back as zeros.
    nonisolated(nonsending)
    func unmap(lba: UInt64, count: UInt64) async throws(BlockStoreError)
    /// Whether the block at `lba` is mapped, and how many blocks from there share that state.
    nonisolated(nonsending)
    func allocation(at lba: UInt64) async throws(BlockStoreError) -> (mapped: Bool, count: UInt64)
    /// Called once when the process stops: finish, make durable, release.
    nonisolated(nonsending)
    func close() async
    /// Why medium access would fail now, or nil when it would be served (TEST UNIT READY asks).
    nonisolated(nonsending)
    func readiness() async -> BlockStoreError?
}

extension BlockStore {
    /// A local store is ready once it is open.
    nonisolated(nonsending)
    public func readiness() async -> BlockStoreError? { nil }
}

public enum BlockStoreError: Error, Equatable, CustomStringConvertible {
    /// The medium failed (EIO and the like): MEDIUM ERROR / UNRECOVERED READ or WRITE ERROR.
    case medium(read: Bool, String)
    /// Out of space (ENOSPC): DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT.
    case noSpace
    /// Not enough healthy storage to serve the request (replica quorum lost).
    case unavailable(String)
    /// Starting up: the store has not yet found where its newest data is. Initiators retry.
    case becomingReady(String)
    /// The store is read-only.
    case readOnly

    public var description: String {
        switch self {
        case .medium(let read, let why): return "\(read ? "read" : "write") error: \(why)"
        case .noSpace: return "no space left"
        case .unavailable(let why): return "unavailable: \(why)"
        case .becomingReady(let why): return "becoming ready: \(why)"
        case .readOnly: return "read-only"
        }
    }
}
