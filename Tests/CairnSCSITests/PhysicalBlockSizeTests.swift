import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

// `cairn controller --physical-block-size`: LBPPBE in READ CAPACITY(16), block limits granularity.

@Suite struct PhysicalBlockSizeTests {
    static func readCapacity16(_ h: Harness) async -> [UInt8] {
        await h.run([0x9E, 0x10] + be(0, 8) + be(32, 4) + [0, 0]).data
    }

    @Test func defaultIsOneLogicalBlockPerPhysicalBlock() async throws {
        let h = try Harness()
        let rc = await Self.readCapacity16(h)
        #expect(rc[13] == 0 && rc[14] & 0x3F == 0 && rc[15] == 0)
        let bl = await h.run(inquiry(evpd: true, page: 0xB0)).data
        #expect(be(bl[6...7]) == 1)     // optimal transfer length granularity
        #expect(be(bl[28...31]) == 8)   // optimal unmap granularity: 4 KiB, as before
    }

    @Test(arguments: [(512, 4096, 3), (512, 8192, 4), (512, 1024, 1), (4096, 4096, 0), (4096, 16384, 2)])
    func readCapacity16AndBlockLimitsReportThePhysicalBlock(_ c: (logical: Int, physical: Int, exponent: UInt8)) async throws {
        let h = try Harness(blockSize: c.logical, options: LogicalUnitOptions(physicalBlockSize: c.physical))
        let rc = await Self.readCapacity16(h)
        #expect(be(rc[8...11]) == UInt64(c.logical))
        #expect(rc[13] == c.exponent)                       // LBPPBE
        #expect(rc[14] == 0xC0 && rc[15] == 0)              // LBPME, LBPRZ, lowest aligned LBA 0
        let bl = await h.run(inquiry(evpd: true, page: 0xB0)).data
        let lbppb = UInt64(c.physical / c.logical)
        #expect(be(bl[6...7]) == lbppb)
        #expect(be(bl[28...31]) == max(lbppb, UInt64(max(1, 4096 / c.logical))))
        #expect(bl[32] & 0x80 != 0 && be(bl[32...35]) & 0x7FFF_FFFF == 0)  // UGAVALID, alignment 0
    }

    @Test func getLBAStatusStillStartsAtTheRequestedLBA() async throws {
        // SBC-4: the first descriptor's LBA is the STARTING LOGICAL BLOCK ADDRESS, whatever LBPPB.
        let h = try Harness(blocks: 64, options: LogicalUnitOptions(physicalBlockSize: 4096))
        _ = await h.run(write10(0, 64), data: pattern(64 * 512, seed: 1))
        #expect(await h.run([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], data: unmapList([(0, 8)])).good)
        let s = await h.run(getLBAStatus(9, alloc: 24)).data
        #expect(be(s[8...15]) == 9 && s[20] & 0x0F == 0)
        let u = await h.run(getLBAStatus(1, alloc: 24)).data
        #expect(be(u[8...15]) == 1 && be(u[16...19]) == 7 && u[20] & 0x0F == 1)
    }

    @Test func validationAcceptsOnlyPowerOfTwoMultiplesOfTheLogicalBlock() {
        for ok in [512, 1024, 4096, 512 << 15] {
            #expect(LogicalUnitOptions(physicalBlockSize: ok).validate(logicalBlockSize: 512) == nil, "\(ok)")
        }
        for bad in [0, 256, 768, 1536, 3000, 512 << 16] {
            #expect(LogicalUnitOptions(physicalBlockSize: bad).validate(logicalBlockSize: 512) != nil, "\(bad)")
        }
        #expect(LogicalUnitOptions(physicalBlockSize: 2048).validate(logicalBlockSize: 4096) != nil)
        #expect(LogicalUnitOptions().validate(logicalBlockSize: 4096) == nil)
    }
}

/// Big-endian value of a slice of bytes.
func be(_ bytes: ArraySlice<UInt8>) -> UInt64 { bytes.reduce(0) { $0 << 8 | UInt64($1) } }
