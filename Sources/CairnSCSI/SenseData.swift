import CairnBlock

/// SPC-4 sense keys.
public enum SenseKey: UInt8, Sendable {
    case noSense = 0x0, recoveredError = 0x1, notReady = 0x2, mediumError = 0x3, hardwareError = 0x4
    case illegalRequest = 0x5, unitAttention = 0x6, dataProtect = 0x7, abortedCopy = 0xA, abortedCommand = 0xB, miscompare = 0xE
}

/// Why a command failed: a status, and for CHECK CONDITION the sense key, ASC/ASCQ, and
/// optionally the INFORMATION field and a sense-key-specific field pointer. Small and inline, so
/// throwing it allocates nothing; it is encoded into `SenseBytes` once the D_SENSE setting of the
/// logical unit is known.
public struct SCSIError: Error, Sendable, Equatable {
    public var status: SCSIStatus
    public var key: SenseKey
    public var asc: UInt8
    public var ascq: UInt8
    public var information: UInt64?
    /// Sense-key-specific bytes (already with SKSV set), or 0 for none.
    public var sks: UInt32 = 0

    public init(_ key: SenseKey, _ asc: UInt8, _ ascq: UInt8, information: UInt64? = nil, status: SCSIStatus = .checkCondition) {
        self.status = status
        self.key = key
        self.asc = asc
        self.ascq = ascq
        self.information = information
    }

    /// A status without sense data (RESERVATION CONFLICT, BUSY...).
    public init(status: SCSIStatus) {
        self.status = status
        self.key = .noSense
        self.asc = 0
        self.ascq = 0
    }

    public static let reservationConflict = SCSIError(status: .reservationConflict)
    public static let invalidOpcode = SCSIError(.illegalRequest, 0x20, 0x00)
    public static let lbaOutOfRange = SCSIError(.illegalRequest, 0x21, 0x00)
    public static let invalidFieldInCDB = SCSIError(.illegalRequest, 0x24, 0x00)
    public static let lunNotSupported = SCSIError(.illegalRequest, 0x25, 0x00)
    public static let invalidFieldInParameterList = SCSIError(.illegalRequest, 0x26, 0x00)
    public static let invalidReleaseOfPR = SCSIError(.illegalRequest, 0x26, 0x04)
    public static let parameterListLengthError = SCSIError(.illegalRequest, 0x1A, 0x00)
    public static let savingParametersNotSupported = SCSIError(.illegalRequest, 0x39, 0x00)
    public static let invalidFieldInInformationUnit = SCSIError(.illegalRequest, 0x0E, 0x03)
    public static let unrecoveredReadError = SCSIError(.mediumError, 0x11, 0x00)
    public static let writeError = SCSIError(.mediumError, 0x0C, 0x00)
    public static let spaceAllocationFailed = SCSIError(.dataProtect, 0x27, 0x07)
    public static let writeProtected = SCSIError(.dataProtect, 0x27, 0x00)
    public static let notReady = SCSIError(.notReady, 0x04, 0x00)
    public static let becomingReady = SCSIError(.notReady, 0x04, 0x01)
    public static let sanitizeInProgress = SCSIError(.notReady, 0x04, 0x1B)
    /// The removable medium has been ejected (START STOP UNIT LOEJ=1 START=0).
    public static let mediumNotPresent = SCSIError(.notReady, 0x3A, 0x00)
    /// START STOP UNIT LOEJ=1 while PREVENT ALLOW MEDIUM REMOVAL prevents removal.
    public static let mediumRemovalPrevented = SCSIError(.illegalRequest, 0x53, 0x02)

    /// INVALID FIELD IN CDB pointing at `byte` (and `bit`, if given) of the CDB.
    public static func invalidField(cdbByte byte: Int, bit: Int? = nil) -> SCSIError {
        var e = SCSIError.invalidFieldInCDB
        e.sks = fieldPointer(cd: true, byte: byte, bit: bit)
        return e
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte` of the parameter list.
    public static func invalidParameter(byte: Int, bit: Int? = nil) -> SCSIError {
        var e = SCSIError.invalidFieldInParameterList
        e.sks = fieldPointer(cd: false, byte: byte, bit: bit)
        return e
    }

    public static func miscompare(at offset: UInt64) -> SCSIError {
        SCSIError(.miscompare, 0x1D, 0x00, information: offset)
    }

    static func fieldPointer(cd: Bool, byte: Int, bit: Int?) -> UInt32 {
        var b0: UInt32 = 0x80 | (cd ? 0x40 : 0)
        if let bit, bit >= 0, bit < 8 { b0 |= 0x08 | UInt32(bit) }
        return b0 << 16 | UInt32(UInt16(truncatingIfNeeded: byte))
    }

    /// Maps a block store failure to the SBC sense the initiator should see. `.unavailable`
    /// (replica quorum lost) is NOT READY / CAUSE NOT REPORTABLE: the unit may come back, and
    /// initiators fail the I/O instead of treating the hardware as broken. `.becomingReady`
    /// (a controller still finding its replicas) is NOT READY / IN PROCESS OF BECOMING READY,
    /// which initiators (Linux sd) retry for the command's lifetime instead of failing it.
    public static func from(_ error: BlockStoreError) -> SCSIError {
        switch error {
        case .medium(let read, _): return read ? .unrecoveredReadError : .writeError
        case .noSpace: return .spaceAllocationFailed
        case .unavailable: return .notReady
        case .becomingReady: return .becomingReady
        case .readOnly: return .writeProtected
        }
    }

    /// Encodes as fixed (0x70) or descriptor (0x72) format sense data.
    public func sense(descriptor: Bool) -> SenseBytes {
        var s = SenseBytes()
        guard status == .checkCondition else { return s }
        withUnsafeMutableBytes(of: &s.storage) { p in
            if descriptor {
                p[0] = 0x72
                p[1] = key.rawValue
                p[2] = asc
                p[3] = ascq
                var n = 8
                if let info = information {
                    p[n] = 0x00; p[n + 1] = 0x0A; p[n + 2] = 0x80
                    for i in 0..<8 { p[n + 4 + i] = UInt8(truncatingIfNeeded: info >> (56 - 8 * i)) }
                    n += 12
                }
                if sks != 0 {
                    p[n] = 0x02; p[n + 1] = 0x06
                    p[n + 4] = UInt8(truncatingIfNeeded: sks >> 16)
                    p[n + 5] = UInt8(truncatingIfNeeded: sks >> 8)
                    p[n + 6] = UInt8(truncatingIfNeeded: sks)
                    n += 8
                }
                p[7] = UInt8(n - 8)
                s.count = n
            } else {
                p[0] = 0x70
                p[2] = key.rawValue
                if let info = information {
                    // Fixed format holds 32 bits; larger values cannot be marked valid.
                    if info <= UInt64(UInt32.max) { p[0] |= 0x80 }
                    for i in 0..<4 { p[3 + i] = UInt8(truncatingIfNeeded: info >> (24 - 8 * i)) }
                }
                p[7] = 10
                p[12] = asc
                p[13] = ascq
                p[15] = UInt8(truncatingIfNeeded: sks >> 16)
                p[16] = UInt8(truncatingIfNeeded: sks >> 8)
                p[17] = UInt8(truncatingIfNeeded: sks)
                s.count = 18
            }
        }
        return s
    }

    public func response(descriptor: Bool) -> SCSIResponse {
        SCSIResponse(status: status, sense: sense(descriptor: descriptor))
    }
}

extension SenseBytes {
    /// The sense key of encoded sense data (fixed or descriptor).
    public var senseKey: UInt8 {
        withBytes { p in
            guard p.count >= 3 else { return 0 }
            return (p[0] & 0x7F) >= 0x72 ? p[1] & 0x0F : p[2] & 0x0F
        }
    }

    /// ASC and ASCQ of encoded sense data (fixed or descriptor).
    public var ascq: (UInt8, UInt8) {
        withBytes { p in
            if p.count >= 4 && (p[0] & 0x7F) >= 0x72 { return (p[2], p[3]) }
            guard p.count >= 14 else { return (0, 0) }
            return (p[12], p[13])
        }
    }
}
