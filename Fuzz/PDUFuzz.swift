// libFuzzer entry point for the iSCSI codec, text keys and login negotiator.
// Built by Fuzz/build.sh together with the codec sources (no sockets, no actors, no C shim).

/// Byte 0 picks options (digests, CHAP, mutual CHAP, discovery); the rest is a stream of PDUs.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let options = data[0]
    let headerDigest = options & 1 != 0
    let dataDigest = options & 2 != 0
    var info = LoginTargetInfo(targetName: "iqn.2026-11.io.cairn:fuzz")
    info.portals = [ISCSIPortalAddress(host: "127.0.0.1", port: 3260)]
    if options & 4 != 0 { info.chap = CHAPCredentials(user: "user", secret: "secret-12chars") }
    if options & 8 != 0 { info.mutualChap = CHAPCredentials(user: "target", secret: "target-secret-1") }
    var negotiator = LoginNegotiator(info: info)
    var rest = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    var pdus = 0
    while !rest.isEmpty && pdus < 64 {
        pdus += 1
        guard case .success(let (pdu, used)) = ISCSIPDU.decode(rest, headerDigest: headerDigest, dataDigest: dataDigest,
                                                               maxDataSegmentLength: 1 << 20) else { break }
        precondition(used > 0 && used <= rest.count)
        rest = UnsafeRawBufferPointer(rebasing: rest[used...])

        // Invariant: what we encode we decode back to the same PDU.
        let again = pdu.encode(headerDigest: headerDigest, dataDigest: dataDigest)
        let back = again.withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: headerDigest, dataDigest: dataDigest, maxDataSegmentLength: 1 << 20) }
        guard case .success(let (pdu2, used2)) = back, used2 == again.count, pdu2.data == pdu.data, pdu2.ahs.count == padded4(pdu.ahs.count) else {
            fatalError("re-encoded PDU did not decode back")
        }

        // Every accessor must be safe on any header.
        let h = pdu.bhs
        _ = (h.opcode, h.immediate, h.final, h.lun, h.initiatorTaskTag, h.loginCSG, h.loginNSG, h.isid, h.tsih, h.cid,
             h.cmdSN, h.expStatSN, h.expectedDataTransferLength, h.targetTransferTag, h.dataSN, h.bufferOffset,
             h.tmfFunction, h.referencedTaskTag, h.refCmdSN, h.logoutReason)

        if case .success(let keys) = TextKeys.parse(pdu.data) {
            // Invalid UTF-8 in values re-encodes as U+FFFD (3 bytes), which may exceed the value
            // limit; anything that parses again must keep its shape.
            if case .success(let keys2) = TextKeys.parse(keys.encode()), keys2.pairs.count != keys.pairs.count {
                fatalError("text keys did not round-trip")
            }
            for (k, v) in keys.pairs {
                _ = TextKeys.number(v)
                _ = CHAP.decodeBinary(v)
                if k == "SendTargets" { _ = sendTargetsResponse(v, info: info, sessionType: .discovery) }
            }
        }
        if h.opcode == .loginRequest {
            let reply = negotiator.handle(h, data: pdu.data)
            _ = reply.keys.encode()
            if case .failed = reply.outcome { negotiator = LoginNegotiator(info: info) }
            if case .fullFeature = reply.outcome { negotiator = LoginNegotiator(info: info) }
        }
    }
    return 0
}
