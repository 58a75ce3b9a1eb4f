import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

func modeSense6(page: UInt8, pc: UInt8 = 0, dbd: Bool = false, alloc: UInt8 = 255) -> [UInt8] {
    [0x1A, dbd ? 0x08 : 0, pc << 6 | page, 0, alloc, 0]
}

/// Pages of a MODE SENSE(6) answer, by code.
func pages6(_ d: [UInt8]) -> [UInt8: [UInt8]] {
    var out: [UInt8: [UInt8]] = [:]
    guard d.count >= 4 else { return out }
    var at = 4 + Int(d[3])
    while at + 2 <= d.count {
        let len = Int(d[at + 1])
        guard at + 2 + len <= d.count else { break }
        out[d[at] & 0x3F] = Array(d[at..<(at + 2 + len)])
        at += 2 + len
    }
    return out
}

func modeSelect6(_ page: [UInt8]) -> (cdb: [UInt8], data: [UInt8]) {
    let data: [UInt8] = [0, 0, 0, 0] + page
    return ([0x15, 0x10, 0, 0, UInt8(data.count), 0], data)
}

@Suite struct ModeTests {
    @Test func modeSenseAllPagesReturnsCachingControlAndInformationalExceptions() async throws {
        let h = try Harness()
        let r = await h.run(modeSense6(page: 0x3F))
        #expect(r.good && Int(r.data[0]) == r.data.count - 1)
        #expect(r.data[2] & 0x10 != 0 && r.data[3] == 8)  // DPOFUA, one block descriptor
        let p = pages6(r.data)
        #expect(p[0x08]?.count == 20 && p[0x08]![2] & 0x04 != 0)  // WCE on
        #expect(p[0x0A]?.count == 12 && p[0x1C]?.count == 12 && p[0x01] != nil)
    }

    @Test func modeSenseChangeableShowsOnlyWCEAndDSenseBits() async throws {
        let h = try Harness()
        let p = pages6(await h.run(modeSense6(page: 0x3F, pc: 1, dbd: true)).data)
        #expect(p[0x08]![2] == 0x05 && p[0x0A]![2] == 0x04)
    }

    @Test func modeSenseUnknownPageOrSubpageIsInvalidField() async throws {
        let h = try Harness()
        #expect(await h.run(modeSense6(page: 0x22)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x1A, 0, 0x08, 0x01, 255, 0]).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x1A, 0, 0x3F, 0xFF, 255, 0]).good)
    }

    @Test func modeSense10WithLongLBAReturnsSixteenByteDescriptor() async throws {
        let h = try Harness()
        let r = await h.run([0x5A, 0x10, 0x08, 0, 0, 0, 0, 1, 0, 0])
        #expect(r.good && r.data[4] & 1 == 1 && Array(r.data[6..<8]) == [0, 16])
        #expect(Array(r.data[8..<16]) == be(1024, 8))
    }

    @Test func clearingWCEMakesEveryWriteFUA() async throws {
        let h = try Harness()
        var page = pages6(await h.run(modeSense6(page: 0x08)).data)[0x08]!
        page[2] &= ~0x04
        let s = modeSelect6(page)
        #expect(await h.run(s.cdb, data: s.data).good)
        _ = await h.run(write10(0, 1), data: pattern(512, seed: 1))
        #expect(h.store.lastFUA == true)
        #expect(pages6(await h.run(modeSense6(page: 0x08)).data)[0x08]![2] & 0x04 == 0)
    }

    @Test func dSenseSwitchesToDescriptorFormatSense() async throws {
        let h = try Harness()
        var page = pages6(await h.run(modeSense6(page: 0x0A)).data)[0x0A]!
        page[2] |= 0x04
        let s = modeSelect6(page)
        #expect(await h.run(s.cdb, data: s.data).good)
        let r = await h.run(read10(5000, 1))
        #expect(r.sense.first == 0x72 && r.isCheck(0x05, 0x21, 0x00))
    }

    @Test func softwareWriteProtectRefusesWritesButNotReads() async throws {
        let h = try Harness()
        var page = pages6(await h.run(modeSense6(page: 0x0A)).data)[0x0A]!
        page[4] |= 0x08
        let s = modeSelect6(page)
        #expect(await h.run(s.cdb, data: s.data).good)
        #expect(await h.run(modeSense6(page: 0x0A)).data[2] & 0x80 != 0)
        #expect(await h.run(read10(0, 1)).good)
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 1)).isCheck(0x07, 0x27, 0x00))
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], data: unmapList([(0, 1)])).isCheck(0x07, 0x27, 0x00))
    }

    @Test func modeSelectChangingAFixedBitIsInvalidFieldInParameterList() async throws {
        let h = try Harness()
        var page = pages6(await h.run(modeSense6(page: 0x08)).data)[0x08]!
        page[3] = 0x55
        let s = modeSelect6(page)
        #expect(await h.run(s.cdb, data: s.data).isCheck(0x05, 0x26, 0x00))
        let bad = modeSelect6([0x08, 0x05, 0, 0, 0, 0, 0])
        #expect(await h.run(bad.cdb, data: bad.data).isCheck(0x05, 0x26, 0x00))
    }

    @Test func modeSelectBlockDescriptorCannotChangeTheBlockLength() async throws {
        let h = try Harness()
        let page = pages6(await h.run(modeSense6(page: 0x08)).data)[0x08]!
        let bd: [UInt8] = [0, 0, 0, 0, 0, 0, 0x10, 0x00]   // 4096-byte blocks
        let data: [UInt8] = [0, 0, 0, 8] + bd + page
        #expect(await h.run([0x15, 0x10, 0, 0, UInt8(data.count), 0], data: data).isCheck(0x05, 0x26, 0x00))
        let same: [UInt8] = [0, 0, 0, 8] + [0, 0, 0, 0, 0, 0, 0x02, 0x00] + page
        #expect(await h.run([0x15, 0x10, 0, 0, UInt8(same.count), 0], data: same).good)
    }

    @Test func modeSelectRaisesModeParametersChangedForOtherNexusesOnly() async throws {
        let h = try Harness()
        _ = await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b)
        var page = pages6(await h.run(modeSense6(page: 0x08)).data)[0x08]!
        page[2] &= ~0x04
        let s = modeSelect6(page)
        #expect(await h.run(s.cdb, data: s.data).good)
        #expect(await h.run([0, 0, 0, 0, 0, 0]).good)
        #expect(await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b).isCheck(0x06, 0x2A, 0x01))
        #expect(await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b).good)
    }
}
