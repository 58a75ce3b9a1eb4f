import CairnBlock
import CairnIO
import Logging
import Testing
@testable import CairnSCSI

@Suite struct EdgeCaseTests {
    @Test func verifyByteCheckThreeComparesOneBlockWithEach() async throws {
        let h = try Harness()
        let blk = pattern(512, seed: 3)
        _ = await h.run([0x41, 0] + be(40, 4) + [0, 0, 4, 0], data: blk)
        #expect(await h.run([0x2F, 0x06] + be(40, 4) + [0, 0, 4, 0], data: blk).good)
        var other = blk
        other[5] ^= 1
        let r = await h.run([0x2F, 0x06] + be(40, 4) + [0, 0, 4, 0], data: other)
        #expect(r.isCheck(0x0E, 0x1D, 0x00) && Array(r.sense[3..<7]) == [0, 0, 0, 5])
        #expect(await h.run([0x2F, 0x04] + be(40, 4) + [0, 0, 4, 0], data: blk).isCheck(0x05, 0x24, 0x00)) // BYTCHK 2
    }

    @Test func writeSameLongerThanOneChunkFillsEveryBlock() async throws {
        let h = try Harness(blocks: 4096)
        let blk = pattern(512, seed: 7)
        #expect(await h.run([0x93, 0] + be(100, 8) + be(3000, 4) + [0, 0], data: blk).good)
        #expect(h.blocks(100, 1) == blk && h.blocks(3099, 1) == blk && h.blocks(2148, 1) == blk)
        #expect(h.blocks(3100, 1) == [UInt8](repeating: 0, count: 512))
    }

    @Test func getLBAStatusWithSmallAllocationReturnsOneDescriptor() async throws {
        let h = try Harness()
        _ = await h.run(write10(4, 4), data: pattern(2048, seed: 1))
        let r = await h.run(getLBAStatus(0, alloc: 24))
        #expect(r.data.count == 24 && Array(r.data[8..<16]) == be(0, 8) && Array(r.data[16..<20]) == be(4, 4))
        // Only as many descriptors as fit are produced, and the length says so.
        #expect(be(Array(r.data[0..<4]), 0, 4) == 20)
    }

    @Test func readCapacity16HonoursAllocationLength() async throws {
        let h = try Harness()
        let r = await h.run([0x9E, 0x10] + be(0, 8) + be(12, 4) + [0, 0])
        #expect(r.good && r.data.count == 12)
    }

    @Test func reportLunsEncodesLunsAbove255WithFlatAddressing() async throws {
        let loop = try EventLoop(name: "luns")
        loop.start()
        defer { loop.stopAndJoin() }
        let t = SCSITarget(loop: loop, identity: LogicalUnitIdentity(volumeName: "v", targetName: "iqn.x"),
                           luns: [0: MemoryBlockStore(blockCount: 8), 300: MemoryBlockStore(blockCount: 8)],
                           logger: Logger(label: "t"))
        let nexus = Harness.a
        let r = await t.execute(SCSICommand(lun: 0, cdb: CDB([0xA0, 0, 0, 0, 0, 0] + be(64, 4) + [0, 0]), nexus: nexus, taskTag: 1,
                                            expectedDataInLength: 64))
        let d = r.dataIn.map { Array(UnsafeRawBufferPointer(start: $0.base, count: r.dataInLength)) } ?? []
        if let b = r.dataIn { loop.execute { loop.buffers.give(b) } }
        #expect(d.count == 24 && Array(d[8..<16]) == [UInt8](repeating: 0, count: 8))
        #expect(Array(d[16..<18]) == [0x41, 0x2C])
        // And that LUN answers when addressed with the same 8-byte field.
        let tur = await t.execute(SCSICommand(lun: 0x412C_0000_0000_0000, cdb: CDB([0, 0, 0, 0, 0, 0]), nexus: nexus, taskTag: 2))
        #expect(tur.status == .good)
    }

    @Test func registerAndIgnoreExistingKeyReplacesTheKey() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.register(Harness.a, 0xA9)
        let r = await h.run(prin(0))
        #expect(Array(r.data[4..<8]) == be(8, 4) && Array(r.data[8..<16]) == be(0xA9, 8))
    }

    @Test func preemptWithZeroKeyUnderAllRegistrantsTakesTheReservation() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.register(Harness.b, 0xB2)
        _ = await h.reserve(Harness.a, 0xA1, 8)
        let pre = prout(0x04, type: 3, key: 0xB2, saKey: 0)
        #expect(await h.run(pre.cdb, nexus: Harness.b, data: pre.data).good)
        let r = await h.run(prin(1), nexus: Harness.b)
        #expect(Array(r.data[8..<16]) == be(0xB2, 8) && r.data[21] == 3)
        #expect(await h.run([0, 0, 0, 0, 0, 0]).isCheck(0x06, 0x2A, 0x05))
        #expect(await h.canRead(Harness.a) == false)
    }

    @Test func unregisteringTheHolderReleasesTheReservation() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.reserve(Harness.a, 0xA1, 3)
        #expect(await h.canRead(Harness.b) == false)
        let unreg = prout(0x00, key: 0xA1, saKey: 0)
        #expect(await h.run(unreg.cdb, data: unreg.data).good)
        #expect(await h.canRead(Harness.b))
    }

    @Test func nexusLossDropsItsPendingUnitAttentions() async throws {
        let h = try Harness()
        _ = await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b)
        _ = await h.target.taskManagement(.logicalUnitReset, lun: 0, nexus: Harness.a)
        await h.target.nexusLost(Harness.b)
        #expect(await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b).good)
    }

    @Test func clearTaskSetTellsOtherNexuses() async throws {
        let h = try Harness()
        _ = await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b)
        _ = await h.run([0, 0, 0, 0, 0, 0])
        #expect(await h.target.taskManagement(.clearTaskSet, lun: 0, nexus: Harness.a) == .functionComplete)
        #expect(await h.run([0, 0, 0, 0, 0, 0]).good)
        #expect(await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b).isCheck(0x06, 0x2F, 0x00))
        #expect(await h.target.taskManagement(.clearACA, lun: 0, nexus: Harness.a) == .functionRejected)
    }

    @Test func truncatedAndGarbageCDBsNeverCrash() async throws {
        let h = try Harness()
        // Every opcode with a short all-ones CDB, and with no data-out: any status, no trap.
        for op in 0...255 {
            let r = await h.run([UInt8(op), 0xFF, 0xFF])
            #expect(r.status == .good || r.status == .checkCondition || r.status == .reservationConflict)
            let r2 = await h.run([UInt8(op)] + [UInt8](repeating: 0xFF, count: 15), data: [UInt8](repeating: 0xFF, count: 64))
            #expect(r2.status == .good || r2.status == .checkCondition || r2.status == .reservationConflict)
        }
    }
}

@Suite struct OrWriteAndDefectDataTests {
    static func orwrite16(_ lba: UInt64, _ n: UInt32, flags: UInt8 = 0) -> [UInt8] {
        var c: [UInt8] = [0x8B, flags]
        for i in (0..<8).reversed() { c.append(UInt8(truncatingIfNeeded: lba >> (8 * UInt64(i)))) }
        for i in (0..<4).reversed() { c.append(UInt8(truncatingIfNeeded: n >> (8 * UInt32(i)))) }
        return c + [0, 0]
    }

    @Test func orWriteOrsTheDataOutIntoTheBlocks() async throws {
        let h = try Harness(blocks: 64)
        #expect(await h.run(write10(4, 2), data: [UInt8](repeating: 0xA5, count: 1024)).good)
        #expect(await h.run(Self.orwrite16(4, 2), data: [UInt8](repeating: 0x5A, count: 1024)).good)
        #expect(h.store.inner.bytes(lba: 4, count: 2) == [UInt8](repeating: 0xFF, count: 1024))
        #expect(h.store.inner.bytes(lba: 6, count: 1) == [UInt8](repeating: 0, count: 512))
    }

    @Test func orWriteChecksRangeProtectAndZeroBlocks() async throws {
        let h = try Harness(blocks: 64)
        #expect(await h.run(Self.orwrite16(63, 2), data: [UInt8](repeating: 1, count: 1024)).isCheck(0x05, 0x21, 0x00))
        #expect(await h.run(Self.orwrite16(0, 1, flags: 0x20), data: [UInt8](repeating: 1, count: 512)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(Self.orwrite16(0, 0)).good)
    }

    @Test func readDefectDataReportsEmptyLists() async throws {
        let h = try Harness(blocks: 64)
        let r10 = await h.run([0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0])
        #expect(r10.good && r10.data == [0, 0x18, 0, 0])
        let r12 = await h.run([0xB7, 0x18, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])
        #expect(r12.good && r12.data == [0, 0x18, 0, 0, 0, 0, 0, 0])
    }

    @Test func readCapacity16ReportsOneLogicalBlockPerPhysicalBlock() async throws {
        let h = try Harness(blocks: 64)
        let r = await h.run([0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])
        #expect(r.good && r.data[13] & 0x0F == 0)
    }
}

@Suite struct RangeLockRaceTests {
    @Test(.timeLimit(.minutes(1))) func aWaiterWhoseRangeWasReleasedBeforeItParkedGoesOnAtOnce() async {
        var lock = RangeLock()
        let first = lock.tryAcquire(lba: 0, count: 8, exclusive: true)
        #expect(first.granted)
        let second = lock.tryAcquire(lba: 4, count: 8, exclusive: false)
        #expect(!second.granted)
        // The holder releases before the second command registers its continuation.
        lock.release(first.id)
        var l = lock
        await withCheckedContinuation { c in l.enqueue(second.entry, c) }
        #expect(l.held.map(\.id) == [second.id])
        #expect(l.waiting.isEmpty)
    }
}
