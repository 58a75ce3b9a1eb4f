import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

func prout(_ sa: UInt8, type: UInt8 = 0, key: UInt64, saKey: UInt64 = 0, flags: UInt8 = 0) -> (cdb: [UInt8], data: [UInt8]) {
    let cdb: [UInt8] = [0x5F, sa, type, 0, 0, 0, 0, 0, 24, 0]
    let data = be(key, 8) + be(saKey, 8) + [0, 0, 0, 0, flags, 0, 0, 0]
    return (cdb, data)
}
func prin(_ sa: UInt8, alloc: UInt16 = 1024) -> [UInt8] { [0x5E, sa, 0, 0, 0, 0, 0] + be(UInt64(alloc), 2) + [0] }

extension Harness {
    func register(_ nexus: ITNexus, _ key: UInt64) async -> Outcome {
        let p = prout(0x06, key: 0, saKey: key)
        return await run(p.cdb, nexus: nexus, data: p.data)
    }
    func reserve(_ nexus: ITNexus, _ key: UInt64, _ type: UInt8) async -> Outcome {
        let p = prout(0x01, type: type, key: key)
        return await run(p.cdb, nexus: nexus, data: p.data)
    }
    func canRead(_ nexus: ITNexus) async -> Bool { await run(read10(0, 1), nexus: nexus).good }
    func canWrite(_ nexus: ITNexus) async -> Bool { await run(write10(0, 1), nexus: nexus, data: pattern(512, seed: 1)).good }
}

@Suite struct PersistentReservationTests {
    @Test func registerThenReadKeysListsEveryKey() async throws {
        let h = try Harness()
        #expect(await h.register(Harness.a, 0xA1).good)
        #expect(await h.register(Harness.b, 0xB2).good)
        let r = await h.run(prin(0))
        #expect(r.good && Array(r.data[4..<8]) == be(16, 4))
        #expect(Array(r.data[8..<24]) == be(0xA1, 8) + be(0xB2, 8))
        #expect(be(2, 4) == Array(r.data[0..<4]))  // generation counts the registrations
    }

    @Test func unregisteringAnUnregisteredNexusChangesNothing() async throws {
        let h = try Harness()
        let p = prout(0x00, key: 0, saKey: 0)
        #expect(await h.run(p.cdb, data: p.data).good)
        #expect(Array(await h.run(prin(0)).data[0..<8]) == [0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func registerWithWrongReservationKeyIsAConflict() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        let p = prout(0x00, key: 0x99, saKey: 0xA2)
        #expect(await h.run(p.cdb, data: p.data).status == .reservationConflict)
        let unreg = prout(0x00, key: 0xA1, saKey: 0)
        #expect(await h.run(unreg.cdb, data: unreg.data).good)
        #expect(Array(await h.run(prin(0)).data[4..<8]) == be(0, 4))
    }

    @Test func reserveWithoutRegistrationIsAConflict() async throws {
        let h = try Harness()
        #expect(await h.reserve(Harness.a, 0, 1).status == .reservationConflict)
    }

    @Test func readReservationShowsHolderKeyAndTypeAndZeroKeyForAllRegistrants() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        #expect(await h.reserve(Harness.a, 0xA1, 3).good)
        var r = await h.run(prin(1))
        #expect(Array(r.data[4..<8]) == be(16, 4) && Array(r.data[8..<16]) == be(0xA1, 8) && r.data[21] == 3)
        let rel = prout(0x02, type: 3, key: 0xA1)
        #expect(await h.run(rel.cdb, data: rel.data).good)
        #expect(await h.reserve(Harness.a, 0xA1, 7).good)
        r = await h.run(prin(1))
        #expect(Array(r.data[8..<16]) == be(0, 8) && r.data[21] == 7)
    }

    @Test func prinServiceActionsZeroToThreeWorkAndOthersAreInvalid() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.reserve(Harness.a, 0xA1, 1)
        for sa: UInt8 in 0...3 { #expect(await h.run(prin(sa)).good) }
        #expect(await h.run(prin(4)).isCheck(0x05, 0x24, 0x00))
        let caps = await h.run(prin(2))
        #expect(Array(caps.data[0..<2]) == [0, 8] && caps.data[3] & 0x80 != 0)
        let full = await h.run(prin(3))
        #expect(Array(full.data[8..<16]) == be(0xA1, 8) && full.data[20] & 1 == 1 && full.data[21] == 1)
        let tidLength = Int(be(Array(full.data[28..<32]), 0, 4))
        #expect(tidLength > 0 && full.data.count == 32 + tidLength && full.data[32] == 0x45)
    }

    /// SPC-4 table: (type, registered reads, registered writes, unregistered reads, unregistered writes).
    @Test(arguments: [
        (UInt8(1), true, false, true, false),   // WRITE EXCLUSIVE
        (UInt8(3), false, false, false, false), // EXCLUSIVE ACCESS
        (UInt8(5), true, true, true, false),    // WRITE EXCLUSIVE - REGISTRANTS ONLY
        (UInt8(6), true, true, false, false),   // EXCLUSIVE ACCESS - REGISTRANTS ONLY
        (UInt8(7), true, true, true, false),    // WRITE EXCLUSIVE - ALL REGISTRANTS
        (UInt8(8), true, true, false, false),   // EXCLUSIVE ACCESS - ALL REGISTRANTS
    ])
    func reservationTypeConflictTable(type: UInt8, regRead: Bool, regWrite: Bool, unregRead: Bool, unregWrite: Bool) async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.register(Harness.b, 0xB2)
        #expect(await h.reserve(Harness.a, 0xA1, type).good)
        #expect(await h.canRead(Harness.a))
        #expect(await h.canWrite(Harness.a))
        #expect(await h.canRead(Harness.b) == regRead)
        #expect(await h.canWrite(Harness.b) == regWrite)
        #expect(await h.canRead(Harness.c) == unregRead)
        #expect(await h.canWrite(Harness.c) == unregWrite)
        // Commands that never conflict.
        #expect(await h.run([0x12, 0, 0, 0, 96, 0], nexus: Harness.c).good)
        #expect(await h.run(prin(0), nexus: Harness.c).good)
        #expect(await h.run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], nexus: Harness.c).good)
    }

    @Test func releaseWithWrongTypeIsInvalidReleaseOfPersistentReservation() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.reserve(Harness.a, 0xA1, 1)
        let rel = prout(0x02, type: 3, key: 0xA1)
        #expect(await h.run(rel.cdb, data: rel.data).isCheck(0x05, 0x26, 0x04))
    }

    @Test func releaseOfRegistrantsOnlyReservationTellsOtherRegistrants() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.register(Harness.b, 0xB2)
        _ = await h.reserve(Harness.a, 0xA1, 5)
        let rel = prout(0x02, type: 5, key: 0xA1)
        #expect(await h.run(rel.cdb, data: rel.data).good)
        #expect(await h.run(prin(1)).good)  // the issuer sees no unit attention
        #expect(await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b).isCheck(0x06, 0x2A, 0x04))
    }

    @Test func clearRemovesEverythingAndTellsOthersReservationsPreempted() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.register(Harness.b, 0xB2)
        _ = await h.reserve(Harness.a, 0xA1, 3)
        let clr = prout(0x03, key: 0xA1)
        #expect(await h.run(clr.cdb, data: clr.data).good)
        let keys = await h.run(prin(0))
        #expect(keys.good && Array(keys.data[4..<8]) == be(0, 4))
        #expect(await h.run(read10(0, 1), nexus: Harness.b).isCheck(0x06, 0x2A, 0x03))
        #expect(await h.canRead(Harness.b))
    }

    @Test func preemptTakesTheReservationAndRemovesThePreemptedRegistration() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        _ = await h.register(Harness.b, 0xB2)
        _ = await h.reserve(Harness.a, 0xA1, 3)
        let pre = prout(0x04, type: 1, key: 0xB2, saKey: 0xA1)
        #expect(await h.run(pre.cdb, nexus: Harness.b, data: pre.data).good)
        let r = await h.run(prin(1), nexus: Harness.b)
        #expect(r.good && Array(r.data[8..<16]) == be(0xB2, 8) && r.data[21] == 1)
        #expect(await h.run([0, 0, 0, 0, 0, 0]).isCheck(0x06, 0x2A, 0x05))
        let keys = await h.run(prin(0))
        #expect(Array(keys.data[4..<8]) == be(8, 4) && Array(keys.data[8..<16]) == be(0xB2, 8))
    }

    @Test func preemptOfUnknownKeyIsAConflict() async throws {
        let h = try Harness()
        _ = await h.register(Harness.a, 0xA1)
        let pre = prout(0x04, type: 1, key: 0xA1, saKey: 0x77)
        #expect(await h.run(pre.cdb, data: pre.data).status == .reservationConflict)
    }

    @Test func proutWithWrongParameterListLengthOrAPTPLIsRefused() async throws {
        let h = try Harness()
        var p = prout(0x06, key: 0, saKey: 1)
        p.cdb[8] = 20
        #expect(await h.run(p.cdb, data: Array(p.data[0..<20])).isCheck(0x05, 0x1A, 0x00))
        let aptpl = prout(0x06, key: 0, saKey: 1, flags: 0x01)
        #expect(await h.run(aptpl.cdb, data: aptpl.data).isCheck(0x05, 0x26, 0x00))
        let move = prout(0x07, key: 0, saKey: 1)
        #expect(await h.run(move.cdb, data: move.data).isCheck(0x05, 0x24, 0x00))
    }
}

@Suite struct ReserveReleaseTests {
    @Test func reserve6BlocksOtherNexusesExceptAllowedCommands() async throws {
        let h = try Harness()
        #expect(await h.run([0x16, 0, 0, 0, 0, 0]).good)
        #expect(await h.run(modeSense6(page: 0x3F), nexus: Harness.b).status == .reservationConflict)
        #expect(await h.run(read10(0, 1), nexus: Harness.b).status == .reservationConflict)
        #expect(await h.run([0x16, 0, 0, 0, 0, 0], nexus: Harness.b).status == .reservationConflict)
        #expect(await h.run([0x12, 0, 0, 0, 96, 0], nexus: Harness.b).good)
        #expect(await h.run([0xA0, 0, 0, 0, 0, 0] + be(64, 4) + [0, 0], nexus: Harness.b).good)
        #expect(await h.run([0x17, 0, 0, 0, 0, 0], nexus: Harness.b).good) // a no-op for a non-holder
        #expect(await h.canRead(Harness.a))
        #expect(await h.run([0x17, 0, 0, 0, 0, 0]).good)
        #expect(await h.canRead(Harness.b))
    }

    @Test func nexusLossReleasesReserve6() async throws {
        let h = try Harness()
        #expect(await h.run([0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]).good)
        await h.target.nexusLost(Harness.a)
        #expect(await h.canRead(Harness.b))
    }

    @Test func reserveAndReleaseConflictWhilePersistentRegistrationsExist() async throws {
        let h = try Harness()
        _ = await h.register(Harness.b, 0xB2)
        #expect(await h.run([0x16, 0, 0, 0, 0, 0]).status == .reservationConflict)
        #expect(await h.run([0x17, 0, 0, 0, 0, 0]).status == .reservationConflict)
    }
}

@Suite struct UnitAttentionTests {
    @Test func logicalUnitResetRaisesUnitAttentionForEveryNexusAndClearsReserve6() async throws {
        let h = try Harness()
        _ = await h.run([0, 0, 0, 0, 0, 0], nexus: Harness.b)
        _ = await h.run([0x16, 0, 0, 0, 0, 0])
        #expect(await h.target.taskManagement(.logicalUnitReset, lun: 0, nexus: Harness.a) == .functionComplete)
        #expect(await h.run([0, 0, 0, 0, 0, 0]).isCheck(0x06, 0x29, 0x03))
        #expect(await h.run([0, 0, 0, 0, 0, 0]).good)
        #expect(await h.run(read10(0, 1), nexus: Harness.b).isCheck(0x06, 0x29, 0x03))
        #expect(await h.canRead(Harness.b))  // the RESERVE(6) went with the reset
    }

    @Test func taskManagementOnUnknownLUNSaysSo() async throws {
        let h = try Harness()
        #expect(await h.target.taskManagement(.logicalUnitReset, lun: 9, nexus: Harness.a) == .lunDoesNotExist)
        #expect(await h.target.taskManagement(.targetWarmReset, lun: 9, nexus: Harness.a) == .functionComplete)
    }

    @Test func inquiryDoesNotConsumeAUnitAttentionButRequestSenseReturnsIt() async throws {
        let h = try Harness()
        _ = await h.run([0, 0, 0, 0, 0, 0])
        _ = await h.target.taskManagement(.targetWarmReset, lun: 0, nexus: Harness.a)
        #expect(await h.run([0x12, 0, 0, 0, 96, 0]).good)
        let rs = await h.run([0x03, 0, 0, 0, 252, 0])
        #expect(rs.good && rs.data[2] == 0x06 && rs.data[12] == 0x29 && rs.data[13] == 0x03)
        let again = await h.run([0x03, 0x01, 0, 0, 252, 0])
        #expect(again.good && again.data[0] == 0x72 && again.data[1] == 0)
        #expect(await h.run([0, 0, 0, 0, 0, 0]).good)
    }
}
