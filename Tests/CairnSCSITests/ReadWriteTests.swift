import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

@Suite struct ReadWriteTests {
    @Test func write10ThenRead10ReturnsTheSameBlocks() async throws {
        let h = try Harness()
        let data = pattern(4 * 512, seed: 3)
        #expect(await h.run(write10(100, 4), data: data).good)
        let r = await h.run(read10(100, 4))
        #expect(r.good && r.data == data)
    }

    @Test func write16ThenRead12And16RoundTrip() async throws {
        let h = try Harness()
        let data = pattern(2 * 512, seed: 9)
        #expect(await h.run(write16(1022, 2), data: data).good)
        #expect(await h.run(read16(1022, 2)).data == data)
        let r12 = await h.run([0xA8, 0] + be(1022, 4) + be(2, 4) + [0, 0])
        #expect(r12.data == data)
    }

    @Test func read6WithLengthZeroTransfers256Blocks() async throws {
        let h = try Harness()
        let r = await h.run([0x08, 0, 0, 0, 0, 0])
        #expect(r.good && r.data.count == 256 * 512)
    }

    @Test func transferLengthZeroIsGoodWithoutData() async throws {
        let h = try Harness()
        let r = await h.run(read10(5, 0))
        #expect(r.good && r.data.isEmpty)
        #expect(await h.run(write10(5, 0)).good)
        #expect(h.store.writes == 0)
    }

    @Test func readBeyondEndIsLBAOutOfRange() async throws {
        let h = try Harness()
        #expect(await h.run(read10(1023, 2)).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run(read16(UInt64.max, 1)).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run(read16(1025, 0)).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run(write16(UInt64.max - 1, 4), data: pattern(2048, seed: 1)).isCheck(0x05, 0x21, 0x00))
    }

    @Test func transferLongerThanBlockLimitIsInvalidFieldInCDB() async throws {
        let h = try Harness(blocks: 100_000)
        let max = LogicalUnit.maxTransferBytes / 512
        #expect(await h.run(read16(0, max + 1)).isCheck(0x05, 0x24, 0x00))
    }

    @Test func readProtectFieldIsInvalidWithoutProtectionInformation() async throws {
        let h = try Harness()
        #expect(await h.run(read10(0, 1, flags: 0x20)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(write10(0, 1, flags: 0x40), data: pattern(512, seed: 0)).isCheck(0x05, 0x24, 0x00))
    }

    @Test func writeWithShortDataOutWritesOnlyTheWholeBlocksSent() async throws {
        let h = try Harness()
        let a = [UInt8](repeating: 0x61, count: 1024)
        #expect(await h.run(write10(0, 2), data: a).good)
        let b = [UInt8](repeating: 0x62, count: 512)
        #expect(await h.run(write10(0, 2), data: b).good) // EDTL one block, TL two
        #expect(h.blocks(0, 1) == b)
        #expect(h.blocks(1, 1) == Array(a[0..<512]))
        #expect(await h.run(write10(0, 1), data: [UInt8](repeating: 0x63, count: 200)).good)
        #expect(h.blocks(0, 1) == b)
    }

    @Test func responsesReportTheDataOutLengthTheCDBCalledFor() async throws {
        let h = try Harness()
        #expect(await h.run(write10(0, 2), data: pattern(512, seed: 1)).expectedDataOut == 1024)
        #expect(await h.run(write10(0, 1)).expectedDataOut == 512)
        #expect(await h.run([0x0A, 0, 0, 0, 0, 0]).expectedDataOut == 256 * 512)
        #expect(await h.run(read10(0, 2)).expectedDataOut == nil)
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], data: unmapList([(0, 1)])).expectedDataOut == 24)
    }

    @Test func fuaBitReachesTheStore() async throws {
        let h = try Harness()
        _ = await h.run(write10(0, 1, flags: 0x08), data: pattern(512, seed: 1))
        #expect(h.store.lastFUA == true)
        _ = await h.run(write10(0, 1), data: pattern(512, seed: 1))
        #expect(h.store.lastFUA == false)
    }

    @Test func storeErrorsBecomeSenseData() async throws {
        let h = try Harness()
        h.store.inner.injectedFault = .medium(read: true, "eio")
        #expect(await h.run(read10(0, 1)).isCheck(0x03, 0x11, 0x00))
        h.store.inner.injectedFault = .medium(read: false, "eio")
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 1)).isCheck(0x03, 0x0C, 0x00))
        h.store.inner.injectedFault = .noSpace
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 1)).isCheck(0x07, 0x27, 0x07))
        h.store.inner.injectedFault = .unavailable("quorum")
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 1)).isCheck(0x02, 0x04, 0x00))
        h.store.inner.injectedFault = .readOnly
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 1)).isCheck(0x07, 0x27, 0x00))
        h.store.inner.injectedFault = .becomingReady("start-up")
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 1)).isCheck(0x02, 0x04, 0x01))
    }

    @Test("TEST UNIT READY reports the store's readiness: becoming ready (retried by initiators), not ready, then ready")
    func testUnitReadyFollowsTheStore() async throws {
        let h = try Harness()
        let tur: [UInt8] = [0x00, 0, 0, 0, 0, 0]
        h.store.notReady = .becomingReady("start-up")
        #expect(await h.run(tur).isCheck(0x02, 0x04, 0x01))
        h.store.notReady = .unavailable("quorum")
        #expect(await h.run(tur).isCheck(0x02, 0x04, 0x00))
        h.store.notReady = nil
        #expect(await h.run(tur).good)
    }

    @Test func writeAndVerifyWritesDurably() async throws {
        let h = try Harness()
        let d = pattern(512, seed: 5)
        #expect(await h.run([0x2E, 0] + be(7, 4) + [0, 0, 1, 0], data: d).good)
        #expect(h.blocks(7, 1) == d && h.store.lastFUA == true)
    }

    @Test func verifyWithoutByteCheckOnlyChecksTheRange() async throws {
        let h = try Harness()
        #expect(await h.run([0x2F, 0] + be(0, 4) + [0, 0, 8, 0]).good)
        #expect(await h.run([0x2F, 0] + be(1020, 4) + [0, 0, 8, 0]).isCheck(0x05, 0x21, 0x00))
    }

    @Test func verifyWithByteCheckReportsMiscompareOffset() async throws {
        let h = try Harness()
        let d = pattern(1024, seed: 2)
        _ = await h.run(write10(10, 2), data: d)
        #expect(await h.run([0x2F, 0x02] + be(10, 4) + [0, 0, 2, 0], data: d).good)
        var bad = d
        bad[700] ^= 0xFF
        let r = await h.run([0x8F, 0x02] + be(10, 8) + be(2, 4) + [0, 0], data: bad)
        #expect(r.isCheck(0x0E, 0x1D, 0x00))
        #expect(r.sense[0] & 0x80 != 0 && Array(r.sense[3..<7]) == [0, 0, 0x02, 0xBC])
    }

    @Test func synchronizeCacheFlushesTheStore() async throws {
        let h = try Harness()
        #expect(await h.run([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]).good)
        #expect(await h.run([0x91, 0] + be(0, 8) + be(0, 4) + [0, 0]).good)
        #expect(h.store.inner.flushes == 2)
        #expect(await h.run([0x35, 0] + be(2000, 4) + [0, 0, 1, 0]).isCheck(0x05, 0x21, 0x00))
    }

    @Test func prefetchChecksRangeAndReturnsGood() async throws {
        let h = try Harness()
        #expect(await h.run([0x34, 0] + be(0, 4) + [0, 0, 8, 0]).good)
        #expect(await h.run([0x90, 0] + be(1024, 8) + be(1, 4) + [0, 0]).isCheck(0x05, 0x21, 0x00))
    }

    @Test func startStopUnitRefusesEjectOfTheFixedMediumAndFlushesOnStop() async throws {
        let h = try Harness()
        #expect(await h.run([0x1B, 1, 0, 0, 0x02, 0]).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run([0x1B, 0, 0, 0, 0x00, 0]).good)
        #expect(h.store.inner.flushes == 1)
        #expect(await h.run([0x1B, 0, 0, 0, 0x01, 0]).good)
        #expect(await h.run([0x1B, 0, 0, 0, 0x32, 0]).good)  // power condition: accepted
        #expect(await h.run([0x1E, 0, 0, 0, 1, 0]).good)
    }

    @Test func sendDiagnosticDefaultSelfTestPasses() async throws {
        let h = try Harness()
        #expect(await h.run([0x1D, 0x04, 0, 0, 0, 0]).good)
        #expect(await h.run([0x1D, 0x20, 0, 0, 0, 0]).good)       // background short self-test
        #expect(await h.run([0x1D, 0x10, 0, 0, 8, 0]).isCheck(0x05, 0x24, 0x00))
    }

    @Test func nacaInTheControlByteIsInvalidField() async throws {
        let h = try Harness()
        #expect(await h.run([0, 0, 0, 0, 0, 0x04]).isCheck(0x05, 0x24, 0x00))
        var cdb = read10(0, 1)
        cdb[9] = 0x04
        #expect(await h.run(cdb).isCheck(0x05, 0x24, 0x00))
    }

    @Test func unknownOpcodeIsInvalidCommandOperationCode() async throws {
        let h = try Harness()
        #expect(await h.run([0xC5, 0, 0, 0, 0, 0]).isCheck(0x05, 0x20, 0x00))
    }

    @Test func unknownLUNFailsExceptInquiryReportLunsAndRequestSense() async throws {
        let h = try Harness()
        #expect(await h.run([0, 0, 0, 0, 0, 0], lun: 5).isCheck(0x05, 0x25, 0x00))
        let inq = await h.run([0x12, 0, 0, 0, 96, 0], lun: 5)
        #expect(inq.good && inq.data.first == 0x7F)
        let rl = await h.run([0xA0, 0, 0, 0, 0, 0] + be(256, 4) + [0, 0], lun: 5)
        #expect(rl.good && rl.data.count == 16)
        let rs = await h.run([0x03, 0, 0, 0, 18, 0], lun: 5)
        #expect(rs.good && rs.data.count == 18 && rs.data[2] == 0x05 && rs.data[12] == 0x25)
    }
}
