import CairnIO
import Testing

@Suite struct CRC32CTests {
    // RFC 3720 appendix B.4 vectors, as iSCSI digest values.
    @Test(arguments: [
        ([UInt8](repeating: 0x00, count: 32), UInt32(0x8A91_36AA)),
        ([UInt8](repeating: 0xFF, count: 32), UInt32(0x62A8_AB43)),
        ((0..<32).map { UInt8($0) }, UInt32(0x46DD_794E)),
        ((0..<32).reversed().map { UInt8($0) }, UInt32(0x113F_DB5C)),
        (Array("123456789".utf8), UInt32(0xE306_9283)),
    ])
    func rfc3720Vectors(data: [UInt8], expected: UInt32) {
        #expect(CRC32C.checksum(data) == expected)
        #expect(data.withUnsafeBytes { CRC32C.software($0) } == expected)
    }

    @Test func chainedUpdatesCompose() {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = CRC32C.checksum(data)
        let first = CRC32C.checksum(Array(data[..<12345]))
        let chained = CRC32C.checksum(Array(data[12345...]), seed: first)
        #expect(chained == whole)
        #expect(data.withUnsafeBytes { CRC32C.software($0) } == whole)
    }

    @Test func interleavedBlocksAgreeWithTheTableAtEveryLengthAndAlignment() {
        // The hardware path checksums buffers of 768 bytes and more as three interleaved blocks
        // and combines them: every length around the block edges, at every 8-byte alignment.
        let data = (0..<(70_000 + 8)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
        var lengths = Array(0...1600) + [2303, 2304, 2305, 4095, 4096, 4097, 8192, 65_536, 70_000]
        lengths += (1...20).map { 768 * $0 - 1 } + (1...20).map { 768 * $0 + 1 }
        var mismatches = 0
        data.withUnsafeBytes { all in
            for offset in 0..<8 {
                for n in lengths {
                    let slice = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + n)])
                    if CRC32C.checksum(slice, seed: 0x1234_5678) != CRC32C.software(slice, seed: 0x1234_5678) {
                        mismatches += 1
                    }
                }
            }
        }
        #expect(mismatches == 0)
    }
}
