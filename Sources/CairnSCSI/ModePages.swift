import CairnBlock
import CairnIO

/// Mode pages (SPC-4 7.5, SBC-3 6.4): read-write error recovery (01h), caching (08h), control
/// (0Ah) and informational exceptions (1Ch). Only WCE, RCD, D_SENSE, SWP, DEXCPT and MRIE change.
enum ModePage {
    static let codes: [UInt8] = [0x01, 0x08, 0x0A, 0x1C]

    enum Control { case current, changeable, defaults }

    /// The page as MODE SENSE returns it (for `.changeable`: the mask of bits MODE SELECT may change).
    static func bytes(_ code: UInt8, _ m: ModeParameters, _ pc: Control) -> [UInt8]? {
        let mask = pc == .changeable
        let v = pc == .defaults ? ModeParameters() : m
        switch code {
        case 0x01:
            var d = [UInt8](repeating: 0, count: 12)
            d[0] = 0x01; d[1] = 0x0A
            return d
        case 0x08:
            var d = [UInt8](repeating: 0, count: 20)
            d[0] = 0x08; d[1] = 0x12
            if mask { d[2] = 0x04 | 0x01 } else { d[2] = (v.wce ? 0x04 : 0) | (v.rcd ? 0x01 : 0) }
            return d
        case 0x0A:
            var d = [UInt8](repeating: 0, count: 12)
            d[0] = 0x0A; d[1] = 0x0A
            if mask {
                d[2] = 0x04
                d[4] = 0x08
            } else {
                d[2] = v.dSense ? 0x04 : 0
                d[4] = v.swp ? 0x08 : 0
                d[3] = 0x10            // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
                d[8] = 0xFF; d[9] = 0xFF // busy timeout: unlimited
            }
            return d
        case 0x1C:
            var d = [UInt8](repeating: 0, count: 12)
            d[0] = 0x1C; d[1] = 0x0A
            if mask { d[2] = 0x08; d[3] = 0x0F } else { d[2] = v.dexcpt ? 0x08 : 0; d[3] = v.mrie }
            return d
        default:
            return nil
        }
    }

    /// Applies a page sent with MODE SELECT to `m`. The caller has checked that only changeable
    /// bits differ.
    static func apply(_ p: [UInt8], to m: inout ModeParameters) {
        switch p[0] & 0x3F {
        case 0x08: m.wce = p[2] & 0x04 != 0; m.rcd = p[2] & 0x01 != 0
        case 0x0A: m.dSense = p[2] & 0x04 != 0; m.swp = p[4] & 0x08 != 0
        case 0x1C: m.dexcpt = p[2] & 0x08 != 0; m.mrie = p[3] & 0x0F
        default: break
        }
    }
}

extension SCSITarget {
    /// MODE SENSE(6/10).
    func modeSense(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let ten = c.cdb.opcode == Opcode.modeSense10
        let dbd = c.cdb[1] & 0x08 != 0
        let llbaa = ten && c.cdb[1] & 0x10 != 0
        let pcField = c.cdb[2] >> 6
        let code = c.cdb[2] & 0x3F
        let subpage = c.cdb[3]
        let alloc = ten ? Int(c.cdb.be(7, 2)) : Int(c.cdb[4])
        let pc: ModePage.Control
        switch pcField {
        case 0: pc = .current
        case 1: pc = .changeable
        default: pc = .defaults   // 2 default; 3 saved: nothing is saved, so power-on = defaults
        }
        if subpage != 0 && !(code == 0x3F && subpage == 0xFF) { throw .invalidField(cdbByte: 3) }
        var pages: [UInt8] = []
        if code == 0x3F {
            for p in ModePage.codes { pages.append(contentsOf: ModePage.bytes(p, lu.mode, pc) ?? []) }
        } else if let p = ModePage.bytes(code, lu.mode, pc) {
            pages = p
        } else {
            throw .invalidField(cdbByte: 2, bit: 5)
        }
        var bd: [UInt8] = []
        if !dbd {
            if llbaa {
                bd.put(lu.blockCount, 8)
                bd.put(0, 4)
                bd.put(UInt64(lu.blockSize), 4)
            } else {
                bd.put(min(lu.blockCount, 0xFFFF_FFFF), 4)
                bd.put(UInt64(lu.blockSize) & 0xFF_FFFF, 4)
            }
        }
        // DPOFUA; WP when the medium is write-protected (--read-only, or SWP).
        let deviceSpecific: UInt8 = 0x10 | (lu.writeProtected ? 0x80 : 0)
        var d: [UInt8] = []
        if ten {
            d.put(UInt64(6 + bd.count + pages.count), 2)
            d.append(contentsOf: [0, deviceSpecific, llbaa && !dbd ? 0x01 : 0, 0])
            d.put(UInt64(bd.count), 2)
        } else {
            d.append(UInt8(truncatingIfNeeded: 3 + bd.count + pages.count))
            d.append(contentsOf: [0, deviceSpecific, UInt8(bd.count)])
        }
        d.append(contentsOf: bd)
        d.append(contentsOf: pages)
        return dataIn(d, allocation: alloc)
    }

    /// MODE SELECT(6/10): validates every page before changing anything; other nexuses get
    /// MODE PARAMETERS CHANGED.
    func modeSelect(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let ten = c.cdb.opcode == Opcode.modeSelect10
        if c.cdb[1] & 0x01 != 0 { throw .invalidField(cdbByte: 1, bit: 0) } // SP: nothing is savable
        let length = ten ? Int(c.cdb.be(7, 2)) : Int(c.cdb[4])
        if length == 0 { return .good }
        guard let data = c.dataOut, min(c.dataOutLength, data.count) >= length else { throw .parameterListLengthError }
        let p = Array(UnsafeRawBufferPointer(start: data.base, count: length))
        let header = ten ? 8 : 4
        guard p.count >= header else { throw .parameterListLengthError }
        let bdLength = ten ? Int(be(p, 6, 2)) : Int(p[3])
        if bdLength != 0 && bdLength != 8 && !(ten && bdLength == 16) { throw .invalidParameter(byte: ten ? 6 : 3) }
        var at = header + bdLength
        guard at <= p.count else { throw .parameterListLengthError }
        // A block descriptor may not change the block length (the number of blocks is ignored).
        if bdLength == 8, be(p, header + 5, 3) != 0, be(p, header + 5, 3) != UInt64(lu.blockSize) {
            throw .invalidParameter(byte: header + 5)
        }
        if bdLength == 16, be(p, header + 12, 4) != 0, be(p, header + 12, 4) != UInt64(lu.blockSize) {
            throw .invalidParameter(byte: header + 12)
        }
        var m = lu.mode
        while at < p.count {
            guard at + 2 <= p.count else { throw .parameterListLengthError }
            if p[at] & 0x40 != 0 { throw .invalidParameter(byte: at, bit: 6) } // no subpages here
            let code = p[at] & 0x3F
            let len = Int(p[at + 1])
            guard at + 2 + len <= p.count else { throw .parameterListLengthError }
            guard let cur = ModePage.bytes(code, lu.mode, .current),
                  let mask = ModePage.bytes(code, lu.mode, .changeable) else {
                throw .invalidParameter(byte: at, bit: 5)
            }
            guard len == cur.count - 2 else { throw .invalidParameter(byte: at + 1) }
            let page = Array(p[at..<(at + 2 + len)])
            for i in 2..<cur.count where (page[i] ^ cur[i]) & ~mask[i] != 0 {
                throw .invalidParameter(byte: at + i)
            }
            ModePage.apply(page, to: &m)
            at += 2 + len
        }
        if m != lu.mode {
            lu.mode = m
            lu.unitAttentions.raiseAll(0x2A, 0x01, except: c.nexus)
        }
        return .good
    }
}
