import CairnIO
import CairnWire
import Glibc
import Logging

/// The controller's connection to one replica: a handshake, then pipelined requests keyed by
/// sequence id with many in flight. Requests are queued synchronously by the volume (no suspension
/// per replica on the write path) and batched into one writev per loop turn by the link's writer
/// task; a reader task matches replies to requests; a watchdog fails the link when the oldest
/// request has waited longer than the replica timeout, or when an idle replica stops answering
/// pings. A failed link never comes back: the volume makes a new one for a reconnect.
///
/// Loop-confined, like a SwiftNIO channel handler: every method runs on `loop` (asserted). It
/// crosses tasks only as a handle, which is why it may be `@unchecked Sendable`.
final class ReplicaLink: @unchecked Sendable, CustomStringConvertible {
    enum Completion {
        case fan(FanOut, Int)
        case read(IOBuffer, UnsafeContinuation<WireStatus, Never>)
        case control(UnsafeContinuation<(WireStatus, [UInt8]), Never>)
        case none
    }

    struct Pending {
        var opcode: WireOpcode
        var sentAt: UInt64
        var completion: Completion
    }

    let loop: EventLoop
    let address: ReplicaAddress
    let timeout: UInt64
    var logger: Logger
    private(set) var hello: HelloReply?
    var replicaID: String { hello?.replicaID ?? "?" }
    private var socket: TCPConnection?
    private var reader: FrameReader?
    private var writer: FrameWriter?
    private var pending = PendingRequests<Pending>()
    private var nextSeq: UInt64 = 1
    private(set) var failedReason: String?
    private var closing = false
    private var lastReply: UInt64 = 0
    /// Told once, on the loop, when the link fails after its handshake.
    var onDown: ((ReplicaLink, String) -> Void)?

    var isUp: Bool { socket != nil && failedReason == nil }
    var outstanding: Int { pending.count }
    var description: String { "\(replicaID)@\(address)" }

    init(loop: EventLoop, address: ReplicaAddress, timeout: UInt64, logger: Logger) {
        self.loop = loop
        self.address = address
        self.timeout = timeout
        var l = logger
        l[metadataKey: "replica"] = "\(address)"
        self.logger = l
    }

    /// Connects and shakes hands (proving `secret` first when the volume has one, and checking
    /// the replica's proof); on success the reader, writer and watchdog tasks run.
    func connect(_ greeting: Hello, secret: ReplicaSecret?) async throws(LinkError) -> HelloReply {
        loop.assertInLoop()
        let s: TCPConnection
        do {
            s = try await TCPConnection.connect(loop: loop, host: address.host, port: address.port, timeoutNanos: timeout)
        } catch {
            throw .connect("\(error)")
        }
        let r = FrameReader(socket: s)
        // Coalesced: the fan-outs of every command this turn leave in one writev per replica.
        let w = FrameWriter(socket: s, coalesce: true)
        socket = s
        reader = r
        writer = w
        loop.spawn { await w.run() }
        // The handshake has its own deadline: a replica that accepts but never answers must not
        // hold the volume's start-up. A strong capture (it keeps a dead link's few bytes until
        // the deadline): a weak one gives the link a side table, and every retain of it on the
        // write path then takes the runtime's slow path (1-2% of the controller's CPU).
        let deadline = timeout
        loop.spawn {
            await self.loop.sleep(nanoseconds: deadline)
            if self.hello == nil, self.failedReason == nil { self.fail("no handshake reply within the timeout") }
        }
        var refusal: WireStatus?
        do {
            var h = greeting
            if let secret {
                // Each side proves the volume's secret over both nonces (see ReplicaSecret).
                let nC = ReplicaSecret.newNonce()
                w.enqueue(OutFrame(WireHeader(opcode: .auth, seq: 0, epoch: h.epoch), control: WireJSON.encode(AuthChallenge(nonce: nC))))
                let header = try await r.readHeader()
                guard header.opcode == .auth, header.isReply else { throw WireError.badMessage("expected an auth reply") }
                guard header.wireStatus == .ok else {
                    refusal = header.wireStatus
                    throw HandshakeRefusal("replica refused to authenticate: \(header.wireStatus)"
                                           + (header.wireStatus == .unauthorized ? " (it has no --secret-file)" : ""))
                }
                let answer = try WireJSON.decode(AuthResponse.self, try await r.readControl(header))
                guard let nR = Hex.decode(answer.nonce), let proof = Hex.decode(answer.proof),
                      secret.verify(proof, .replica, controllerNonce: nC, replicaNonce: nR) else {
                    refusal = .unauthorized
                    throw HandshakeRefusal("the replica failed to prove the volume's secret")
                }
                h.proof = Hex.encode(secret.proof(.controller, controllerNonce: nC, replicaNonce: nR))
            }
            w.enqueue(OutFrame(WireHeader(opcode: .hello, seq: 0, epoch: h.epoch), control: WireJSON.encode(h)))
            let header = try await r.readHeader()
            guard header.opcode == .hello, header.isReply else { throw WireError.badMessage("expected a hello reply") }
            guard header.wireStatus == .ok else {
                refusal = header.wireStatus
                throw HandshakeRefusal("replica refused the handshake: \(header.wireStatus)"
                                       + (header.wireStatus == .unauthorized ? " (it needs --secret-file)" : ""))
            }
            let reply = try WireJSON.decode(HelloReply.self, try await r.readControl(header))
            hello = reply
            logger[metadataKey: "replica"] = "\(reply.replicaID)@\(address)"
        } catch {
            let why = failedReason ?? "\(error)"
            fail(why)
            if let refusal { throw .refused(refusal, why) }
            throw .handshake(why)
        }
        lastReply = monotonicNanos()
        loop.spawn { await self.readLoop(r) }
        loop.spawn { await self.watchdog() }
        return hello!
    }

    // MARK: - Sending

    private func enqueue(_ frame: OutFrame, _ completion: Completion) -> Bool {
        guard let w = writer, failedReason == nil else { return false }
        var f = frame
        let seq = nextSeq
        nextSeq &+= 1
        f.header.seq = seq
        pending.insert(seq, Pending(opcode: f.header.opcode, sentAt: monotonicNanos(), completion: completion))
        w.enqueue(f)
        return true
    }

    /// Sends a write (or unmap) whose reply completes `slot` of `fan`.
    func send(_ frame: OutFrame, fan: FanOut, slot: Int) {
        loop.assertInLoop()
        if !enqueue(frame, .fan(fan, slot)) { fan.complete(slot, .unavailable) }
    }

    /// Reads `buffer.count` bytes at `offset` straight into `buffer`. Runs on the caller's
    /// executor (on the loop): no hop off the volume or rebuild job to call it.
    nonisolated(nonsending)
    func read(offset: UInt64, into buffer: IOBuffer, epoch: UInt64, rebuild: Bool = false,
              layer: UInt32 = LayerSelector.view) async -> WireStatus {
        loop.assertInLoop()
        let h = WireHeader(opcode: .read, flags: rebuild ? [.rebuild] : [], seq: 0, epoch: epoch, offset: offset,
                           extent: UInt64(buffer.count), status: layer)
        return await withUnsafeContinuation { (c: UnsafeContinuation<WireStatus, Never>) in
            if !enqueue(OutFrame(h), .read(buffer, c)) { c.resume(returning: .unavailable) }
        }
    }

    /// A request whose reply is a status and maybe a control payload.
    nonisolated(nonsending)
    func request(_ opcode: WireOpcode, epoch: UInt64, offset: UInt64 = 0, extent: UInt64 = 0,
                 flags: WireFlags = [], control: [UInt8]? = nil, data: IOBuffer? = nil,
                 layer: UInt32 = LayerSelector.view) async -> (WireStatus, [UInt8]) {
        loop.assertInLoop()
        let h = WireHeader(opcode: opcode, flags: flags, seq: 0, epoch: epoch, offset: offset, extent: extent, status: layer)
        let frame: OutFrame
        if let control {
            frame = OutFrame(h, control: control)
        } else if let data {
            frame = OutFrame(h, data: data, crc: wireChecksum(data.base, data.count), release: false)
        } else {
            frame = OutFrame(h)
        }
        return await withUnsafeContinuation { (c: UnsafeContinuation<(WireStatus, [UInt8]), Never>) in
            if !enqueue(frame, .control(c)) { c.resume(returning: (.unavailable, [])) }
        }
    }

    // MARK: - Receiving

    private func readLoop(_ r: FrameReader) async {
        do {
            while failedReason == nil {
                let h = try await r.readHeader()
                guard h.isReply else { throw WireError.badMessage("request frame from a replica") }
                guard let p = pending.remove(h.seq) else {
                    throw WireError.badMessage("reply for unknown request \(h.seq)")
                }
                lastReply = monotonicNanos()
                let status = h.wireStatus
                switch p.completion {
                case .fan(let f, let slot):
                    try await r.skip(Int(h.payloadLength))
                    f.complete(slot, status)
                case .read(let buf, let c):
                    if status == .ok {
                        guard Int(h.payloadLength) == buf.count else {
                            c.resume(returning: .badRequest)
                            throw WireError.badMessage("read reply of \(h.payloadLength) bytes for \(buf.count)")
                        }
                        do { try await r.readPayload(into: buf.base, buf.count, crc: h.payloadCRC) } catch {
                            c.resume(returning: .ioError)
                            throw error
                        }
                    } else {
                        try await r.skip(Int(h.payloadLength))
                    }
                    c.resume(returning: status)
                case .control(let c):
                    let bytes: [UInt8]
                    do { bytes = try await r.readControl(h) } catch {
                        c.resume(returning: (.ioError, []))
                        throw error
                    }
                    c.resume(returning: (status, bytes))
                case .none:
                    try await r.skip(Int(h.payloadLength))
                }
            }
        } catch {
            fail((error as? WireError) == .closed ? "connection closed by the replica" : "\(error)")
        }
        r.release()
    }

    /// This process's offset of the watchdogs' tick boundaries (see `watchdog`).
    private static let phase = UInt64.random(in: 0..<(1 << 40))

    /// Fails the link when a request waits too long, and pings an idle replica so a hang is
    /// noticed without traffic.
    private func watchdog() async {
        let tick = max(20_000_000, timeout / 8)
        while failedReason == nil {
            // On the tick's boundaries, shifted by this process's phase: the watchdogs of all of a
            // volume's links wake together (one wake-up of an idle loop, not one per link), and
            // the volumes of a machine do not all wake at the same instant.
            await loop.sleep(nanoseconds: tick - (monotonicNanos() &+ Self.phase) % tick)
            guard failedReason == nil else { return }
            let now = monotonicNanos()
            var oldest = UInt64.max
            pending.forEach { p in if p.sentAt < oldest { oldest = p.sentAt } }
            if oldest != .max && now &- oldest > timeout {
                fail("no reply within \(timeout / 1_000_000) ms")
                return
            }
            if pending.isEmpty && now &- lastReply > timeout / 2 {
                _ = enqueue(OutFrame(WireHeader(opcode: .ping, seq: 0)), .none)
            }
        }
    }

    /// Ends the link: the socket is shut at once (no later byte of any buffer leaves), every
    /// pending request completes as unavailable, and the volume is told.
    func fail(_ reason: String) {
        loop.assertInLoop()
        guard failedReason == nil else { return }
        failedReason = reason
        if hello != nil {
            // A link the controller closes on purpose (removal, shutdown) is not a fault.
            if closing { logger.info("replica link closed") } else { logger.warning("replica link down: \(reason)") }
        }
        socket?.shutdown()
        writer?.close()
        for p in pending.removeAll() {
            switch p.completion {
            case .fan(let f, let slot): f.complete(slot, .unavailable)
            case .read(_, let c): c.resume(returning: .unavailable)
            case .control(let c): c.resume(returning: (.unavailable, []))
            case .none: break
            }
        }
        if hello != nil, let cb = onDown {
            onDown = nil
            cb(self, reason)
        }
        socket?.close()
    }

    /// Closes a link the volume no longer wants (removal, shutdown).
    func close() {
        closing = true
        fail("closed by the controller")
    }
}

/// Why a replica's handshake was not accepted, as the log says it.
struct HandshakeRefusal: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum LinkError: Error, CustomStringConvertible {
    case connect(String)
    case handshake(String)
    /// The replica answered the hello with this status (another volume or size, another
    /// protocol version): it will say the same until someone changes its directory or ours.
    /// `why` says what was refused (or that the replica's proof of the secret was wrong).
    case refused(WireStatus, String)

    var description: String {
        switch self {
        case .connect(let s): return "connect: \(s)"
        case .handshake(let s): return "handshake: \(s)"
        case .refused(_, let why): return why
        }
    }
}
