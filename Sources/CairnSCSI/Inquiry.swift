import CairnBlock
import CairnIO

extension SCSITarget {
    /// INQUIRY: standard data or a VPD page. `lu` nil means the LUN does not exist: peripheral
    /// qualifier 3, device type 1Fh (SPC-4 4.6.4).
    func inquiry(_ lu: LogicalUnit?, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let evpd = c.cdb[1] & 0x01 != 0
        if c.cdb[1] & 0xFE != 0 { throw .invalidField(cdbByte: 1) }
        let page = c.cdb[2]
        let alloc = Int(c.cdb.be(3, 2))
        if !evpd {
            if page != 0 { throw .invalidField(cdbByte: 2) }
            return dataIn(standardInquiry(lu), allocation: alloc)
        }
        guard let lu else { throw .lunNotSupported }
        let d: [UInt8]
        switch page {
        case 0x00: d = vpdPage(0x00, [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2])
        case 0x80: d = vpdPage(0x80, Array(lu.serial.utf8))
        case 0x83: d = vpdPage(0x83, deviceIdentification(lu, portalGroupTag: c.nexus.portalGroupTag))
        case 0x8F: d = vpdPage(0x8F, thirdPartyCopy())
        case 0xB0: d = vpdPage(0xB0, blockLimits(lu))
        case 0xB1: d = vpdPage(0xB1, blockDeviceCharacteristics())
        case 0xB2: d = vpdPage(0xB2, logicalBlockProvisioning(lu))
        default: throw .invalidField(cdbByte: 2)
        }
        return dataIn(d, allocation: alloc)
    }

    /// Standard INQUIRY data of `lu`, or of a LUN that does not exist when nil.
    func standardInquiry(_ lu: LogicalUnit?) -> [UInt8] {
        var d: [UInt8] = []
        d.reserveCapacity(66)
        d.append(lu != nil ? 0x00 : 0x7F) // qualifier/type: direct-access block device
        d.append(lu?.removable == true ? 0x80 : 0x00) // RMB
        d.append(0x06)                    // SPC-4
        d.append(0x02 | 0x10)             // response data format 2, HISUP
        d.append(0)                       // additional length, set below
        d.append(0x08)                    // 3PC: EXTENDED COPY
        d.append(0x00)
        d.append(0x02)                    // CMDQUE
        d.putASCII(identity.vendor, 8)
        d.putASCII(identity.product, 16)
        d.putASCII(identity.revision, 4)
        d.append(contentsOf: [UInt8](repeating: 0, count: 22)) // vendor specific, reserved (36..57)
        // Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
        for v: UInt64 in [0x00A0, 0x0960, 0x0460, 0x04C0] { d.put(v, 2) }
        d[4] = UInt8(d.count - 5)
        return d
    }

    func vpdPage(_ code: UInt8, _ body: [UInt8]) -> [UInt8] {
        var d: [UInt8] = [0x00, code]
        d.put(UInt64(body.count), 2)
        d.append(contentsOf: body)
        return d
    }

    /// Page 83h: NAA 6 and T10 vendor id for the unit, SCSI name string, relative target port and
    /// target port group for the port the command came through.
    func deviceIdentification(_ lu: LogicalUnit, portalGroupTag: UInt16) -> [UInt8] {
        var d: [UInt8] = []
        // NAA, binary, associated with the logical unit.
        d.append(contentsOf: [0x01, 0x03, 0x00, 16])
        d.put(lu.naa.0, 8)
        d.put(lu.naa.1, 8)
        // T10 vendor identification, ASCII: vendor + serial.
        var t10: [UInt8] = []
        t10.putASCII(identity.vendor, 8)
        t10.append(contentsOf: Array(lu.serial.utf8))
        d.append(contentsOf: [0x02, 0x01, 0x00, UInt8(t10.count)])
        d.append(contentsOf: t10)
        // SCSI name string of the target port, UTF-8, iSCSI, PIV: "<iqn>,t,0x<tpgt>".
        var name = Array((identity.targetName + ",t,0x" + hex(UInt64(portalGroupTag), digits: 4)).utf8.prefix(220))
        name.append(0)
        while name.count % 4 != 0 { name.append(0) }
        d.append(contentsOf: [0x53, 0x80 | 0x10 | 0x08, 0x00, UInt8(name.count)])
        d.append(contentsOf: name)
        // Relative target port (1-based) and target port group, iSCSI, PIV, target port association.
        let port = UInt64(max(portalGroupTag, 1))
        d.append(contentsOf: [0x51, 0x80 | 0x10 | 0x04, 0x00, 4, 0, 0])
        d.put(port, 2)
        d.append(contentsOf: [0x51, 0x80 | 0x10 | 0x05, 0x00, 4, 0, 0])
        d.put(UInt64(portalGroupTag), 2)
        return d
    }

    /// Page 8Fh: the EXTENDED COPY (LID1) commands and descriptors we support.
    func thirdPartyCopy() -> [UInt8] {
        func descriptor(_ type: UInt64, _ body: [UInt8]) -> [UInt8] {
            var b = body
            while b.count % 4 != 0 { b.append(0) }
            var d: [UInt8] = []
            d.put(type, 2)
            d.put(UInt64(b.count), 2)
            return d + b
        }
        // Supported commands: EXTENDED COPY(LID1); RECEIVE COPY STATUS(LID1), OPERATING PARAMETERS.
        let commands: [UInt8] = [0x83, 1, 0x00, 0x84, 2, 0x00, 0x03]
        // Supported descriptors: block-to-block segment, identification CSCD.
        let descriptors: [UInt8] = [0x02, 0xE4]
        return descriptor(0x0001, [UInt8(commands.count)] + commands)
            + descriptor(0x0008, [UInt8(descriptors.count)] + descriptors)
    }

    /// Page B0h (SBC-3 6.5.3): transfer, unmap, write same and compare-and-write limits.
    func blockLimits(_ lu: LogicalUnit) -> [UInt8] {
        var d = [UInt8](repeating: 0, count: 0x3C)
        // Offsets below are page offsets minus the 4-byte header.
        d[0] = 0x00                                             // WSNZ=0: zero blocks = to the end
        d[1] = UInt8(LogicalUnit.maxCompareAndWriteBlocks)
        // Optimal transfer length granularity: one physical block.
        let lbppb = UInt64(lu.logicalBlocksPerPhysicalBlock)
        d.set(2, lbppb, 2)
        d.set(4, UInt64(lu.maxTransferBlocks), 4)
        d.set(8, UInt64(min(lu.maxTransferBlocks, max(1, (1 << 20) / lu.blockSize))), 4)
        d.set(12, UInt64(lu.maxTransferBlocks), 4)              // max prefetch
        if lu.store.supportsUnmap {
            d.set(16, LogicalUnit.maxUnmapBlocks, 4)
            d.set(20, UInt64(LogicalUnit.maxUnmapDescriptors), 4)
            // Optimal unmap granularity: a physical block, and at least the 4 KiB in which the
            // backing file's holes are punched.
            d.set(24, max(lbppb, UInt64(max(1, 4096 / lu.blockSize))), 4)
            d.set(28, 0x8000_0000, 4)                           // UGAVALID, alignment 0
        }
        d.set(32, LogicalUnit.maxWriteSameBlocks, 8)
        d.set(40, UInt64(lu.maxTransferBlocks), 4)              // maximum atomic transfer length
        d.set(48, 1, 4)                                         // atomic transfer length granularity
        return d
    }

    /// Page B1h: non-rotating medium; reads after a SANITIZE BLOCK ERASE succeed (WABEREQ 01b).
    func blockDeviceCharacteristics() -> [UInt8] {
        var d = [UInt8](repeating: 0, count: 0x3C)
        d.set(0, 1, 2)
        d[3] = 0x40
        return d
    }

    /// Page B2h: thin provisioning with UNMAP, WRITE SAME(16) and WRITE SAME(10) unmapping, and
    /// unmapped blocks reading zeros.
    func logicalBlockProvisioning(_ lu: LogicalUnit) -> [UInt8] {
        let unmap: UInt8 = lu.store.supportsUnmap ? 0x80 | 0x40 | 0x20 : 0
        return [0x00, unmap | 0x04, 0x02, 0x00]
    }
}
