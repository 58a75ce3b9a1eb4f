import CairnBlock
import CairnIO

/// LBA, transfer length and flags of a READ/WRITE/VERIFY CDB, decoded without allocation.
struct BlockRange {
    var lba: UInt64
    var count: UInt64
    /// Byte 1 of the 10/12/16-byte forms (protect field, DPO, FUA, BYTCHK); 0 for 6-byte forms.
    var flags: UInt8

    var fua: Bool { flags & 0x08 != 0 }
    /// RDPROTECT / WRPROTECT / VRPROTECT.
    var protect: UInt8 { flags >> 5 }

    /// Decodes the 6/10/12/16-byte READ, WRITE, WRITE AND VERIFY and VERIFY layouts by CDB group.
    @inline(__always)
    static func decode(_ cdb: CDB) -> BlockRange {
        let op = cdb.opcode
        switch op >> 5 {
        case 0: // 6-byte: 21-bit LBA, length 0 means 256 blocks
            let lba = UInt64(cdb[1] & 0x1F) << 16 | UInt64(cdb[2]) << 8 | UInt64(cdb[3])
            let n = cdb[4] == 0 ? 256 : UInt64(cdb[4])
            return BlockRange(lba: lba, count: n, flags: 0)
        case 1, 2: // 10-byte
            return BlockRange(lba: cdb.be(2, 4), count: cdb.be(7, 2), flags: cdb[1])
        case 5: // 12-byte
            return BlockRange(lba: cdb.be(2, 4), count: cdb.be(6, 4), flags: cdb[1])
        default: // 16-byte
            return BlockRange(lba: cdb.be(2, 8), count: cdb.be(10, 4), flags: cdb[1])
        }
    }
}

extension SCSITarget {
    /// READ(6/10/12/16): straight from the store into a pool buffer the transport gives back.
    func read(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let r = BlockRange.decode(c.cdb)
        // No protection information on these units: any RDPROTECT is invalid.
        if r.protect != 0 { throw .invalidField(cdbByte: 1, bit: 7) }
        guard lu.inRange(r.lba, r.count) else { throw .lbaOutOfRange }
        if r.count == 0 { return .good }
        guard r.count <= UInt64(lu.maxTransferBlocks) else { throw .invalidField(cdbByte: c.cdb.opcode >> 5 == 0 ? 4 : 7) }
        let n = Int(r.count)
        let bytes = n * lu.blockSize
        let buf = loop.buffers.take(bytes)
        do {
            try await lu.store.read(lba: r.lba, count: n, into: buf)
        } catch {
            loop.buffers.give(buf)
            throw .from(error)
        }
        return SCSIResponse(status: .good, dataIn: buf, dataInLength: bytes)
    }

    /// WRITE(6/10/12/16) and WRITE AND VERIFY(10/12/16). Only whole blocks the initiator actually
    /// sent are written: if its expected transfer length was shorter than the CDB's, the rest is
    /// not invented (libiscsi's residual tests expect GOOD and exactly those blocks written).
    func write(_ lu: LogicalUnit, _ c: SCSICommand, verify: Bool) async throws(SCSIError) -> SCSIResponse {
        let r = BlockRange.decode(c.cdb)
        if r.protect != 0 { throw .invalidField(cdbByte: 1, bit: 7) }
        guard lu.inRange(r.lba, r.count) else { throw .lbaOutOfRange }
        if r.count == 0 { return .good }
        guard r.count <= UInt64(lu.maxTransferBlocks) else { throw .invalidField(cdbByte: c.cdb.opcode >> 5 == 0 ? 4 : 7) }
        guard let data = c.dataOut else { return .good }
        let have = min(c.dataOutLength, data.count) / lu.blockSize
        let n = min(Int(r.count), have)
        if n == 0 { return .good }
        // WRITE AND VERIFY makes the data durable before it reports it verified.
        let fua = lu.fua(r.fua || verify)
        let id = await lockRange(lu, lba: r.lba, count: UInt64(n), exclusive: false)
        defer { lu.locks.release(id) }
        do {
            try await lu.store.write(lba: r.lba, count: n, from: data, fua: fua)
        } catch {
            throw .from(error)
        }
        return .good
    }

    /// VERIFY(10/12/16). BYTCHK 0: the range is checked (and read, to surface medium errors);
    /// 1: the data-out is compared with the blocks; 3: one block compared with each.
    func verify(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        let r = BlockRange.decode(c.cdb)
        if r.protect != 0 { throw .invalidField(cdbByte: 1, bit: 7) }
        let bytchk = (r.flags >> 1) & 0x03
        if bytchk == 2 { throw .invalidField(cdbByte: 1, bit: 2) }
        guard lu.inRange(r.lba, r.count) else { throw .lbaOutOfRange }
        if r.count == 0 { return .good }
        guard r.count <= UInt64(lu.maxTransferBlocks) else { throw .invalidField(cdbByte: 7) }
        let n = Int(r.count)
        let bs = lu.blockSize
        var pattern: IOBuffer?
        if bytchk != 0 {
            let need = bytchk == 1 ? n * bs : bs
            guard let d = c.dataOut, min(c.dataOutLength, d.count) >= need else { throw .invalidFieldInCDB }
            pattern = d
        }
        let buf = loop.buffers.take(n * bs)
        defer { loop.buffers.give(buf) }
        do { try await lu.store.read(lba: r.lba, count: n, into: buf) } catch { throw .from(error) }
        guard let p = pattern else { return .good }
        if let off = firstDifference(buf.base, p.base, blocks: n, blockSize: bs, repeatFirstBlock: bytchk == 3) {
            throw .miscompare(at: UInt64(off))
        }
        return .good
    }
}

/// Byte offset of the first difference between `a` (n blocks) and `b` (n blocks, or one block
/// repeated), or nil when equal.
func firstDifference(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks n: Int, blockSize bs: Int, repeatFirstBlock: Bool) -> Int? {
    for blk in 0..<n {
        let pa = a + blk * bs
        let pb = repeatFirstBlock ? b : b + blk * bs
        if memcmpEqual(pa, pb, bs) { continue }
        for i in 0..<bs where pa.load(fromByteOffset: i, as: UInt8.self) != pb.load(fromByteOffset: i, as: UInt8.self) {
            return blk * bs + i
        }
    }
    return nil
}

@inline(__always)
func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
        i += 8
    }
    while i < n {
        if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
        i += 1
    }
    return true
}
