import CCairn

/// CRC32C (Castagnoli), the iSCSI digest and the replica protocol's frame checksum.
/// SSE4.2 when the CPU has it, slicing-by-8 otherwise; chained calls compose:
/// `crc32c(b, seed: crc32c(a)) == crc32c(a + b)`.
public enum CRC32C {
    @inline(__always)
    public static func checksum(_ data: UnsafeRawPointer, _ count: Int, seed: UInt32 = 0) -> UInt32 {
        ccairn_crc32c(seed, data, count)
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return seed }
        return ccairn_crc32c(seed, base, bytes.count)
    }

    public static func checksum(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, seed: seed) }
    }

    /// The portable path, exposed so tests can check it against the hardware one.
    public static func software(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return seed }
        return ccairn_crc32c_sw(seed, base, bytes.count)
    }
}
