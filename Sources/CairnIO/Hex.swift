/// Lower-case hex for binary fields in text: the replica handshake's nonces and proofs, CHAP's
/// `0x` values.
public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil unless `s` is all hex digits and, without `allowOddLength`, an even number of them.
    /// With it an odd leading digit stands alone (RFC 7143 binary values).
    public static func decode(_ s: String, allowOddLength: Bool = false) -> [UInt8]? {
        decode(utf8: Array(s.utf8), allowOddLength: allowOddLength)
    }

    public static func decode(utf8 u: [UInt8], allowOddLength: Bool = false) -> [UInt8]? {
        guard u.count % 2 == 0 || allowOddLength else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2 + 1)
        var i = 0
        if u.count % 2 == 1 {
            guard let n = nibble(u[0]) else { return nil }
            out.append(n)
            i = 1
        }
        while i + 1 < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
