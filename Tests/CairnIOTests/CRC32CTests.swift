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
}
