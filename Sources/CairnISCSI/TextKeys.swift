/// Text key=value pairs (RFC 7143 §6.1): each "key=value" ends with a NUL byte.
public struct TextKeys: Sendable, Equatable {
    public var pairs: [(key: String, value: String)]

    public init(_ pairs: [(key: String, value: String)] = []) { self.pairs = pairs }

    public static func == (a: Self, b: Self) -> Bool {
        a.pairs.count == b.pairs.count && zip(a.pairs, b.pairs).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public enum ParseError: Error, Equatable { case missingEquals, emptyKey, keyTooLong, valueTooLong, invalidKey }

    /// Limits from §6.1: keys up to 63 bytes; values up to 8192 bytes (the largest any key allows).
    public static let maxKeyLength = 63
    public static let maxValueLength = 8192

    /// Parses a data segment. A missing final NUL is tolerated; empty items (NUL NUL) are skipped.
    public static func parse(_ data: [UInt8]) -> Result<TextKeys, ParseError> {
        var out = TextKeys()
        var start = 0
        while start < data.count {
            var end = start
            while end < data.count && data[end] != 0 { end += 1 }
            if end > start {
                let item = data[start..<end]
                guard let eq = item.firstIndex(of: UInt8(ascii: "=")) else { return .failure(.missingEquals) }
                let keyBytes = data[start..<eq]
                guard !keyBytes.isEmpty else { return .failure(.emptyKey) }
                guard keyBytes.count <= maxKeyLength else { return .failure(.keyTooLong) }
                guard keyBytes.allSatisfy(isKeyByte) else { return .failure(.invalidKey) }
                let valueBytes = data[(eq + 1)..<end]
                guard valueBytes.count <= maxValueLength else { return .failure(.valueTooLong) }
                out.pairs.append((String(decoding: keyBytes, as: UTF8.self), String(decoding: valueBytes, as: UTF8.self)))
            }
            start = end + 1
        }
        return .success(out)
    }

    /// RFC 7143 key names: letters, digits, '.', '-', '+', '@', '_' (and ':' in some vendor keys).
    static func isKeyByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "@"), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "#"):
            return true
        default:
            return false
        }
    }

    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        for (k, v) in pairs {
            out += Array(k.utf8)
            out.append(UInt8(ascii: "="))
            out += Array(v.utf8)
            out.append(0)
        }
        return out
    }

    public mutating func append(_ key: String, _ value: String) { pairs.append((key, value)) }

    public subscript(key: String) -> String? { pairs.first { $0.key == key }?.value }

    /// Numbers in key values: decimal, or hex with 0x (§6.1 "numerical-value").
    static func number(_ s: String) -> UInt64? {
        if s.hasPrefix("0x") || s.hasPrefix("0X") {
            let h = s.dropFirst(2)
            guard !h.isEmpty, h.count <= 16 else { return nil }
            return UInt64(h, radix: 16)
        }
        guard !s.isEmpty, s.count <= 20 else { return nil }
        return UInt64(s, radix: 10)
    }

    static func bool(_ s: String) -> Bool? {
        s == "Yes" ? true : (s == "No" ? false : nil)
    }
}
