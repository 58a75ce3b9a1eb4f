import CairnBlock
import CairnIO

/// Outcome of an EXTENDED COPY, kept for RECEIVE COPY RESULTS (COPY STATUS) by nexus and list id.
struct CopyResult {
    var nexus: ITNexus
    var listID: UInt8
    var good: Bool
    var segmentsProcessed: UInt16
    var bytes: UInt64
}

enum CopyLimits {
    static let maxTargetDescriptors = 4
    static let maxSegmentDescriptors = 8
    static let maxDescriptorListLength = 1024
    static let maxSegmentBlocks = 0xFFFF
    /// Results kept for RECEIVE COPY RESULTS, oldest dropped first.
    static let keptResults = 32
}

extension SCSITarget {
    /// EXTENDED COPY (LID1, SPC-4 6.4): block-to-block segments (02h) between units of this
    /// target named by identification CSCD descriptors (E4h) carrying our NAA designator.
    /// Descriptor errors are ILLEGAL REQUEST with the SPC copy ASCs; errors while copying
    /// are COPY ABORTED.
    func extendedCopy(_ lu: LogicalUnit, _ c: SCSICommand) async throws(SCSIError) -> SCSIResponse {
        if c.cdb[1] & 0x1F != 0 { throw .invalidField(cdbByte: 1, bit: 4) } // only LID1
        let listLength = Int(c.cdb.be(10, 4))
        if listLength == 0 { return .good }
        guard listLength >= 16 else { throw .parameterListLengthError }
        guard let d = c.dataOut, min(c.dataOutLength, d.count) >= listLength else { throw .parameterListLengthError }
        let p = UnsafeRawBufferPointer(start: d.base, count: listLength)
        let listID = p[0]
        let listIDUsage = (p[1] >> 3) & 0x03
        let cscdLength = Int(be(p, 2, 2))
        let segLength = Int(be(p, 8, 4))
        let inlineLength = Int(be(p, 12, 4))
        guard cscdLength + segLength <= CopyLimits.maxDescriptorListLength else { throw .parameterListLengthError }
        guard 16 + cscdLength + segLength + inlineLength <= listLength else { throw .parameterListLengthError }
        if inlineLength != 0 { throw .invalidParameter(byte: 12) }

        // CSCD descriptors: 32 bytes each, identification type only.
        var units: [LogicalUnit?] = []
        var at = 16
        while at < 16 + cscdLength {
            let type = p[at]
            guard type == 0xE4 else {
                throw SCSIError(.illegalRequest, 0x26, 0x07) // UNSUPPORTED TARGET DESCRIPTOR TYPE CODE
            }
            guard at + 32 <= 16 + cscdLength else { throw .parameterListLengthError }
            units.append(unitFor(designator: p, at: at + 4, blockSizeAt: at + 29))
            at += 32
        }
        if units.count > CopyLimits.maxTargetDescriptors { throw SCSIError(.illegalRequest, 0x26, 0x06) }

        // Segment descriptors: block to block only.
        struct Segment { var src: Int; var dst: Int; var blocks: UInt64; var srcLBA: UInt64; var dstLBA: UInt64 }
        var segments: [Segment] = []
        let segEnd = 16 + cscdLength + segLength
        while at < segEnd {
            guard at + 4 <= segEnd else { throw .parameterListLengthError }
            guard p[at] == 0x02 else { throw SCSIError(.illegalRequest, 0x26, 0x09) } // UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE
            let len = Int(be(p, at + 2, 2))
            guard len == 0x18, at + 4 + len <= segEnd else { throw .parameterListLengthError }
            if p[at + 1] & 0x02 != 0 { throw .invalidParameter(byte: at + 1, bit: 1) } // DC: counts in destination blocks
            segments.append(Segment(src: Int(be(p, at + 4, 2)), dst: Int(be(p, at + 6, 2)), blocks: be(p, at + 10, 2),
                                    srcLBA: be(p, at + 12, 8), dstLBA: be(p, at + 20, 8)))
            at += 4 + len
        }
        if segments.count > CopyLimits.maxSegmentDescriptors { throw SCSIError(.illegalRequest, 0x26, 0x08) }

        var result = CopyResult(nexus: c.nexus, listID: listID, good: false, segmentsProcessed: 0, bytes: 0)
        defer {
            // LIST ID USAGE 11b: the initiator will not ask for the results.
            if listIDUsage != 0x03 { remember(result) }
        }
        let unreachable = SCSIError(.abortedCopy, 0x0D, 0x02) // COPY TARGET DEVICE NOT REACHABLE
        for s in segments {
            guard s.src < units.count, s.dst < units.count, let src = units[s.src], let dst = units[s.dst] else { throw unreachable }
            guard src.inRange(s.srcLBA, s.blocks), dst.inRange(s.dstLBA, s.blocks), src.blockSize == dst.blockSize else {
                throw SCSIError(.abortedCopy, 0x00, 0x00)
            }
            // An ejected medium cannot be copied from or to.
            guard src.mediumPresent, dst.mediumPresent else { throw unreachable }
            if dst.writeProtected { throw .writeProtected }
            try await copyBlocks(from: src, s.srcLBA, to: dst, s.dstLBA, count: s.blocks)
            result.segmentsProcessed &+= 1
            result.bytes &+= s.blocks &* UInt64(src.blockSize)
        }
        result.good = true
        return .good
    }

    /// The unit whose NAA designator (a designation descriptor at `at`) and block size match.
    private func unitFor(designator p: UnsafeRawBufferPointer, at: Int, blockSizeAt: Int) -> LogicalUnit? {
        guard p[at + 1] & 0x0F == 3, p[at + 3] == 16 else { return nil }
        let hi = be(p, at + 4, 8), lo = be(p, at + 12, 8)
        let bs = Int(be(p, blockSizeAt, 3))
        for u in units where u.naa.0 == hi && u.naa.1 == lo && u.blockSize == bs { return u }
        return nil
    }

    /// Copies in chunks through one pool buffer; each destination chunk is written under the
    /// range lock like any other write.
    private func copyBlocks(from src: LogicalUnit, _ srcLBA: UInt64, to dst: LogicalUnit, _ dstLBA: UInt64, count: UInt64) async throws(SCSIError) {
        let bs = src.blockSize
        let chunkBlocks = UInt64(max(1, (1 << 20) / bs))
        let buf = loop.buffers.take(Int(min(count, chunkBlocks)) * bs)
        defer { loop.buffers.give(buf) }
        var done: UInt64 = 0
        while done < count {
            let k = Int(min(count - done, chunkBlocks))
            do { try await src.store.read(lba: srcLBA + done, count: k, into: buf) } catch { throw SCSIError(.abortedCopy, 0x11, 0x00) }
            let id = await lockRange(dst, lba: dstLBA + done, count: UInt64(k), exclusive: false)
            do {
                try await dst.store.write(lba: dstLBA + done, count: k, from: buf.slice(0, k * bs), fua: dst.fua(false))
            } catch {
                dst.locks.release(id)
                throw SCSIError(.abortedCopy, 0x0C, 0x00)
            }
            dst.locks.release(id)
            done += UInt64(k)
        }
    }

    private func remember(_ r: CopyResult) {
        copyResults.removeAll { $0.nexus == r.nexus && $0.listID == r.listID }
        if copyResults.count >= CopyLimits.keptResults { copyResults.removeFirst() }
        copyResults.append(r)
    }

    /// RECEIVE COPY RESULTS (LID1): COPY STATUS (00h) and OPERATING PARAMETERS (03h).
    func receiveCopyResults(_ lu: LogicalUnit, _ c: SCSICommand) throws(SCSIError) -> SCSIResponse {
        let sa = c.cdb[1] & 0x1F
        let listID = c.cdb[2]
        let alloc = Int(c.cdb.be(10, 4))
        var d: [UInt8] = []
        switch sa {
        case 0x00:
            guard let r = copyResults.last(where: { $0.nexus == c.nexus && $0.listID == listID }) else {
                throw .invalidField(cdbByte: 2)
            }
            d.put(8, 4)
            d.append(r.good ? 0x01 : 0x02)   // completed, without or with errors
            d.put(UInt64(r.segmentsProcessed), 2)
            d.append(0x00)                    // transfer count in bytes
            d.put(min(r.bytes, 0xFFFF_FFFF), 4)
        case 0x03:
            d = [UInt8](repeating: 0, count: 44)
            d[4] = 0x01                                         // SNLID: list identifiers are per nexus
            d.set(8, UInt64(CopyLimits.maxTargetDescriptors), 2)
            d.set(10, UInt64(CopyLimits.maxSegmentDescriptors), 2)
            d.set(12, UInt64(CopyLimits.maxDescriptorListLength), 4)
            d.set(16, UInt64(CopyLimits.maxSegmentBlocks) * UInt64(lu.blockSize), 4)
            d.set(34, 1, 2)                                     // total concurrent copies
            d[36] = 1                                           // maximum concurrent copies
            d[37] = UInt8(lu.blockSize.trailingZeroBitCount)    // data segment granularity (log2)
            d[43] = 2                                           // implemented descriptor codes:
            d.append(contentsOf: [0x02, 0xE4])
            d.set(0, UInt64(d.count - 4), 4)
        default:
            throw .invalidField(cdbByte: 1, bit: 4)
        }
        return dataIn(d, allocation: alloc)
    }
}
