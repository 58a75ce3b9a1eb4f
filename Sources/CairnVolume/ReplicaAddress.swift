/// Where a replica listens.
public struct ReplicaAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses HOST:PORT or [V6]:PORT.
    public init?(_ text: String) {
        var t = Substring(text)
        var host: Substring
        if t.hasPrefix("[") {
            guard let close = t.firstIndex(of: "]") else { return nil }
            host = t[t.index(after: t.startIndex)..<close]
            t = t[t.index(after: close)...]
            guard t.hasPrefix(":") else { return nil }
            t = t.dropFirst()
        } else {
            guard let colon = t.lastIndex(of: ":") else { return nil }
            host = t[..<colon]
            t = t[t.index(after: colon)...]
        }
        guard !host.isEmpty, let p = UInt16(t) else { return nil }
        self.host = String(host)
        self.port = p
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
