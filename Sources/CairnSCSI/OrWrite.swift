import CairnBlock
import CairnIO

extension SCSITarget {
    /// ORWRITE(16) (SBC-3 5.13, first write operation only): each block becomes the bitwise OR of
    /// what it held and the data-out. Read-modify-write under an exclusive range lock, so no other
    /// write to those blocks can land between the read and the write.
    func orWrite(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let r = BlockRange.decode(c.cdb)
        if r.protect != 0 { throw .invalidField(cdbByte: 1, bit: 7) }  // ORPROTECT: no protection information
        guard lu.inRange(r.lba, r.count) else { throw .lbaOutOfRange }
        if r.count == 0 { return .good }
        guard r.count <= UInt64(lu.maxTransferBlocks) else { throw .invalidField(cdbByte: 10) }
        guard let data = c.dataOut else { return .good }
        let n = min(Int(r.count), min(c.dataOutLength, data.count) / lu.blockSize)
        if n == 0 { return .good }
        let bytes = n * lu.blockSize
        let id = await lockRange(lu, lba: r.lba, count: UInt64(n), exclusive: true)
        defer { lu.locks.release(id) }
        let merged = loop.buffers.take(bytes)
        defer { loop.buffers.give(merged) }
        do { try await lu.store.read(lba: r.lba, count: n, into: merged) } catch { throw .from(error) }
        // Eight bytes at a time: the pool's buffers are 4 KiB aligned and blocks are 512-byte multiples.
        let words = bytes / 8
        let dst = merged.base.assumingMemoryBound(to: UInt64.self)
        let src = data.base.assumingMemoryBound(to: UInt64.self)
        for i in 0..<words { dst[i] |= src[i] }
        do {
            try await lu.store.write(lba: r.lba, count: n, from: merged, fua: lu.fua(r.fua))
        } catch {
            throw .from(error)
        }
        return .good
    }

    /// READ DEFECT DATA(10/12) (SBC-3 5.16/5.17): a virtual volume has no defects; the header
    /// says so in the format asked for, with both lists valid and empty.
    func readDefectData(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let twelve = c.cdb.opcode == Opcode.readDefectData12
        let flags = twelve ? c.cdb[1] : c.cdb[2]
        let lists = flags & 0x18  // REQ_PLIST, REQ_GLIST
        let format = flags & 0x07
        if twelve {
            var d = [UInt8](repeating: 0, count: 8)
            d[1] = lists | format
            return dataIn(d, allocation: Int(c.cdb.be(6, 4)))
        }
        var d = [UInt8](repeating: 0, count: 4)
        d[1] = lists | format
        return dataIn(d, allocation: Int(c.cdb.be(7, 2)))
    }
}
