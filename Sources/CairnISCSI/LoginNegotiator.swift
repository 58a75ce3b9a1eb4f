/// Where a portal is, as SendTargets reports it.
public struct ISCSIPortalAddress: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }
    /// "host:port", with brackets around an IPv6 address.
    public var textAddress: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// What the target knows when it negotiates a login: pure data, no sockets (fuzzable).
public struct LoginTargetInfo: Sendable {
    public var targetName: String
    public var targetAlias: String?
    public var portalGroupTag: UInt16 = 1
    /// Addresses for SendTargets (already resolved to the bound ports).
    public var portals: [ISCSIPortalAddress] = []
    public var chap: CHAPCredentials?
    public var mutualChap: CHAPCredentials?
    /// Limits on our side of each negotiation.
    public var maxRecvDataSegmentLength = 262_144
    public var maxBurstLength = 16_776_192
    public var firstBurstLength = 16_776_192
    public var maxOutstandingR2T = 16

    public init(targetName: String) { self.targetName = targetName }
}

public enum SessionType: Sendable, Equatable { case normal, discovery }

/// The operational parameters of a session once login is done (RFC 7143 §13 defaults).
public struct SessionParameters: Sendable, Equatable {
    public var sessionType: SessionType = .normal
    public var initiatorName = ""
    public var initiatorAlias: String?
    public var targetName = ""
    public var isid: UInt64 = 0
    public var headerDigest = false
    public var dataDigest = false
    public var initialR2T = true
    public var immediateData = true
    /// The largest data segment the initiator accepts (what we may send).
    public var initiatorMaxRecvDataSegmentLength = 8192
    /// The largest data segment we accept (what we declared).
    public var targetMaxRecvDataSegmentLength = 8192
    public var maxBurstLength = 262_144
    public var firstBurstLength = 65_536
    public var defaultTime2Wait = 2
    public var defaultTime2Retain = 20
    public var maxOutstandingR2T = 1
    public var dataPDUInOrder = true
    public var dataSequenceInOrder = true
    public var errorRecoveryLevel = 0
    public var maxConnections = 1
    public init() {}
}

/// Login status class and detail (RFC 7143 §11.13.5).
public struct LoginStatus: Sendable, Equatable, CustomStringConvertible {
    public var statusClass: UInt8
    public var detail: UInt8
    public init(_ c: UInt8, _ d: UInt8) { statusClass = c; detail = d }
    public static let success = LoginStatus(0, 0)
    public static let initiatorError = LoginStatus(2, 0x00)
    public static let authenticationFailure = LoginStatus(2, 0x01)
    public static let authorizationFailure = LoginStatus(2, 0x02)
    public static let notFound = LoginStatus(2, 0x03)
    public static let targetRemoved = LoginStatus(2, 0x04)
    public static let unsupportedVersion = LoginStatus(2, 0x05)
    public static let tooManyConnections = LoginStatus(2, 0x06)
    public static let missingParameter = LoginStatus(2, 0x07)
    public static let cantIncludeInSession = LoginStatus(2, 0x08)
    public static let sessionTypeNotSupported = LoginStatus(2, 0x09)
    public static let sessionDoesNotExist = LoginStatus(2, 0x0a)
    public static let invalidDuringLogin = LoginStatus(2, 0x0b)
    public static let targetError = LoginStatus(3, 0x00)
    public static let outOfResources = LoginStatus(3, 0x02)
    public var description: String {
        let hex = Array("0123456789abcdef")
        return "0x" + [statusClass >> 4, statusClass & 15, detail >> 4, detail & 15].map { String(hex[Int($0)]) }.joined()
    }
}

/// The target's answer to one Login Request.
public struct LoginReply: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case proceed              // more login PDUs expected
        case fullFeature          // this response moves the session to full-feature phase
        case failed(String)       // send this response, then close the connection
    }
    public var transit = false
    public var csg: UInt8 = 0
    public var nsg: UInt8 = 0
    public var status = LoginStatus.success
    public var keys = TextKeys()
    public var outcome = Outcome.proceed
}

/// The login state machine: security and operational stages, key negotiation (§6, §13) and CHAP
/// (§12.1.3). Free of I/O so unit tests and the fuzz harness drive it with plain values.
public struct LoginNegotiator: Sendable {
    public let info: LoginTargetInfo
    public private(set) var params = SessionParameters()

    enum Auth: Sendable { case none, chosenNone, chosenCHAP, challengeSent(id: UInt8, challenge: [UInt8]), done }
    var auth = Auth.none
    var started = false
    var stage: UInt8 = 0
    var seenKeys: Set<String> = []
    var declaredTPGT = false
    var declaredMRDSL = false
    var pendingText: [UInt8] = []
    var firstISID: UInt64 = 0
    var firstTSIH: UInt16 = 0
    var firstCID: UInt16 = 0
    var firstITT: UInt32 = 0
    /// A challenge we sent, to refuse the same one coming back (reflection attack).
    var ourChallenge: [UInt8] = []

    public init(info: LoginTargetInfo) {
        self.info = info
        params.targetMaxRecvDataSegmentLength = info.maxRecvDataSegmentLength
    }

    var authRequired: Bool { info.chap != nil }

    /// Handles one Login Request (header + data segment).
    public mutating func handle(_ bhs: BasicHeaderSegment, data: [UInt8]) -> LoginReply {
        var r = LoginReply()
        r.csg = bhs.loginCSG
        func fail(_ s: LoginStatus, _ why: String) -> LoginReply {
            var f = LoginReply()
            f.keys = r.keys  // e.g. AuthMethod=Reject explains the failure
            f.csg = bhs.loginCSG
            f.status = s
            f.outcome = .failed(why)
            return f
        }
        guard bhs.opcode == .loginRequest else { return fail(.initiatorError, "not a login request") }
        if !started {
            guard bhs.versionMin == 0 else { return fail(.unsupportedVersion, "version min \(bhs.versionMin)") }
            firstISID = bhs.isid; firstTSIH = bhs.tsih; firstCID = bhs.cid; firstITT = bhs.initiatorTaskTag
            params.isid = bhs.isid
            stage = bhs.loginCSG
        } else if bhs.isid != firstISID || bhs.tsih != firstTSIH || bhs.cid != firstCID {
            return fail(.initiatorError, "ISID/TSIH/CID changed during login")
        }
        let csg = bhs.loginCSG, nsg = bhs.loginNSG
        guard csg == 0 || csg == 1 else { return fail(.initiatorError, "CSG \(csg)") }
        if bhs.loginTransit && bhs.loginContinue { return fail(.initiatorError, "T and C both set") }
        if bhs.loginTransit && (nsg <= csg || nsg == 2) { return fail(.initiatorError, "bad NSG \(nsg) from CSG \(csg)") }
        if csg < stage { return fail(.initiatorError, "stage went back") }
        if csg == 1 && authRequired && !authDone { return fail(.authenticationFailure, "skipped security stage") }
        stage = csg

        // Text spread over several PDUs (C bit): gather, answer with an empty response.
        guard pendingText.count + data.count <= 65_536 else { return fail(.initiatorError, "login text too long") }
        pendingText += data
        if bhs.loginContinue {
            r.csg = csg
            return r
        }
        let text = pendingText
        pendingText = []
        let keys: TextKeys
        switch TextKeys.parse(text) {
        case .success(let k): keys = k
        case .failure(let e): return fail(.initiatorError, "malformed text: \(e)")
        }

        for (key, value) in keys.pairs {
            // CHAP keys may not repeat either; every key is negotiated once per login (§6.2).
            guard seenKeys.insert(key).inserted else { return fail(.initiatorError, "key \(key) sent twice") }
            switch key {
            case "InitiatorName":
                guard !value.isEmpty else { return fail(.initiatorError, "empty InitiatorName") }
                params.initiatorName = value
            case "InitiatorAlias": params.initiatorAlias = value
            case "TargetName": params.targetName = value
            case "SessionType":
                switch value {
                case "Normal": params.sessionType = .normal
                case "Discovery": params.sessionType = .discovery
                default: return fail(.sessionTypeNotSupported, "SessionType=\(value)")
                }
            case "AuthMethod", "CHAP_A", "CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C":
                guard csg == 0 else { return fail(.initiatorError, "\(key) outside the security stage") }
            default:
                if let answer = negotiateOperational(key, value) { r.keys.append(key, answer) }
            }
        }

        if !started {
            started = true
            guard !params.initiatorName.isEmpty else { return fail(.missingParameter, "no InitiatorName") }
            if params.sessionType == .normal {
                guard !params.targetName.isEmpty else { return fail(.missingParameter, "no TargetName") }
                guard params.targetName == info.targetName else { return fail(.notFound, "unknown target \(params.targetName)") }
            }
        }
        if params.sessionType == .normal && !declaredTPGT {
            declaredTPGT = true
            r.keys.append("TargetPortalGroupTag", String(info.portalGroupTag))
            if let alias = info.targetAlias { r.keys.append("TargetAlias", alias) }
        }

        if csg == 0 {
            if let failure = securityStage(keys, into: &r) { return fail(.authenticationFailure, failure) }
        }

        // Transit only when the initiator asks and we are ready (authentication finished).
        if bhs.loginTransit {
            let ready = csg == 1 || authDone || (!authRequired && isNoneChosenOrNotStarted)
            if ready {
                r.transit = true
                r.nsg = nsg
                if nsg == 3 || csg == 1 { declareMRDSL(into: &r) }
                if nsg == 3 {
                    finishParameters()
                    r.outcome = .fullFeature
                }
                stage = nsg == 3 ? 3 : nsg
            }
        }
        r.csg = csg
        return r
    }

    var authDone: Bool {
        switch auth {
        case .done, .chosenNone: return true
        default: return false
        }
    }

    var isNoneChosenOrNotStarted: Bool {
        switch auth {
        case .none, .chosenNone: return true
        default: return false
        }
    }

    mutating func declareMRDSL(into r: inout LoginReply) {
        guard !declaredMRDSL else { return }
        declaredMRDSL = true
        r.keys.append("MaxRecvDataSegmentLength", String(info.maxRecvDataSegmentLength))
    }

    mutating func finishParameters() {
        if params.firstBurstLength > params.maxBurstLength { params.firstBurstLength = params.maxBurstLength }
    }

    /// The security stage: AuthMethod and the CHAP exchange. Returns a failure reason, or nil.
    mutating func securityStage(_ keys: TextKeys, into r: inout LoginReply) -> String? {
        if let methods = keys["AuthMethod"] {
            let offered = methods.split(separator: ",").map(String.init)
            if authRequired {
                guard offered.contains("CHAP") else { r.keys.append("AuthMethod", "Reject"); return "CHAP required, offered \(methods)" }
                auth = .chosenCHAP
                r.keys.append("AuthMethod", "CHAP")
            } else if offered.contains("None") {
                auth = .chosenNone
                r.keys.append("AuthMethod", "None")
            } else {
                r.keys.append("AuthMethod", "Reject")
                return "no acceptable AuthMethod in \(methods)"
            }
        }
        if let algs = keys["CHAP_A"] {
            guard case .chosenCHAP = auth else { return "CHAP_A before AuthMethod=CHAP" }
            guard algs.split(separator: ",").contains(where: { $0 == CHAP.algorithmMD5 }) else {
                r.keys.append("CHAP_A", "Reject")
                return "no supported CHAP_A in \(algs)"
            }
            var g = SystemRandomNumberGenerator()
            let id = UInt8.random(in: 0...255, using: &g)
            let challenge = CHAP.randomChallenge()
            ourChallenge = challenge
            auth = .challengeSent(id: id, challenge: challenge)
            r.keys.append("CHAP_A", CHAP.algorithmMD5)
            r.keys.append("CHAP_I", String(id))
            r.keys.append("CHAP_C", CHAP.encodeHex(challenge))
            return nil
        }
        let name = keys["CHAP_N"], resp = keys["CHAP_R"]
        if name != nil || resp != nil {
            guard case .challengeSent(let id, let challenge) = auth, let chap = info.chap else { return "CHAP response before challenge" }
            guard let name, let resp, let got = CHAP.decodeBinary(resp) else { return "CHAP_N/CHAP_R missing or malformed" }
            let want = CHAP.response(identifier: id, secret: Array(chap.secret.utf8), challenge: challenge)
            guard name == chap.user, CHAP.equal(got, want) else { return "CHAP authentication failed for user \(name)" }
            // Mutual CHAP: the initiator challenges us in the same PDU.
            let mi = keys["CHAP_I"], mc = keys["CHAP_C"]
            if mi != nil || mc != nil {
                guard let mutual = info.mutualChap else { return "mutual CHAP requested but not configured" }
                guard let mi, let miv = TextKeys.number(mi), miv <= 255, let mc, let mcBytes = CHAP.decodeBinary(mc),
                      !mcBytes.isEmpty, mcBytes.count <= 1024 else { return "malformed mutual CHAP_I/CHAP_C" }
                guard !CHAP.equal(mcBytes, ourChallenge) else { return "reflected CHAP challenge" }
                let answer = CHAP.response(identifier: UInt8(miv), secret: Array(mutual.secret.utf8), challenge: mcBytes)
                r.keys.append("CHAP_N", mutual.user)
                r.keys.append("CHAP_R", CHAP.encodeHex(answer))
            }  // mutual credentials configured but not asked for: one-way is still fine
            auth = .done
            return nil
        }
        if keys["CHAP_I"] != nil || keys["CHAP_C"] != nil { return "CHAP_I/CHAP_C without CHAP_N/CHAP_R" }
        return nil
    }

    /// Operational keys (§13). Returns the value to answer with, or nil for declarations that get no answer.
    mutating func negotiateOperational(_ key: String, _ value: String) -> String? {
        let discovery = params.sessionType == .discovery
        func num(_ lo: UInt64, _ hi: UInt64) -> Int? {
            guard let n = TextKeys.number(value), n >= lo, n <= hi else { return nil }
            return Int(n)
        }
        switch key {
        case "HeaderDigest", "DataDigest":
            var chosen: String?
            for v in value.split(separator: ",") where v == "CRC32C" || v == "None" { chosen = String(v); break }
            guard let chosen else { return "Reject" }
            if key == "HeaderDigest" { params.headerDigest = chosen == "CRC32C" } else { params.dataDigest = chosen == "CRC32C" }
            return chosen
        case "MaxConnections":
            guard num(1, 65535) != nil else { return "Reject" }
            return discovery ? "Irrelevant" : "1"
        case "InitialR2T":
            guard let b = TextKeys.bool(value) else { return "Reject" }
            if discovery { return "Irrelevant" }
            params.initialR2T = b  // OR with our "No"
            return b ? "Yes" : "No"
        case "ImmediateData":
            guard let b = TextKeys.bool(value) else { return "Reject" }
            if discovery { return "Irrelevant" }
            params.immediateData = b  // AND with our "Yes"
            return b ? "Yes" : "No"
        case "MaxRecvDataSegmentLength":
            // Declarative: the initiator's receive limit. Ours is declared separately.
            guard let n = num(512, 16_777_215) else { return "Reject" }
            params.initiatorMaxRecvDataSegmentLength = n
            return nil
        case "MaxBurstLength":
            guard let n = num(512, 16_777_215) else { return "Reject" }
            if discovery { return "Irrelevant" }
            params.maxBurstLength = min(n, info.maxBurstLength)
            return String(params.maxBurstLength)
        case "FirstBurstLength":
            guard let n = num(512, 16_777_215) else { return "Reject" }
            if discovery { return "Irrelevant" }
            params.firstBurstLength = min(n, info.firstBurstLength)
            return String(params.firstBurstLength)
        case "DefaultTime2Wait":
            guard let n = num(0, 3600) else { return "Reject" }
            params.defaultTime2Wait = max(n, 2)
            return String(params.defaultTime2Wait)
        case "DefaultTime2Retain":
            guard let n = num(0, 3600) else { return "Reject" }
            params.defaultTime2Retain = min(n, 20)
            return String(params.defaultTime2Retain)
        case "MaxOutstandingR2T":
            guard let n = num(1, 65535) else { return "Reject" }
            if discovery { return "Irrelevant" }
            params.maxOutstandingR2T = min(n, info.maxOutstandingR2T)
            return String(params.maxOutstandingR2T)
        case "DataPDUInOrder", "DataSequenceInOrder":
            guard TextKeys.bool(value) != nil else { return "Reject" }
            if discovery { return "Irrelevant" }
            return "Yes"  // OR with our "Yes"
        case "ErrorRecoveryLevel":
            guard num(0, 2) != nil else { return "Reject" }
            params.errorRecoveryLevel = 0
            return "0"
        case "IFMarker", "OFMarker":
            guard TextKeys.bool(value) != nil else { return "Reject" }
            return "No"  // AND with our "No"
        case "IFMarkInt", "OFMarkInt":
            return "Irrelevant"
        case "TaskReporting":
            return "RFC3720"
        case "TargetAlias", "TargetAddress", "TargetPortalGroupTag", "SendTargets":
            return "Irrelevant"  // target-only keys, or not meaningful in login
        default:
            return "NotUnderstood"
        }
    }
}

/// SendTargets (RFC 7143 §12.3 / Appendix C): our one target and every portal in group 1.
public func sendTargetsResponse(_ value: String, info: LoginTargetInfo, sessionType: SessionType) -> TextKeys {
    var out = TextKeys()
    let name = info.targetName
    let wantsUs = value == "All" ? sessionType == .discovery : (value == name || value.isEmpty)
    guard wantsUs else { return out }
    out.append("TargetName", name)
    for p in info.portals { out.append("TargetAddress", "\(p.textAddress),\(info.portalGroupTag)") }
    return out
}
