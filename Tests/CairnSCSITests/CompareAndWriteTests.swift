import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

func caw(_ lba: UInt64, _ n: UInt8, flags: UInt8 = 0) -> [UInt8] { [0x89, flags] + be(lba, 8) + [0, 0, 0, n, 0, 0] }

@Suite struct CompareAndWriteTests {
    @Test func compareAndWriteWritesWhenTheDataMatches() async throws {
        let h = try Harness()
        let old = pattern(1024, seed: 1), new = pattern(1024, seed: 2)
        _ = await h.run(write10(50, 2), data: old)
        #expect(await h.run(caw(50, 2), data: old + new).good)
        #expect(h.blocks(50, 2) == new)
    }

    @Test func compareAndWriteMiscompareReportsOffsetAndWritesNothing() async throws {
        let h = try Harness()
        let old = pattern(512, seed: 1)
        _ = await h.run(write10(3, 1), data: old)
        var expected = old
        expected[100] ^= 1
        let r = await h.run(caw(3, 1), data: expected + pattern(512, seed: 9))
        #expect(r.isCheck(0x0E, 0x1D, 0x00))
        #expect(Array(r.sense[3..<7]) == [0, 0, 0, 100])
        #expect(h.blocks(3, 1) == old)
    }

    @Test func compareAndWriteWithWrongDataOutSizeIsInvalidFieldInCDB() async throws {
        let h = try Harness()
        let buf = [UInt8](repeating: 0xA6, count: 4 * 512)
        #expect(await h.run(caw(0, 1), data: buf).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(caw(0, 3), data: buf).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(caw(0, 1)).isCheck(0x05, 0x24, 0x00))
        // Zero blocks with data (a 256-block request wrapped in the one-byte field).
        #expect(await h.run(caw(0, 0), data: [UInt8](repeating: 0, count: 512 * 512)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(caw(0, 0)).good)
    }

    @Test func compareAndWriteBeyondEndIsLBAOutOfRange() async throws {
        let h = try Harness()
        #expect(await h.run(caw(1023, 2), data: [UInt8](repeating: 0, count: 2048)).isCheck(0x05, 0x21, 0x00))
    }

    /// A write overlapping a COMPARE AND WRITE that is between its read and its write must not
    /// land in between: the outcome must be serializable (CAW then write: the write's data).
    @Test func compareAndWriteIsAtomicAgainstAConcurrentOverlappingWrite() async throws {
        let h = try Harness()
        let old = pattern(512, seed: 1), cawData = pattern(512, seed: 2), other = pattern(512, seed: 3)
        _ = await h.run(write10(9, 1), data: old)
        h.store.readDelayNanos = 50_000_000   // the CAW's read copies, then waits 50 ms
        async let c = h.run(caw(9, 1), data: old + cawData)
        try await Task.sleep(nanoseconds: 10_000_000)
        async let w = h.run(write10(9, 1), nexus: Harness.b, data: other)
        let (rc, rw) = await (c, w)
        #expect(rc.good && rw.good)
        #expect(h.blocks(9, 1) == other)
    }

    /// And the other way round: a COMPARE AND WRITE waits for a write already in flight.
    @Test func compareAndWriteWaitsForAnInFlightOverlappingWrite() async throws {
        let h = try Harness()
        let old = pattern(512, seed: 1), cawData = pattern(512, seed: 2), other = pattern(512, seed: 3)
        _ = await h.run(write10(9, 1), data: old)
        h.store.writeDelayNanos = 50_000_000  // the plain write waits before it lands
        async let w = h.run(write10(9, 1), nexus: Harness.b, data: other)
        try await Task.sleep(nanoseconds: 10_000_000)
        async let c = h.run(caw(9, 1), data: old + cawData)
        let (rw, rc) = await (w, c)
        #expect(rw.good)
        // The CAW compared against the write's data, so it must miscompare, and the write stays.
        #expect(rc.isCheck(0x0E, 0x1D, 0x00))
        #expect(h.blocks(9, 1) == other)
    }
}
