/// iSCSI opcodes (RFC 7143 §11.2.1.2). Initiator opcodes are 0x00-0x1f, target opcodes 0x20-0x3f.
public enum ISCSIOpcode: UInt8, Sendable {
    case nopOut = 0x00
    case scsiCommand = 0x01
    case taskManagementRequest = 0x02
    case loginRequest = 0x03
    case textRequest = 0x04
    case dataOut = 0x05
    case logoutRequest = 0x06
    case snackRequest = 0x10
    case nopIn = 0x20
    case scsiResponse = 0x21
    case taskManagementResponse = 0x22
    case loginResponse = 0x23
    case textResponse = 0x24
    case dataIn = 0x25
    case logoutResponse = 0x26
    case r2t = 0x31
    case asyncMessage = 0x32
    case reject = 0x3f
}

/// The 48-byte Basic Header Segment, stored inline (no allocation) and accessed big-endian.
/// Every accessor is bounds-safe by construction: offsets are constants below 48.
public struct BasicHeaderSegment: Sendable, Equatable {
    public static let size = 48
    public var raw: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)

    public init() {}

    /// Copies 48 bytes from `p` (the caller guarantees they are there).
    public init(_ p: UnsafeRawPointer) {
        withUnsafeMutableBytes(of: &raw) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p, count: 48)) }
    }

    /// From the first 48 bytes of `bytes` (zero-filled when shorter).
    public init(bytes: [UInt8]) {
        withUnsafeMutableBytes(of: &raw) { dst in
            for i in 0..<min(48, bytes.count) { dst[i] = bytes[i] }
        }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.raw.0 == b.raw.0 && a.raw.1 == b.raw.1 && a.raw.2 == b.raw.2
            && a.raw.3 == b.raw.3 && a.raw.4 == b.raw.4 && a.raw.5 == b.raw.5
    }

    public var bytes: [UInt8] { withUnsafeBytes(of: raw) { Array($0) } }

    public func write(to p: UnsafeMutableRawPointer) {
        withUnsafeBytes(of: raw) { p.copyMemory(from: $0.baseAddress!, byteCount: 48) }
    }

    @inline(__always) public subscript(i: Int) -> UInt8 {
        get { withUnsafeBytes(of: raw) { $0[i] } }
        set { withUnsafeMutableBytes(of: &raw) { $0[i] = newValue } }
    }

    @inline(__always) public func u16(_ o: Int) -> UInt16 { UInt16(self[o]) << 8 | UInt16(self[o + 1]) }
    @inline(__always) public func u24(_ o: Int) -> UInt32 { UInt32(self[o]) << 16 | UInt32(self[o + 1]) << 8 | UInt32(self[o + 2]) }
    @inline(__always) public func u32(_ o: Int) -> UInt32 {
        withUnsafeBytes(of: raw) { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    }
    @inline(__always) public func u64(_ o: Int) -> UInt64 {
        withUnsafeBytes(of: raw) { UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
    }
    @inline(__always) public mutating func setU16(_ o: Int, _ v: UInt16) { self[o] = UInt8(v >> 8); self[o + 1] = UInt8(truncatingIfNeeded: v) }
    @inline(__always) public mutating func setU24(_ o: Int, _ v: UInt32) {
        self[o] = UInt8(truncatingIfNeeded: v >> 16); self[o + 1] = UInt8(truncatingIfNeeded: v >> 8); self[o + 2] = UInt8(truncatingIfNeeded: v)
    }
    @inline(__always) public mutating func setU32(_ o: Int, _ v: UInt32) {
        withUnsafeMutableBytes(of: &raw) { $0.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self) }
    }
    @inline(__always) public mutating func setU64(_ o: Int, _ v: UInt64) {
        withUnsafeMutableBytes(of: &raw) { $0.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt64.self) }
    }

    // MARK: Fields common to every PDU

    public var opcodeRaw: UInt8 { self[0] & 0x3f }
    public var opcode: ISCSIOpcode? { ISCSIOpcode(rawValue: opcodeRaw) }
    /// The I bit: an immediate command (bypasses the CmdSN window).
    public var immediate: Bool { self[0] & 0x40 != 0 }
    /// The F bit (byte 1, bit 7): final PDU of a sequence.
    public var final: Bool { self[1] & 0x80 != 0 }
    /// TotalAHSLength in bytes (the field counts 4-byte words).
    public var ahsLength: Int { Int(self[4]) * 4 }
    public var dataSegmentLength: Int { Int(u24(5)) }
    public var lun: UInt64 { u64(8) }
    public var initiatorTaskTag: UInt32 { u32(16) }

    public mutating func setOpcode(_ op: ISCSIOpcode, immediate: Bool = false) {
        self[0] = op.rawValue | (immediate ? 0x40 : 0)
    }
    public mutating func setDataSegmentLength(_ n: Int) { setU24(5, UInt32(truncatingIfNeeded: n)) }
}

/// Serial number arithmetic (RFC 1982, 32 bits) for CmdSN/StatSN/DataSN comparisons.
@inline(__always) func snLess(_ a: UInt32, _ b: UInt32) -> Bool {
    a != b && (b &- a) < 0x8000_0000
}
@inline(__always) func snLessOrEqual(_ a: UInt32, _ b: UInt32) -> Bool { a == b || snLess(a, b) }

/// Length of a data segment on the wire, padded to 4 bytes.
@inline(__always) func padded4(_ n: Int) -> Int { (n &+ 3) & ~3 }
