@testable import CairnSCSI
import CairnIO
import Testing

/// The QoS limiter's parts that need no clock of the machine: the token bucket's arithmetic,
/// what a command costs, which limits are valid.
@Suite struct QoSLimiterTests {
    @Test func aBucketStartsFullWithTheBurstThenRefillsAtItsRate() {
        var b = TokenBucket(rate: 2000, burstSeconds: 1, full: true, now: 0)
        #expect(b.tokens == 2000 && b.ready(2000))
        b.tokens -= 2000
        #expect(!b.ready(1) && b.wait(1) == 500_000)  // one token every 500 µs
        b.refill(250_000_000)
        #expect(b.tokens == 500)
        b.refill(10_000_000_000)
        #expect(b.tokens == 2000, "never more than the burst")
        // A cost over the bucket waits for a full bucket, then leaves a debt.
        var small = TokenBucket(rate: 100, burstSeconds: 0.5, full: true, now: 0)
        #expect(small.ready(1000))
        small.tokens -= 1000
        #expect(small.wait(1) == 9_510_000_000)
        // No burst still lets a token through.
        #expect(TokenBucket(rate: 1000, burstSeconds: 0, full: true, now: 0).capacity >= 1)
    }

    @Test func readsCountTheirCDBWritesTheDataSentLargeOnesOneIOPer128KiB() {
        func command(_ bytes: [UInt8], dataOut: Int = 0) -> SCSICommand {
            SCSICommand(lun: 0, cdb: CDB(bytes), nexus: ITNexus(initiatorName: "i", isid: 0, portalGroupTag: 1), taskTag: 1,
                        dataOutLength: dataOut)
        }
        // READ(10) of 256 blocks of 512: 128 KiB.
        let read = QoSCost.of(command([0x28, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0]), blockSize: 512)
        #expect(read?.0 == .read && read?.1 == 128 << 10)
        let write = QoSCost.of(command([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0], dataOut: 4096), blockSize: 512)
        #expect(write?.0 == .write && write?.1 == 4096)
        #expect(QoSCost.of(command([0x12, 0, 0, 0, 36, 0]), blockSize: 512) == nil, "INQUIRY is not limited")
        #expect(QoSCost.of(command([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]), blockSize: 512) == nil, "SYNCHRONIZE CACHE is not limited")
        // A READ(16) naming more than a transfer can be costs at most the largest transfer.
        let huge = QoSCost.of(command([0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]), blockSize: 512)
        #expect(huge?.1 == LogicalUnit.maxTransferBytes)
    }

    @Test func limitsMustBePositiveAndTheBurstBounded() {
        #expect(QoSLimits().isUnlimited && QoSLimits().validate() == nil)
        #expect(QoSLimits(writeIOPS: 0).validate() != nil)
        #expect(QoSLimits(iops: 10, burstSeconds: -1).validate() != nil)
        #expect(QoSLimits(iops: 10, burstSeconds: .nan).validate() != nil)
        #expect(QoSLimits(readBandwidth: 1 << 20).summary == "read_bandwidth=1048576 burst=1.0s")
        let limiter = QoSLimiter(limits: QoSLimits(iops: 1000))
        #expect(limiter.active)
        _ = limiter.set(QoSLimits())
        #expect(!limiter.active, "no limit: one branch per command")
    }
}
