import CairnBlock
import CairnIO
import Glibc
import Logging
import Testing
@testable import CairnSCSI

/// What a command came back with, copied out of the loop's buffers.
struct Outcome {
    var status: SCSIStatus
    var sense: [UInt8]
    var data: [UInt8]
    var expectedDataOut: Int? = nil

    var key: UInt8 { sense.isEmpty ? 0 : ((sense[0] & 0x7F) >= 0x72 ? sense[1] & 0x0F : sense[2] & 0x0F) }
    var asc: (UInt8, UInt8) {
        if sense.count >= 4 && (sense[0] & 0x7F) >= 0x72 { return (sense[2], sense[3]) }
        return sense.count >= 14 ? (sense[12], sense[13]) : (0, 0)
    }
    var good: Bool { status == .good }

    func isCheck(_ key: UInt8, _ asc: UInt8, _ ascq: UInt8) -> Bool {
        status == .checkCondition && self.key == key && self.asc == (asc, ascq)
    }
}

/// A store that wraps `MemoryBlockStore`, records FUA, and can delay reads (after copying) or
/// writes (before copying) on the loop, to make interleavings happen on purpose.
final class GatedStore: BlockStore, @unchecked Sendable {
    // Touched only on the loop (the target calls stores with the loop's task-executor preference).
    let inner: MemoryBlockStore
    let loop: EventLoop
    var readDelayNanos: UInt64 = 0
    var writeDelayNanos: UInt64 = 0
    var lastFUA: Bool?
    var writes = 0
    /// While set, writes park until `openWriteGate()`: an interleaving made on purpose, not by timing.
    var writeGateClosed = false
    private var parkedWrites: [UnsafeContinuation<Void, Never>] = []

    init(blockCount: UInt64, blockSize: Int = 512, loop: EventLoop) {
        inner = MemoryBlockStore(blockCount: blockCount, blockSize: blockSize)
        self.loop = loop
    }

    var blockSize: Int { inner.blockSize }
    var blockCount: UInt64 { inner.blockCount }
    var supportsUnmap: Bool { true }

    nonisolated(nonsending)
    func read(lba: UInt64, count: Int, into buffer: IOBuffer) async throws(BlockStoreError) {
        try await inner.read(lba: lba, count: count, into: buffer)
        if readDelayNanos > 0 { await loop.sleep(nanoseconds: readDelayNanos) }
    }

    nonisolated(nonsending)
    func write(lba: UInt64, count: Int, from buffer: IOBuffer, fua: Bool) async throws(BlockStoreError) {
        lastFUA = fua
        writes += 1
        if writeDelayNanos > 0 { await loop.sleep(nanoseconds: writeDelayNanos) }
        if writeGateClosed { await withUnsafeContinuation { parkedWrites.append($0) } }
        try await inner.write(lba: lba, count: count, from: buffer, fua: fua)
    }

    /// Lets parked and future writes through (on the loop, which owns this store).
    func openWriteGate() {
        loop.execute {
            self.writeGateClosed = false
            let parked = self.parkedWrites
            self.parkedWrites = []
            for c in parked { c.resume() }
        }
    }

    nonisolated(nonsending)
    func flush() async throws(BlockStoreError) { try await inner.flush() }
    nonisolated(nonsending)
    func unmap(lba: UInt64, count: UInt64) async throws(BlockStoreError) { try await inner.unmap(lba: lba, count: count) }
    nonisolated(nonsending)
    func allocation(at lba: UInt64) async throws(BlockStoreError) -> (mapped: Bool, count: UInt64) {
        try await inner.allocation(at: lba)
    }
    nonisolated(nonsending)
    func close() async {}
    /// What TEST UNIT READY reports (nil: ready).
    var notReady: BlockStoreError?
    nonisolated(nonsending)
    func readiness() async -> BlockStoreError? { notReady }
}

/// A target with one LUN (0) of `blocks` 512-byte blocks on a running loop.
final class Harness: @unchecked Sendable {
    // Immutable after init; the store is only touched through the target or after commands end.
    let loop: EventLoop
    let store: GatedStore
    let target: SCSITarget

    static let a = ITNexus(initiatorName: "iqn.2026-01.test:a", isid: 0x23d0_0000_0001, portalGroupTag: 1)
    static let b = ITNexus(initiatorName: "iqn.2026-01.test:b", isid: 0x23d0_0000_0002, portalGroupTag: 1)
    static let c = ITNexus(initiatorName: "iqn.2026-01.test:c", isid: 0x23d0_0000_0003, portalGroupTag: 1)

    init(blocks: UInt64 = 1024, volume: String = "vol1", blockSize: Int = 512, options: LogicalUnitOptions = LogicalUnitOptions()) throws {
        loop = try EventLoop(name: "scsi-test")
        loop.start()
        store = GatedStore(blockCount: blocks, blockSize: blockSize, loop: loop)
        target = SCSITarget(loop: loop, identity: LogicalUnitIdentity(volumeName: volume, targetName: "iqn.2026-01.io.cairn:vol1"),
                            luns: [0: store], logger: Logger(label: "test"), options: options)
    }

    deinit { loop.stopAndJoin() }

    var bs: Int { store.blockSize }

    /// Sends one command; `data` is the data-out (copied into a fresh buffer).
    func run(_ cdb: [UInt8], lun: UInt64 = 0, nexus: ITNexus = Harness.a, data: [UInt8]? = nil,
             dataOutLength: Int? = nil, alloc: Int = 1 << 20) async -> Outcome {
        var out: IOBuffer?
        if let data {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(data.count, 1), alignment: 4096)
            data.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: data.count) } }
            out = IOBuffer(base: p, count: data.count)
        }
        let cmd = SCSICommand(lun: lun, cdb: CDB(cdb), nexus: nexus, taskTag: 1, dataOut: out,
                              dataOutLength: dataOutLength ?? data?.count ?? 0, expectedDataInLength: alloc)
        let r = await target.execute(cmd)
        out?.base.deallocate()
        var bytes: [UInt8] = []
        if let d = r.dataIn {
            bytes = Array(UnsafeRawBufferPointer(start: d.base, count: min(r.dataInLength, d.count)))
            let loop = self.loop
            loop.execute { loop.buffers.give(d) }
        }
        return Outcome(status: r.status, sense: r.sense.array, data: bytes, expectedDataOut: r.expectedDataOutLength)
    }

    /// Blocks as the store holds them (read through the target's loop, after commands completed).
    func blocks(_ lba: UInt64, _ n: Int) -> [UInt8] { store.inner.bytes(lba: lba, count: n) }
}

// CDB builders.
func be(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64(n - 1 - $0))) } }

func read10(_ lba: UInt64, _ n: Int, flags: UInt8 = 0) -> [UInt8] { [0x28, flags] + be(lba, 4) + [0] + be(UInt64(n), 2) + [0] }
func write10(_ lba: UInt64, _ n: Int, flags: UInt8 = 0) -> [UInt8] { [0x2A, flags] + be(lba, 4) + [0] + be(UInt64(n), 2) + [0] }
func read16(_ lba: UInt64, _ n: Int, flags: UInt8 = 0) -> [UInt8] { [0x88, flags] + be(lba, 8) + be(UInt64(n), 4) + [0, 0] }
func write16(_ lba: UInt64, _ n: Int, flags: UInt8 = 0) -> [UInt8] { [0x8A, flags] + be(lba, 8) + be(UInt64(n), 4) + [0, 0] }
func pattern(_ n: Int, seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) } }
