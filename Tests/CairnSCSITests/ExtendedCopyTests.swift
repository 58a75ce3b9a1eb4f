import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

extension Harness {
    /// The unit's NAA designation descriptor (4-byte header + 16 bytes), from VPD page 83h.
    func naaDesignator() async -> [UInt8] {
        let d = await run([0x12, 1, 0x83, 0x04, 0, 0]).data
        var at = 4
        while at + 4 <= d.count {
            let len = Int(d[at + 3])
            if d[at + 1] & 0x0F == 3 { return Array(d[at..<(at + 4 + len)]) }
            at += 4 + len
        }
        return []
    }

    func cscd(blockSize: Int = 512) async -> [UInt8] {
        var t = [UInt8](repeating: 0, count: 32)
        t[0] = 0xE4
        let naa = await naaDesignator()
        for (i, b) in naa.enumerated() where 4 + i < 28 { t[4 + i] = b }
        t[29] = UInt8(blockSize >> 16); t[30] = UInt8((blockSize >> 8) & 0xFF); t[31] = UInt8(blockSize & 0xFF)
        return t
    }
}

func segmentB2B(src: UInt16 = 0, dst: UInt16 = 0, blocks: UInt16, from: UInt64, to: UInt64) -> [UInt8] {
    [0x02, 0, 0, 0x18] + be(UInt64(src), 2) + be(UInt64(dst), 2) + [0, 0] + be(UInt64(blocks), 2) + be(from, 8) + be(to, 8)
}

func xcopyList(listID: UInt8 = 1, usage: UInt8 = 0, cscds: [[UInt8]], segments: [[UInt8]]) -> [UInt8] {
    let t = cscds.flatMap { $0 }, s = segments.flatMap { $0 }
    return [listID, usage << 3] + be(UInt64(t.count), 2) + [0, 0, 0, 0] + be(UInt64(s.count), 4) + [0, 0, 0, 0] + t + s
}

func xcopyCDB(_ length: Int) -> [UInt8] { [0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0] + be(UInt64(length), 4) + [0, 0] }
func receiveCopyResults(_ sa: UInt8, listID: UInt8 = 1) -> [UInt8] { [0x84, sa, listID, 0, 0, 0, 0, 0, 0, 0] + be(1024, 4) + [0, 0] }

@Suite struct ExtendedCopyTests {
    @Test func extendedCopyCopiesBlocksWithinTheUnitAndReportsStatus() async throws {
        let h = try Harness()
        let d = pattern(16 * 512, seed: 4)
        _ = await h.run(write10(0, 16), data: d)
        #expect(await h.run(receiveCopyResults(0x00)).isCheck(0x05, 0x24, 0x00))
        let list = xcopyList(cscds: [await h.cscd()], segments: [segmentB2B(blocks: 16, from: 0, to: 1000)])
        #expect(await h.run(xcopyCDB(list.count), data: list).good)
        #expect(h.blocks(1000, 16) == d)
        let st = await h.run(receiveCopyResults(0x00))
        #expect(st.good && st.data[4] == 0x01 && Array(st.data[5..<7]) == [0, 1] && Array(st.data[8..<12]) == be(8192, 4))
    }

    @Test func operatingParametersAdvertiseLimits() async throws {
        let h = try Harness()
        let op = await h.run(receiveCopyResults(0x03, listID: 0))
        #expect(op.good && be(Array(op.data[8..<10]), 0, 2) == UInt64(CopyLimits.maxTargetDescriptors))
        #expect(be(Array(op.data[12..<16]), 0, 4) == UInt64(CopyLimits.maxDescriptorListLength))
        #expect(op.data[43] == 2 && Array(op.data[44..<46]) == [0x02, 0xE4])
    }

    @Test func extendedCopyRefusesTruncatedListsAndTooManyDescriptors() async throws {
        let h = try Harness()
        let t = await h.cscd()
        let list = xcopyList(cscds: [t], segments: [segmentB2B(blocks: 8, from: 0, to: 100)])
        #expect(await h.run(xcopyCDB(16 + 31), data: Array(list[0..<47])).isCheck(0x05, 0x1A, 0x00))
        #expect(await h.run(xcopyCDB(0)).good)
        let many = xcopyList(cscds: Array(repeating: t, count: CopyLimits.maxTargetDescriptors + 1), segments: [segmentB2B(blocks: 1, from: 0, to: 1)])
        #expect(await h.run(xcopyCDB(many.count), data: many).isCheck(0x05, 0x26, 0x06))
        let segs = xcopyList(cscds: [t], segments: Array(repeating: segmentB2B(blocks: 1, from: 0, to: 1), count: CopyLimits.maxSegmentDescriptors + 1))
        #expect(await h.run(xcopyCDB(segs.count), data: segs).isCheck(0x05, 0x26, 0x08))
    }

    @Test func extendedCopyRefusesUnsupportedDescriptorTypes() async throws {
        let h = try Harness()
        var fc = await h.cscd()
        fc[0] = 0xE0
        let l1 = xcopyList(cscds: [fc], segments: [segmentB2B(blocks: 1, from: 0, to: 1)])
        #expect(await h.run(xcopyCDB(l1.count), data: l1).isCheck(0x05, 0x26, 0x07))
        var s = segmentB2B(blocks: 1, from: 0, to: 1)
        s[0] = 0x09
        let l2 = xcopyList(cscds: [await h.cscd()], segments: [s])
        #expect(await h.run(xcopyCDB(l2.count), data: l2).isCheck(0x05, 0x26, 0x09))
    }

    @Test func extendedCopyAbortsOnBadIndexUnknownUnitOrRangePastTheEnd() async throws {
        let h = try Harness()
        let t = await h.cscd()
        let badIndex = xcopyList(cscds: [t], segments: [segmentB2B(dst: 1, blocks: 1, from: 0, to: 1)])
        #expect(await h.run(xcopyCDB(badIndex.count), data: badIndex).isCheck(0x0A, 0x0D, 0x02))
        var other = t
        other[10] ^= 0xFF
        let unknown = xcopyList(cscds: [other], segments: [segmentB2B(blocks: 1, from: 0, to: 1)])
        #expect(await h.run(xcopyCDB(unknown.count), data: unknown).isCheck(0x0A, 0x0D, 0x02))
        let eol = xcopyList(cscds: [t], segments: [segmentB2B(blocks: 8, from: 0, to: 1023)])
        #expect(await h.run(xcopyCDB(eol.count), data: eol).key == 0x0A)
        #expect(h.store.writes == 0)
    }

    @Test func thirdPartyCopyVPDListsTheCopyCommands() async throws {
        let h = try Harness()
        let d = await h.run([0x12, 1, 0x8F, 0x04, 0, 0]).data
        #expect(Array(d[4..<6]) == [0, 1] && d[8] == 7 && Array(d[9..<16]) == [0x83, 1, 0x00, 0x84, 2, 0x00, 0x03])
        #expect((d.count - 4) % 4 == 0)
    }
}
