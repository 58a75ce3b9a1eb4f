import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

@Suite struct SenseAndDecodeTests {
    @Test func readWriteCDBsDecodeLBAAndLengthForEachSize() {
        let r6 = BlockRange.decode(CDB([0x08, 0x1F, 0xFF, 0xFE, 0x00, 0]))
        #expect(r6.lba == 0x1F_FFFE && r6.count == 256)
        let r10 = BlockRange.decode(CDB([0x2A, 0x08, 0x12, 0x34, 0x56, 0x78, 0, 0x01, 0x02, 0]))
        #expect(r10.lba == 0x1234_5678 && r10.count == 0x102 && r10.fua)
        let r12 = BlockRange.decode(CDB([0xA8, 0x60, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0]))
        #expect(r12.lba == 9 && r12.count == 0x10000 && r12.protect == 3)
        let r16 = BlockRange.decode(CDB([0x88, 0] + be(0x0102_0304_0506_0708, 8) + be(77, 4) + [0, 0]))
        #expect(r16.lba == 0x0102_0304_0506_0708 && r16.count == 77)
    }

    @Test func lunFieldDecodesPeripheralFlatAndPlainForms() {
        #expect(decodeLUN(0) == 0)
        #expect(decodeLUN(0x0001_0000_0000_0000) == 1)
        #expect(decodeLUN(0x4101_0000_0000_0000) == 0x101)
        #expect(decodeLUN(7) == 7)
        #expect(decodeLUN(encodeLUN(300)) == 300)
        #expect(decodeLUN(0x0101_0000_0000_0000) != 1)  // bus 1: not ours
    }

    @Test func fixedSenseCarriesKeyASCAndFieldPointer() {
        let s = SCSIError.invalidField(cdbByte: 2, bit: 5).sense(descriptor: false).array
        #expect(s.count == 18)
        #expect(s[0] == 0x70 && s[2] == 0x05 && s[7] == 10 && s[12] == 0x24 && s[13] == 0x00)
        #expect(s[15] == 0x80 | 0x40 | 0x08 | 5 && s[16] == 0 && s[17] == 2)
    }

    @Test func fixedSenseMarksInformationValid() {
        let s = SCSIError.miscompare(at: 0x1234).sense(descriptor: false).array
        #expect(s[0] == 0xF0 && s[2] == 0x0E && Array(s[3..<7]) == [0, 0, 0x12, 0x34] && s[12] == 0x1D)
    }

    @Test func descriptorSenseHasInformationAndSenseKeySpecificDescriptors() {
        var e = SCSIError.miscompare(at: 0x1_0000_0001)
        e.sks = SCSIError.fieldPointer(cd: true, byte: 13, bit: nil)
        let s = e.sense(descriptor: true).array
        #expect(s[0] == 0x72 && s[1] == 0x0E && s[2] == 0x1D && s[3] == 0x00)
        #expect(s[7] == 20 && s.count == 28)
        #expect(Array(s[8..<12]) == [0x00, 0x0A, 0x80, 0x00])
        #expect(Array(s[12..<20]) == [0, 0, 0, 1, 0, 0, 0, 1])
        #expect(Array(s[20..<24]) == [0x02, 0x06, 0, 0] && s[24] == 0xC0 && s[26] == 13)
    }

    @Test func statusWithoutSenseEncodesNothing() {
        #expect(SCSIError.reservationConflict.sense(descriptor: false).count == 0)
    }

    @Test func blockStoreErrorsMapToSBCSense() {
        #expect(SCSIError.from(.medium(read: true, "x")) == .unrecoveredReadError)
        #expect(SCSIError.from(.medium(read: false, "x")) == .writeError)
        #expect(SCSIError.from(.noSpace) == .spaceAllocationFailed)
        #expect(SCSIError.from(.unavailable("q")) == .notReady)
        #expect(SCSIError.from(.becomingReady("s")) == .becomingReady)
        #expect(SCSIError.from(.readOnly) == .writeProtected)
    }

    @Test func rangeLockQueuesExclusiveBehindSharedAndSharedBehindWaitingExclusive() {
        var l = RangeLock()
        let w = l.tryAcquire(lba: 10, count: 5, exclusive: false)
        #expect(w.granted)
        let other = l.tryAcquire(lba: 12, count: 1, exclusive: false)
        #expect(other.granted)  // writes do not exclude writes
        let caw = l.tryAcquire(lba: 14, count: 1, exclusive: true)
        #expect(!caw.granted)
        let disjoint = l.tryAcquire(lba: 100, count: 1, exclusive: true)
        #expect(disjoint.granted)
    }
}
