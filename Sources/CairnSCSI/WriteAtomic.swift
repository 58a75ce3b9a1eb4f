import CairnBlock
import CairnIO

extension SCSITarget {
    /// WRITE ATOMIC(16) (SBC-4 5.48): the blocks are written by one store write while the range
    /// is held exclusively, so no other write or COMPARE AND WRITE interleaves with it. Atomic
    /// boundaries are not supported (the boundary field must be 0).
    func writeAtomic(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let flags = c.cdb[1]
        if flags >> 5 != 0 { throw .invalidField(cdbByte: 1, bit: 7) }
        let lba = c.cdb.be(2, 8)
        if c.cdb.be(10, 2) != 0 { throw .invalidField(cdbByte: 10) }
        let n = Int(c.cdb.be(12, 2))
        guard lu.inRange(lba, UInt64(n)) else { throw .lbaOutOfRange }
        if n == 0 { return .good }
        guard n <= lu.maxTransferBlocks else { throw .invalidField(cdbByte: 12) }
        let bs = lu.blockSize
        // All or nothing: an atomic write of fewer blocks than asked would not be atomic.
        guard let data = c.dataOut, min(c.dataOutLength, data.count) >= n * bs else { throw .invalidField(cdbByte: 12) }
        let id = await lockRange(lu, lba: lba, count: UInt64(n), exclusive: true)
        defer { lu.locks.release(id) }
        do {
            try await lu.store.write(lba: lba, count: n, from: data, fua: lu.fua(flags & 0x08 != 0))
        } catch {
            throw .from(error)
        }
        return .good
    }
}
