/// Sizes written by people: plain bytes or with a unit (K, M, G, T; KiB, MiB... are the same
/// binary units; KB, MB... are decimal). The CLI's options and the CSI plugin's StorageClass
/// parameters read them alike.
public enum ByteCount {
    public static func parse(_ text: String) -> UInt64? {
        let s = text.filter { $0 != " " }
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let n = UInt64(digits) else { return nil }
        let mult: UInt64
        switch s.dropFirst(digits.count).lowercased() {
        case "", "b": mult = 1
        case "k", "ki", "kib": mult = 1 << 10
        case "m", "mi", "mib": mult = 1 << 20
        case "g", "gi", "gib": mult = 1 << 30
        case "t", "ti", "tib": mult = 1 << 40
        case "kb": mult = 1_000
        case "mb": mult = 1_000_000
        case "gb": mult = 1_000_000_000
        case "tb": mult = 1_000_000_000_000
        default: return nil
        }
        let (v, overflow) = n.multipliedReportingOverflow(by: mult)
        return overflow ? nil : v
    }
}
