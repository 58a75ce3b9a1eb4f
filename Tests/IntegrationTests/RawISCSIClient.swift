import Glibc

/// A deliberately small iSCSI initiator that speaks raw PDUs over a blocking socket, independent
/// of Cairn's own codec, so tests can send what a well-behaved initiator never would and see
/// exactly what the target answers. Every receive is bounded by SO_RCVTIMEO.
final class RawISCSIClient {
    enum Received: Equatable {
        case pdu(header: [UInt8], data: [UInt8])
        case timedOut
        case closed
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    let fd: Int32
    var cmdSN: UInt32 = 1
    var expStatSN: UInt32 = 0
    var nextITT: UInt32 = 0x100
    var immediateData = false
    var initialR2T = true
    var firstBurst = 65536
    var targetMaxRecv = 8192

    init(host: String = "127.0.0.1", port: UInt16, timeoutSeconds: Int = 5) throws {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: \(errno)") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        do { try connectRetryingEINTR(fd, &addr, timeout: Double(max(timeoutSeconds, 1)), what: "\(host):\(port)") } catch {
            close(fd)
            throw Failure("\(error)")
        }
    }

    deinit { close(fd) }

    // MARK: - Bytes

    func send(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw Failure("send: errno \(errno)") }
            done += n
        }
    }

    /// Reads exactly n bytes, or reports a timeout or EOF.
    func receive(_ n: Int) -> ([UInt8]?, Received?) {
        var buf = [UInt8](repeating: 0, count: n)
        var done = 0
        while done < n {
            let r = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + done, n - done, 0) }
            if r == 0 { return (nil, .closed) }
            if r < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return (nil, .timedOut) }
                return (nil, .closed)
            }
            done += r
        }
        return (buf, nil)
    }

    /// The next PDU (no digests are negotiated by this client).
    func receivePDU() -> Received {
        let (h, status) = receive(48)
        guard let header = h else { return status! }
        let ahs = Int(header[4]) * 4
        let dlen = Int(header[5]) << 16 | Int(header[6]) << 8 | Int(header[7])
        let padded = (dlen + 3) & ~3
        if ahs + padded > 0 {
            let (d, st) = receive(ahs + padded)
            guard let d else { return st! }
            return .pdu(header: header, data: Array(d[ahs..<(ahs + dlen)]))
        }
        return .pdu(header: header, data: [])
    }

    /// Whether the target closed the connection (EOF or reset) within the receive timeout.
    func waitsForClose() -> Bool {
        while true {
            switch receivePDU() {
            case .closed: return true
            case .timedOut: return false
            case .pdu: continue
            }
        }
    }

    // MARK: - PDUs

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
    static func get32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    static func pdu(_ header: [UInt8], data: [UInt8] = []) -> [UInt8] {
        var h = header
        h[5] = UInt8(data.count >> 16 & 0xff)
        h[6] = UInt8(data.count >> 8 & 0xff)
        h[7] = UInt8(data.count & 0xff)
        var out = h + data
        while out.count % 4 != 0 { out.append(0) }
        return out
    }

    static func keys(_ pairs: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (k, v) in pairs { out += Array("\(k)=\(v)".utf8) + [0] }
        return out
    }

    static func parseKeys(_ data: [UInt8]) -> [String: String] {
        var out: [String: String] = [:]
        for part in data.split(separator: 0) {
            let s = String(decoding: part, as: UTF8.self)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
        }
        return out
    }

    func loginHeader(isid: UInt64, csg: UInt8, nsg: UInt8, transit: Bool, itt: UInt32 = 1) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 48)
        h[0] = 0x43
        h[1] = (transit ? 0x80 : 0) | (csg << 2) | nsg
        for i in 0..<6 { h[8 + i] = UInt8(isid >> UInt64(8 * (5 - i)) & 0xff) }
        h[16..<20] = ArraySlice(Self.be32(itt))
        h[24..<28] = ArraySlice(Self.be32(cmdSN))
        h[28..<32] = ArraySlice(Self.be32(expStatSN))
        return h
    }

    /// Sends one login request PDU and returns the target's answer.
    func loginStep(isid: UInt64, csg: UInt8, nsg: UInt8, transit: Bool, keys: [UInt8]) throws -> Received {
        try send(Self.pdu(loginHeader(isid: isid, csg: csg, nsg: nsg, transit: transit), data: keys))
        return receivePDU()
    }

    /// A normal-session login straight into the operational stage and on to full feature phase.
    /// Returns the negotiated keys.
    @discardableResult
    func login(target: String, initiator: String = "iqn.2026-11.test:raw", isid: UInt64 = 0x80_1234_5678,
               extra: [(String, String)] = []) throws -> [String: String] {
        let k = Self.keys([
            ("InitiatorName", initiator), ("TargetName", target), ("SessionType", "Normal"),
            ("HeaderDigest", "None"), ("DataDigest", "None"), ("ImmediateData", "Yes"), ("InitialR2T", "Yes"),
            ("MaxRecvDataSegmentLength", "262144"), ("FirstBurstLength", "65536"), ("MaxBurstLength", "262144"),
            ("ErrorRecoveryLevel", "0"), ("MaxOutstandingR2T", "1"),
        ] + extra)
        guard case .pdu(let h, let data) = try loginStep(isid: isid, csg: 1, nsg: 3, transit: true, keys: k) else {
            throw Failure("no login response")
        }
        guard h[0] & 0x3f == 0x23 else { throw Failure("not a login response: opcode \(h[0] & 0x3f)") }
        guard h[36] == 0 else { throw Failure("login failed: status \(h[36])/\(h[37])") }
        guard h[1] & 0x80 != 0, h[1] & 0x03 == 3 else { throw Failure("target did not transit to full feature") }
        expStatSN = Self.get32(h, 24) &+ 1
        cmdSN = Self.get32(h, 28)
        let negotiated = Self.parseKeys(data)
        immediateData = negotiated["ImmediateData"] == "Yes"
        initialR2T = negotiated["InitialR2T"] != "No"
        if let fb = negotiated["FirstBurstLength"], let v = Int(fb) { firstBurst = v }
        if let m = negotiated["MaxRecvDataSegmentLength"], let v = Int(m) { targetMaxRecv = v }
        return negotiated
    }

    func commandHeader(cdb: [UInt8], read: Bool, write: Bool, edtl: Int, itt: UInt32, final: Bool = true,
                       immediate: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 48)
        h[0] = 0x01 | (immediate ? 0x40 : 0)
        h[1] = (final ? 0x80 : 0) | (read ? 0x40 : 0) | (write ? 0x20 : 0) | 0x01
        h[16..<20] = ArraySlice(Self.be32(itt))
        h[20..<24] = ArraySlice(Self.be32(UInt32(edtl)))
        h[24..<28] = ArraySlice(Self.be32(cmdSN))
        h[28..<32] = ArraySlice(Self.be32(expStatSN))
        for (i, b) in cdb.prefix(16).enumerated() { h[32 + i] = b }
        return h
    }

    func dataOutHeader(itt: UInt32, ttt: UInt32, dataSN: UInt32, offset: Int, final: Bool) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 48)
        h[0] = 0x05
        h[1] = final ? 0x80 : 0
        h[16..<20] = ArraySlice(Self.be32(itt))
        h[20..<24] = ArraySlice(Self.be32(ttt))
        h[28..<32] = ArraySlice(Self.be32(expStatSN))
        h[36..<40] = ArraySlice(Self.be32(dataSN))
        h[40..<44] = ArraySlice(Self.be32(UInt32(offset)))
        return h
    }

    func nopOutHeader(itt: UInt32) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 48)
        h[0] = 0x40
        h[1] = 0x80
        h[16..<20] = ArraySlice(Self.be32(itt))
        h[20..<24] = ArraySlice(Self.be32(0xffff_ffff))
        h[24..<28] = ArraySlice(Self.be32(cmdSN))
        h[28..<32] = ArraySlice(Self.be32(expStatSN))
        return h
    }

    func takeITT() -> UInt32 {
        nextITT &+= 1
        return nextITT
    }

    /// An immediate NOP-Out; true when the matching NOP-In comes back (the connection is alive).
    func ping() throws -> Bool {
        let itt = takeITT()
        try send(Self.pdu(nopOutHeader(itt: itt)))
        while true {
            switch try receiveAnsweringPings() {
            case .pdu(let h, _):
                if h[0] & 0x3f == 0x20 && Self.get32(h, 16) == itt { return true }
            default: return false
            }
        }
    }

    /// The next PDU that is not the target's own ping (a NOP-In with ITT 0xffffffff, sent when
    /// the connection has been idle); each such ping is answered, so the target keeps us.
    func receiveAnsweringPings() throws -> Received {
        while true {
            let r = receivePDU()
            guard case .pdu(let h, _) = r, h[0] & 0x3f == 0x20, Self.get32(h, 16) == 0xffff_ffff else { return r }
            var reply = nopOutHeader(itt: 0xffff_ffff)
            reply[20..<24] = h[20..<24]
            try send(Self.pdu(reply))
        }
    }

    struct Status {
        var status: UInt8
        var sense: [UInt8]
        var data: [UInt8]
    }

    /// Runs one SCSI command to completion (handling R2T and Data-In). Throws on a protocol-level
    /// surprise (Reject, close, timeout).
    func scsi(_ cdb: [UInt8], readLength: Int = 0, writeData: [UInt8] = []) throws -> Status {
        let itt = takeITT()
        let write = !writeData.isEmpty
        var immediate: [UInt8] = []
        if write && immediateData {
            immediate = Array(writeData.prefix(min(firstBurst, targetMaxRecv)))
        }
        let edtl = write ? writeData.count : readLength
        try send(Self.pdu(commandHeader(cdb: cdb, read: readLength > 0, write: write, edtl: edtl, itt: itt), data: immediate))
        cmdSN &+= 1
        var data: [UInt8] = []
        while true {
            guard case .pdu(let h, let d) = receivePDU() else { throw Failure("no answer to command") }
            switch h[0] & 0x3f {
            case 0x31:  // R2T
                let ttt = Self.get32(h, 20)
                let offset = Int(Self.get32(h, 40))
                let length = Int(Self.get32(h, 44))
                var sent = 0
                var sn: UInt32 = 0
                while sent < length {
                    let n = min(targetMaxRecv, length - sent)
                    let chunk = Array(writeData[(offset + sent)..<(offset + sent + n)])
                    try send(Self.pdu(dataOutHeader(itt: itt, ttt: ttt, dataSN: sn, offset: offset + sent,
                                                    final: sent + n == length), data: chunk))
                    sent += n
                    sn += 1
                }
            case 0x25:  // Data-In
                data += d
                if h[1] & 0x01 != 0 {
                    expStatSN = Self.get32(h, 24) &+ 1
                    return Status(status: h[3], sense: [], data: data)
                }
            case 0x21:  // SCSI Response
                expStatSN = Self.get32(h, 24) &+ 1
                var sense: [UInt8] = []
                if d.count >= 2 {
                    let n = Int(d[0]) << 8 | Int(d[1])
                    sense = Array(d.dropFirst(2).prefix(n))
                }
                return Status(status: h[3], sense: sense, data: data)
            case 0x20:  // the target's NOP-In ping
                if Self.get32(h, 16) == 0xffff_ffff {
                    var r = nopOutHeader(itt: 0xffff_ffff)
                    r[20..<24] = h[20..<24]
                    try send(Self.pdu(r))
                }
            case 0x3f:
                throw Failure("Reject, reason \(h[2])")
            default:
                throw Failure("unexpected opcode \(h[0] & 0x3f)")
            }
        }
    }

    static func write10(lba: UInt32, blocks: UInt16) -> [UInt8] {
        [0x2a, 0] + be32(lba) + [0, UInt8(blocks >> 8), UInt8(blocks & 0xff), 0]
    }

    static func read10(lba: UInt32, blocks: UInt16) -> [UInt8] {
        [0x28, 0] + be32(lba) + [0, UInt8(blocks >> 8), UInt8(blocks & 0xff), 0]
    }
}
