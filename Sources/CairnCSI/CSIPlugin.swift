import CairnClient
import Foundation
import GRPCCore
import Logging
// NIO's modules stay out of this module's interface: the `cairn` executable also loads CCairn,
// whose liburing headers clash with NIO's C modules (see CairnAPI's HTTPServer.swift).
@_implementationOnly import GRPCNIOTransportHTTP2Posix

/// `cairn csi`: the CSI plugin on a unix socket, serving Identity and the Controller service
/// (over the apiserver), the Node service (attach, format, mount on this node), or both.
public enum CSIPlugin {
    public enum Mode: String, Sendable, CaseIterable {
        case controller, node, all
        var controller: Bool { self != .node }
        var node: Bool { self != .controller }
    }

    public struct Options: Sendable {
        public var socketPath: String
        public var mode: Mode
        public var apiserver: String?
        public var token: String?
        public var node: NodeOptions

        public init(socketPath: String, mode: Mode, apiserver: String?, token: String?, node: NodeOptions) {
            self.socketPath = socketPath
            self.mode = mode
            self.apiserver = apiserver
            self.token = token
            self.node = node
        }
    }

    /// The socket path of a CSI endpoint: "unix:///csi/csi.sock", "unix:/csi/csi.sock" or a path.
    public static func socketPath(endpoint: String) -> String? {
        var path = endpoint
        if path.hasPrefix("unix://") { path.removeFirst(7) } else if path.hasPrefix("unix:") { path.removeFirst(5) }
        return path.hasPrefix("/") ? path : nil
    }

    /// Serves until SIGTERM or SIGINT. Prints `cairn: csi unix://PATH` once listening.
    public static func run(_ options: Options, logger: Logger) async throws {
        let api = options.apiserver.map { JSONHTTPClient(baseURL: $0, token: options.token, timeoutSeconds: 60) }
        defer { if let api { Task { await api.shutdown() } } }
        var services: [any RegistrableRPCService] = []
        var controllerService: ControllerService?
        if options.mode.controller {
            guard let api else { throw CSIPluginError("the controller service needs --apiserver") }
            controllerService = ControllerService(api: api, logger: logger)
            services.append(controllerService!)
        }
        let controller = controllerService
        var node: NodeService?
        if options.mode.node {
            node = try NodeService(options: options.node, api: api, logger: logger)
            services.append(node!)
        }
        let probeNode = node
        // Ready: a controller reaches the apiserver; a node has its tools. A node's readiness never
        // waits on the apiserver: the liveness probe would restart the node plugin, and with it the
        // userspace attach's I/O, whenever the control plane is away.
        let probeAPI = options.mode == .controller ? api : nil
        services.append(IdentityService(servesController: options.mode.controller, ready: {
            if let probeAPI, (try? await probeAPI.send("GET", "/healthz", timeoutSeconds: 5))?.status != 200 { return false }
            if let probeNode { return probeNode.toolsMissing().isEmpty }
            return true
        }))

        // A socket file left by a plugin that died would fail the bind.
        let path = options.socketPath
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if unlink(path) != 0 && errno != ENOENT { throw CSIPluginError("cannot remove the old socket \(path): \(String(cString: strerror(errno)))") }

        let transport = HTTP2ServerTransport.Posix(address: .unixDomainSocket(path: path), transportSecurity: .plaintext)
        let server = GRPCServer(transport: transport, services: services, interceptors: [CallLogger(logger: logger)])
        let stop = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        for s in [stop, interrupt] {
            s.setEventHandler { logger.notice("stopping"); server.beginGracefulShutdown() }
            s.resume()
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                guard (try? await transport.listeningAddress) != nil else { return }
                FileHandle.standardOutput.write(Data("cairn: csi unix://\(path) (\(options.mode.rawValue))\n".utf8))
                logger.notice("CSI \(options.mode.rawValue) plugin \(IdentityService.driverName) \(IdentityService.version) on unix://\(path)")
                // Snapshots taken for clones go once the clones have served.
                while let controller, !Task.isCancelled {  // loops only in a controller
                    try? await Task.sleep(for: .seconds(60))
                    if !Task.isCancelled { await controller.sweepCloneSnapshots() }
                }
            }
            try await server.serve()
            group.cancelAll()
        }
        unlink(path)
    }
}

public struct CSIPluginError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
