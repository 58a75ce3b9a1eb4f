import CairnWire
import Testing

@Suite struct WireHeaderTests {
    @Test func roundTrip() throws {
        let h = WireHeader(opcode: .write, flags: [.fua], seq: 0x1122_3344_5566_7788, epoch: 7, offset: 4096,
                           extent: 8192, payloadLength: 8192, status: 0, payloadCRC: 0xdead_beef)
        var bytes = [UInt8](repeating: 0, count: WireHeader.size)
        bytes.withUnsafeMutableBytes { h.encode(into: $0.baseAddress!) }
        let back = try bytes.withUnsafeBytes { try WireHeader.decode($0.baseAddress!) }
        #expect(back == h)
    }

    @Test func corruptionIsCaught() {
        let h = WireHeader(opcode: .read, seq: 1, offset: 512, extent: 512)
        var bytes = [UInt8](repeating: 0, count: WireHeader.size)
        bytes.withUnsafeMutableBytes { h.encode(into: $0.baseAddress!) }
        for i in [0, 5, 9, 30, 52] {
            var b = bytes
            b[i] ^= 0x40
            #expect(throws: WireError.self) { try b.withUnsafeBytes { try WireHeader.decode($0.baseAddress!) } }
        }
    }

    @Test func oversizedPayloadRefused() {
        let h = WireHeader(opcode: .write, seq: 1, payloadLength: UInt32(WireHeader.maxPayload + 1))
        var bytes = [UInt8](repeating: 0, count: WireHeader.size)
        bytes.withUnsafeMutableBytes { h.encode(into: $0.baseAddress!) }
        #expect(throws: WireError.payloadTooLarge(WireHeader.maxPayload + 1)) {
            try bytes.withUnsafeBytes { try WireHeader.decode($0.baseAddress!) }
        }
    }

    @Test func controlMessagesRoundTrip() throws {
        let r = EpochRecord(epoch: 3, membershipID: 99, members: ["r-a", "r-b"])
        let u = MembershipUpdate(record: r, startTracking: [TrackRequest(member: "r-c", base: r, initialExtents: [Extent(offset: 0, length: 65536)])],
                                 stopTracking: ["r-d"], dropAllMaps: false)
        let back = try WireJSON.decode(MembershipUpdate.self, WireJSON.encode(u))
        #expect(back == u)
        #expect(r.same(as: EpochRecord(epoch: 3, membershipID: 99, members: [])))
        #expect(!r.same(as: EpochRecord(epoch: 3, membershipID: 98, members: r.members)))
    }
}
