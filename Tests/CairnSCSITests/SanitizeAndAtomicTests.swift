import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

func sanitizeCDB(_ sa: UInt8, immed: Bool = false, length: Int = 0) -> [UInt8] {
    [0x48, (immed ? 0x80 : 0) | sa, 0, 0, 0, 0, 0] + be(UInt64(length), 2) + [0]
}

@Suite struct SanitizeTests {
    @Test func sanitizeOverwriteFillsEveryBlockWithThePattern() async throws {
        let h = try Harness(blocks: 64)
        _ = await h.run(write10(0, 4), data: pattern(2048, seed: 1))
        let list: [UInt8] = [0x01, 0, 0, 4, 0xDE, 0xAD, 0xBE, 0xEF]
        #expect(await h.run(sanitizeCDB(0x01, length: list.count), data: list).good)
        let expected = [UInt8]((0..<(64 * 512)).map { [0xDE, 0xAD, 0xBE, 0xEF][$0 % 4] })
        #expect(h.blocks(0, 64) == expected)
    }

    @Test func sanitizeOverwriteRefusesBadParameterLists() async throws {
        let h = try Harness(blocks: 64)
        for n in 0..<5 { #expect(await h.run(sanitizeCDB(0x01, length: n), data: [UInt8](repeating: 1, count: 8)).isCheck(0x05, 0x24, 0x00)) }
        #expect(await h.run(sanitizeCDB(0x01, length: 517), data: [UInt8](repeating: 0, count: 520)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(sanitizeCDB(0x01, length: 8), data: [0x00, 0, 0, 4, 1, 2, 3, 4]).isCheck(0x05, 0x24, 0x00)) // count 0
        #expect(await h.run(sanitizeCDB(0x01, length: 8), data: [0x01, 0, 0, 0, 1, 2, 3, 4]).isCheck(0x05, 0x24, 0x00)) // pattern 0
    }

    @Test func sanitizeBlockEraseDeallocatesEverything() async throws {
        let h = try Harness(blocks: 64)
        _ = await h.run(write10(0, 64), data: pattern(64 * 512, seed: 1))
        #expect(await h.run(sanitizeCDB(0x02)).good)
        let s = await h.run(getLBAStatus(0, alloc: 256))
        #expect(Array(s.data[8..<21]) == be(0, 8) + be(64, 4) + [1])
        #expect(await h.run(sanitizeCDB(0x02, length: 8), data: [UInt8](repeating: 0, count: 8)).isCheck(0x05, 0x24, 0x00))
    }

    @Test func sanitizeInvalidServiceActionsAndReservedFieldsAreRefused() async throws {
        let h = try Harness(blocks: 64)
        for sa: UInt8 in [0, 3, 4, 0x10, 0x1E] { #expect(await h.run(sanitizeCDB(sa)).isCheck(0x05, 0x24, 0x00)) }
        #expect(await h.run([0x48, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x48, 0x02, 0, 0, 5, 0, 0, 0, 0, 0]).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(sanitizeCDB(0x1F)).good)
        #expect(await h.run(sanitizeCDB(0x1F, length: 8), data: [UInt8](repeating: 0, count: 8)).isCheck(0x05, 0x24, 0x00))
    }

    @Test func commandsDuringSanitizeGetSanitizeInProgressExceptInquiry() async throws {
        let h = try Harness(blocks: 64)
        h.store.writeGateClosed = true  // the overwrite cannot finish until the gate opens
        let list: [UInt8] = [0x01, 0, 0, 1, 0x55]
        #expect(await h.run(sanitizeCDB(0x01, immed: true, length: list.count), data: list).good)
        #expect(await h.run([0, 0, 0, 0, 0, 0]).isCheck(0x02, 0x04, 0x1B))
        #expect(await h.run(read16(0, 1)).isCheck(0x02, 0x04, 0x1B))
        #expect(await h.run([0x12, 0, 0, 0, 96, 0]).good)
        h.store.openWriteGate()
        var ready = false
        for _ in 0..<100 where !ready {
            try await Task.sleep(nanoseconds: 20_000_000)
            ready = await h.run([0, 0, 0, 0, 0, 0]).good
        }
        #expect(ready)
        #expect(h.blocks(63, 1) == [UInt8](repeating: 0x55, count: 512))
    }
}

@Suite struct WriteAtomicTests {
    func writeAtomic16(_ lba: UInt64, _ n: Int, boundary: UInt16 = 0) -> [UInt8] {
        [0x9C, 0] + be(lba, 8) + be(UInt64(boundary), 2) + be(UInt64(n), 2) + [0, 0]
    }

    @Test func writeAtomicWritesAllBlocks() async throws {
        let h = try Harness()
        let d = pattern(256 * 512, seed: 6)
        #expect(await h.run(writeAtomic16(768, 256), data: d).good)
        #expect(h.blocks(768, 256) == d)
    }

    @Test func writeAtomicRefusesBoundaryShortDataAndRangePastEnd() async throws {
        let h = try Harness()
        #expect(await h.run(writeAtomic16(0, 1, boundary: 1), data: pattern(512, seed: 1)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(writeAtomic16(0, 2), data: pattern(512, seed: 1)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(writeAtomic16(1023, 2), data: pattern(1024, seed: 1)).isCheck(0x05, 0x21, 0x00))
        #expect(h.store.writes == 0)
    }

    @Test func blockLimitsAdvertiseAtomicTransferLength() async throws {
        let h = try Harness()
        let b0 = await h.run([0x12, 1, 0xB0, 0, 255, 0]).data
        let maxAtomic = be(Array(b0[44..<48]), 0, 4)
        #expect(maxAtomic > 0 && maxAtomic <= be(Array(b0[8..<12]), 0, 4))
    }
}
