/// Field accessors for the PDUs an initiator sends, read in place from the inline header.
extension BasicHeaderSegment {
    // Login Request (§11.12)
    public var loginTransit: Bool { self[1] & 0x80 != 0 }
    public var loginContinue: Bool { self[1] & 0x40 != 0 }
    public var loginCSG: UInt8 { (self[1] >> 2) & 3 }
    public var loginNSG: UInt8 { self[1] & 3 }
    public var versionMax: UInt8 { self[2] }
    public var versionMin: UInt8 { self[3] }
    /// The 48-bit ISID (bytes 8-13).
    public var isid: UInt64 { u64(8) >> 16 }
    public var tsih: UInt16 { u16(14) }
    public var cid: UInt16 { u16(20) }
    public var cmdSN: UInt32 { u32(24) }
    public var expStatSN: UInt32 { u32(28) }

    // SCSI Command (§11.3)
    public var readFlag: Bool { self[1] & 0x40 != 0 }
    public var writeFlag: Bool { self[1] & 0x20 != 0 }
    public var taskAttribute: UInt8 { self[1] & 0x07 }
    public var expectedDataTransferLength: UInt32 { u32(20) }

    // Data-Out (§11.7), NOP-Out, Text: Target Transfer Tag
    public var targetTransferTag: UInt32 { u32(20) }
    public var dataSN: UInt32 { u32(36) }
    public var bufferOffset: UInt32 { u32(40) }

    // Task Management Function Request (§11.5)
    public var tmfFunction: UInt8 { self[1] & 0x7f }
    public var referencedTaskTag: UInt32 { u32(20) }
    public var refCmdSN: UInt32 { u32(32) }
    public var expDataSN: UInt32 { u32(36) }

    // Logout Request (§11.14)
    public var logoutReason: UInt8 { self[1] & 0x7f }

    // Text Request (§11.10)
    public var textContinue: Bool { self[1] & 0x40 != 0 }
}

/// Builders for the PDUs the target sends. Sequence numbers are filled by the caller.
extension BasicHeaderSegment {
    static func target(_ op: ISCSIOpcode, flags: UInt8 = 0x80, itt: UInt32) -> BasicHeaderSegment {
        var h = BasicHeaderSegment()
        h[0] = op.rawValue
        h[1] = flags
        h.setU32(16, itt)
        return h
    }

    /// Fills StatSN, ExpCmdSN, MaxCmdSN (bytes 24, 28, 32): common to every target PDU that has them.
    mutating func setSequence(statSN: UInt32, expCmdSN: UInt32, maxCmdSN: UInt32) {
        setU32(24, statSN); setU32(28, expCmdSN); setU32(32, maxCmdSN)
    }

    public static func loginResponse(transit: Bool, csg: UInt8, nsg: UInt8, isid: UInt64, tsih: UInt16, itt: UInt32,
                                     statusClass: UInt8, statusDetail: UInt8, dataLength: Int) -> BasicHeaderSegment {
        var h = target(.loginResponse, flags: (transit ? 0x80 : 0) | ((csg & 3) << 2) | (transit ? (nsg & 3) : 0), itt: itt)
        h[2] = 0; h[3] = 0  // version max / active
        h.setDataSegmentLength(dataLength)
        h.setU64(8, (isid << 16) | UInt64(tsih))
        h[36] = statusClass; h[37] = statusDetail
        return h
    }

    public static func textResponse(final: Bool, lun: UInt64, itt: UInt32, ttt: UInt32, dataLength: Int) -> BasicHeaderSegment {
        var h = target(.textResponse, flags: final ? 0x80 : 0, itt: itt)
        h.setDataSegmentLength(dataLength)
        h.setU64(8, lun)
        h.setU32(20, ttt)
        return h
    }

    public static func scsiResponse(itt: UInt32, status: UInt8, overflow: Bool, underflow: Bool, residual: UInt32,
                                    expDataSN: UInt32, dataLength: Int) -> BasicHeaderSegment {
        var h = target(.scsiResponse, flags: 0x80 | (overflow ? 0x04 : 0) | (underflow ? 0x02 : 0), itt: itt)
        h[2] = 0  // response: command completed at target
        h[3] = status
        h.setDataSegmentLength(dataLength)
        h.setU32(36, expDataSN)
        h.setU32(44, residual)
        return h
    }

    public static func dataIn(final: Bool, status: UInt8?, overflow: Bool, underflow: Bool, residual: UInt32, lun: UInt64,
                              itt: UInt32, dataSN: UInt32, offset: UInt32, dataLength: Int) -> BasicHeaderSegment {
        var flags: UInt8 = final ? 0x80 : 0
        if status != nil { flags |= 0x01 | (overflow ? 0x04 : 0) | (underflow ? 0x02 : 0) }
        var h = target(.dataIn, flags: flags, itt: itt)
        h[3] = status ?? 0
        h.setDataSegmentLength(dataLength)
        h.setU64(8, lun)
        h.setU32(20, 0xffff_ffff)
        h.setU32(36, dataSN)
        h.setU32(40, offset)
        if status != nil { h.setU32(44, residual) }
        return h
    }

    public static func r2t(lun: UInt64, itt: UInt32, ttt: UInt32, r2tSN: UInt32, offset: UInt32, length: UInt32) -> BasicHeaderSegment {
        var h = target(.r2t, itt: itt)
        h.setU64(8, lun)
        h.setU32(20, ttt)
        h.setU32(36, r2tSN)
        h.setU32(40, offset)
        h.setU32(44, length)
        return h
    }

    public static func nopIn(lun: UInt64, itt: UInt32, ttt: UInt32, dataLength: Int) -> BasicHeaderSegment {
        var h = target(.nopIn, itt: itt)
        h.setDataSegmentLength(dataLength)
        h.setU64(8, lun)
        h.setU32(20, ttt)
        return h
    }

    public static func taskManagementResponse(itt: UInt32, response: UInt8) -> BasicHeaderSegment {
        var h = target(.taskManagementResponse, itt: itt)
        h[2] = response
        return h
    }

    public static func logoutResponse(itt: UInt32, response: UInt8, time2Wait: UInt16 = 0, time2Retain: UInt16 = 0) -> BasicHeaderSegment {
        var h = target(.logoutResponse, itt: itt)
        h[2] = response
        h.setU16(40, time2Wait)
        h.setU16(42, time2Retain)
        return h
    }

    /// A Reject carries the rejected PDU's header as its data segment.
    public static func reject(reason: ISCSIRejectReason) -> BasicHeaderSegment {
        var h = target(.reject, itt: 0xffff_ffff)
        h[2] = reason.rawValue
        h.setDataSegmentLength(48)
        return h
    }

    public static func asyncMessage(event: UInt8, parameter1: UInt16 = 0, parameter2: UInt16 = 0, parameter3: UInt16 = 0) -> BasicHeaderSegment {
        var h = target(.asyncMessage, itt: 0xffff_ffff)
        h[36] = event
        h.setU16(38, parameter1); h.setU16(40, parameter2); h.setU16(42, parameter3)
        return h
    }
}

/// Reject reasons (RFC 7143 §11.17.1).
public enum ISCSIRejectReason: UInt8, Sendable {
    case dataDigestError = 0x02
    case snackReject = 0x03
    case protocolError = 0x04
    case commandNotSupported = 0x05
    case immediateCommandRejected = 0x06
    case taskInProgress = 0x07
    case invalidDataAck = 0x08
    case invalidPDUField = 0x09
    case longOperationReject = 0x0a
    case deprecated = 0x0b
    case waitingForLogout = 0x0c
}

/// Why a byte stream is not a well-formed PDU.
public enum PDUError: Error, Equatable, Sendable {
    case needMore(Int)          // at least this many bytes in total are needed
    case unknownOpcode(UInt8)
    case dataSegmentTooLong(Int)
    case headerDigest
    case dataDigest
}

/// One whole PDU in memory: for the login phase, tests, the fuzz harness and the test initiator.
/// The data path does not use it: it reads segments straight into their destination buffers.
public struct ISCSIPDU: Sendable, Equatable {
    public var bhs: BasicHeaderSegment
    public var ahs: [UInt8]
    public var data: [UInt8]

    public init(bhs: BasicHeaderSegment, ahs: [UInt8] = [], data: [UInt8] = []) {
        self.bhs = bhs
        self.ahs = ahs
        self.data = data
    }

    /// Serialises with the digests in force; the header's length fields are set from `ahs`/`data`.
    public func encode(headerDigest: Bool = false, dataDigest: Bool = false) -> [UInt8] {
        var h = bhs
        h[4] = UInt8(truncatingIfNeeded: padded4(ahs.count) / 4)
        h.setDataSegmentLength(data.count)
        var out = h.bytes
        out.reserveCapacity(48 + ahs.count + data.count + 12)
        out += ahs
        out += [UInt8](repeating: 0, count: padded4(ahs.count) - ahs.count)
        if headerDigest { appendLE(&out, ISCSIDigest.crc(out)) }
        if !data.isEmpty {
            out += data
            out += [UInt8](repeating: 0, count: padded4(data.count) - data.count)
            if dataDigest { appendLE(&out, data.withUnsafeBytes { ISCSIDigest.dataDigest($0.baseAddress, data.count) }) }
        }
        return out
    }

    /// Decodes one PDU from the front of `bytes`; returns it and the bytes consumed.
    /// Never traps: every length comes from the input and is checked against what is there.
    public static func decode(_ bytes: UnsafeRawBufferPointer, headerDigest: Bool, dataDigest: Bool,
                              maxDataSegmentLength: Int) -> Result<(ISCSIPDU, Int), PDUError> {
        guard bytes.count >= 48, let base = bytes.baseAddress else { return .failure(.needMore(48)) }
        let bhs = BasicHeaderSegment(base)
        guard bhs.opcode != nil else { return .failure(.unknownOpcode(bhs.opcodeRaw)) }
        let ahsLen = bhs.ahsLength
        let dataLen = bhs.dataSegmentLength
        guard dataLen <= maxDataSegmentLength else { return .failure(.dataSegmentTooLong(dataLen)) }
        let headerEnd = 48 + ahsLen + (headerDigest ? 4 : 0)
        guard bytes.count >= headerEnd else { return .failure(.needMore(headerEnd)) }
        if headerDigest {
            let want = ISCSIDigest.load(base + 48 + ahsLen)
            guard ISCSIDigest.crc(base, 48 + ahsLen) == want else { return .failure(.headerDigest) }
        }
        var total = headerEnd
        var data: [UInt8] = []
        if dataLen > 0 {
            total = headerEnd + padded4(dataLen) + (dataDigest ? 4 : 0)
            guard bytes.count >= total else { return .failure(.needMore(total)) }
            if dataDigest {
                let want = ISCSIDigest.load(base + headerEnd + padded4(dataLen))
                guard ISCSIDigest.dataDigest(base + headerEnd, dataLen) == want else { return .failure(.dataDigest) }
            }
            data = Array(UnsafeRawBufferPointer(start: base + headerEnd, count: dataLen))
        }
        let ahs = Array(UnsafeRawBufferPointer(start: base + 48, count: ahsLen))
        return .success((ISCSIPDU(bhs: bhs, ahs: ahs, data: data), total))
    }
}

func appendLE(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(truncatingIfNeeded: v)); out.append(UInt8(truncatingIfNeeded: v >> 8))
    out.append(UInt8(truncatingIfNeeded: v >> 16)); out.append(UInt8(truncatingIfNeeded: v >> 24))
}
