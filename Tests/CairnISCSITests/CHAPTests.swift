@testable import CairnISCSI
import Testing

/// Drives the negotiator through CHAP as an initiator would.
struct CHAPDriver {
    var n: LoginNegotiator
    var id: UInt8 = 0
    var challenge: [UInt8] = []

    init(_ n: LoginNegotiator) { self.n = n }

    mutating func start() -> LoginReply {
        let r1 = n.handle(loginRequest(transit: false, csg: 0, nsg: 0), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)", "AuthMethod=CHAP,None"))
        guard r1.outcome == .proceed else { return r1 }
        let r2 = n.handle(loginRequest(transit: false, csg: 0, nsg: 0), data: keys("CHAP_A=7,5"))
        if let i = r2.keys["CHAP_I"], let v = UInt8(i) { id = v }
        if let c = r2.keys["CHAP_C"], let b = CHAP.decodeBinary(c) { challenge = b }
        return r2
    }

    mutating func answer(user: String, secret: String, extra: [String] = []) -> LoginReply {
        let resp = CHAP.response(identifier: id, secret: Array(secret.utf8), challenge: challenge)
        let k = ["CHAP_N=\(user)", "CHAP_R=\(CHAP.encodeHex(resp))"] + extra
        return n.handle(loginRequest(csg: 0, nsg: 1), data: TextKeys(k.map { s in
            let p = s.split(separator: "=", maxSplits: 1).map(String.init); return (p[0], p[1]) }).encode())
    }
}

@Suite struct CHAPTests {
    let creds = CHAPCredentials(user: "alice", secret: "secret-12chars")
    let targetCreds = CHAPCredentials(user: "target", secret: "target-secret-1")

    @Test func md5MatchesRFC1321AndTheFallbackAgrees() {
        #expect(CHAP.encodeHex(SoftMD5.hash(Array("abc".utf8))) == "0x900150983cd24fb0d6963f7d28e17f72")
        let input = Array("The quick brown fox jumps over the lazy dog, more than 64 bytes of it to span blocks".utf8)
        let viaCrypto = CHAP.response(identifier: input[0], secret: Array(input[1..<10]), challenge: Array(input[10...]))
        #expect(viaCrypto == SoftMD5.hash(input))
    }

    @Test func binaryValuesDecodeFromHexAndBase64() {
        #expect(CHAP.decodeBinary("0x0aFF") == [0x0a, 0xff])
        #expect(CHAP.decodeBinary("0bAAEC/w==") == [0, 1, 2, 0xff])
        #expect(CHAP.decodeBinary("0xzz") == nil)
        #expect(CHAP.decodeBinary("1234") == nil)
    }

    @Test func oneWayCHAPWithTheRightSecretSucceeds() {
        var d = CHAPDriver(negotiator(chap: creds))
        let r = d.start()
        #expect(r.keys["CHAP_A"] == "5" && d.challenge.count == 16)
        let ok = d.answer(user: "alice", secret: "secret-12chars")
        #expect(ok.status == .success && ok.transit && ok.nsg == 1)
        let ff = d.n.handle(loginRequest(csg: 1, nsg: 3), data: [])
        #expect(ff.outcome == .fullFeature)
    }

    @Test func wrongSecretFailsWithAuthenticationFailure() {
        var d = CHAPDriver(negotiator(chap: creds))
        _ = d.start()
        let r = d.answer(user: "alice", secret: "wrong-secret!!")
        #expect(r.status == .authenticationFailure)
    }

    @Test func wrongUserFailsWithAuthenticationFailure() {
        var d = CHAPDriver(negotiator(chap: creds))
        _ = d.start()
        #expect(d.answer(user: "mallory", secret: "secret-12chars").status == .authenticationFailure)
    }

    @Test func skippingSecurityWhenCHAPIsRequiredFails() {
        var n = negotiator(chap: creds)
        let r = n.handle(loginRequest(csg: 1, nsg: 3), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)"))
        #expect(r.status == .authenticationFailure)
    }

    @Test func offeringOnlyNoneWhenCHAPIsRequiredFails() {
        var n = negotiator(chap: creds)
        let r = n.handle(loginRequest(csg: 0, nsg: 1), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)", "AuthMethod=None"))
        #expect(r.status == .authenticationFailure && r.keys["AuthMethod"] == "Reject")
    }

    @Test func unsupportedCHAPAlgorithmFails() {
        var n = negotiator(chap: creds)
        _ = n.handle(loginRequest(transit: false, csg: 0, nsg: 0), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)", "AuthMethod=CHAP"))
        let r = n.handle(loginRequest(transit: false, csg: 0, nsg: 0), data: keys("CHAP_A=7"))
        #expect(r.status == .authenticationFailure)
    }

    @Test func mutualCHAPTargetAnswersTheInitiatorsChallenge() {
        var d = CHAPDriver(negotiator(chap: creds, mutual: targetCreds))
        _ = d.start()
        let myChallenge: [UInt8] = (0..<16).map { UInt8($0 * 3) }
        let r = d.answer(user: "alice", secret: "secret-12chars", extra: ["CHAP_I=77", "CHAP_C=\(CHAP.encodeHex(myChallenge))"])
        #expect(r.status == .success && r.transit)
        #expect(r.keys["CHAP_N"] == "target")
        let expected = CHAP.response(identifier: 77, secret: Array("target-secret-1".utf8), challenge: myChallenge)
        #expect(r.keys["CHAP_R"] == CHAP.encodeHex(expected))
    }

    @Test func reflectedChallengeIsRefused() {
        var d = CHAPDriver(negotiator(chap: creds, mutual: targetCreds))
        _ = d.start()
        let r = d.answer(user: "alice", secret: "secret-12chars", extra: ["CHAP_I=\(d.id)", "CHAP_C=\(CHAP.encodeHex(d.challenge))"])
        #expect(r.status == .authenticationFailure)
    }

    @Test func mutualConfiguredButNotRequestedStillAuthenticatesOneWay() {
        var d = CHAPDriver(negotiator(chap: creds, mutual: targetCreds))
        _ = d.start()
        let r = d.answer(user: "alice", secret: "secret-12chars")
        #expect(r.status == .success && r.keys["CHAP_N"] == nil)
    }
}
