import CairnIO
import CairnISCSI
import Glibc

public struct InitiatorError: Error, CustomStringConvertible {
    public let description: String
}

/// The initiator end of the benchmark: logs in with whole PDUs (setup: allocation is fine
/// there), then sends every WRITE(10) from one preformatted buffer and reads the 48-byte SCSI
/// Response into another, so nothing on this side allocates per I/O.
/// Used only on the loop thread (TCPConnection's rule), which is why it may be `@unchecked Sendable`.
final class BenchInitiator: @unchecked Sendable {
    static let initiatorName = "iqn.2026-11.io.cairn:bench-initiator"
    static let isid: UInt64 = 0x23d0_0000_0001
    let conn: TCPConnection
    /// A SCSI Command header and its 4 KiB of immediate data, back to back; also the login scratch.
    private let command: UnsafeMutableRawPointer
    private let response: UnsafeMutableRawPointer
    private static let bufferSize = 48 + 8192
    private var cmdSN: UInt32 = 1
    private var expStatSN: UInt32 = 0
    private var itt: UInt32 = 0

    init(loop: EventLoop, port: UInt16) throws {
        conn = try tcpConnect(loop: loop, host: "127.0.0.1", port: port)
        command = .allocate(byteCount: Self.bufferSize, alignment: 4096)
        response = .allocate(byteCount: Self.bufferSize, alignment: 4096)
    }

    deinit {
        command.deallocate()
        response.deallocate()
    }

    func close() { conn.close() }

    private func nextITT() -> UInt32 {
        itt = itt &+ 1 == 0xffff_ffff ? 1 : itt &+ 1
        return itt
    }

    /// Security stage (AuthMethod=None), then operational stage with the defaults
    /// (ImmediateData=Yes, FirstBurstLength 64 KiB: a 4 KiB write needs no R2T).
    func login(targetName: String) async throws {
        try await loginStep(csg: 0, nsg: 1, keys: [("InitiatorName", Self.initiatorName), ("TargetName", targetName),
                                                   ("SessionType", "Normal"), ("AuthMethod", "None")])
        try await loginStep(csg: 1, nsg: 3, keys: [])
        prepareWrite()
    }

    private func loginStep(csg: UInt8, nsg: UInt8, keys: [(key: String, value: String)]) async throws {
        var h = BasicHeaderSegment()
        h.setOpcode(.loginRequest, immediate: true)
        h[1] = 0x80 | (csg << 2) | nsg
        h.setU64(8, Self.isid << 16)
        h.setU32(16, nextITT())
        h.setU32(24, cmdSN)
        h.setU32(28, expStatSN)
        let bytes = ISCSIPDU(bhs: h, data: TextKeys(keys).encode()).encode()
        guard bytes.count <= Self.bufferSize else { throw InitiatorError(description: "login PDU too big") }
        bytes.withUnsafeBytes { command.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        try await conn.write(from: command, count: bytes.count)
        try await conn.readExactly(into: response, count: 48)
        let r = BasicHeaderSegment(response)
        let dataLength = (r.dataSegmentLength + 3) & ~3
        guard dataLength <= Self.bufferSize - 48 else { throw InitiatorError(description: "login response too big") }
        if dataLength > 0 { try await conn.readExactly(into: response + 48, count: dataLength) }
        guard r.opcode == .loginResponse, r[36] == 0 else {
            throw InitiatorError(description: "login refused: status 0x\(String(r[36], radix: 16))\(String(r[37], radix: 16))")
        }
        expStatSN = r.u32(24) &+ 1
    }

    /// WRITE(10) of 8 blocks, 4 KiB of immediate data, F bit: complete in one PDU.
    private func prepareWrite() {
        var h = BasicHeaderSegment()
        h.setOpcode(.scsiCommand)
        h[1] = 0x80 | 0x20 | 0x01  // F, W, SIMPLE
        h.setDataSegmentLength(4096)
        h.setU32(20, 4096)         // EDTL
        h[32] = 0x2a               // WRITE(10)
        h[40] = 8                  // transfer length: 8 blocks
        h.write(to: command)
        for i in 0..<4096 { (command + 48).storeBytes(of: UInt8(truncatingIfNeeded: i &* 7), toByteOffset: i, as: UInt8.self) }
    }

    /// One write at `lba`, answered GOOD with a SCSI Response (no data segment).
    func write4K(lba: UInt32) async throws {
        let tag = nextITT()
        command.storeBytes(of: tag.bigEndian, toByteOffset: 16, as: UInt32.self)
        command.storeBytes(of: cmdSN.bigEndian, toByteOffset: 24, as: UInt32.self)
        command.storeBytes(of: expStatSN.bigEndian, toByteOffset: 28, as: UInt32.self)
        command.storeBytes(of: lba.bigEndian, toByteOffset: 32 + 2, as: UInt32.self)
        cmdSN &+= 1
        try await conn.write(from: command, count: 48 + 4096)
        try await conn.readExactly(into: response, count: 48)
        let r = BasicHeaderSegment(response)
        guard r.opcode == .scsiResponse, r.initiatorTaskTag == tag, r[3] == 0, r.dataSegmentLength == 0 else {
            throw InitiatorError(description: "unexpected answer: opcode 0x\(String(r.opcodeRaw, radix: 16)) status \(r[3])")
        }
        expStatSN = r.u32(24) &+ 1
    }
}
