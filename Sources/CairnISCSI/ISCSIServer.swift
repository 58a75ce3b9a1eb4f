import CairnIO
import CairnSCSI
import Logging

/// The target's configuration, as the `cairn controller` command line gives it.
public struct ISCSITargetConfig: Sendable {
    public var targetName: String
    /// Each portal gets its own listener; all are in portal group 1.
    public var portals: [ISCSIPortalAddress]
    /// Credentials the initiator must present (one-way CHAP).
    public var chap: CHAPCredentials?
    /// The target's credentials for mutual CHAP.
    public var mutualChap: CHAPCredentials?
    /// Ping an idle initiator after this long (ns); 0 disables.
    public var nopInInterval: UInt64 = 5_000_000_000
    /// Drop the connection when a ping goes unanswered this long (ns).
    public var nopInTimeout: UInt64 = 15_000_000_000
    /// On shutdown, how long an initiator asked to log out (Async Message) gets to do so (ns).
    public var logoutWait: UInt64 = 1_000_000_000
    /// Close a connection that has not completed login by then (ns).
    public var loginTimeout: UInt64 = 30_000_000_000
    public var targetAlias: String?
    public var portalGroupTag: UInt16 = 1

    public init(targetName: String, portals: [ISCSIPortalAddress]) {
        self.targetName = targetName
        self.portals = portals
    }
}

/// The iSCSI target: one listener per portal, one actor per connection (and session), a registry
/// of sessions for TSIH assignment, reinstatement and resets across sessions. Pinned to the loop.
public actor ISCSIServer {
    public nonisolated let loop: EventLoop
    public nonisolated let config: ISCSITargetConfig
    let target: SCSITarget
    let logger: Logger
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }

    struct SessionKey: Hashable { let initiatorName: String; let isid: UInt64 }

    var listeners: [TCPListener] = []
    var boundPortals: [ISCSIPortalAddress] = []
    var connections: [ObjectIdentifier: ISCSIConnection] = [:]
    var sessions: [SessionKey: ISCSIConnection] = [:]
    var tsihs: [UInt16: ObjectIdentifier] = [:]
    var nextTSIH: UInt16 = 1
    var stopping = false

    public init(loop: EventLoop, config: ISCSITargetConfig, target: SCSITarget, logger: Logger) {
        self.loop = loop
        self.config = config
        self.target = target
        self.logger = logger
    }

    /// Binds every portal (port 0 picks one), starts accepting, and returns the bound ports.
    public func start() async throws -> [UInt16] {
        var ports: [UInt16] = []
        for p in config.portals {
            let l = try TCPListener(loop: loop, host: p.host, port: p.port)
            listeners.append(l)
            ports.append(l.port)
            boundPortals.append(ISCSIPortalAddress(host: p.host, port: l.port))
            logger.info("iSCSI portal listening on \(ISCSIPortalAddress(host: p.host, port: l.port).textAddress) for \(config.targetName)")
        }
        for l in listeners {
            loop.spawn { await self.acceptLoop(l) }
        }
        return ports
    }

    /// Stops accepting, lets commands in flight answer, then closes every session.
    public func shutdown() async {
        stopping = true
        for l in listeners { l.close() }
        listeners = []
        let all = Array(connections.values)
        await withTaskGroup(of: Void.self) { group in
            for c in all { group.addTask { await c.shutdownGracefully() } }
        }
    }

    func acceptLoop(_ listener: TCPListener) async {
        while !stopping {
            let socket: TCPConnection
            do {
                socket = try await listener.accept()
            } catch {
                if !stopping { logger.error("accept failed: \(error)") }
                return
            }
            if stopping { socket.close(); return }
            var info = LoginTargetInfo(targetName: config.targetName)
            info.targetAlias = config.targetAlias
            info.portalGroupTag = config.portalGroupTag
            info.portals = boundPortals
            info.chap = config.chap
            info.mutualChap = config.mutualChap
            let c = ISCSIConnection(server: self, socket: socket, config: config, target: target, info: info, logger: logger)
            connections[ObjectIdentifier(c)] = c
            loop.spawn { await c.run() }
        }
    }

    func allocateTSIH() -> UInt16 {
        var t = nextTSIH
        while t == 0 || tsihs[t] != nil { t &+= 1 }
        nextTSIH = t &+ 1
        return t
    }

    func sessionExists(tsih: UInt16) -> Bool { tsihs[tsih] != nil }

    /// Registers a new normal session and returns its TSIH. An existing session of the same
    /// initiator and ISID is reinstated (§6.3.5): it is closed, its tasks aborted, first.
    func registerSession(_ c: ISCSIConnection, isid: UInt64, initiatorName: String) async -> UInt16 {
        let key = SessionKey(initiatorName: initiatorName, isid: isid)
        if let old = sessions[key], old !== c {
            logger.notice("session reinstatement for \(initiatorName) ISID 0x\(String(isid, radix: 16)): closing the old session")
            sessions[key] = nil
            await old.terminate()
        }
        let t = allocateTSIH()
        tsihs[t] = ObjectIdentifier(c)
        sessions[key] = c
        return t
    }

    func sessionEnded(_ c: ISCSIConnection, isid: UInt64, initiatorName: String, tsih: UInt16) {
        let key = SessionKey(initiatorName: initiatorName, isid: isid)
        if sessions[key] === c { sessions[key] = nil }
        if tsihs[tsih] == ObjectIdentifier(c) { tsihs[tsih] = nil }
        connections[ObjectIdentifier(c)] = nil
    }

    func connectionEnded(_ c: ISCSIConnection) {
        for (t, id) in tsihs where id == ObjectIdentifier(c) { tsihs[t] = nil }
        connections[ObjectIdentifier(c)] = nil
    }

    /// A LU reset or target warm reset in one session aborts the tasks of the others.
    func abortTasks(lun: UInt64?, except: ISCSIConnection) async {
        for c in connections.values where c !== except {
            await c.abortForReset(lun: lun)
        }
    }

    /// A target cold reset closes every other connection (and with it every session).
    func terminateAll(except: ISCSIConnection) async {
        for c in Array(connections.values) where c !== except {
            await c.terminate()
        }
    }

    /// Test hook: how many connections are open.
    public var connectionCount: Int { connections.count }
    /// Sessions logged in (normal sessions, past their login).
    public var sessionCount: Int { sessions.count }
}
