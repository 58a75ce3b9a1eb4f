import CairnBlock
import CairnIO
@testable import CairnISCSI
import CairnSCSI
import Glibc
import Logging

/// A minimal initiator for in-process tests: whole PDUs over loopback TCP, run on the loop.
/// Used from one task at a time on the loop thread, hence `@unchecked Sendable`.
final class TestInitiator: @unchecked Sendable {
    let conn: TCPConnection
    var pending: [UInt8] = []
    var headerDigest = false
    var dataDigest = false
    var cmdSN: UInt32 = 1
    var expStatSN: UInt32 = 0
    var nextITT: UInt32 = 1
    var tsih: UInt16 = 0
    var maxCmdSN: UInt32 = 0
    let isid: UInt64

    init(loop: EventLoop, port: UInt16, isid: UInt64 = 0x23d0_0000_0001) throws {
        conn = try tcpConnect(loop: loop, host: "127.0.0.1", port: port)
        self.isid = isid
    }

    func send(_ pdu: ISCSIPDU) async throws {
        let bytes = pdu.encode(headerDigest: headerDigest, dataDigest: dataDigest)
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        defer { p.deallocate() }
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        try await conn.write(from: p, count: bytes.count)
    }

    /// Next PDU from the target; throws `.closed` at EOF.
    func receive() async throws -> ISCSIPDU {
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 8)
        defer { chunk.deallocate() }
        while true {
            let r = pending.withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: headerDigest, dataDigest: dataDigest, maxDataSegmentLength: 1 << 24) }
            switch r {
            case .success(let (pdu, used)):
                pending.removeFirst(used)
                if pdu.bhs.opcode != .r2t && pdu.bhs.opcode != .dataIn || pdu.bhs[1] & 0x01 != 0 {
                    if pdu.bhs.opcode != .nopIn || pdu.bhs.initiatorTaskTag != 0xffff_ffff { expStatSN = pdu.bhs.u32(24) &+ 1 }
                }
                maxCmdSN = pdu.bhs.u32(32)
                return pdu
            case .failure(.needMore):
                let n = try await conn.read(into: chunk, count: 65536)
                if n == 0 { throw IOError.closed }
                pending += UnsafeRawBufferPointer(start: chunk, count: n)
            case .failure(let e):
                throw e
            }
        }
    }

    func itt() -> UInt32 { defer { nextITT &+= 1 }; return nextITT }

    /// Logs in (security stage with AuthMethod=None, then operational) and returns the final response.
    func login(target: String? = targetIQN, discovery: Bool = false, extra: [(String, String)] = []) async throws -> ISCSIPDU {
        var k: [(key: String, value: String)] = [("InitiatorName", initiatorIQN)]
        if let target { k.append(("TargetName", target)) }
        k.append(("SessionType", discovery ? "Discovery" : "Normal"))
        k.append(("AuthMethod", "None"))
        var h = loginRequest(csg: 0, nsg: 1, isid: isid)
        h.setU32(24, cmdSN)
        try await send(ISCSIPDU(bhs: h, data: TextKeys(k).encode()))
        let r1 = try await receive()
        guard r1.bhs[36] == 0 else { return r1 }
        var h2 = loginRequest(csg: 1, nsg: 3, isid: isid)
        h2.setU32(24, cmdSN)
        h2.setU32(28, expStatSN)
        try await send(ISCSIPDU(bhs: h2, data: TextKeys(extra).encode()))
        let r2 = try await receive()
        tsih = r2.bhs.tsih
        if let keys = try? TextKeys.parse(r2.data).get() {
            headerDigest = keys["HeaderDigest"] == "CRC32C"
            dataDigest = keys["DataDigest"] == "CRC32C"
        }
        return r2
    }

    func command(cdb: [UInt8], read: Int = 0, write: Int = 0, immediateData: [UInt8] = [], final: Bool = true,
                 itt: UInt32? = nil, cmdSN explicitSN: UInt32? = nil, lun: UInt64 = 0) -> ISCSIPDU {
        var h = BasicHeaderSegment()
        h.setOpcode(.scsiCommand)
        h[1] = (final ? 0x80 : 0) | (read > 0 ? 0x40 : 0) | (write > 0 ? 0x20 : 0) | 0x01
        h.setU64(8, lun)
        h.setU32(16, itt ?? self.itt())
        h.setU32(20, UInt32(max(read, write)))
        h.setU32(24, explicitSN ?? cmdSN)
        if explicitSN == nil { cmdSN &+= 1 }
        h.setU32(28, expStatSN)
        for (i, b) in cdb.prefix(16).enumerated() { h[32 + i] = b }
        return ISCSIPDU(bhs: h, data: immediateData)
    }

    func dataOut(itt: UInt32, ttt: UInt32, dataSN: UInt32, offset: Int, data: [UInt8], final: Bool = true) -> ISCSIPDU {
        var h = BasicHeaderSegment()
        h.setOpcode(.dataOut)
        h[1] = final ? 0x80 : 0
        h.setU32(16, itt)
        h.setU32(20, ttt)
        h.setU32(28, expStatSN)
        h.setU32(36, dataSN)
        h.setU32(40, UInt32(offset))
        return ISCSIPDU(bhs: h, data: data)
    }

    func nopOut(itt: UInt32? = nil, ttt: UInt32 = 0xffff_ffff, data: [UInt8] = [], immediate: Bool = true) -> ISCSIPDU {
        var h = BasicHeaderSegment()
        h.setOpcode(.nopOut, immediate: immediate)
        h[1] = 0x80
        h.setU32(16, itt ?? self.itt())
        h.setU32(20, ttt)
        h.setU32(24, cmdSN)
        if !immediate { cmdSN &+= 1 }
        h.setU32(28, expStatSN)
        return ISCSIPDU(bhs: h, data: data)
    }

    func taskManagement(function: UInt8, referencedTag: UInt32 = 0xffff_ffff, refCmdSN: UInt32 = 0, lun: UInt64 = 0) -> ISCSIPDU {
        var h = BasicHeaderSegment()
        h.setOpcode(.taskManagementRequest, immediate: true)
        h[1] = 0x80 | function
        h.setU64(8, lun)
        h.setU32(16, itt())
        h.setU32(20, referencedTag)
        h.setU32(24, cmdSN)
        h.setU32(28, expStatSN)
        h.setU32(32, refCmdSN)
        return ISCSIPDU(bhs: h)
    }

    func text(_ keys: [(String, String)]) -> ISCSIPDU {
        var h = BasicHeaderSegment()
        h.setOpcode(.textRequest, immediate: true)
        h[1] = 0x80
        h.setU32(16, itt())
        h.setU32(20, 0xffff_ffff)
        h.setU32(24, cmdSN)
        h.setU32(28, expStatSN)
        return ISCSIPDU(bhs: h, data: TextKeys(keys.map { (key: $0.0, value: $0.1) }).encode())
    }

    func logout(reason: UInt8 = 0) -> ISCSIPDU {
        var h = BasicHeaderSegment()
        h.setOpcode(.logoutRequest, immediate: true)
        h[1] = 0x80 | reason
        h.setU32(16, itt())
        h.setU32(24, cmdSN)
        h.setU32(28, expStatSN)
        return ISCSIPDU(bhs: h)
    }

    func close() { conn.close() }
}

/// A loop, a SCSI target over a MemoryBlockStore, and a server on 127.0.0.1:0.
final class TestTarget: @unchecked Sendable {
    let loop: EventLoop
    let server: ISCSIServer
    let port: UInt16

    init(configure: (inout ISCSITargetConfig) -> Void = { _ in }) async throws {
        loop = try EventLoop(name: "iscsi-test")
        loop.start()
        var logger = Logger(label: "iscsi-test")
        logger.logLevel = getenv("CAIRN_TEST_LOG") != nil ? .debug : .critical
        let store = MemoryBlockStore(blockCount: 2048)
        let target = SCSITarget(loop: loop, identity: LogicalUnitIdentity(volumeName: "vol", targetName: targetIQN),
                                luns: [0: store], logger: logger)
        var config = ISCSITargetConfig(targetName: targetIQN, portals: [ISCSIPortalAddress(host: "127.0.0.1", port: 0)])
        configure(&config)
        server = ISCSIServer(loop: loop, config: config, target: target, logger: logger)
        port = try await server.start()[0]
    }

    /// Runs `body` on the loop with a fresh initiator, and closes it after.
    func withInitiator<T: Sendable>(isid: UInt64 = 0x23d0_0000_0001, _ body: @escaping @Sendable (TestInitiator) async throws -> T) async throws -> T {
        let port = self.port
        let loop = self.loop
        return try await loop.run {
            let i = try TestInitiator(loop: loop, port: port, isid: isid)
            do {
                let r = try await body(i)
                i.close()
                return r
            } catch {
                i.close()
                throw error
            }
        }
    }

    func stop() async {
        await server.shutdown()
        loop.stopAndJoin()
    }
}
