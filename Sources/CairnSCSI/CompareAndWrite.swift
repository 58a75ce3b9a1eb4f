import CairnBlock
import CairnIO

extension SCSITarget {
    /// COMPARE AND WRITE (SBC-3 5.2): the data-out holds the verify blocks then the write blocks.
    /// The range is held exclusively from the read to the write, so no other write (plain or
    /// COMPARE AND WRITE) to those blocks can land in between, across the actor's reentrancy.
    func compareAndWrite(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let flags = c.cdb[1]
        if flags >> 5 != 0 { throw .invalidField(cdbByte: 1, bit: 7) }
        let lba = c.cdb.be(2, 8)
        let n = Int(c.cdb[13])
        guard lu.inRange(lba, UInt64(n)) else { throw .lbaOutOfRange }
        // No blocks means no data-out; data sent anyway is a mismatch (a 256-block request
        // wraps to 0 in this one-byte field).
        if n == 0 { if c.dataOutLength != 0 { throw .invalidField(cdbByte: 13) } else { return .good } }
        guard n <= LogicalUnit.maxCompareAndWriteBlocks else { throw .invalidField(cdbByte: 13) }
        let bs = lu.blockSize
        // The data-out must be exactly 2 x n blocks; anything else is refused at once (never waits
        // for data that will not come).
        guard let data = c.dataOut, c.dataOutLength == 2 * n * bs, data.count >= 2 * n * bs else {
            throw .invalidField(cdbByte: 13)
        }
        let id = await lockRange(lu, lba: lba, count: UInt64(n), exclusive: true)
        defer { lu.locks.release(id) }
        let current = loop.buffers.take(n * bs)
        defer { loop.buffers.give(current) }
        do { try await lu.store.read(lba: lba, count: n, into: current) } catch { throw .from(error) }
        if let off = firstDifference(current.base, data.base, blocks: n, blockSize: bs, repeatFirstBlock: false) {
            throw .miscompare(at: UInt64(off))
        }
        do {
            try await lu.store.write(lba: lba, count: n, from: data.slice(n * bs, n * bs), fua: lu.fua(flags & 0x08 != 0))
        } catch {
            throw .from(error)
        }
        return .good
    }
}
