@testable import CairnISCSI
import Testing

@Suite struct DigestTests {
    @Test func crc32cMatchesRFC3720AppendixB4Vectors() {
        #expect(ISCSIDigest.crc([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(ISCSIDigest.crc([UInt8](repeating: 0xff, count: 32)) == 0x62A8_AB43)
        #expect(ISCSIDigest.crc((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(ISCSIDigest.crc((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
    }

    @Test func softwareCRCMatchesHardwareCRC() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let soft = data.withUnsafeBytes { SoftCRC32C.update(0, $0.baseAddress!, $0.count) }
        #expect(soft == ISCSIDigest.crc(data))
    }

    @Test func digestGoesOnTheWireLeastSignificantByteFirst() {
        var out = [UInt8]()
        appendLE(&out, ISCSIDigest.crc([UInt8](repeating: 0, count: 32)))
        #expect(out == [0xaa, 0x36, 0x91, 0x8a])
    }
}

@Suite struct PDUCodecTests {
    static func sample(_ op: ISCSIOpcode) -> BasicHeaderSegment {
        switch op {
        case .loginResponse:
            return .loginResponse(transit: true, csg: 1, nsg: 3, isid: 0x23d0_0000_0001, tsih: 7, itt: 9, statusClass: 0, statusDetail: 0, dataLength: 0)
        case .textResponse: return .textResponse(final: true, lun: 0, itt: 3, ttt: 0xffff_ffff, dataLength: 0)
        case .scsiResponse: return .scsiResponse(itt: 5, status: 2, overflow: false, underflow: true, residual: 512, expDataSN: 1, dataLength: 0)
        case .dataIn: return .dataIn(final: true, status: 0, overflow: false, underflow: false, residual: 0, lun: 1 << 48, itt: 4, dataSN: 2, offset: 8192, dataLength: 0)
        case .r2t: return .r2t(lun: 0, itt: 8, ttt: 77, r2tSN: 1, offset: 4096, length: 65536)
        case .nopIn: return .nopIn(lun: 0, itt: 0xffff_ffff, ttt: 12, dataLength: 0)
        case .taskManagementResponse: return .taskManagementResponse(itt: 6, response: 1)
        case .logoutResponse: return .logoutResponse(itt: 2, response: 0, time2Wait: 2, time2Retain: 0)
        case .reject: return .reject(reason: .protocolError)
        case .asyncMessage: return .asyncMessage(event: 1, parameter3: 5)
        default:
            var h = BasicHeaderSegment()
            h.setOpcode(op, immediate: op == .taskManagementRequest)
            h[1] = 0x80
            h.setU64(8, 0x0001_0000_0000_0000)
            h.setU32(16, 0x1234_5678)
            h.setU32(20, 0x9abc_def0)
            h.setU32(24, 42)
            h.setU32(28, 43)
            h.setU32(36, 3)
            h.setU32(40, 1024)
            return h
        }
    }

    static let allOpcodes: [ISCSIOpcode] = [.nopOut, .scsiCommand, .taskManagementRequest, .loginRequest, .textRequest, .dataOut,
                                            .logoutRequest, .snackRequest, .nopIn, .scsiResponse, .taskManagementResponse,
                                            .loginResponse, .textResponse, .dataIn, .logoutResponse, .r2t, .asyncMessage, .reject]

    @Test(arguments: allOpcodes, [(false, false), (true, false), (true, true)])
    func everyOpcodeRoundTripsWithAndWithoutDigests(op: ISCSIOpcode, digests: (Bool, Bool)) throws {
        let data: [UInt8] = op == .reject ? Array(repeating: 0x11, count: 48) : [1, 2, 3, 4, 5]  // odd length: padding
        let pdu = ISCSIPDU(bhs: Self.sample(op), ahs: op == .scsiCommand ? [0, 5, 2, 0, 0, 0, 16, 0] : [], data: data)
        let wire = pdu.encode(headerDigest: digests.0, dataDigest: digests.1)
        #expect(wire.count % 4 == 0)
        let decoded = wire.withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: digests.0, dataDigest: digests.1, maxDataSegmentLength: 1 << 20) }
        let (back, used) = try decoded.get()
        #expect(used == wire.count)
        #expect(back.bhs.opcode == op)
        #expect(back.data == data)
        #expect(back.ahs == pdu.ahs)
        #expect(back.bhs.dataSegmentLength == data.count)
        #expect(back.bhs.initiatorTaskTag == pdu.bhs.initiatorTaskTag)
        #expect(back.bhs.u32(24) == pdu.bhs.u32(24))
    }

    @Test func fieldAccessorsReadWhatBuildersWrote() {
        let r2t = BasicHeaderSegment.r2t(lun: 0, itt: 8, ttt: 77, r2tSN: 1, offset: 4096, length: 65536)
        #expect(r2t.opcode == .r2t && r2t.final && r2t.targetTransferTag == 77 && r2t.u32(36) == 1 && r2t.bufferOffset == 4096 && r2t.u32(44) == 65536)
        let login = BasicHeaderSegment.loginResponse(transit: true, csg: 1, nsg: 3, isid: 0x23d0_0000_0001, tsih: 7, itt: 9, statusClass: 2, statusDetail: 1, dataLength: 0)
        #expect(login.loginTransit && login.loginCSG == 1 && login.loginNSG == 3 && login.isid == 0x23d0_0000_0001 && login.tsih == 7)
        #expect(login[36] == 2 && login[37] == 1)
        let din = BasicHeaderSegment.dataIn(final: true, status: 0, overflow: true, underflow: false, residual: 9, lun: 0, itt: 1, dataSN: 0, offset: 0, dataLength: 0)
        #expect(din[1] == 0x80 | 0x04 | 0x01 && din.u32(44) == 9)
    }

    @Test func shortInputAsksForMore() {
        let wire = ISCSIPDU(bhs: Self.sample(.nopOut), data: [1, 2, 3]).encode()
        for cut in [0, 10, 47, 48, 50, wire.count - 1] {
            let r = Array(wire.prefix(cut)).withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: false, dataDigest: false, maxDataSegmentLength: 8192) }
            guard case .failure(.needMore(let n)) = r else { Issue.record("cut \(cut): \(r)"); continue }
            #expect(n > cut)
        }
    }

    @Test func oversizedDataSegmentIsRefused() {
        var h = Self.sample(.nopOut)
        h.setDataSegmentLength(0xff_ffff)
        let r = h.bytes.withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: false, dataDigest: false, maxDataSegmentLength: 8192) }
        #expect(r.failureValue == .dataSegmentTooLong(0xff_ffff))
    }

    @Test func unknownOpcodeIsRefused() {
        var h = BasicHeaderSegment()
        h[0] = 0x1e
        let r = h.bytes.withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: false, dataDigest: false, maxDataSegmentLength: 8192) }
        #expect(r.failureValue == .unknownOpcode(0x1e))
    }

    @Test func corruptedHeaderAndDataDigestsAreDetected() {
        var wire = ISCSIPDU(bhs: Self.sample(.scsiCommand), data: [9, 9, 9, 9]).encode(headerDigest: true, dataDigest: true)
        var bad = wire
        bad[20] ^= 1
        let r1 = bad.withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: true, dataDigest: true, maxDataSegmentLength: 8192) }
        #expect(r1.failureValue == .headerDigest)
        wire[52] ^= 0x80
        let r2 = wire.withUnsafeBytes { ISCSIPDU.decode($0, headerDigest: true, dataDigest: true, maxDataSegmentLength: 8192) }
        #expect(r2.failureValue == .dataDigest)
    }
}

extension Result {
    var failureValue: Failure? { if case .failure(let e) = self { return e } else { return nil } }
}

@Suite struct TextKeyTests {
    @Test func parsesNulSeparatedPairsAndToleratesMissingFinalNul() throws {
        let k = try TextKeys.parse(Array("A=1\0B=x,y\0C=".utf8)).get()
        #expect(k.pairs.count == 3)
        #expect(k["A"] == "1" && k["B"] == "x,y" && k["C"] == "")
    }

    @Test func encodeThenParseIsIdentity() throws {
        let k = TextKeys([("HeaderDigest", "None"), ("MaxRecvDataSegmentLength", "262144")])
        #expect(try TextKeys.parse(k.encode()).get() == k)
    }

    @Test(arguments: [("novalue\0", TextKeys.ParseError.missingEquals), ("=x\0", .emptyKey),
                      (String(repeating: "k", count: 64) + "=1\0", .keyTooLong), ("bad key=1\0", .invalidKey)])
    func malformedTextIsRefused(input: String, error: TextKeys.ParseError) {
        #expect(TextKeys.parse(Array(input.utf8)).failureValue == error)
    }

    @Test func numbersAcceptDecimalAndHex() {
        #expect(TextKeys.number("262144") == 262144)
        #expect(TextKeys.number("0x10") == 16)
        #expect(TextKeys.number("-1") == nil && TextKeys.number("") == nil && TextKeys.number("0x") == nil)
    }
}
