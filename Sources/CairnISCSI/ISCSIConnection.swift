import CairnIO
import CairnSCSI
import Glibc
import Logging

/// Why a connection stops reading.
enum ConnectionEnd: Error {
    case closed
    case protocolViolation(String)
    case loggedOut
}

/// One iSCSI connection and its session (MaxConnections=1, so they live and die together).
/// Pinned to the event loop: the reader, the command tasks and the writer all run on the loop
/// thread, interleaving only at awaits. Each SCSI command runs on a task of its own (a pooled
/// runner), so a slow store does not hold up the next PDU, and responses may go out of order.
actor ISCSIConnection {
    nonisolated let loop: EventLoop
    nonisolated let socket: TCPConnection
    let server: ISCSIServer
    let target: SCSITarget
    let config: ISCSITargetConfig
    var logger: Logger
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }

    // Receive side: a pooled buffer that small PDUs are parsed from; big payloads bypass it.
    var rx: IOBuffer
    var rxStart = 0
    var rxEnd = 0
    let writer: PDUWriter

    // Session state.
    var info: LoginTargetInfo
    var params = SessionParameters()
    var nexus: ITNexus?
    var tsih: UInt16 = 0
    var fullFeature = false
    var statSN: UInt32 = 1
    var expCmdSN: UInt32 = 0
    var aheadCmdSNs: Set<UInt32> = []
    let window = 128
    var tasks = TaskTable()
    // Long-lived tasks instead of one Swift task per command or per flush: creating a task
    // allocates (the task, its closure, its frames' slabs); a parked one costs nothing to wake.
    // See ISCSIConnection+Runners.swift.
    var runners = RunnerPool<ISCSITask>()
    var freeTasks: [ISCSITask] = []
    var flushScheduled = false
    var flusherParked: UnsafeContinuation<Void, Never>?
    var flusherStopped = false
    var connectionID: UInt16 = 0
    var writeBytesHeld = 0
    var executing = 0
    var idleWaiters: [CheckedContinuation<Void, Never>] = []
    var ended = false
    var finished = false
    var finishWaiters: [CheckedContinuation<Void, Never>] = []
    var draining = false
    var nexusReleased = false

    // NOP-In pings of an idle initiator.
    var lastReceive: UInt64 = 0
    var pingTTT: UInt32 = 0
    var pingSentAt: UInt64 = 0
    var pingOutstanding = false

    init(server: ISCSIServer, socket: TCPConnection, config: ISCSITargetConfig, target: SCSITarget,
         info: LoginTargetInfo, logger: Logger) {
        self.server = server
        self.loop = socket.loop
        self.socket = socket
        self.config = config
        self.target = target
        self.info = info
        var l = logger
        l[metadataKey: "peer"] = "\(socket.peer)"
        self.logger = l
        // Created on the loop (by the server's accept task), so the pool may be used here.
        rx = socket.loop.buffers.take(65_536)
        writer = PDUWriter(connection: socket, pool: socket.loop.buffers)
    }

    /// Write buffers held by tasks of this connection, and the most we let the window allow:
    /// past it the window closes (MaxCmdSN = ExpCmdSN - 1) until writes complete.
    static let writeBudget = 256 << 20

    var maxCmdSN: UInt32 {
        let open = writeBytesHeld >= Self.writeBudget ? 0 : max(0, window - tasks.count)
        return expCmdSN &+ UInt32(open) &- 1
    }

    // MARK: - Lifetime

    func run() async {
        lastReceive = monotonicNanos()
        loop.spawn { await self.flushLoop() }
        // A connection that never finishes logging in must not hold its socket forever.
        let loginTimeout = config.loginTimeout
        loop.spawn { await self.enforceLoginTimeout(loginTimeout) }
        do {
            try await login()
            fullFeature = true
            if params.sessionType == .normal && config.nopInInterval > 0 {
                loop.spawn { await self.pingLoop() }
            }
            try await fullFeatureLoop()
        } catch let e as ConnectionEnd {
            switch e {
            case .closed, .loggedOut: break
            case .protocolViolation(let why): logger.warning("closing connection: \(why)")
            }
        } catch {
            logger.notice("connection ended: \(error)")
        }
        await finish()
    }

    /// A connection that has not logged in within `timeout` is shut down.
    func enforceLoginTimeout(_ timeout: UInt64) async {
        await loop.sleep(nanoseconds: timeout)
        if !fullFeature && !ended {
            logger.warning("login not completed within \(timeout / 1_000_000_000) s: closing")
            ended = true
            socket.shutdown()
        }
    }

    /// Tears down once: aborts what is left, waits for executing commands, releases the nexus.
    func finish() async {
        if finished {
            await waitForRelease()
            return
        }
        finished = true
        ended = true
        if socket.isOpen { await writer.drain() }  // a Reject or logout response still queued goes out first
        socket.close()
        for t in tasks.all {
            t.aborted = true
            if t.state == .collecting { dropTask(t) }
        }
        await waitForIdle()
        stopRunners()
        writer.close()
        loop.buffers.give(rx)
        if let n = nexus {
            await target.nexusLost(n)
            await server.sessionEnded(self, isid: params.isid, initiatorName: params.initiatorName, tsih: tsih)
        } else {
            await server.connectionEnded(self)
        }
        nexusReleased = true
        let w = finishWaiters
        finishWaiters = []
        for c in w { c.resume() }
    }

    /// Session reinstatement or server shutdown: stop this session, its tasks aborted, and wait.
    func terminate() async {
        ended = true
        socket.shutdown()
        await waitForRelease()
    }

    /// Graceful shutdown: stop taking commands, let those in flight answer, then close.
    func shutdownGracefully() async {
        draining = true
        if fullFeature && !ended && params.sessionType == .normal {
            // Async Message "target requests logout" (§11.9.1, event 1): the initiator logs out
            // cleanly within Parameter3 seconds; we wait that long at most, then close anyway.
            var h = BasicHeaderSegment.asyncMessage(event: 1, parameter3: 1)
            h.setU64(8, 0)
            stamp(&h)
            await send(OutPDU(bhs: h))
            let deadline = monotonicNanos() &+ config.logoutWait
            while !finished && monotonicNanos() < deadline { await loop.sleep(nanoseconds: 20_000_000) }
        }
        await waitForIdle()
        await writer.drain()
        socket.shutdown()
        await waitForRelease()
    }

    /// The condition is checked again inside each continuation body, which runs isolated: a check
    /// before the await alone can race with the command that finishes meanwhile (seen: a shutdown
    /// that waited forever for a connection whose last command had already completed).
    func waitForIdle() async {
        while executing > 0 {
            await withCheckedContinuation { c in if executing == 0 { c.resume() } else { idleWaiters.append(c) } }
        }
    }

    func waitForRelease() async {
        while !nexusReleased {
            await withCheckedContinuation { c in if nexusReleased { c.resume() } else { finishWaiters.append(c) } }
        }
    }

    func pingLoop() async {
        let interval = config.nopInInterval
        let timeout = config.nopInTimeout
        let tick = max(10_000_000, min(interval, timeout) / 4)
        while !ended {
            await loop.sleep(nanoseconds: tick)
            if ended { return }
            let now = monotonicNanos()
            if pingOutstanding {
                if now &- pingSentAt >= timeout {
                    logger.warning("initiator did not answer NOP-In within \(timeout / 1_000_000) ms: dropping connection")
                    ended = true
                    socket.shutdown()
                    return
                }
            } else if now &- lastReceive >= interval {
                pingTTT = pingTTT &+ 1 == 0xffff_ffff ? 1 : pingTTT &+ 1
                pingOutstanding = true
                pingSentAt = now
                var h = BasicHeaderSegment.nopIn(lun: 0, itt: 0xffff_ffff, ttt: pingTTT, dataLength: 0)
                h.setSequence(statSN: statSN, expCmdSN: expCmdSN, maxCmdSN: maxCmdSN)  // StatSN not advanced
                await send(OutPDU(bhs: h))
            }
        }
    }

    // MARK: - Receiving

    /// Makes at least `n` bytes available in `rx` (n <= its size).
    func ensure(_ n: Int) async throws {
        while rxEnd - rxStart < n {
            if rxStart == rxEnd {
                rxStart = 0; rxEnd = 0
            } else if rx.count - rxStart < n {
                memmove(rx.base, rx.base + rxStart, rxEnd - rxStart)
                rxEnd -= rxStart; rxStart = 0
            }
            let got = try await socket.read(into: rx.base + rxEnd, count: rx.count - rxEnd)
            if got == 0 { throw ConnectionEnd.closed }
            rxEnd += got
        }
    }

    /// Reads exactly `n` bytes into `dst`; large remainders go straight from the socket.
    func readBytes(into dst: UnsafeMutableRawPointer, _ n: Int) async throws {
        var done = 0
        let avail = rxEnd - rxStart
        if avail > 0 {
            let c = min(avail, n)
            dst.copyMemory(from: rx.base + rxStart, byteCount: c)
            rxStart += c
            done = c
        }
        if n - done >= 16_384 {
            try await socket.readExactly(into: dst + done, count: n - done)
            return
        }
        while done < n {
            try await ensure(1)
            let c = min(rxEnd - rxStart, n - done)
            (dst + done).copyMemory(from: rx.base + rxStart, byteCount: c)
            rxStart += c
            done += c
        }
    }

    func skipBytes(_ n: Int) async throws {
        var left = n
        while left > 0 {
            try await ensure(1)
            let c = min(rxEnd - rxStart, left)
            rxStart += c
            left -= c
        }
    }

    /// Reads a BHS, its AHS and header digest. A header digest error ends the connection (§7.8).
    func readHeader() async throws -> (BasicHeaderSegment, [UInt8]) {
        try await ensure(48)
        let bhs = BasicHeaderSegment(rx.base + rxStart)
        // Before login completes only Login Requests are valid: judge the opcode before waiting
        // for the AHS bytes a garbage header claims (§6.1: the target drops the connection).
        if !fullFeature && bhs.opcode != .loginRequest {
            throw ConnectionEnd.protocolViolation("PDU opcode 0x\(String(bhs.opcodeRaw, radix: 16)) before login completed")
        }
        let ahsLen = bhs.ahsLength
        try await ensure(48 + ahsLen + (params.headerDigest ? 4 : 0))
        let start = rx.base + rxStart
        let ahs = ahsLen > 0 ? Array(UnsafeRawBufferPointer(start: start + 48, count: ahsLen)) : []
        if params.headerDigest {
            let want = ISCSIDigest.load(start + 48 + ahsLen)
            guard ISCSIDigest.crc(start, 48 + ahsLen) == want else {
                throw ConnectionEnd.protocolViolation("header digest error")
            }
        }
        rxStart += 48 + ahsLen + (params.headerDigest ? 4 : 0)
        lastReceive = monotonicNanos()
        return (bhs, ahs)
    }

    /// Reads a data segment of `len` bytes (plus padding and digest) into `dst`, or discards it
    /// when `dst` is nil. Returns false on a data digest mismatch.
    func readData(_ len: Int, into dst: UnsafeMutableRawPointer?) async throws -> Bool {
        guard len > 0 else { return true }
        let pad = padded4(len) - len
        var ok = true
        if let dst {
            try await readBytes(into: dst, len)
            // Padding and digest (at most 7 bytes) are taken from the receive buffer.
            let tailLen = pad + (params.dataDigest ? 4 : 0)
            if tailLen > 0 {
                try await ensure(tailLen)
                let t = rx.base + rxStart
                if params.dataDigest {
                    var c = ISCSIDigest.crc(dst, len)
                    if pad > 0 { c = ISCSIDigest.crc(t, pad, seed: c) }
                    ok = ISCSIDigest.load(t + pad) == c
                }
                rxStart += tailLen
            }
        } else {
            if params.dataDigest {
                let scratch = loop.buffers.take(len + pad + 4)
                defer { loop.buffers.give(scratch) }
                try await readBytes(into: scratch.base, len + pad + 4)
                ok = ISCSIDigest.dataDigest(scratch.base, len) == ISCSIDigest.load(scratch.base + len + pad)
            } else {
                try await skipBytes(len + pad)
            }
        }
        return ok
    }

    /// Reads a small data segment into an array; nil on a digest error.
    func readDataArray(_ len: Int) async throws -> [UInt8]? {
        guard len > 0 else { return [] }
        var a = [UInt8](repeating: 0, count: len)
        var ok = true
        // Read into a pooled scratch buffer first: an array's storage can't be held across awaits.
        let scratch = loop.buffers.take(len)
        defer { loop.buffers.give(scratch) }
        ok = try await readData(len, into: scratch.base)
        a.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: scratch.base, byteCount: len) }
        return ok ? a : nil
    }

    // MARK: - Sending

    func send(_ p: OutPDU) async {
        writer.enqueue(p)
        await writer.flush()
    }

    /// Sets StatSN (advancing it), ExpCmdSN and MaxCmdSN on a status-bearing PDU.
    func stamp(_ h: inout BasicHeaderSegment) {
        h.setSequence(statSN: statSN, expCmdSN: expCmdSN, maxCmdSN: maxCmdSN)
        statSN &+= 1
    }

    /// Sends a Reject carrying the offending header. Logged once, with the peer address.
    func reject(_ bhs: BasicHeaderSegment, _ reason: ISCSIRejectReason, _ why: String) async {
        logger.notice("reject \(reason) for opcode 0x\(String(bhs.opcodeRaw, radix: 16)) itt 0x\(String(bhs.initiatorTaskTag, radix: 16)): \(why)")
        var h = BasicHeaderSegment.reject(reason: reason)
        stamp(&h)
        await send(OutPDU(bhs: h, small: bhs.bytes))
    }

    // MARK: - Login phase

    func login() async throws {
        var negotiator = LoginNegotiator(info: info)
        var firstCmdSN: UInt32?
        var first = true
        while true {
            let (bhs, _) = try await readHeader()
            guard bhs.opcode == .loginRequest else {
                throw ConnectionEnd.protocolViolation("PDU opcode 0x\(String(bhs.opcodeRaw, radix: 16)) before login completed")
            }
            let len = bhs.dataSegmentLength
            guard len <= 65_536 else { throw ConnectionEnd.protocolViolation("login data segment of \(len) bytes") }
            guard let data = try await readDataArray(len) else { throw ConnectionEnd.protocolViolation("data digest error in login") }
            if firstCmdSN == nil {
                firstCmdSN = bhs.cmdSN
                expCmdSN = bhs.cmdSN
                statSN = bhs.expStatSN  // continue the initiator's expectation (§11.13.4)
            }
            var reply: LoginReply
            if first && bhs.tsih != 0 {
                // Adding a connection to an existing session: we allow one connection per session.
                reply = LoginReply()
                reply.csg = bhs.loginCSG
                let exists = await server.sessionExists(tsih: bhs.tsih)
                reply.status = exists ? .tooManyConnections : .sessionDoesNotExist
                reply.outcome = .failed("login with TSIH \(bhs.tsih) (MaxConnections=1)")
            } else {
                reply = negotiator.handle(bhs, data: data)
            }
            first = false
            if case .fullFeature = reply.outcome {
                params = negotiator.params
                connectionID = bhs.cid
                if params.sessionType == .normal {
                    let n = ITNexus(initiatorName: params.initiatorName, isid: params.isid, portalGroupTag: info.portalGroupTag)
                    // Session reinstatement (§6.3.5): an old session with this ISID and name ends first.
                    tsih = await server.registerSession(self, isid: params.isid, initiatorName: params.initiatorName)
                    nexus = n
                } else {
                    tsih = await server.allocateTSIH()
                }
            }
            let body = reply.keys.encode()
            var h = BasicHeaderSegment.loginResponse(transit: reply.transit, csg: reply.csg, nsg: reply.nsg, isid: bhs.isid,
                                                     tsih: tsih, itt: bhs.initiatorTaskTag, statusClass: reply.status.statusClass,
                                                     statusDetail: reply.status.detail, dataLength: body.count)
            h.setSequence(statSN: statSN, expCmdSN: expCmdSN, maxCmdSN: expCmdSN &+ UInt32(window) &- 1)
            statSN &+= 1
            await send(OutPDU(bhs: h, small: body))
            switch reply.outcome {
            case .proceed: continue
            case .failed(let why):
                logger.warning("login failed with status \(reply.status): \(why)")
                await writer.drain()
                throw ConnectionEnd.closed
            case .fullFeature:
                await writer.drain()
                // Digests apply from the first PDU after the final login response.
                writer.headerDigest = params.headerDigest
                writer.dataDigest = params.dataDigest
                logger[metadataKey: "initiator"] = "\(params.initiatorName)"
                logger.info("login complete: \(params.sessionType) session, TSIH \(tsih)")
                return
            }
        }
    }

    // MARK: - Full-feature phase

    func fullFeatureLoop() async throws {
        while !ended {
            let (bhs, ahs) = try await readHeader()
            let len = bhs.dataSegmentLength
            if len > params.targetMaxRecvDataSegmentLength {
                await reject(bhs, .protocolError, "data segment \(len) > MaxRecvDataSegmentLength \(params.targetMaxRecvDataSegmentLength)")
                throw ConnectionEnd.protocolViolation("oversized data segment")
            }
            guard let op = bhs.opcode else {
                _ = try await readData(len, into: nil)
                await reject(bhs, .commandNotSupported, "unknown opcode")
                continue
            }
            if params.sessionType == .discovery && op != .textRequest && op != .logoutRequest && op != .nopOut {
                _ = try await readData(len, into: nil)
                await reject(bhs, .protocolError, "\(op) in a discovery session")
                continue
            }
            switch op {
            case .scsiCommand: try await handleSCSICommand(bhs, ahs: ahs)
            case .dataOut: try await handleDataOut(bhs)
            case .nopOut: try await handleNopOut(bhs)
            case .taskManagementRequest: try await handleTaskManagement(bhs)
            case .textRequest: try await handleText(bhs)
            case .logoutRequest: try await handleLogout(bhs)
            case .snackRequest:
                _ = try await readData(len, into: nil)
                await reject(bhs, .protocolError, "SNACK at ErrorRecoveryLevel 0")
            case .loginRequest:
                _ = try await readData(len, into: nil)
                await reject(bhs, .protocolError, "login request in full-feature phase")
            default:
                _ = try await readData(len, into: nil)
                await reject(bhs, .protocolError, "target opcode \(op) from the initiator")
            }
        }
    }

    enum Admission { case accept, drop }

    /// CmdSN window (§4.2.2.1): non-immediate commands must lie in [ExpCmdSN, MaxCmdSN]; anything
    /// else is silently ignored. Immediate commands neither check nor advance it.
    func admit(_ bhs: BasicHeaderSegment) -> Admission {
        if bhs.immediate { return .accept }
        let sn = bhs.cmdSN
        if sn == expCmdSN {
            expCmdSN &+= 1
            while aheadCmdSNs.remove(expCmdSN) != nil { expCmdSN &+= 1 }
            return .accept
        }
        if snLess(expCmdSN, sn) && snLessOrEqual(sn, maxCmdSN) && !aheadCmdSNs.contains(sn) && aheadCmdSNs.count < window {
            aheadCmdSNs.insert(sn)
            return .accept
        }
        logger.notice("ignoring opcode 0x\(String(bhs.opcodeRaw, radix: 16)) with CmdSN \(sn) outside window [\(expCmdSN), \(maxCmdSN)]")
        return .drop
    }

    func handleNopOut(_ bhs: BasicHeaderSegment) async throws {
        let len = bhs.dataSegmentLength
        let itt = bhs.initiatorTaskTag
        if itt == 0xffff_ffff {
            _ = try await readData(len, into: nil)
            if bhs.targetTransferTag != 0xffff_ffff {
                if pingOutstanding && bhs.targetTransferTag == pingTTT { pingOutstanding = false }
            }
            if !bhs.immediate { _ = admit(bhs) }
            return
        }
        guard let data = try await readDataArray(len) else {
            await reject(bhs, .dataDigestError, "data digest error in NOP-Out")
            return
        }
        guard admit(bhs) == .accept else { return }
        var h = BasicHeaderSegment.nopIn(lun: bhs.lun, itt: itt, ttt: 0xffff_ffff, dataLength: data.count)
        stamp(&h)
        await send(OutPDU(bhs: h, small: data))
    }

    func handleText(_ bhs: BasicHeaderSegment) async throws {
        let len = bhs.dataSegmentLength
        guard let data = try await readDataArray(len) else {
            await reject(bhs, .dataDigestError, "data digest error in Text request")
            return
        }
        guard admit(bhs) == .accept else { return }
        if bhs.textContinue {
            await reject(bhs, .protocolError, "continued Text requests are not supported")
            return
        }
        var answer = TextKeys()
        switch TextKeys.parse(data) {
        case .failure(let e):
            await reject(bhs, .protocolError, "malformed text: \(e)")
            return
        case .success(let keys):
            for (k, v) in keys.pairs {
                if k == "SendTargets" {
                    var i = info
                    i.portals = resolvedPortals()
                    answer.pairs += sendTargetsResponse(v, info: i, sessionType: params.sessionType).pairs
                } else {
                    answer.append(k, "NotUnderstood")
                }
            }
        }
        let body = answer.encode()
        var h = BasicHeaderSegment.textResponse(final: true, lun: bhs.lun, itt: bhs.initiatorTaskTag, ttt: 0xffff_ffff, dataLength: body.count)
        stamp(&h)
        await send(OutPDU(bhs: h, small: body))
    }

    /// Portals for SendTargets; a wildcard bind address becomes the address this connection reached.
    func resolvedPortals() -> [ISCSIPortalAddress] {
        var localHost = socket.local
        if let colon = localHost.lastIndex(of: ":") { localHost = String(localHost[..<colon]) }
        if localHost.hasPrefix("[") && localHost.hasSuffix("]") { localHost = String(localHost.dropFirst().dropLast()) }
        return info.portals.map { p in
            let wildcard = p.host.isEmpty || p.host == "0.0.0.0" || p.host == "::" || p.host == "[::]"
            return ISCSIPortalAddress(host: wildcard ? localHost : p.host, port: p.port)
        }
    }

    func handleLogout(_ bhs: BasicHeaderSegment) async throws {
        _ = try await readData(bhs.dataSegmentLength, into: nil)
        guard admit(bhs) == .accept else { return }
        var response: UInt8 = 0
        switch bhs.logoutReason {
        case 0:
            response = 0
        case 1:
            response = bhs.cid == connectionID ? 0 : 1  // 1: CID not found
        case 2:
            response = 2  // connection recovery is not supported (ERL 0)
        default:
            await reject(bhs, .invalidPDUField, "logout reason \(bhs.logoutReason)")
            return
        }
        if response == 0 {
            // Commands still waiting for data will never get it; those executing answer first.
            for t in tasks.all where t.state == .collecting {
                t.aborted = true
                dropTask(t)
            }
            await waitForIdle()
        }
        var h = BasicHeaderSegment.logoutResponse(itt: bhs.initiatorTaskTag, response: response,
                                                  time2Wait: UInt16(params.defaultTime2Wait), time2Retain: 0)
        stamp(&h)
        await send(OutPDU(bhs: h))
        if response == 0 {
            await writer.drain()
            logger.info("logout (reason \(bhs.logoutReason))")
            throw ConnectionEnd.loggedOut
        }
    }
}
