import CairnBlock
import CairnIO
import CairnISCSI
import CairnSCSI
import Glibc
import Logging
import Testing

/// Not a test: with CAIRN_ISCSI_SERVE=<port> set, serves a 64 MiB memory LU on 127.0.0.1:<port>
/// for CAIRN_ISCSI_SERVE_SECONDS (default 600) so real initiators (iscsi-ls, iscsi-inq,
/// iscsi-test-cu) can be pointed at it. Optional CAIRN_ISCSI_CHAP=user:secret,
/// CAIRN_ISCSI_MUTUAL_CHAP=user:secret, CAIRN_ISCSI_SERVE2=<second portal port>.
@Test(.enabled(if: getenv("CAIRN_ISCSI_SERVE") != nil))
func serveForManualTesting() async throws {
    let port = UInt16(String(cString: getenv("CAIRN_ISCSI_SERVE"))) ?? 3260
    let seconds = getenv("CAIRN_ISCSI_SERVE_SECONDS").flatMap { UInt64(String(cString: $0)) } ?? 600
    let loop = try EventLoop(name: "iscsi-serve")
    loop.start()
    var logger = Logger(label: "iscsi-serve")
    logger.logLevel = .notice
    let store = MemoryBlockStore(blockCount: 131_072)
    let target = SCSITarget(loop: loop, identity: LogicalUnitIdentity(volumeName: "manual", targetName: "iqn.2026-11.io.cairn:manual"),
                            luns: [0: store], logger: logger)
    var config = ISCSITargetConfig(targetName: "iqn.2026-11.io.cairn:manual", portals: [ISCSIPortalAddress(host: "127.0.0.1", port: port)])
    if let p2 = getenv("CAIRN_ISCSI_SERVE2").flatMap({ UInt16(String(cString: $0)) }) {
        config.portals.append(ISCSIPortalAddress(host: "127.0.0.1", port: p2))  // a second portal, same group
    }
    if let c = getenv("CAIRN_ISCSI_CHAP") {
        let parts = String(cString: c).split(separator: ":", maxSplits: 1).map(String.init)
        if parts.count == 2 { config.chap = CHAPCredentials(user: parts[0], secret: parts[1]) }
    }
    if let c = getenv("CAIRN_ISCSI_MUTUAL_CHAP") {
        let parts = String(cString: c).split(separator: ":", maxSplits: 1).map(String.init)
        if parts.count == 2 { config.mutualChap = CHAPCredentials(user: parts[0], secret: parts[1]) }
    }
    let server = ISCSIServer(loop: loop, config: config, target: target, logger: logger)
    let ports = try await server.start()
    print("serving iqn.2026-11.io.cairn:manual on 127.0.0.1 ports \(ports)")
    try await Task.sleep(nanoseconds: seconds * 1_000_000_000)
    await server.shutdown()
    loop.stopAndJoin()
}
