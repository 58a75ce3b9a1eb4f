@testable import CairnISCSI
import Testing

func loginRequest(transit: Bool = true, cont: Bool = false, csg: UInt8, nsg: UInt8, isid: UInt64 = 0x23d0_0000_0001,
                  tsih: UInt16 = 0, versionMin: UInt8 = 0) -> BasicHeaderSegment {
    var h = BasicHeaderSegment()
    h.setOpcode(.loginRequest, immediate: true)
    h[1] = (transit ? 0x80 : 0) | (cont ? 0x40 : 0) | (csg << 2) | nsg
    h[3] = versionMin
    h.setU64(8, (isid << 16) | UInt64(tsih))
    h.setU32(16, 1)
    return h
}

func keys(_ s: String...) -> [UInt8] { TextKeys(s.map { p in
    let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
    return (parts[0], parts.count > 1 ? parts[1] : "")
}).encode() }

let targetIQN = "iqn.2026-11.io.cairn:vol"
let initiatorIQN = "iqn.2026-11.io.test:init"

func negotiator(chap: CHAPCredentials? = nil, mutual: CHAPCredentials? = nil) -> LoginNegotiator {
    var info = LoginTargetInfo(targetName: targetIQN)
    info.portals = [ISCSIPortalAddress(host: "10.0.0.1", port: 3260), ISCSIPortalAddress(host: "10.0.0.2", port: 3261)]
    info.chap = chap
    info.mutualChap = mutual
    return LoginNegotiator(info: info)
}

@Suite struct LoginNegotiatorTests {
    /// One row per RFC 7143 §13 rule: what the initiator offers, what the target must answer.
    static let rules: [(offer: String, answer: String)] = [
        ("HeaderDigest=CRC32C,None", "CRC32C"),
        ("HeaderDigest=None,CRC32C", "None"),
        ("HeaderDigest=MD5", "Reject"),
        ("DataDigest=CRC32C", "CRC32C"),
        ("MaxConnections=4", "1"),                     // we support one connection per session
        ("InitialR2T=No", "No"),                       // OR with our No
        ("InitialR2T=Yes", "Yes"),
        ("ImmediateData=Yes", "Yes"),                  // AND with our Yes
        ("ImmediateData=No", "No"),
        ("ImmediateData=Maybe", "Reject"),
        ("MaxBurstLength=262144", "262144"),           // min
        ("MaxBurstLength=99999999", "Reject"),         // out of range
        ("FirstBurstLength=65536", "65536"),
        ("DefaultTime2Wait=0", "2"),                   // max
        ("DefaultTime2Retain=60", "20"),               // min
        ("MaxOutstandingR2T=1", "1"),                  // min
        ("MaxOutstandingR2T=1000", "16"),
        ("DataPDUInOrder=No", "Yes"),                  // OR with our Yes
        ("DataSequenceInOrder=No", "Yes"),
        ("ErrorRecoveryLevel=2", "0"),                 // min; we support 0
        ("IFMarker=Yes", "No"),
        ("OFMarker=No", "No"),
        ("MaxRecvDataSegmentLength=65536", "262144"),  // declarative: the target declares its own
        ("X-com.example.Foo=1", "NotUnderstood"),
        ("WhatIsThis=1", "NotUnderstood"),
    ]

    @Test(arguments: rules)
    func operationalKeyFollowsItsRule(offer: String, answer: String) {
        var n = negotiator()
        let r = n.handle(loginRequest(csg: 1, nsg: 3), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)", offer))
        #expect(r.status == .success)
        let key = String(offer.split(separator: "=")[0])
        #expect(r.keys[key] == answer)
    }

    @Test func negotiatedValuesReachSessionParameters() {
        var n = negotiator()
        let r = n.handle(loginRequest(csg: 1, nsg: 3), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)",
            "HeaderDigest=CRC32C", "DataDigest=None", "InitialR2T=No", "MaxRecvDataSegmentLength=65536",
            "MaxBurstLength=131072", "FirstBurstLength=262144", "MaxOutstandingR2T=4"))
        #expect(r.outcome == .fullFeature && r.transit && r.nsg == 3)
        #expect(n.params.headerDigest && !n.params.dataDigest && !n.params.initialR2T)
        #expect(n.params.initiatorMaxRecvDataSegmentLength == 65536)
        #expect(n.params.maxBurstLength == 131072)
        #expect(n.params.firstBurstLength == 131072)  // never above MaxBurstLength
        #expect(n.params.maxOutstandingR2T == 4)
        #expect(r.keys["TargetPortalGroupTag"] == "1")
        #expect(r.keys["MaxRecvDataSegmentLength"] == "262144")
    }

    static let failures: [(name: String, bhs: BasicHeaderSegment, text: String, status: LoginStatus)] = [
        ("wrong target", loginRequest(csg: 1, nsg: 3), "InitiatorName=\(initiatorIQN)\0TargetName=iqn.x:other\0", .notFound),
        ("no initiator name", loginRequest(csg: 1, nsg: 3), "TargetName=\(targetIQN)\0", .missingParameter),
        ("no target name", loginRequest(csg: 1, nsg: 3), "InitiatorName=\(initiatorIQN)\0", .missingParameter),
        ("version", loginRequest(csg: 1, nsg: 3, versionMin: 2), "InitiatorName=\(initiatorIQN)\0TargetName=\(targetIQN)\0", .unsupportedVersion),
        ("malformed text", loginRequest(csg: 1, nsg: 3), "InitiatorName\0", .initiatorError),
        ("duplicate key", loginRequest(csg: 1, nsg: 3), "InitiatorName=\(initiatorIQN)\0TargetName=\(targetIQN)\0InitialR2T=No\0InitialR2T=Yes\0", .initiatorError),
        ("bad session type", loginRequest(csg: 1, nsg: 3), "InitiatorName=\(initiatorIQN)\0SessionType=Weird\0", .sessionTypeNotSupported),
        ("T and C", loginRequest(transit: true, cont: true, csg: 1, nsg: 3), "", .initiatorError),
        ("NSG 2", loginRequest(csg: 1, nsg: 2), "InitiatorName=\(initiatorIQN)\0TargetName=\(targetIQN)\0", .initiatorError),
        ("CSG 3", loginRequest(csg: 3, nsg: 3), "", .initiatorError),
    ]

    @Test(arguments: failures)
    func invalidLoginFailsWithRFCStatus(name: String, bhs: BasicHeaderSegment, text: String, status: LoginStatus) {
        var n = negotiator()
        let r = n.handle(bhs, data: Array(text.utf8))
        #expect(r.status == status, "\(name)")
        if case .failed = r.outcome {} else { Issue.record("\(name): outcome \(r.outcome)") }
    }

    @Test func securityThenOperationalThenFullFeature() {
        var n = negotiator()
        let r1 = n.handle(loginRequest(csg: 0, nsg: 1), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)", "AuthMethod=None"))
        #expect(r1.keys["AuthMethod"] == "None" && r1.transit && r1.csg == 0 && r1.nsg == 1 && r1.outcome == .proceed)
        let r2 = n.handle(loginRequest(csg: 1, nsg: 3), data: keys("ImmediateData=Yes"))
        #expect(r2.transit && r2.csg == 1 && r2.nsg == 3 && r2.outcome == .fullFeature)
    }

    @Test func targetDoesNotTransitUntilAsked() {
        var n = negotiator()
        let r = n.handle(loginRequest(transit: false, csg: 1, nsg: 0), data: keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)"))
        #expect(!r.transit && r.outcome == .proceed)
    }

    @Test func continuedTextIsGatheredAcrossPDUs() {
        var n = negotiator()
        let all = keys("InitiatorName=\(initiatorIQN)", "TargetName=\(targetIQN)", "InitialR2T=No")
        let r1 = n.handle(loginRequest(transit: false, cont: true, csg: 1, nsg: 0), data: Array(all.prefix(10)))
        #expect(r1.keys.pairs.isEmpty && r1.outcome == .proceed)
        let r2 = n.handle(loginRequest(csg: 1, nsg: 3), data: Array(all.dropFirst(10)))
        #expect(r2.keys["InitialR2T"] == "No" && r2.outcome == .fullFeature)
    }

    @Test func discoverySessionNeedsNoTargetNameAndMarksSessionKeysIrrelevant() {
        var n = negotiator()
        let r = n.handle(loginRequest(csg: 1, nsg: 3), data: keys("InitiatorName=\(initiatorIQN)", "SessionType=Discovery", "InitialR2T=No", "MaxBurstLength=4096"))
        #expect(r.outcome == .fullFeature && n.params.sessionType == .discovery)
        #expect(r.keys["InitialR2T"] == "Irrelevant" && r.keys["MaxBurstLength"] == "Irrelevant")
        #expect(r.keys["TargetPortalGroupTag"] == nil)
    }

    @Test func sendTargetsAllListsEveryPortalInGroupOne() {
        var info = LoginTargetInfo(targetName: targetIQN)
        info.portals = [ISCSIPortalAddress(host: "10.0.0.1", port: 3260), ISCSIPortalAddress(host: "::1", port: 3261)]
        let k = sendTargetsResponse("All", info: info, sessionType: .discovery)
        #expect(k.pairs.map { "\($0.key)=\($0.value)" } == ["TargetName=\(targetIQN)", "TargetAddress=10.0.0.1:3260,1", "TargetAddress=[::1]:3261,1"])
        #expect(sendTargetsResponse("All", info: info, sessionType: .normal).pairs.isEmpty)
        #expect(sendTargetsResponse("", info: info, sessionType: .normal).pairs.count == 3)
    }
}
