#if canImport(CCairn)
import CCairn
#endif

/// The iSCSI CRC32C digest (RFC 7143 §13.1). On the wire the 32-bit value is sent
/// least-significant byte first (RFC 3720 B.4: 32 zero bytes -> aa 36 91 8a).
enum ISCSIDigest {
    @inline(__always)
    static func crc(_ p: UnsafeRawPointer, _ n: Int, seed: UInt32 = 0) -> UInt32 {
        #if canImport(CCairn)
        return ccairn_crc32c(seed, p, n)
        #else
        return SoftCRC32C.update(seed, p, n)
        #endif
    }

    static func crc(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { b in b.baseAddress.map { crc($0, b.count, seed: seed) } ?? seed }
    }

    /// Digest of a data segment and its zero padding (padding is covered by the data digest).
    static func dataDigest(_ p: UnsafeRawPointer?, _ n: Int) -> UInt32 {
        var c: UInt32 = 0
        if let p, n > 0 { c = crc(p, n) }
        let pad = padded4(n) - n
        if pad > 0 {
            var zeros: UInt32 = 0
            c = withUnsafeBytes(of: &zeros) { crc($0.baseAddress!, pad, seed: c) }
        }
        return c
    }

    static func store(_ v: UInt32, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: v.littleEndian, as: UInt32.self)
    }

    static func load(_ p: UnsafeRawPointer) -> UInt32 {
        UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))
    }
}

/// Portable bytewise CRC32C, for builds without the C shim (the fuzz harness) and as a reference.
enum SoftCRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func update(_ seed: UInt32, _ p: UnsafeRawPointer, _ n: Int) -> UInt32 {
        var c = ~seed
        let b = p.assumingMemoryBound(to: UInt8.self)
        table.withUnsafeBufferPointer { t in
            for i in 0..<n { c = t[Int((c ^ UInt32(b[i])) & 0xff)] ^ (c >> 8) }
        }
        return ~c
    }
}
