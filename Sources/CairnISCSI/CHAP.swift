#if canImport(Crypto)
import Crypto
#endif
import CairnIO
import Glibc

/// CHAP user name and secret.
public struct CHAPCredentials: Sendable, Equatable {
    public var user: String
    public var secret: String
    public init(user: String, secret: String) {
        self.user = user
        self.secret = secret
    }
}

/// CHAP with MD5 (RFC 1994, as iSCSI uses it in RFC 7143 §12.1.3): R = MD5(I || secret || C).
enum CHAP {
    static let algorithmMD5 = "5"
    static let challengeLength = 16

    static func response(identifier: UInt8, secret: [UInt8], challenge: [UInt8]) -> [UInt8] {
        let input = [identifier] + secret + challenge
        #if canImport(Crypto)
        return Array(Insecure.MD5.hash(data: input))
        #else
        return SoftMD5.hash(input)
        #endif
    }

    static func randomChallenge() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<challengeLength).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// Binary values: "0x" hex or "0b" base64 (RFC 7143 §6.1 binary-value).
    static func decodeBinary(_ s: String) -> [UInt8]? {
        if s.hasPrefix("0x") || s.hasPrefix("0X") { return decodeHex(Array(s.utf8.dropFirst(2))) }
        if s.hasPrefix("0b") || s.hasPrefix("0B") { return decodeBase64(Array(s.utf8.dropFirst(2))) }
        return nil
    }

    static func encodeHex(_ bytes: [UInt8]) -> String { "0x" + Hex.encode(bytes) }

    static func decodeHex(_ s: [UInt8]) -> [UInt8]? {
        guard !s.isEmpty else { return nil }
        return Hex.decode(utf8: s, allowOddLength: true)
    }

    static func decodeBase64(_ s: [UInt8]) -> [UInt8]? {
        func val(_ c: UInt8) -> UInt32? {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): return UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): return UInt32(c - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"): return 62
            case UInt8(ascii: "/"): return 63
            default: return nil
            }
        }
        var body = s
        while body.last == UInt8(ascii: "=") { body.removeLast() }
        guard !body.isEmpty, body.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        for c in body {
            guard let v = val(c) else { return nil }
            acc = (acc << 6) | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }

    /// Constant-time comparison, so a wrong response leaks nothing through timing.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in 0..<a.count { d |= a[i] ^ b[i] }
        return d == 0
    }
}

/// MD5 in plain Swift (RFC 1321), used only where swift-crypto is not linked (the fuzz build).
enum SoftMD5 {
    static let s: [UInt32] = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                              5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
                              4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                              6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21]
    static let k: [UInt32] = (0..<64).map { i in
        UInt32(truncatingIfNeeded: Int64((abs(sin(Double(i + 1))) * 4_294_967_296.0).rounded(.down)))
    }

    static func hash(_ message: [UInt8]) -> [UInt8] {
        var m = message
        let bitLen = UInt64(message.count) &* 8
        m.append(0x80)
        while m.count % 64 != 56 { m.append(0) }
        for i in 0..<8 { m.append(UInt8(truncatingIfNeeded: bitLen >> (8 * UInt64(i)))) }
        var a0: UInt32 = 0x67452301, b0: UInt32 = 0xefcdab89, c0: UInt32 = 0x98badcfe, d0: UInt32 = 0x10325476
        for chunk in stride(from: 0, to: m.count, by: 64) {
            var w = [UInt32](repeating: 0, count: 16)
            for i in 0..<16 {
                let o = chunk + 4 * i
                w[i] = UInt32(m[o]) | UInt32(m[o + 1]) << 8 | UInt32(m[o + 2]) << 16 | UInt32(m[o + 3]) << 24
            }
            var a = a0, b = b0, c = c0, d = d0
            for i in 0..<64 {
                var f: UInt32
                var g: Int
                switch i {
                case 0..<16: f = (b & c) | (~b & d); g = i
                case 16..<32: f = (d & b) | (~d & c); g = (5 * i + 1) % 16
                case 32..<48: f = b ^ c ^ d; g = (3 * i + 5) % 16
                default: f = c ^ (b | ~d); g = (7 * i) % 16
                }
                f = f &+ a &+ k[i] &+ w[g]
                a = d; d = c; c = b
                b = b &+ ((f << s[i]) | (f >> (32 - s[i])))
            }
            a0 = a0 &+ a; b0 = b0 &+ b; c0 = c0 &+ c; d0 = d0 &+ d
        }
        var out: [UInt8] = []
        for v in [a0, b0, c0, d0] { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
        return out
    }
}
