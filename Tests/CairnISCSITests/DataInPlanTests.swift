@testable import CairnISCSI
import Testing

@Suite struct DataInPlanTests {
    @Test func dataInIsSplitAtMaxRecvDataSegmentLengthWithFAtEachBurst() {
        let segs = Array(DataInSplitter(total: 20_000, maxSegment: 4096, maxBurst: 8192))
        #expect(segs.map(\.length) == [4096, 4096, 4096, 4096, 3616])
        #expect(segs.map(\.offset) == [0, 4096, 8192, 12288, 16384])
        #expect(segs.map(\.final) == [false, true, false, true, true])
        #expect(segs.map(\.last) == [false, false, false, false, true])
    }

    @Test func burstSmallerThanSegmentLimitsEachPDU() {
        let segs = Array(DataInSplitter(total: 3000, maxSegment: 65536, maxBurst: 1024))
        #expect(segs.map(\.length) == [1024, 1024, 952])
        let allFinal = segs.allSatisfy { $0.final }
        #expect(allFinal)
    }

    @Test func nothingToSendMakesNoPDU() {
        #expect(Array(DataInSplitter(total: 0, maxSegment: 8192, maxBurst: 8192)).isEmpty)
    }

    @Test(arguments: [(512, 512, Residual()), (36, 96, underflow(60)), (4096, 512, overflow(3584)), (0, 512, underflow(512))])
    func residualFollowsRFC7143(wanted: UInt64, expected: UInt64, result: Residual) {
        #expect(Residual(wanted: wanted, expected: expected) == result)
    }

    @Test func hugeResidualsClampInsteadOfTrapping() {
        #expect(Residual(wanted: UInt64.max, expected: 0).count == UInt32.max)
    }
}

private func underflow(_ n: UInt32) -> Residual { var r = Residual(); r.underflow = true; r.count = n; return r }
private func overflow(_ n: UInt32) -> Residual { var r = Residual(); r.overflow = true; r.count = n; return r }
