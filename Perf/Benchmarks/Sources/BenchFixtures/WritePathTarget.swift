import CairnBlock
import CairnIO
import CairnISCSI
import CairnSCSI
import Logging

/// A loop, a SCSITarget over a 1 MiB MemoryBlockStore (512-byte blocks), an ISCSIServer on
/// 127.0.0.1:0, and a logged-in BenchInitiator.
public struct WritePathTarget: Sendable {
    static let targetName = "iqn.2026-11.io.cairn:bench"
    public let loop: BenchLoop
    let server: ISCSIServer
    let initiator: BenchInitiator

    public static func start() async throws -> WritePathTarget {
        let bench = try BenchLoop(name: "bench-iscsi")
        let loop = bench.loop
        var logger = Logger(label: "cairn.bench")
        logger.logLevel = .critical
        let target = SCSITarget(loop: loop, identity: LogicalUnitIdentity(volumeName: "bench", targetName: targetName),
                                luns: [0: MemoryBlockStore(blockCount: 2048)], logger: logger)
        var config = ISCSITargetConfig(targetName: targetName, portals: [ISCSIPortalAddress(host: "127.0.0.1", port: 0)])
        config.nopInInterval = 0  // no NOP-In pings in the middle of a measurement
        let server = ISCSIServer(loop: loop, config: config, target: target, logger: logger)
        let port = try await server.start()[0]
        let initiator = try await loop.run {
            let i = try BenchInitiator(loop: loop, port: port)
            try await i.login(targetName: targetName)
            return i
        }
        return WritePathTarget(loop: bench, server: server, initiator: initiator)
    }

    /// One WRITE(10) of 4 KiB at `lba`, from the initiator's side: call it on the loop (`pinned`).
    public func write4K(lba: UInt32) async throws {
        try await initiator.write4K(lba: lba)
    }

    public func stop() async {
        let i = initiator
        _ = try? await loop.loop.run { i.close() }
        await server.shutdown()
        loop.stop()
    }
}
