import CairnIO
import CairnWire
import Logging

/// Listens for controllers and serves the replica protocol from one `ReplicaStore`.
public actor ReplicaServer {
    public nonisolated let loop: EventLoop
    public nonisolated let store: ReplicaStore
    /// The volume's secret: with one, only a controller that proves it holds it is served.
    public nonisolated let secret: ReplicaSecret?
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    let logger: Logger
    var listener: TCPListener?
    var sessions: [ObjectIdentifier: ReplicaSession] = [:]
    var stopping = false

    public init(loop: EventLoop, store: ReplicaStore, secret: ReplicaSecret? = nil, logger: Logger) {
        self.loop = loop
        self.store = store
        self.secret = secret
        self.logger = logger
    }

    /// Binds and starts accepting; returns the bound port.
    public func start(host: String, port: UInt16) throws(IOError) -> UInt16 {
        let l = try TCPListener(loop: loop, host: host, port: port)
        listener = l
        loop.spawn { await self.acceptLoop(l) }
        return l.port
    }

    func acceptLoop(_ l: TCPListener) async {
        while !stopping {
            let c: TCPConnection
            do { c = try await l.accept() } catch { break }
            let s = ReplicaSession(server: self, socket: c, store: store, logger: logger)
            sessions[ObjectIdentifier(s)] = s
            loop.spawn { await s.run() }
        }
    }

    func sessionEnded(_ s: ReplicaSession) {
        sessions[ObjectIdentifier(s)] = nil
    }

    /// Stops accepting, lets requests in flight finish, then closes the connections.
    public func shutdown() async {
        stopping = true
        listener?.close()
        listener = nil
        for s in sessions.values { await s.stop() }
        sessions = [:]
    }
}

/// The store refused a controller's hello (another volume or size) and logged why; the session
/// sends the status and ends without a second line.
struct HandshakeRefused: Error {}

/// A request served apart from the reader, so many are in flight. A value, not a closure: the
/// runner that serves it allocates nothing.
enum ReplicaRequest: Sendable {
    case read(WireHeader, IOBuffer)
    case write(WireHeader, IOBuffer, rebuild: Bool)
    case flush(WireHeader)
    case unmap(WireHeader)
    case allocatedExtents(WireHeader)
    case status(WireHeader)
    case settle(WireHeader)
}

/// One controller connection: a handshake, then pipelined requests, each served on a runner task
/// (RunnerPool) so many are in flight; replies go out in completion order, matched by sequence id.
actor ReplicaSession {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    let server: ReplicaServer
    let socket: TCPConnection
    let store: ReplicaStore
    var logger: Logger
    var reader: FrameReader?
    var writer: FrameWriter?
    var inFlight = 0
    var runners = RunnerPool<ReplicaRequest>()
    var idleWaiters: [CheckedContinuation<Void, Never>] = []
    var ended = false
    /// A reader's session (a clone's controller): snapshot views only.
    var isReader = false

    init(server: ReplicaServer, socket: TCPConnection, store: ReplicaStore, logger: Logger) {
        self.server = server
        self.loop = socket.loop
        self.socket = socket
        self.store = store
        var l = logger
        l[metadataKey: "peer"] = "\(socket.peer)"
        self.logger = l
    }

    func run() async {
        let reader = FrameReader(socket: socket)
        let writer = FrameWriter(socket: socket)
        self.reader = reader
        self.writer = writer
        let writerTask = loop.spawn { await writer.run() }
        do {
            try await handshake(reader, writer)
            while !ended {
                let h = try await reader.readHeader()
                try await dispatch(h, reader, writer)
            }
        } catch let e as WireError {
            if e != .closed { logger.warning("closing connection: \(e)") }
        } catch is HandshakeRefused {
            // The store logged why.
        } catch {
            logger.warning("closing connection: \(error)")
        }
        ended = true
        await waitForIdle()
        runners.stop()
        // What is queued still goes out: a refused handshake's status tells the controller why
        // (wrong volume, protocol version), not just that the connection closed. A peer that
        // does not take it within a second loses it (the shutdown fails the write).
        writer.finish()
        let socket = self.socket, loop = self.loop
        loop.spawn {
            await loop.sleep(nanoseconds: 1_000_000_000)
            socket.shutdown()  // after the close below: a no-op
        }
        await writerTask.value
        reader.release()
        socket.close()
        await server.sessionEnded(self)
    }

    func stop() async {
        ended = true
        await waitForIdle()
        socket.shutdown()
    }

    func waitForIdle() async {
        while inFlight > 0 {
            await withCheckedContinuation { c in if inFlight == 0 { c.resume() } else { idleWaiters.append(c) } }
        }
    }

    private func done() {
        inFlight -= 1
        if inFlight == 0 {
            let w = idleWaiters
            idleWaiters = []
            for c in w { c.resume() }
        }
    }

    private func handshake(_ reader: FrameReader, _ writer: FrameWriter) async throws {
        var h: WireHeader
        do { h = try await reader.readHeader() } catch {
            if case .unsupportedVersion = error {
                // Said in our version: a peer of another one logs which version we speak.
                writer.enqueue(OutFrame(WireHeader(opcode: .hello, flags: [.reply], seq: 0, status: WireStatus.badRequest.rawValue)))
                await store.countRefusal(.version)
            }
            throw error
        }
        // With a secret, the controller proves it holds it: `auth` first, its proof in the hello.
        var nonces: (controller: [UInt8], replica: [UInt8])?
        if h.opcode == .auth, !h.isReply {
            let challenge = try WireJSON.decode(AuthChallenge.self, try await reader.readControl(h))
            guard let secret = server.secret else {
                try await refuse(h, .unauthorized, "a controller offered to authenticate; this replica has no --secret-file")
            }
            guard let nC = Hex.decode(challenge.nonce), nC.count == ReplicaSecret.nonceBytes else {
                try await refuse(h, .badRequest, "an auth challenge whose nonce is not \(ReplicaSecret.nonceBytes) bytes of hex")
            }
            let nR = ReplicaSecret.newNonce()
            let proof = secret.proof(.replica, controllerNonce: nC, replicaNonce: nR)
            writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(AuthResponse(nonce: nR, proof: proof))))
            nonces = (nC, nR)
            h = try await reader.readHeader()
        }
        guard h.opcode == .hello, !h.isReply else {
            throw WireError.badMessage("first frame is \(h.opcode), not hello")
        }
        let hello = try WireJSON.decode(Hello.self, try await reader.readControl(h))
        guard hello.protocolVersion == Int(WireHeader.version) else {
            writer.enqueue(OutFrame(h.reply(.badRequest)))
            await store.countRefusal(.version)
            throw WireError.unsupportedVersion(UInt8(truncatingIfNeeded: hello.protocolVersion))
        }
        if let secret = server.secret {
            guard let nonces else {
                try await refuse(h, .unauthorized, "a controller for \(hello.volume) did not authenticate (it has no --secret-file?)")
            }
            guard let proof = hello.proof.flatMap { Hex.decode($0) },
                  secret.verify(proof, .controller, controllerNonce: nonces.controller, replicaNonce: nonces.replica) else {
                try await refuse(h, .unauthorized, "a controller for \(hello.volume) failed to prove the volume's secret")
            }
        }
        do {
            let reply = try await store.hello(hello)
            isReader = hello.reader == true
            writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(reply)))
            logger[metadataKey: "volume"] = "\(hello.volume)"
            logger.info("controller connected", metadata: ["epoch": "\(hello.epoch)",
                                                           "authenticated": "\(nonces != nil)"])
        } catch {
            writer.enqueue(OutFrame(h.reply(error)))
            await store.countRefusal(error == .wrongVolume ? .wrongVolume : .other)
            throw HandshakeRefused()
        }
    }

    /// Answers the handshake's frame `h` with `status`, logs why and counts it; the session ends.
    private func refuse(_ h: WireHeader, _ status: WireStatus, _ why: String) async throws -> Never {
        writer?.enqueue(OutFrame(h.reply(status)))
        logger.warning("handshake refused: \(why)")
        await store.countRefusal(status == .unauthorized ? .unauthorized : .other)
        throw HandshakeRefused()
    }

    private func dispatch(_ h: WireHeader, _ reader: FrameReader, _ writer: FrameWriter) async throws(WireError) {
        guard !h.isReply else { throw .badMessage("unexpected reply frame") }
        if isReader && !Self.allowedToReaders(h) {
            try await reader.skip(Int(h.payloadLength))
            logger.warning("a reader asked for \(h.opcode): refused (readers read snapshot views only)")
            writer.enqueue(OutFrame(h.reply(.badRequest)))
            return
        }
        let store = self.store
        let pool = loop.buffers
        switch h.opcode {
        case .read:
            guard h.payloadLength == 0, h.extent > 0, h.extent <= UInt64(WireHeader.maxPayload) else {
                try await reader.skip(Int(h.payloadLength))
                writer.enqueue(OutFrame(h.reply(.badRequest)))
                return
            }
            begin(.read(h, pool.take(Int(h.extent))))
        case .write:
            let n = Int(h.payloadLength)
            guard n > 0 else {
                writer.enqueue(OutFrame(h.reply(.badRequest)))
                return
            }
            let buf = pool.take(n)
            do { try await reader.readPayload(into: buf.base, n, crc: h.payloadCRC) } catch {
                pool.give(buf)
                throw error
            }
            let rebuild = h.flags.contains(.rebuild)
            do { try await store.admit(offset: h.offset, length: UInt64(n), epoch: h.epoch, rebuild: rebuild) } catch {
                pool.give(buf)
                writer.enqueue(OutFrame(h.reply(error)))
                return
            }
            begin(.write(h, buf, rebuild: rebuild))
        case .flush:
            try await reader.skip(Int(h.payloadLength))
            begin(.flush(h))
        case .unmap:
            try await reader.skip(Int(h.payloadLength))
            do { try await store.admit(offset: h.offset, length: h.extent, epoch: h.epoch, rebuild: h.flags.contains(.rebuild)) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
                return
            }
            begin(.unmap(h))
        case .setMembership:
            // Served inline, before the next frame is read: writes sent after it are tracked
            // under the new membership, and updates apply in the order they were sent.
            let u = try WireJSON.decode(MembershipUpdate.self, try await reader.readControl(h))
            do { try await store.setMembership(u); writer.enqueue(OutFrame(h.reply(.ok))) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
            }
        case .dirtyExtents:
            let q = try WireJSON.decode(DirtyQuery.self, try await reader.readControl(h))
            let list = await store.dirtyExtents(q)
            writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(list)))
        case .allocatedExtents:
            try await reader.skip(Int(h.payloadLength))
            begin(.allocatedExtents(h))
        case .wipe:
            try await reader.skip(Int(h.payloadLength))
            do { try await store.checkEpoch(h.epoch) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
                return
            }
            // Inline too: no write that follows may land before the wipe.
            await waitForIdle()
            do { try await store.wipe(); writer.enqueue(OutFrame(h.reply(.ok))) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
            }
        case .status:
            try await reader.skip(Int(h.payloadLength))
            begin(.status(h))
        case .ping:
            try await reader.skip(Int(h.payloadLength))
            writer.enqueue(OutFrame(h.reply(.ok)))
        case .intentMap:
            try await reader.skip(Int(h.payloadLength))
            writer.enqueue(OutFrame(h.reply(.ok), control: await store.intentBitmap.encoded))
        case .settle:
            // Unmarked inline, in order with the writes around it; written out by a runner.
            let payload = try await reader.readControl(h)
            // A fenced controller must not unmark what the current one relies on.
            do { try await store.checkEpoch(h.epoch) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
                return
            }
            let bits: RegionBitmap
            do { bits = try RegionBitmap(decoding: payload, maxVolumeSize: await store.size) } catch {
                logger.warning("settle: \(error)")
                writer.enqueue(OutFrame(h.reply(.badRequest)))
                return
            }
            do { try await store.settle(bits) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
                return
            }
            begin(.settle(h))
        case .resize:
            // Inline: no frame after it (a write past the old end) is admitted before it is done.
            try await reader.skip(Int(h.payloadLength))
            do { try await store.resize(to: h.extent, epoch: h.epoch); writer.enqueue(OutFrame(h.reply(.ok))) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
            }
        case .openSnapshotView:
            let payload = try await reader.readControl(h)
            do throws(WireStatus) {
                let v = try await store.openSnapshotView(try decode(SnapshotViewRequest.self, payload))
                writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(v)))
            } catch {
                writer.enqueue(OutFrame(h.reply(error)))
            }
        case .snapshots:
            try await reader.skip(Int(h.payloadLength))
            writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(await store.snapshotList())))
        case .snapshot, .revert, .installSnapshots, .deleteSnapshot:
            // Inline, after every request before it: a snapshot holds every write acknowledged
            // before it and none after; a revert or install must not race a write.
            let payload = try await reader.readControl(h)
            await waitForIdle()
            do throws(WireStatus) {
                switch h.opcode {
                case .snapshot: try await store.createSnapshot(try decode(SnapshotCreate.self, payload), epoch: h.epoch)
                case .revert: try await store.revert(try decode(SnapshotRef.self, payload), epoch: h.epoch)
                case .installSnapshots: try await store.installSnapshots(try decode(SnapshotList.self, payload), epoch: h.epoch)
                default: try await store.deleteSnapshot(try decode(SnapshotRef.self, payload), epoch: h.epoch)
                }
                writer.enqueue(OutFrame(h.reply(.ok)))
            } catch {
                writer.enqueue(OutFrame(h.reply(error)))
            }
        case .hello, .auth:
            try await reader.skip(Int(h.payloadLength))
            writer.enqueue(OutFrame(h.reply(.badRequest)))
        }
    }

    /// What a reader may ask: snapshot lists and views, reads and allocation of a view.
    static func allowedToReaders(_ h: WireHeader) -> Bool {
        switch h.opcode {
        case .snapshots, .openSnapshotView, .ping, .status: return true
        case .read, .allocatedExtents: return LayerSelector.isViewHandle(h.layer)
        default: return false
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws(WireStatus) -> T {
        do { return try WireJSON.decode(type, bytes) } catch {
            logger.warning("\(error)")
            throw .badRequest
        }
    }

    /// Counts a request (shutdown waits for it) and hands it to a runner.
    private func begin(_ request: ReplicaRequest) {
        inFlight += 1
        if runners.submit(request) { loop.spawn { await self.runRequests() } }
    }

    private func runRequests() async {
        var next = runners.firstWork()
        while let r = next {
            await serve(r)
            done()
            next = await withUnsafeContinuation { runners.park($0) }
        }
        runners.runnerEnded()
    }

    private func serve(_ request: ReplicaRequest) async {
        guard let writer else { preconditionFailure("request before the session's writer exists") }
        let store = self.store
        let pool = loop.buffers
        switch request {
        case .read(let h, let buf):
            do throws(WireStatus) {
                try await store.read(offset: h.offset, length: Int(h.extent), into: buf, layer: h.layer)
                writer.enqueue(OutFrame(h.reply(.ok), data: buf, crc: wireChecksum(buf.base, buf.count), release: true))
            } catch {
                pool.give(buf)
                writer.enqueue(OutFrame(h.reply(error)))
            }
        case .write(let h, let buf, let rebuild):
            await answer(h, writer) { () async throws(WireStatus) in
                defer { pool.give(buf) }
                try await store.write(offset: h.offset, from: buf, fua: h.flags.contains(.fua), rebuild: rebuild, layer: h.layer)
            }
        case .flush(let h):
            await answer(h, writer) { () async throws(WireStatus) in try await store.flush() }
        case .unmap(let h):
            await answer(h, writer) { () async throws(WireStatus) in try await store.unmap(offset: h.offset, length: h.extent, layer: h.layer) }
        case .allocatedExtents(let h):
            do throws(WireStatus) {
                let list = try await store.allocatedExtents(offset: h.offset, length: h.extent, layer: h.layer)
                writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(list)))
            } catch {
                writer.enqueue(OutFrame(h.reply(error)))
            }
        case .status(let h):
            let s = await store.status()
            writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(s)))
        case .settle(let h):
            await answer(h, writer) { () async throws(WireStatus) in try await store.persistIntent() }
        }
    }

    /// Replies with the status of `body` alone.
    /// `body` runs on the session's executor (`nonisolated(nonsending)`): a plain async closure would
    /// hop off the actor to run and back to return, two enqueues per request.
    private func answer(_ h: WireHeader, _ writer: FrameWriter, _ body: nonisolated(nonsending) () async throws(WireStatus) -> Void) async {
        do throws(WireStatus) {
            try await body()
            writer.enqueue(OutFrame(h.reply(.ok)))
        } catch {
            writer.enqueue(OutFrame(h.reply(error)))
        }
    }
}
