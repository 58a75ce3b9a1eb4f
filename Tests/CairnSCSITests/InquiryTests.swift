import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

func inquiry(evpd: Bool = false, page: UInt8 = 0, alloc: UInt16 = 1024) -> [UInt8] {
    [0x12, evpd ? 1 : 0, page] + be(UInt64(alloc), 2) + [0]
}

/// Designators of a device identification page, as (byte 1, body).
func designators(_ d: [UInt8]) -> [(UInt8, [UInt8])] {
    var out: [(UInt8, [UInt8])] = []
    var at = 4
    while at + 4 <= d.count {
        let len = Int(d[at + 3])
        guard at + 4 + len <= d.count else { break }
        out.append((d[at + 1], Array(d[(at + 4)..<(at + 4 + len)])))
        at += 4 + len
    }
    return out
}

@Suite struct InquiryTests {
    @Test func standardInquiryNamesTheDeviceAndHonoursAllocationLength() async throws {
        let h = try Harness()
        let r = await h.run(inquiry())
        #expect(r.good && r.data[0] == 0 && r.data[2] == 6 && r.data[3] & 0x0F == 2 && Int(r.data[4]) == r.data.count - 5)
        #expect(String(decoding: r.data[8..<13], as: UTF8.self) == "CAIRN")
        #expect(await h.run(inquiry(alloc: 36)).data.count == 36)
        #expect(await h.run(inquiry(page: 0x80)).isCheck(0x05, 0x24, 0x00))
    }

    @Test func supportedVPDPagesListsEveryPageWeServe() async throws {
        let h = try Harness()
        let r = await h.run(inquiry(evpd: true, page: 0))
        #expect(Array(r.data[4...]) == [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2])
        for p in r.data[4...] { #expect(await h.run(inquiry(evpd: true, page: p)).good) }
        #expect(await h.run(inquiry(evpd: true, page: 0xC7)).isCheck(0x05, 0x24, 0x00))
    }

    @Test func deviceIdentificationHasStableNAAAndPortDesignators() async throws {
        let h1 = try Harness(volume: "alpha"), h2 = try Harness(volume: "alpha"), h3 = try Harness(volume: "beta")
        let d1 = designators(await h1.run(inquiry(evpd: true, page: 0x83)).data)
        let d2 = designators(await h2.run(inquiry(evpd: true, page: 0x83)).data)
        let d3 = designators(await h3.run(inquiry(evpd: true, page: 0x83)).data)
        let naa1 = d1.first { $0.0 & 0x0F == 3 }!.1
        #expect(naa1.count == 16 && naa1[0] >> 4 == 6)
        #expect(naa1 == d2.first { $0.0 & 0x0F == 3 }!.1)
        #expect(naa1 != d3.first { $0.0 & 0x0F == 3 }!.1)
        #expect(d1.contains { $0.0 & 0x0F == 1 })                        // T10 vendor id
        let name = d1.first { $0.0 & 0x0F == 8 }!.1
        #expect(String(decoding: name.prefix { $0 != 0 }, as: UTF8.self) == "iqn.2026-01.io.cairn:vol1,t,0x0001")
        #expect(d1.first { $0.0 & 0x0F == 4 }!.1 == [0, 0, 0, 1])          // relative target port
        #expect(d1.first { $0.0 & 0x0F == 5 }!.1 == [0, 0, 0, 1])          // target port group
    }

    @Test func blockLimitsAndProvisioningPagesAdvertiseUnmap() async throws {
        let h = try Harness()
        let b0 = await h.run(inquiry(evpd: true, page: 0xB0)).data
        #expect(b0.count == 64 && b0[4] & 1 == 0 && b0[5] > 0)  // WSNZ=0: zero-block WRITE SAME runs to the end
        #expect(be(Array(b0[8..<12]), 0, 4) == UInt64(LogicalUnit.maxTransferBytes / 512))
        #expect(be(Array(b0[20..<24]), 0, 4) > 0 && be(Array(b0[24..<28]), 0, 4) > 0)
        let b2 = await h.run(inquiry(evpd: true, page: 0xB2)).data
        #expect(b2[5] & 0xE0 == 0xE0 && b2[5] & 0x04 != 0 && b2[6] & 0x07 == 2)
        let b1 = await h.run(inquiry(evpd: true, page: 0xB1)).data
        #expect(Array(b1[4..<6]) == [0, 1])
    }

    @Test func reportLunsListsLunZeroAndRejectsSmallAllocation() async throws {
        let h = try Harness()
        let r = await h.run([0xA0, 0, 0, 0, 0, 0] + be(64, 4) + [0, 0])
        #expect(r.data == be(8, 4) + [0, 0, 0, 0] + [UInt8](repeating: 0, count: 8))
        #expect(await h.run([0xA0, 0, 0, 0, 0, 0] + be(8, 4) + [0, 0]).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0xA0, 0, 0x07, 0, 0, 0] + be(64, 4) + [0, 0]).isCheck(0x05, 0x24, 0x00))
    }

    @Test func reportSupportedOpcodesListsAllAndAnswersForOne() async throws {
        let h = try Harness()
        let all = await h.run([0xA3, 0x0C, 0, 0, 0, 0] + be(8192, 4) + [0, 0])
        #expect(all.good && Int(be(Array(all.data[0..<4]), 0, 4)) == all.data.count - 4)
        #expect((all.data.count - 4) % 8 == 0)
        let withTimeouts = await h.run([0xA3, 0x0C, 0x80, 0, 0, 0] + be(8192, 4) + [0, 0])
        #expect((withTimeouts.data.count - 4) % 20 == 0)
        let one = await h.run([0xA3, 0x0C, 0x01, 0x28, 0, 0] + be(512, 4) + [0, 0])
        #expect(one.good && one.data[1] & 0x07 == 3 && Array(one.data[2..<4]) == [0, 10] && one.data[4] == 0x28)
        let sa = await h.run([0xA3, 0x0C, 0x02, 0x9E, 0, 0x10] + be(512, 4) + [0, 0])
        #expect(sa.good && sa.data[1] & 0x07 == 3 && sa.data[4] == 0x9E)
        #expect(await h.run([0xA3, 0x0C, 0x01, 0x9E, 0, 0] + be(512, 4) + [0, 0]).isCheck(0x05, 0x24, 0x00))
        let none = await h.run([0xA3, 0x0C, 0x01, 0xC5, 0, 0] + be(512, 4) + [0, 0])
        #expect(none.good && none.data[1] & 0x07 == 1)
    }
}
