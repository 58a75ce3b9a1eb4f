// A replica's port faces the network like the iSCSI portal does: a broken or hostile peer gets
// the replica protocol's own answer (a refusal status where the frame itself was sound, else the
// connection closed, with a log line) and the controller's sessions on the same replica go on.
// Frames are built with CairnWire's codec and sent over a raw socket to a real replica process.

import CairnWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The ways a peer misuses a replica's port.
enum ReplicaAbuse: String, CaseIterable, Sendable {
    case garbage
    case truncatedHeader
    case headerChecksum
    case oversizedPayload
    case requestBeforeHello
    case helloOfAnotherVersion
    case helloForAnotherVolume
    case writeWithStaleEpoch
    case writeWithBadPayloadChecksum
    case settleWithStaleEpoch
    case settleOfAnotherShape
    case resizeToASmallerSize
    case resizeWithStaleEpoch
    case authToAReplicaWithoutASecret
}

/// What the replica must do with the abusive connection.
enum ReplicaAnswer: Equatable {
    /// Close it (the stream can no longer be trusted), having sent nothing.
    case closes
    /// Reply with this status to the last frame, then close.
    case refusesThenCloses(WireStatus)
    /// Reply with this status to the last frame and keep serving the connection.
    case refusesAndServes(WireStatus)

    var closesConnection: Bool {
        if case .refusesAndServes = self { return false }
        return true
    }
}

/// A header as it goes on the wire, its CRC computed.
func encoded(_ header: WireHeader) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: WireHeader.size)
    out.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
    return out
}

/// One frame: the header (lengths and checksums filled in) and its payload.
func wireFrame(_ header: WireHeader, _ payload: [UInt8] = [], corruptPayloadCRC: Bool = false) -> [UInt8] {
    var h = header
    h.payloadLength = UInt32(payload.count)
    h.payloadCRC = payload.withUnsafeBytes { wireChecksum($0.baseAddress, payload.count) } ^ (corruptPayloadCRC ? 1 : 0)
    return encoded(h) + payload
}

@Suite("Replica bad input", .serialized)
struct ReplicaBadInputTests {
    static let volumeSize: UInt64 = 64 << 20
    /// Past every block the workload writes (it stays below LBA 100,008 of 512 bytes).
    static let untouchedOffset: UInt64 = 60 << 20

    /// Sends the abuse (and, where it needs a session first, checks the hello's reply).
    static func abuse(_ a: ReplicaAbuse, _ c: RawISCSIClient, volume: String) throws {
        let hello = Hello(volume: volume, size: volumeSize, blockSize: 512, epoch: 0)
        let helloFrame = wireFrame(WireHeader(opcode: .hello, seq: 1), WireJSON.encode(hello))
        let block = [UInt8](repeating: 0xAB, count: 4096)
        let write = WireHeader(opcode: .write, seq: 2, epoch: 0, offset: untouchedOffset, extent: 4096)
        switch a {
        case .garbage:
            try c.send([UInt8](repeating: 0xEE, count: WireHeader.size))
        case .truncatedHeader:
            try c.send(Array(helloFrame.prefix(20)))
            shutdown(c.fd, Int32(SHUT_WR))
        case .headerChecksum:
            var f = helloFrame
            f[8] ^= 0xFF  // the sequence id, under the header's CRC
            try c.send(f)
        case .oversizedPayload:
            try c.send(encoded(WireHeader(opcode: .hello, seq: 1, payloadLength: UInt32(WireHeader.maxPayload + 1))))
        case .requestBeforeHello:
            try c.send(wireFrame(write, block))
        case .helloOfAnotherVersion:
            var h = hello
            h.protocolVersion = 99
            try c.send(wireFrame(WireHeader(opcode: .hello, seq: 1), WireJSON.encode(h)))
        case .helloForAnotherVolume:
            let other = Hello(volume: "someone-else", size: volumeSize, blockSize: 512, epoch: 0)
            try c.send(wireFrame(WireHeader(opcode: .hello, seq: 1), WireJSON.encode(other)))
        case .writeWithStaleEpoch:
            try c.send(helloFrame)
            try expectReply(c, status: .ok, a)
            try c.send(wireFrame(write, block))
        case .writeWithBadPayloadChecksum:
            try c.send(helloFrame)
            try expectReply(c, status: .ok, a)
            try c.send(wireFrame(write, block, corruptPayloadCRC: true))
        case .settleWithStaleEpoch:
            // It would unmark regions the current controller relies on after a crash.
            var all = RegionBitmap(volumeSize: volumeSize)
            all.mark(offset: 0, length: volumeSize)
            try c.send(helloFrame)
            try expectReply(c, status: .ok, a)
            try c.send(wireFrame(WireHeader(opcode: .settle, seq: 2, epoch: 0), all.encoded))
        case .settleOfAnotherShape:
            try c.send(helloFrame)
            try expectReply(c, status: .ok, a)
            try c.send(wireFrame(WireHeader(opcode: .settle, seq: 2, epoch: .max),
                                 RegionBitmap(volumeSize: 2 * volumeSize).encoded))
        case .resizeToASmallerSize:
            // A volume never shrinks: its data past the new end would be lost.
            try c.send(helloFrame)
            try expectReply(c, status: .ok, a)
            try c.send(wireFrame(WireHeader(opcode: .resize, seq: 2, epoch: .max, extent: volumeSize / 2)))
        case .resizeWithStaleEpoch:
            // A fenced controller must not grow the volume under the current one.
            try c.send(helloFrame)
            try expectReply(c, status: .ok, a)
            try c.send(wireFrame(WireHeader(opcode: .resize, seq: 2, epoch: 0, extent: 2 * volumeSize)))
        case .authToAReplicaWithoutASecret:
            try c.send(wireFrame(WireHeader(opcode: .auth, seq: 1), WireJSON.encode(AuthChallenge(nonce: ReplicaSecret.newNonce()))))
        }
    }

    static func answer(to a: ReplicaAbuse) -> ReplicaAnswer {
        switch a {
        case .garbage, .truncatedHeader, .headerChecksum, .oversizedPayload, .requestBeforeHello,
             .writeWithBadPayloadChecksum:
            return .closes
        case .helloOfAnotherVersion: return .refusesThenCloses(.badRequest)
        case .authToAReplicaWithoutASecret: return .refusesThenCloses(.unauthorized)
        case .resizeWithStaleEpoch: return .refusesAndServes(.staleEpoch)
        case .resizeToASmallerSize: return .refusesAndServes(.badRequest)
        case .helloForAnotherVolume: return .refusesThenCloses(.wrongVolume)
        case .writeWithStaleEpoch, .settleWithStaleEpoch: return .refusesAndServes(.staleEpoch)
        case .settleOfAnotherShape: return .refusesAndServes(.badRequest)
        }
    }

    /// Reads one reply frame (header and payload) and checks its status.
    static func expectReply(_ c: RawISCSIClient, status: WireStatus, _ a: ReplicaAbuse) throws {
        let (bytes, why) = c.receive(WireHeader.size)
        guard let bytes else { throw HarnessError("\(a): no reply (\(String(describing: why)))") }
        let h: WireHeader
        do { h = try bytes.withUnsafeBytes { p throws(WireError) in try WireHeader.decode(p.baseAddress!) } } catch {
            throw HarnessError("\(a): the reply's header does not decode: \(error)")
        }
        if h.payloadLength > 0 { _ = c.receive(Int(h.payloadLength)) }
        #expect(h.isReply && h.wireStatus == status, "\(a): reply \(h.opcode) status \(h.wireStatus), expected \(status)")
    }

    /// Whether the replica closes the connection (EOF) before the socket's receive timeout.
    static func closes(_ c: RawISCSIClient) -> Bool {
        while true {
            let (bytes, why) = c.receive(1)
            if bytes == nil { return why == .closed }
        }
    }

    @Test("abuse of a replica's port gets the replica protocol's answer; the controller's sessions on it go on",
          .timeLimit(.minutes(3)))
    func abuseIsAnsweredAndTheVolumeGoesOn() throws {
        let v = try ReplicatedVolume(name: "rbad")
        let controller = try #require(v.controller)
        #expect(v.waitAllRW(timeout: 30), "all three replicas should be RW before the abuse")
        let workload = VerifyingWorkload()
        workload.start(port: controller.port, target: controller.iqn)
        #expect(workload.waitForProgress(20), "the workload should run before the abuse")
        let logMark = v.log.count
        let replica = v.replicas[0]

        for a in ReplicaAbuse.allCases {
            let replicaLogMark = replica.logText.count
            let c = try RawISCSIClient(port: replica.port, timeoutSeconds: 5)
            try Self.abuse(a, c, volume: v.name)
            let answer = Self.answer(to: a)
            switch answer {
            case .closes:
                #expect(Self.closes(c), "\(a): the replica should close the connection")
            case .refusesThenCloses(let status):
                try Self.expectReply(c, status: status, a)
                #expect(Self.closes(c), "\(a): the replica should close the connection after refusing")
            case .refusesAndServes(let status):
                try Self.expectReply(c, status: status, a)
                try c.send(wireFrame(WireHeader(opcode: .ping, seq: 9)))
                try Self.expectReply(c, status: .ok, a)
            }
            // A peer that hangs up mid-frame has said all it will: an end of stream, not logged.
            if answer.closesConnection && a != .truncatedHeader {
                let logged = replica.logText.dropFirst(replicaLogMark)
                #expect(logged.contains("closing connection") || logged.contains("refused"),
                        "\(a): the replica should log why it closed the connection:\n\(logged)")
            }
            #expect(replica.isRunning, "\(a): the replica process must survive")
            #expect(workload.waitForProgress(10), "\(a): the controller's sessions should go on")
        }

        workload.stop()
        #expect(workload.errors.load(ordering: .relaxed) == 0,
                "workload: \(workload.firstError.withLock { $0 } ?? "")")
        let after = String(v.log.dropFirst(logMark))
        #expect(!after.contains("replica link down"), "no replica should have been ejected:\n\(after)")
        #expect(v.waitAllRW(timeout: 5))
        // Nothing the abusers sent reached the data: the three copies are identical, and the
        // block the stale-epoch write aimed at was never written.
        #expect(controller.stop(timeout: 10) == 0)
        v.controller = nil
        for r in v.replicas { r.stop() }
        #expect(try filesIdentical(v.replicas.map(\.dataFile)))
        #expect(dataFile(of: replica, holds: 0, at: Int(Self.untouchedOffset), length: 4096),
                "the stale-epoch write must not have reached the data file")
        for r in v.replicas {
            let bytes = try FileManager.default.attributesOfItem(atPath: r.dataFile.path)[.size] as? Int
            #expect(bytes == Int(Self.volumeSize), "no refused resize may change a replica's size: \(bytes ?? -1)")
        }
    }
}
