import CairnBlock
import CairnIO

extension SCSITarget {
    /// WRITE SAME(10/16): one block (or zeros with NDOB) written over a range, or with UNMAP set
    /// and zero data, the range deallocated (it reads back as zeros: LBPRZ). Anchored blocks are
    /// not supported (ANC_SUP=0), so ANCHOR is refused.
    func writeSame(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let is16 = c.cdb.opcode == Opcode.writeSame16
        let flags = c.cdb[1]
        let lba = is16 ? c.cdb.be(2, 8) : c.cdb.be(2, 4)
        var n = is16 ? c.cdb.be(10, 4) : c.cdb.be(7, 2)
        let unmapBit = flags & 0x08 != 0
        let anchor = flags & 0x10 != 0
        let ndob = is16 && flags & 0x01 != 0
        if flags >> 5 != 0 { throw .invalidField(cdbByte: 1, bit: 7) }
        if anchor { throw .invalidField(cdbByte: 1, bit: 4) }
        if !is16 && flags & 0x01 != 0 { throw .invalidField(cdbByte: 1, bit: 0) }
        if n == 0 {
            // WSNZ=0 (block limits page): zero blocks means from `lba` to the last block (SBC-3 5.42),
            // "zero the rest of the volume" in one command; bounded by MAXIMUM WRITE SAME LENGTH.
            guard lba < lu.blockCount else { throw .lbaOutOfRange }
            n = lu.blockCount - lba
        }
        guard lu.inRange(lba, n) else { throw .lbaOutOfRange }
        guard n <= LogicalUnit.maxWriteSameBlocks else { throw .invalidField(cdbByte: is16 ? 10 : 7) }
        let bs = lu.blockSize
        var block: IOBuffer?
        if !ndob {
            // Exactly one block of data-out: anything else is a malformed command.
            guard let d = c.dataOut, c.dataOutLength == bs, d.count >= bs else { throw .invalidFieldInCDB }
            block = d
        }
        // With UNMAP the range is deallocated whatever the data (LBPRZ: it then reads zeros;
        // libiscsi's WriteSame*.UnmapUntilEnd expects exactly that).
        if unmapBit && lu.store.supportsUnmap {
            let id = await lockRange(lu, lba: lba, count: n, exclusive: false)
            defer { lu.locks.release(id) }
            do { try await lu.store.unmap(lba: lba, count: n) } catch { throw .from(error) }
            return .good
        }
        // Fill a chunk with copies of the block and write it as many times as needed.
        let chunkBlocks = Int(min(n, UInt64(max(1, (1 << 20) / bs))))
        let chunk = loop.buffers.take(chunkBlocks * bs)
        defer { loop.buffers.give(chunk) }
        if let b = block {
            for i in 0..<chunkBlocks { (chunk.base + i * bs).copyMemory(from: b.base, byteCount: bs) }
        } else {
            chunk.zero()
        }
        let id = await lockRange(lu, lba: lba, count: n, exclusive: false)
        defer { lu.locks.release(id) }
        var at = lba
        var left = n
        let fua = lu.fua(false)
        while left > 0 {
            let k = Int(min(left, UInt64(chunkBlocks)))
            do { try await lu.store.write(lba: at, count: k, from: chunk.slice(0, k * bs), fua: fua) } catch { throw .from(error) }
            at &+= UInt64(k)
            left -= UInt64(k)
        }
        return .good
    }
}

/// True if `n` bytes at `p` are all zero.
func isZero(_ p: UnsafeRawPointer, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        if p.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
        i += 8
    }
    while i < n {
        if p.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
        i += 1
    }
    return true
}
