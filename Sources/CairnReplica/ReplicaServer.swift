import CairnIO
import CairnWire
import Logging

/// Listens for controllers and serves the replica protocol from one `ReplicaStore`.
public actor ReplicaServer {
    public nonisolated let loop: EventLoop
    public nonisolated let store: ReplicaStore
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    let logger: Logger
    var listener: TCPListener?
    var sessions: [ObjectIdentifier: ReplicaSession] = [:]
    var stopping = false

    public init(loop: EventLoop, store: ReplicaStore, logger: Logger) {
        self.loop = loop
        self.store = store
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

/// One controller connection: a handshake, then pipelined requests, each served as its own task
/// so many are in flight; replies go out in completion order, matched by sequence id.
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
    var idleWaiters: [CheckedContinuation<Void, Never>] = []
    var ended = false

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
        } catch {
            logger.warning("closing connection: \(error)")
        }
        ended = true
        await waitForIdle()
        writer.close()
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
        let h = try await reader.readHeader()
        guard h.opcode == .hello, !h.isReply else {
            throw WireError.badMessage("first frame is \(h.opcode), not hello")
        }
        let hello = try WireJSON.decode(Hello.self, try await reader.readControl(h))
        guard hello.protocolVersion == Int(WireHeader.version) else {
            writer.enqueue(OutFrame(h.reply(.badRequest)))
            throw WireError.unsupportedVersion(UInt8(truncatingIfNeeded: hello.protocolVersion))
        }
        do {
            let reply = try await store.hello(hello)
            writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(reply)))
            logger[metadataKey: "volume"] = "\(hello.volume)"
            logger.info("controller connected", metadata: ["epoch": "\(hello.epoch)"])
        } catch {
            writer.enqueue(OutFrame(h.reply(error)))
            throw WireError.badMessage("hello refused: \(error)")
        }
    }

    private func dispatch(_ h: WireHeader, _ reader: FrameReader, _ writer: FrameWriter) async throws(WireError) {
        guard !h.isReply else { throw .badMessage("unexpected reply frame") }
        let store = self.store
        let pool = loop.buffers
        switch h.opcode {
        case .read:
            guard h.payloadLength == 0, h.extent > 0, h.extent <= UInt64(WireHeader.maxPayload) else {
                try await reader.skip(Int(h.payloadLength))
                writer.enqueue(OutFrame(h.reply(.badRequest)))
                return
            }
            let buf = pool.take(Int(h.extent))
            begin { () async in
                do throws(WireStatus) {
                    try await store.read(offset: h.offset, length: Int(h.extent), into: buf)
                    writer.enqueue(OutFrame(h.reply(.ok), data: buf, crc: wireChecksum(buf.base, buf.count), release: true))
                } catch {
                    pool.give(buf)
                    writer.enqueue(OutFrame(h.reply(error)))
                }
            }
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
            answer(h, writer) { () async throws(WireStatus) in
                defer { pool.give(buf) }
                try await store.write(offset: h.offset, from: buf, fua: h.flags.contains(.fua), rebuild: rebuild)
            }
        case .flush:
            try await reader.skip(Int(h.payloadLength))
            answer(h, writer) { () async throws(WireStatus) in try await store.flush() }
        case .unmap:
            try await reader.skip(Int(h.payloadLength))
            do { try await store.admit(offset: h.offset, length: h.extent, epoch: h.epoch, rebuild: false) } catch {
                writer.enqueue(OutFrame(h.reply(error)))
                return
            }
            answer(h, writer) { () async throws(WireStatus) in try await store.unmap(offset: h.offset, length: h.extent) }
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
            begin { () async in
                do throws(WireStatus) {
                    let list = try await store.allocatedExtents(offset: h.offset, length: h.extent)
                    writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(list)))
                } catch {
                    writer.enqueue(OutFrame(h.reply(error)))
                }
            }
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
            begin { () async in
                let s = await store.status()
                writer.enqueue(OutFrame(h.reply(.ok), control: WireJSON.encode(s)))
            }
        case .ping:
            try await reader.skip(Int(h.payloadLength))
            writer.enqueue(OutFrame(h.reply(.ok)))
        case .hello:
            try await reader.skip(Int(h.payloadLength))
            writer.enqueue(OutFrame(h.reply(.badRequest)))
        }
    }

    /// Runs a request whose reply is its status alone as its own task (see `begin`).
    private func answer(_ h: WireHeader, _ writer: FrameWriter,
                        _ body: sending @escaping () async throws(WireStatus) -> Void) {
        begin { () async in
            do throws(WireStatus) {
                try await body()
                writer.enqueue(OutFrame(h.reply(.ok)))
            } catch {
                writer.enqueue(OutFrame(h.reply(error)))
            }
        }
    }

    /// Runs one request as its own task on the loop, counted so shutdown can wait for it.
    private func begin(_ body: sending @escaping () async -> Void) {
        inFlight += 1
        loop.spawn {
            await body()
            await self.done()
        }
    }
}
