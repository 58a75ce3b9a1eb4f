import CairnBlock
import CairnIO
import Testing
@testable import CairnSCSI

// `cairn controller --read-only`: WP=1, DATA PROTECT / WRITE PROTECTED for every write command.

extension Outcome {
    /// DATA PROTECT / WRITE PROTECTED.
    var writeProtected: Bool { isCheck(0x07, 0x27, 0x00) }
}

@Suite struct ReadOnlyTests {
    static func readOnly() throws -> Harness {
        try Harness(blocks: 64, options: LogicalUnitOptions(readOnly: true))
    }

    @Test func modeSenseReportsWriteProtect() async throws {
        let h = try Self.readOnly()
        #expect(await h.run(modeSense6(page: 0x3F)).data[2] & 0x80 != 0)
        let ten = await h.run([0x5A, 0, 0x3F, 0, 0, 0, 0, 0x10, 0, 0])
        #expect(ten.good && ten.data[3] & 0x80 != 0)
        #expect(try await Harness().run(modeSense6(page: 0x3F)).data[2] & 0x80 == 0)
    }

    @Test func everyCommandThatWouldChangeTheMediumIsWriteProtected() async throws {
        let h = try Self.readOnly()
        let block = pattern(512, seed: 9)
        let commands: [(String, [UInt8], [UInt8]?)] = [
            ("WRITE(6)", [0x0A, 0, 0, 0, 1, 0], block),
            ("WRITE(10)", write10(0, 1), block),
            ("WRITE(12)", [0xAA, 0] + be(0, 4) + be(1, 4) + [0, 0], block),
            ("WRITE(16)", write16(0, 1), block),
            ("WRITE AND VERIFY(10)", [0x2E, 0] + be(0, 4) + [0] + be(1, 2) + [0], block),
            ("WRITE AND VERIFY(12)", [0xAE, 0] + be(0, 4) + be(1, 4) + [0, 0], block),
            ("WRITE AND VERIFY(16)", [0x8E, 0] + be(0, 8) + be(1, 4) + [0, 0], block),
            ("WRITE SAME(10)", [0x41, 0] + be(0, 4) + [0] + be(4, 2) + [0], block),
            ("WRITE SAME(10) UNMAP", [0x41, 0x08] + be(0, 4) + [0] + be(4, 2) + [0], block),
            ("WRITE SAME(16)", [0x93, 0] + be(0, 8) + be(4, 4) + [0, 0], block),
            ("WRITE SAME(16) UNMAP NDOB", [0x93, 0x09] + be(0, 8) + be(4, 4) + [0, 0], nil),
            ("UNMAP", [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], unmapList([(0, 8)])),
            ("COMPARE AND WRITE", caw(0, 1), [UInt8](repeating: 0, count: 512) + block),
            ("ORWRITE(16)", OrWriteAndDefectDataTests.orwrite16(0, 1), block),
            ("WRITE ATOMIC(16)", [0x9C, 0] + be(0, 8) + [0, 0] + be(1, 2) + [0, 0], block),
            ("SANITIZE OVERWRITE", sanitizeCDB(0x01, length: 8), [0x01, 0, 0, 4, 1, 2, 3, 4]),
            ("SANITIZE BLOCK ERASE", sanitizeCDB(0x02), nil),
        ]
        for (name, cdb, data) in commands {
            #expect(await h.run(cdb, data: data).writeProtected, "\(name)")
        }
        let list = xcopyList(cscds: [await h.cscd()], segments: [segmentB2B(blocks: 1, from: 0, to: 8)])
        #expect(await h.run(xcopyCDB(list.count), data: list).writeProtected, "EXTENDED COPY")
        #expect(h.store.writes == 0)
        #expect(h.blocks(0, 64).allSatisfy { $0 == 0 })
    }

    @Test func readsAndOtherCommandsStillWork() async throws {
        let h = try Self.readOnly()
        #expect(await h.run(read10(0, 4)).data == [UInt8](repeating: 0, count: 2048))
        #expect(await h.run(read16(60, 4)).good)
        #expect(await h.run([0x2F, 0] + be(0, 4) + [0] + be(8, 2) + [0]).good)     // VERIFY(10)
        #expect(await h.run([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]).good)               // SYNCHRONIZE CACHE(10)
        #expect(await h.run(tur).good)
        #expect(await h.run(getLBAStatus(0)).good)
    }

    @Test func clearingSoftwareWriteProtectDoesNotMakeItWritable() async throws {
        let h = try Self.readOnly()
        let page = pages6(await h.run(modeSense6(page: 0x0A)).data)[0x0A]!
        #expect(page[4] & 0x08 == 0)
        let s = modeSelect6(page)
        #expect(await h.run(s.cdb, data: s.data).good)
        #expect(await h.run(write10(0, 1), data: pattern(512, seed: 1)).writeProtected)
        #expect(await h.run(modeSense6(page: 0x3F)).data[2] & 0x80 != 0)
    }

    @Test func aWritableUnitWithSoftwareWriteProtectStillReportsIt() async throws {
        // SWP (control mode page) and --read-only share the WP bit and the refusals.
        let h = try Harness(blocks: 64)
        var page = pages6(await h.run(modeSense6(page: 0x0A)).data)[0x0A]!
        page[4] |= 0x08
        let s = modeSelect6(page)
        #expect(await h.run(s.cdb, data: s.data).good)
        #expect(await h.run(caw(0, 1), data: [UInt8](repeating: 0, count: 1024)).writeProtected)
        page[4] &= ~0x08
        let c = modeSelect6(page)
        #expect(await h.run(c.cdb, data: c.data).good)
        #expect(await h.run(caw(0, 1), data: [UInt8](repeating: 0, count: 1024)).good)
    }
}
