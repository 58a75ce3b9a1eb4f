// Authenticated replica links (`--secret-file` on both sides): a replica serves only a controller
// that proves the volume's secret, and a controller uses only a replica that proves it back.
// Hostile handshakes are sent over a raw socket to a real replica of a serving volume (in the
// style of ReplicaBadInputTests); mismatched pairs are real processes.

import CairnIO
import CairnWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Writes `secret` to DIR/NAME with mode 0600 and returns its path.
func writeSecretFile(_ dir: URL, _ name: String, _ secret: String) throws -> String {
    let url = dir.appendingPathComponent(name)
    try (secret + "\n").write(to: url, atomically: true, encoding: .utf8)
    chmod(url.path, 0o600)
    return url.path
}

/// Reads one reply frame: its header and payload.
func readReply(_ c: RawISCSIClient, _ what: String) throws -> (WireHeader, [UInt8]) {
    let (bytes, why) = c.receive(WireHeader.size)
    guard let bytes else { throw HarnessError("\(what): no reply (\(String(describing: why)))") }
    let h: WireHeader
    do { h = try bytes.withUnsafeBytes { p throws(WireError) in try WireHeader.decode(p.baseAddress!) } } catch {
        throw HarnessError("\(what): the reply's header does not decode: \(error)")
    }
    guard h.payloadLength > 0 else { return (h, []) }
    let (payload, pwhy) = c.receive(Int(h.payloadLength))
    guard let payload else { throw HarnessError("\(what): no payload (\(String(describing: pwhy)))") }
    return (h, payload)
}

/// The frames a controller holding `secret` sends to shake hands, built as it builds them; the
/// replica's answer to the first is checked (its proof must verify with `secret` when `honest`).
struct ForgedHandshake {
    var sent: [[UInt8]] = []

    /// Sends `auth`, reads the replica's nonce and proof, sends the hello with a proof made with
    /// `secret`; returns the hello reply's status.
    mutating func run(_ c: RawISCSIClient, volume: String, size: UInt64, secret: ReplicaSecret,
                      realSecret: ReplicaSecret) throws -> WireStatus {
        let nC = ReplicaSecret.newNonce()
        let auth = wireFrame(WireHeader(opcode: .auth, seq: 1), WireJSON.encode(AuthChallenge(nonce: nC)))
        try c.send(auth)
        sent.append(auth)
        let (h, payload) = try readReply(c, "auth")
        guard h.opcode == .auth, h.isReply, h.wireStatus == .ok else {
            throw HarnessError("auth reply \(h.opcode) \(h.wireStatus)")
        }
        let answer = try WireJSON.decode(AuthResponse.self, payload)
        let nR = try #require(Hex.decode(answer.nonce))
        // The replica proves it holds the real secret, whoever asks.
        #expect(realSecret.verify(try #require(Hex.decode(answer.proof)), .replica, controllerNonce: nC, replicaNonce: nR),
                "the replica's proof should verify with the volume's secret")
        let proof = secret.proof(.controller, controllerNonce: nC, replicaNonce: nR)
        let hello = Hello(volume: volume, size: size, blockSize: 512, epoch: 0, proof: Hex.encode(proof))
        let frame = wireFrame(WireHeader(opcode: .hello, seq: 2), WireJSON.encode(hello))
        try c.send(frame)
        sent.append(frame)
        return try readReply(c, "hello").0.wireStatus
    }
}

@Suite("Replica link authentication", .serialized)
struct ReplicaAuthTests {
    static let size: UInt64 = 64 << 20

    static func refusedCount(_ r: CairnReplicaProcess) throws -> Int {
        let text = try HTTPClient.get(try #require(r.http) + "/metrics").text
        let line = text.split(separator: "\n").first { $0.hasPrefix("cairn_replica_handshakes_refused_total{reason=\"unauthorized\"}") }
        return Int(Double(line?.split(separator: " ").last ?? "") ?? -1)
    }

    @Test("handshakes without the secret, with a wrong one, or replayed are refused and logged; the volume goes on",
          .timeLimit(.minutes(3)))
    func hostileHandshakesAreRefused() throws {
        let root = try Checkout.temporaryDirectory("cairn-rtest-auth")
        let secretText = "volume secret of rauth \(UUID().uuidString)"
        let secretPath = try writeSecretFile(root, "secret", secretText)
        let secret = ReplicaSecret(Array(secretText.utf8))
        let wrong = ReplicaSecret(Array("not the volume's secret".utf8))
        let v = try ReplicatedVolume(name: "rauth", controllerArguments: ["--replica-timeout", "2s", "--secret-file", secretPath],
                                     replicaArguments: ["--secret-file", secretPath, "--http", "127.0.0.1:0"], root: root)
        let controller = try #require(v.controller)
        #expect(v.waitAllRW(timeout: 30), "all three replicas should be RW with the secret on both sides")
        let workload = VerifyingWorkload()
        workload.start(port: controller.port, target: controller.iqn)
        #expect(workload.waitForProgress(20), "the workload should run before the abuse")
        let logMark = v.log.count
        let replica = v.replicas[0]
        let refusedBefore = try Self.refusedCount(replica)

        // 1. No secret: a hello as a controller without --secret-file sends it.
        do {
            let mark = replica.logText.count
            let c = try RawISCSIClient(port: replica.port, timeoutSeconds: 5)
            let hello = Hello(volume: v.name, size: Self.size, blockSize: 512, epoch: 0)
            try c.send(wireFrame(WireHeader(opcode: .hello, seq: 1), WireJSON.encode(hello)))
            #expect(try readReply(c, "no secret").0.wireStatus == .unauthorized)
            #expect(ReplicaBadInputTests.closes(c), "no secret: the replica should close the connection")
            #expect(replica.logText.dropFirst(mark).contains("did not authenticate"),
                    "no secret: the replica should log why:\n\(replica.logText.dropFirst(mark))")
        }
        // 2. A wrong secret: the proof in the hello does not verify.
        do {
            let mark = replica.logText.count
            let c = try RawISCSIClient(port: replica.port, timeoutSeconds: 5)
            var forged = ForgedHandshake()
            #expect(try forged.run(c, volume: v.name, size: Self.size, secret: wrong, realSecret: secret) == .unauthorized)
            #expect(ReplicaBadInputTests.closes(c), "wrong secret: the replica should close the connection")
            #expect(replica.logText.dropFirst(mark).contains("failed to prove the volume's secret"),
                    "wrong secret: the replica should log why:\n\(replica.logText.dropFirst(mark))")
        }
        // 3. A replay: a good handshake captured byte for byte, sent again on a new connection.
        do {
            let good = try RawISCSIClient(port: replica.port, timeoutSeconds: 5)
            var captured = ForgedHandshake()
            #expect(try captured.run(good, volume: v.name, size: Self.size, secret: secret, realSecret: secret) == .ok,
                    "the good handshake should be accepted")
            shutdown(good.fd, Int32(SHUT_RDWR))
            let mark = replica.logText.count
            let c = try RawISCSIClient(port: replica.port, timeoutSeconds: 5)
            try c.send(captured.sent[0])
            let (h, _) = try readReply(c, "replayed auth")
            #expect(h.opcode == .auth && h.wireStatus == .ok, "the replayed challenge gets a fresh nonce")
            try c.send(captured.sent[1])
            #expect(try readReply(c, "replayed hello").0.wireStatus == .unauthorized,
                    "a proof made for another nonce must not be accepted")
            #expect(ReplicaBadInputTests.closes(c), "replay: the replica should close the connection")
            #expect(replica.logText.dropFirst(mark).contains("failed to prove the volume's secret"),
                    "replay: the replica should log why:\n\(replica.logText.dropFirst(mark))")
        }
        #expect(try Self.refusedCount(replica) == refusedBefore + 3, "each refusal is counted in /metrics")
        #expect(replica.isRunning)
        #expect(workload.waitForProgress(10), "the controller's sessions should go on")
        workload.stop()
        #expect(workload.errors.load(ordering: .relaxed) == 0, "workload: \(workload.firstError.withLock { $0 } ?? "")")
        let after = String(v.log.dropFirst(logMark))
        #expect(!after.contains("replica link down"), "no replica should have been ejected:\n\(after)")
    }

    @Test("a controller and a replica whose secrets differ, or of which one has none, refuse each other",
          .timeLimit(.minutes(3)))
    func mismatchedSecretsAreRefused() throws {
        let root = try Checkout.temporaryDirectory("cairn-rtest-authpair")
        defer { try? FileManager.default.removeItem(at: root) }
        let good = try writeSecretFile(root, "good", "the volume's secret \(UUID().uuidString)")
        let other = try writeSecretFile(root, "other", "another volume's secret")

        struct Pair {
            let name: String
            let controller: [String]
            let replica: [String]
            /// In the controller's log.
            let controllerSays: String
            /// In the replica's log, or nil where the controller refuses before saying anything.
            let replicaSays: String?
        }
        let pairs = [
            Pair(name: "ctlsecret", controller: ["--secret-file", good], replica: [],
                 controllerSays: "replica refused to authenticate: unauthorized (it has no --secret-file)",
                 replicaSays: "this replica has no --secret-file"),
            Pair(name: "repsecret", controller: [], replica: ["--secret-file", good],
                 controllerSays: "replica refused the handshake: unauthorized", replicaSays: "did not authenticate"),
            Pair(name: "wrongrep", controller: ["--secret-file", good], replica: ["--secret-file", other],
                 controllerSays: "the replica failed to prove the volume's secret", replicaSays: nil),
        ]
        for p in pairs {
            let r = try CairnReplicaProcess(directory: root.appendingPathComponent(p.name), arguments: p.replica)
            let c = try CairnController(name: p.name, size: "64MiB", arguments: ["--replica-timeout", "2s"] + p.controller,
                                        replicas: [r.port])
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline && !c.logText.contains(p.controllerSays) { usleep(100_000) }
            #expect(c.logText.contains(p.controllerSays), "\(p.name): the controller should log why:\n\(c.logText)")
            if let says = p.replicaSays {
                #expect(r.logText.contains(says), "\(p.name): the replica should log why:\n\(r.logText)")
            }
            #expect(!c.logText.contains("replica connected"), "\(p.name): the link must not come up:\n\(c.logText)")
            #expect(!r.logText.contains("controller connected"), "\(p.name): the replica must not serve it:\n\(r.logText)")
            #expect(c.stop(timeout: 10) == 0)
            r.stop()
        }
    }
}
