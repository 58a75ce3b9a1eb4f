import CairnBlock

extension SCSITarget {
    /// Data-out bytes a command's CDB calls for, for the transport's write residuals; nil for
    /// commands without data-out.
    nonisolated func dataOutLength(of cdb: CDB, blockSize bs: Int) -> Int? {
        switch cdb.opcode {
        case Opcode.write6, Opcode.write10, Opcode.write12, Opcode.write16, Opcode.orWrite16,
             Opcode.writeVerify10, Opcode.writeVerify12, Opcode.writeVerify16:
            return Int(truncatingIfNeeded: BlockRange.decode(cdb).count) &* bs
        case Opcode.verify10, Opcode.verify12, Opcode.verify16:
            let r = BlockRange.decode(cdb)
            switch (r.flags >> 1) & 0x03 {
            case 0: return nil
            case 3: return bs
            default: return Int(truncatingIfNeeded: r.count) &* bs
            }
        case Opcode.compareAndWrite: return 2 &* Int(cdb[13]) &* bs
        case Opcode.writeAtomic16: return Int(cdb.be(12, 2)) &* bs
        case Opcode.writeSame10: return bs
        case Opcode.writeSame16: return cdb[1] & 0x01 != 0 ? 0 : bs
        case Opcode.unmap, Opcode.modeSelect10, Opcode.sanitize: return Int(cdb.be(7, 2))
        case Opcode.modeSelect6: return Int(cdb[4])
        case Opcode.persistentReserveOut: return Int(cdb.be(5, 4))
        case Opcode.extendedCopy: return Int(cdb.be(10, 4))
        default: return nil
        }
    }
}
