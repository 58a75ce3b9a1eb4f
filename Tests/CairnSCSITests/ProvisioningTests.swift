import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

func getLBAStatus(_ lba: UInt64, alloc: Int = 4096) -> [UInt8] { [0x9E, 0x12] + be(lba, 8) + be(UInt64(alloc), 4) + [0, 0] }
func unmapList(_ ranges: [(UInt64, UInt32)]) -> [UInt8] {
    var d = be(UInt64(6 + 16 * ranges.count), 2) + be(UInt64(16 * ranges.count), 2) + [0, 0, 0, 0]
    for (l, n) in ranges { d += be(l, 8) + be(UInt64(n), 4) + [0, 0, 0, 0] }
    return d
}

@Suite struct ProvisioningTests {
    @Test func readCapacity10And16ReportSizeAndThinProvisioning() async throws {
        let h = try Harness(blocks: 2048)
        let r10 = await h.run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(r10.data == be(2047, 4) + be(512, 4))
        let r16 = await h.run([0x9E, 0x10] + be(0, 8) + be(32, 4) + [0, 0])
        #expect(r16.data.count == 32 && Array(r16.data[0..<12]) == be(2047, 8) + be(512, 4))
        #expect(r16.data[14] & 0xC0 == 0xC0)
        #expect(await h.run([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]).isCheck(0x05, 0x24, 0x00))
    }

    @Test func getLBAStatusReportsMappedAndDeallocatedExtents() async throws {
        let h = try Harness()
        _ = await h.run(write10(8, 4), data: pattern(2048, seed: 1))
        let r = await h.run(getLBAStatus(0))
        #expect(r.good)
        #expect(Array(r.data[8..<24]) == be(0, 8) + be(8, 4) + [1, 0, 0, 0])
        #expect(Array(r.data[24..<40]) == be(8, 8) + be(4, 4) + [0, 0, 0, 0])
        #expect(Array(r.data[40..<52]) == be(12, 8) + be(1012, 4))
        #expect(be(UInt64(r.data.count - 4), 4) == Array(r.data[0..<4]))
    }

    @Test func getLBAStatusBeyondEndIsLBAOutOfRange() async throws {
        let h = try Harness()
        #expect(await h.run(getLBAStatus(1024)).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run(getLBAStatus(UInt64.max)).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run(getLBAStatus(1023)).good)
    }

    @Test func unmapDeallocatesBlocksThatThenReadZero() async throws {
        let h = try Harness()
        _ = await h.run(write10(0, 16), data: pattern(16 * 512, seed: 4))
        let list = unmapList([(2, 3), (10, 2)])
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0] + be(UInt64(list.count), 2) + [0], data: list).good)
        #expect(h.blocks(2, 3) == [UInt8](repeating: 0, count: 1536))
        #expect(h.blocks(5, 1) != [UInt8](repeating: 0, count: 512))
        let s = await h.run(getLBAStatus(2))
        #expect(Array(s.data[8..<21]) == be(2, 8) + be(3, 4) + [1])
    }

    @Test func unmapWithOneDescriptorOutOfRangeUnmapsNothing() async throws {
        let h = try Harness()
        _ = await h.run(write10(0, 4), data: pattern(2048, seed: 4))
        let list = unmapList([(0, 2), (1020, 8)])
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0] + be(UInt64(list.count), 2) + [0], data: list).isCheck(0x05, 0x21, 0x00))
        #expect(h.blocks(0, 4) == pattern(2048, seed: 4))
    }

    @Test func unmapShortParameterListAndAnchorAreRefused() async throws {
        let h = try Harness()
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0], data: [0, 0, 0, 0]).isCheck(0x05, 0x1A, 0x00))
        #expect(await h.run([0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0], data: unmapList([(0, 1)])).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0]).good)
    }

    @Test func writeSameWritesTheBlockOverTheRange() async throws {
        let h = try Harness()
        let blk = pattern(512, seed: 8)
        #expect(await h.run([0x41, 0] + be(20, 4) + [0, 0, 5, 0], data: blk).good)
        for i in 0..<5 { #expect(h.blocks(20 + UInt64(i), 1) == blk) }
        #expect(h.blocks(25, 1) == [UInt8](repeating: 0, count: 512))
    }

    @Test func writeSameWithUnmapAndZeroDataDeallocates() async throws {
        let h = try Harness()
        _ = await h.run(write10(0, 8), data: pattern(4096, seed: 1))
        #expect(await h.run([0x93, 0x08] + be(2, 8) + be(4, 4) + [0, 0], data: [UInt8](repeating: 0, count: 512)).good)
        let s = await h.run(getLBAStatus(2))
        #expect(Array(s.data[8..<21]) == be(2, 8) + be(4, 4) + [1])
        // NDOB: no data-out at all.
        #expect(await h.run([0x93, 0x09] + be(0, 8) + be(2, 4) + [0, 0]).good)
        #expect(h.blocks(0, 2) == [UInt8](repeating: 0, count: 1024))
    }

    @Test func writeSameWithUnmapDeallocatesEvenWithNonZeroData() async throws {
        let h = try Harness()
        _ = await h.run(write10(1020, 4), data: [UInt8](repeating: 0xFF, count: 2048))
        #expect(await h.run([0x41, 0x08] + be(1020, 4) + [0, 0, 4, 0], data: [UInt8](repeating: 0xFF, count: 512)).good)
        #expect(await h.run(read10(1020, 4)).data == [UInt8](repeating: 0, count: 2048))
    }

    @Test func writeSameWithDataOutOtherThanOneBlockIsRefused() async throws {
        let h = try Harness()
        #expect(await h.run([0x41, 0x08] + be(0, 4) + [0, 0, 1, 0], data: [UInt8](repeating: 0xA6, count: 256)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x41, 0x08] + be(0, 4) + [0, 0, 1, 0], data: [UInt8](repeating: 0xA6, count: 1024)).isCheck(0x05, 0x24, 0x00))
    }

    @Test func writeSameRefusesAnchorAndRangesPastTheEnd() async throws {
        let h = try Harness()
        let blk = [UInt8](repeating: 0, count: 512)
        #expect(await h.run([0x41, 0x18] + be(0, 4) + [0, 0, 1, 0], data: blk).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x41, 0x10] + be(0, 4) + [0, 0, 1, 0], data: blk).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x41, 0] + be(1020, 4) + [0, 0, 5, 0], data: blk).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run([0x41, 0x20] + be(0, 4) + [0, 0, 1, 0], data: blk).isCheck(0x05, 0x24, 0x00))
    }

    @Test func writeSameOfZeroBlocksWritesToTheEndOfTheLUN() async throws {
        let h = try Harness()
        let n = h.store.blockCount
        let blk = [UInt8](repeating: 0x5A, count: 512)
        #expect(await h.run([0x41, 0] + be(n - 4, 4) + [0, 0, 0, 0], data: blk).good)
        #expect(h.store.inner.bytes(lba: n - 4, count: 4) == [UInt8](repeating: 0x5A, count: 4 * 512))
        #expect(h.store.inner.bytes(lba: n - 5, count: 1) == [UInt8](repeating: 0, count: 512))
        // Past the last block there is nothing to write to: out of range, not a no-op.
        #expect(await h.run([0x41, 0] + be(n, 4) + [0, 0, 0, 0], data: blk).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run([0x41, 0] + be(n + 1, 4) + [0, 0, 0, 0], data: blk).isCheck(0x05, 0x21, 0x00))
    }
}
