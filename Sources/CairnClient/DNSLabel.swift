/// DNS-1123 labels, as Kubernetes names things: lower-case letters, digits and '-', 1 to 63
/// characters, a letter or digit at each end. Volume and pool names are such labels.
public enum DNSLabel {
    public static func isValid(_ s: String) -> Bool {
        guard (1...63).contains(s.utf8.count), let first = s.utf8.first, let last = s.utf8.last else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
        return alnum(first) && alnum(last) && s.utf8.allSatisfy { alnum($0) || $0 == 0x2d }
    }
}
