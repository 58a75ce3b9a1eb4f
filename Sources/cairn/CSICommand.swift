import ArgumentParser
import CairnCSI
import Foundation
import Logging

struct CSICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csi",
        abstract: "Serve the CSI plugin (driver cairn.csi.io): Identity, Controller (volumes and snapshots through the apiserver), Node (attach, format, mount).",
        discussion: """
            Kubernetes runs the controller mode in one Deployment beside the CSI sidecars, and the node mode
            on every node (deploy/). The node mode attaches with open-iscsi (`--attach iscsiadm`, the kernel's
            initiator), or with qemu-storage-daemon, FUSE and a loop device (`--attach userspace`) where the
            kernel has none.
            """
    )

    @Option(help: "The socket to serve on: unix:///PATH.")
    var endpoint: String = "unix:///csi/csi.sock"

    @Option(help: "Services to serve: controller, node or all (Identity is always served).")
    var mode: String = "all"

    @Option(help: "The apiserver's URL (needed by the controller; the node asks it for a volume's portal when the volume context lacks one).")
    var apiserver: String?

    @Option(help: "File holding the apiserver's bearer token (default: $CAIRN_TOKEN_FILE, or the token in $CAIRN_TOKEN).")
    var tokenFile: String?

    @Option(help: "This node's id (default: the host name).")
    var nodeID: String?

    @Option(help: "How the node attaches volumes: iscsiadm or userspace.")
    var attach: String = "iscsiadm"

    @Option(help: "Where the node keeps what it staged (records, FUSE exports).")
    var stateDir: String = "/var/lib/cairn-csi"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard CSIPlugin.socketPath(endpoint: endpoint) != nil else { throw ValidationError("--endpoint must be unix:///ABSOLUTE/PATH") }
        guard CSIPlugin.Mode(rawValue: mode) != nil else { throw ValidationError("--mode must be controller, node or all") }
        guard NodeOptions.Attach(rawValue: attach) != nil else { throw ValidationError("--attach must be iscsiadm or userspace") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if mode != "node" && apiserver == nil { throw ValidationError("--mode \(mode) needs --apiserver") }
    }

    func run() async throws {
        _ = bootstrapLogging(logLevel)
        let logger = Logger(label: "cairn.csi")
        let token = try ClientOptions.token(file: tokenFile)
        let node = NodeOptions(nodeID: nodeID ?? ProcessInfo.processInfo.hostName, attach: NodeOptions.Attach(rawValue: attach)!,
                               stateDir: stateDir.hasPrefix("/") ? stateDir : FileManager.default.currentDirectoryPath + "/" + stateDir)
        do {
            try await CSIPlugin.run(.init(socketPath: CSIPlugin.socketPath(endpoint: endpoint)!, mode: CSIPlugin.Mode(rawValue: mode)!,
                                          apiserver: apiserver, token: token, node: node), logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
    }
}
