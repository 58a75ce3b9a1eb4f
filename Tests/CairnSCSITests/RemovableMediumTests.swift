import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

// `cairn controller --removable`: RMB=1, START STOP UNIT load/eject, PREVENT ALLOW MEDIUM REMOVAL.

let tur: [UInt8] = [0x00, 0, 0, 0, 0, 0]
/// START STOP UNIT with LOEJ=1: START=0 ejects, START=1 loads.
func ssuEject(immed: Bool = false) -> [UInt8] { [0x1B, immed ? 1 : 0, 0, 0, 0x02, 0] }
func ssuLoad(immed: Bool = false) -> [UInt8] { [0x1B, immed ? 1 : 0, 0, 0, 0x03, 0] }
func preventAllow(_ prevent: UInt8) -> [UInt8] { [0x1E, 0, 0, 0, prevent, 0] }

extension Outcome {
    /// NOT READY / MEDIUM NOT PRESENT.
    var noMedium: Bool { isCheck(0x02, 0x3A, 0x00) }
    /// ILLEGAL REQUEST / MEDIUM REMOVAL PREVENTED.
    var removalPrevented: Bool { isCheck(0x05, 0x53, 0x02) }
}

extension Harness {
    static func removable(blocks: UInt64 = 1024) throws -> Harness {
        try Harness(blocks: blocks, options: LogicalUnitOptions(removable: true))
    }

    /// TEST UNIT READY until no unit attention is left for `nexus`; the final outcome.
    func turAfterUnitAttentions(_ nexus: ITNexus = Harness.a) async -> Outcome {
        var r = await run(tur, nexus: nexus)
        while r.status == .checkCondition && r.key == 0x06 { r = await run(tur, nexus: nexus) }
        return r
    }
}

@Suite struct RemovableMediumTests {
    @Test func standardInquiryReportsRMBOnlyForARemovableUnit() async throws {
        #expect(try await Harness.removable().run(inquiry()).data[1] == 0x80)
        #expect(try await Harness().run(inquiry()).data[1] == 0x00)
    }

    @Test func ejectMakesMediaAccessCommandsNotReadyUntilLoaded() async throws {
        let h = try Harness.removable()
        _ = await h.run(write10(0, 1), data: pattern(512, seed: 3))
        #expect(await h.run(ssuEject(immed: true)).good)
        #expect(h.store.inner.flushes == 1)  // unloading flushes first (NO_FLUSH=0)
        // Media access: NOT READY / MEDIUM NOT PRESENT.
        for cdb in [tur, read10(0, 1), read16(0, 1), [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    [0x9E, 0x10] + be(0, 8) + be(32, 4) + [0, 0], getLBAStatus(0),
                    [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0x34, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                    [0x2F, 0, 0, 0, 0, 0, 0, 0, 1, 0], [0x37, 0, 0x18, 0, 0, 0, 0, 0, 4, 0]] {
            #expect(await h.run(cdb).noMedium, "\(cdb)")
        }
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 4)).noMedium)
        #expect(await h.run([0x41, 0] + be(0, 4) + [0, 0, 1, 0], data: pattern(512, seed: 4)).noMedium)
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], data: unmapList([(0, 1)])).noMedium)
        #expect(await h.run(caw(0, 1), data: [UInt8](repeating: 0, count: 1024)).noMedium)
        #expect(h.store.writes == 1)
        // The rest answers as usual.
        #expect(await h.run(inquiry()).good)
        #expect(await h.run(modeSense6(page: 0x3F)).good)
        #expect(await h.run([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]).good)
        // REQUEST SENSE reports the condition.
        let rs = await h.run([0x03, 0, 0, 0, 252, 0])
        #expect(rs.good && rs.data[2] & 0x0F == 0x02 && rs.data[12] == 0x3A && rs.data[13] == 0x00)
        // A second eject is no error; a stop without LOEJ leaves it out and flushes nothing.
        #expect(await h.run(ssuEject()).good)
        #expect(await h.run([0x1B, 0, 0, 0, 0x00, 0]).good)
        #expect(h.store.inner.flushes == 1)
        #expect(await h.run(tur).noMedium)
        // Load: the same medium, readable at once, no unit attention.
        #expect(await h.run(ssuLoad()).good)
        #expect(await h.run(tur).good)
        #expect(h.blocks(0, 1) == pattern(512, seed: 3))
        #expect(await h.run(read10(0, 1)).data == pattern(512, seed: 3))
        #expect(await h.run(ssuLoad()).good)  // loading a loaded medium is no error
    }

    @Test func ejectWithNoFlushDoesNotFlush() async throws {
        let h = try Harness.removable()
        #expect(await h.run([0x1B, 0, 0, 0, 0x06, 0]).good)
        #expect(h.store.inner.flushes == 0)
        #expect(await h.run(tur).noMedium)
    }

    @Test func aPowerConditionIgnoresLoej() async throws {
        let h = try Harness.removable()
        for pc: UInt8 in 1..<16 {
            #expect(await h.run([0x1B, 1, 0, 0, pc << 4 | 0x02, 0]).good)
            #expect(await h.run(tur).good)
        }
    }

    @Test func preventStopsEjectAndLoadOnEveryNexusUntilEveryPreventerAllows() async throws {
        let h = try Harness.removable()
        #expect(await h.run(preventAllow(1)).good)
        #expect(await h.run(preventAllow(1), nexus: Harness.b).good)
        #expect(await h.run(ssuEject()).removalPrevented)
        #expect(await h.run(ssuEject(), nexus: Harness.c).removalPrevented)
        #expect(await h.run(tur).good)
        // A's allow withdraws only A's prevention.
        #expect(await h.run(preventAllow(0)).good)
        #expect(await h.run(ssuEject()).removalPrevented)
        // An allow from a nexus that never prevented changes nothing.
        #expect(await h.run(preventAllow(0), nexus: Harness.c).good)
        #expect(await h.run(ssuEject()).removalPrevented)
        #expect(await h.run(preventAllow(0), nexus: Harness.b).good)
        #expect(await h.run(ssuEject(), nexus: Harness.c).good)
        #expect(await h.run(tur).noMedium)
        // Prevented while out: the load is refused too, until allowed.
        #expect(await h.run(preventAllow(1)).good)
        #expect(await h.run(ssuLoad()).removalPrevented)
        #expect(await h.run(tur).noMedium)
        #expect(await h.run(preventAllow(0)).good)
        #expect(await h.run(ssuLoad()).good)
        #expect(await h.run(tur).good)
    }

    @Test func obsoletePreventCodesAreInvalidField() async throws {
        let h = try Harness.removable()
        #expect(await h.run(preventAllow(2)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(preventAllow(3)).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(ssuEject()).good)
    }

    @Test func nexusLossEndsOnlyThatNexusPrevention() async throws {
        let h = try Harness.removable()
        #expect(await h.run(preventAllow(1)).good)
        #expect(await h.run(preventAllow(1), nexus: Harness.b).good)
        await h.target.nexusLost(Harness.a)
        #expect(await h.run(ssuEject(), nexus: Harness.c).removalPrevented)
        await h.target.nexusLost(Harness.b)
        #expect(await h.run(ssuEject(), nexus: Harness.c).good)
        #expect(await h.run(tur, nexus: Harness.c).noMedium)
    }

    @Test(arguments: [TaskManagementFunction.logicalUnitReset, .targetWarmReset, .targetColdReset])
    func resetsEndEveryPreventionButLeaveAnEjectedMediumOut(_ reset: TaskManagementFunction) async throws {
        let h = try Harness.removable()
        #expect(await h.run(preventAllow(1)).good)
        #expect(await h.run(preventAllow(1), nexus: Harness.b).good)
        #expect(await h.target.taskManagement(reset, lun: 0, nexus: Harness.a) == .functionComplete)
        #expect(await h.turAfterUnitAttentions().good)
        #expect(await h.run(ssuEject()).good)
        #expect(await h.turAfterUnitAttentions(Harness.b).noMedium)
        // And a reset does not load it.
        #expect(await h.target.taskManagement(reset, lun: 0, nexus: Harness.a) == .functionComplete)
        #expect(await h.turAfterUnitAttentions().noMedium)
        #expect(await h.run(ssuLoad()).good)
        #expect(await h.run(tur).good)
    }

    @Test func otherTaskManagementLeavesThePreventionInPlace() async throws {
        let h = try Harness.removable()
        #expect(await h.run(preventAllow(1)).good)
        _ = await h.target.taskManagement(.abortTaskSet, lun: 0, nexus: Harness.a)
        _ = await h.target.taskManagement(.clearTaskSet, lun: 0, nexus: Harness.b)
        #expect(await h.run(ssuEject(), nexus: Harness.c).removalPrevented)
    }

    @Test func extendedCopyFromAnEjectedMediumIsRefused() async throws {
        let h = try Harness.removable()
        let list = xcopyList(cscds: [await h.cscd()], segments: [segmentB2B(blocks: 1, from: 0, to: 8)])
        #expect(await h.run(ssuEject()).good)
        #expect(await h.run(xcopyCDB(list.count), data: list).noMedium)
    }

    @Test func aFixedMediumKeepsItsBehaviour() async throws {
        let h = try Harness()
        #expect(await h.run(preventAllow(1)).good)
        #expect(await h.run(preventAllow(3)).good)
        #expect(await h.run(ssuEject()).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(ssuLoad()).isCheck(0x05, 0x24, 0x00))
        #expect(await h.run(tur).good)
    }
}
