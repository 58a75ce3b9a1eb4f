import CairnIO

/// The I_T nexus a command arrived on: who sent it (initiator port) through which target port.
/// Reservations, unit attentions and ownership are kept per nexus.
public struct ITNexus: Hashable, Sendable, CustomStringConvertible {
    /// The iSCSI initiator name (iqn...).
    public let initiatorName: String
    /// The session's ISID (48 bits).
    public let isid: UInt64
    /// The target portal group tag the session logged in through (relative target port).
    public let portalGroupTag: UInt16

    public init(initiatorName: String, isid: UInt64, portalGroupTag: UInt16) {
        self.initiatorName = initiatorName
        self.isid = isid
        self.portalGroupTag = portalGroupTag
    }

    /// SCSI initiator port name for iSCSI: "<name>,i,0x<isid>".
    public var initiatorPortName: String {
        initiatorName + ",i,0x" + String(isid, radix: 16).leftPadded(to: 12)
    }

    public var description: String { initiatorPortName + "@tpg\(portalGroupTag)" }
}

extension String {
    func leftPadded(to n: Int, with c: Character = "0") -> String {
        count >= n ? self : String(repeating: c, count: n - count) + self
    }
}

/// A command descriptor block, up to 16 bytes, stored inline (no allocation per command).
public struct CDB: Sendable {
    public var bytes: (UInt64, UInt64) = (0, 0)
    public var length: Int = 0

    public init() {}

    public init(_ p: UnsafeRawPointer, count: Int) {
        length = min(count, 16)
        withUnsafeMutableBytes(of: &bytes) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: p, count: length))
        }
    }

    public init(_ array: [UInt8]) {
        self.init()
        length = min(array.count, 16)
        withUnsafeMutableBytes(of: &bytes) { dst in
            for i in 0..<length { dst[i] = array[i] }
        }
    }

    @inline(__always)
    public subscript(i: Int) -> UInt8 {
        withUnsafeBytes(of: bytes) { $0[i] }
    }

    public var opcode: UInt8 { self[0] }

    /// Big-endian field of `n` bytes (1...8) at `offset`.
    @inline(__always)
    public func be(_ offset: Int, _ n: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<n { v = (v << 8) | UInt64(self[offset + i]) }
        return v
    }
}

/// SAM task attribute.
public enum TaskAttribute: UInt8, Sendable {
    case untagged = 0, simple = 1, ordered = 2, headOfQueue = 3, aca = 4
}

/// One SCSI command as the transport hands it to the target.
public struct SCSICommand: Sendable {
    public var lun: UInt64
    public var cdb: CDB
    public var nexus: ITNexus
    public var taskTag: UInt32
    public var attribute: TaskAttribute
    /// Data the initiator sent (write direction), gathered in full. Owned by the caller, which
    /// returns it to the pool after `execute` returns.
    public var dataOut: IOBuffer?
    /// Bytes of `dataOut` that hold data (it may be less than its capacity).
    public var dataOutLength: Int
    /// Expected Data Transfer Length for the read direction (bytes the initiator can take).
    public var expectedDataInLength: Int

    public init(lun: UInt64, cdb: CDB, nexus: ITNexus, taskTag: UInt32, attribute: TaskAttribute = .simple,
                dataOut: IOBuffer? = nil, dataOutLength: Int = 0, expectedDataInLength: Int = 0) {
        self.lun = lun
        self.cdb = cdb
        self.nexus = nexus
        self.taskTag = taskTag
        self.attribute = attribute
        self.dataOut = dataOut
        self.dataOutLength = dataOutLength
        self.expectedDataInLength = expectedDataInLength
    }
}

public enum SCSIStatus: UInt8, Sendable {
    case good = 0x00
    case checkCondition = 0x02
    case conditionMet = 0x04
    case busy = 0x08
    case reservationConflict = 0x18
    case taskSetFull = 0x28
    case acaActive = 0x30
    case taskAborted = 0x40
}

/// The answer to a command. `dataIn` (read direction) comes from the loop's buffer pool and the
/// transport gives it back once sent. `dataInLength` is what the command produced; the transport
/// sends at most the expected length and reports the difference as a residual.
public struct SCSIResponse: Sendable {
    public var status: SCSIStatus
    /// Sense bytes for CHECK CONDITION (fixed or descriptor format, already encoded).
    public var sense: SenseBytes
    public var dataIn: IOBuffer?
    public var dataInLength: Int
    /// Bytes of data-out the command called for according to its CDB (transfer length x block
    /// size, or the parameter list length), or nil for commands without data-out. The transport
    /// compares it with the Expected Data Transfer Length for the write-direction residual
    /// (overflow when the EDTL was smaller, underflow when it was larger).
    public var expectedDataOutLength: Int? = nil

    public init(status: SCSIStatus = .good, sense: SenseBytes = SenseBytes(), dataIn: IOBuffer? = nil, dataInLength: Int = 0) {
        self.status = status
        self.sense = sense
        self.dataIn = dataIn
        self.dataInLength = dataInLength
    }

    public static let good = SCSIResponse()
}

/// Encoded sense data, inline (up to 32 bytes, enough for fixed format and the descriptor
/// formats used here), so a CHECK CONDITION allocates nothing.
public struct SenseBytes: Sendable {
    public var storage: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    public var count: Int = 0

    public init() {}

    public init(_ array: [UInt8]) {
        count = min(array.count, 32)
        withUnsafeMutableBytes(of: &storage) { dst in
            for i in 0..<count { dst[i] = array[i] }
        }
    }

    public var array: [UInt8] {
        withUnsafeBytes(of: storage) { Array($0.prefix(count)) }
    }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: storage) { body(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
    }
}

/// Task management functions (SAM-5), as the transport asks for them.
public enum TaskManagementFunction: Sendable, Equatable {
    case abortTask(tag: UInt32)
    case abortTaskSet
    case clearTaskSet
    case clearACA
    case logicalUnitReset
    case targetWarmReset
    case targetColdReset
}

public enum TaskManagementResponse: UInt8, Sendable {
    case functionComplete = 0
    case taskDoesNotExist = 1
    case lunDoesNotExist = 2
    case taskStillAllegiant = 3
    case reassignmentNotSupported = 4
    case notSupported = 5
    case authorizationFailed = 6
    case functionRejected = 255
}
