import ArgumentParser
import CairnClient
import Logging

/// A size on the command line: plain bytes or with a unit (K, M, G, T; KiB/MiB/... are the same
/// binary units; KB/MB/... are decimal).
struct ByteSize: ExpressibleByArgument, CustomStringConvertible {
    let bytes: UInt64

    init?(argument: String) {
        guard let v = ByteCount.parse(argument) else { return nil }
        bytes = v
    }

    var description: String { "\(bytes)" }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}

/// HOST:PORT, with [v6]:PORT accepted.
struct HostPort: ExpressibleByArgument, CustomStringConvertible {
    let host: String
    let port: UInt16

    init?(argument: String) {
        guard let colon = argument.lastIndex(of: ":"), let port = UInt16(argument[argument.index(after: colon)...]) else {
            return nil
        }
        var host = String(argument[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A duration on the command line: 5s, 500ms, 2.5s, 1m; a bare number is seconds.
struct Duration: ExpressibleByArgument, CustomStringConvertible {
    let nanoseconds: UInt64

    init?(argument: String) {
        let s = argument.trimmingCharacters(in: " ").lowercased()
        let number = s.prefix { $0.isNumber || $0 == "." }
        guard !number.isEmpty, let v = Double(number), v >= 0 else { return nil }
        let mult: Double
        switch s.dropFirst(number.count) {
        case "", "s": mult = 1e9
        case "ms": mult = 1e6
        case "us", "µs": mult = 1e3
        case "m", "min": mult = 60e9
        default: return nil
        }
        nanoseconds = UInt64(v * mult)
    }

    var description: String {
        let (unit, per): (String, UInt64) = nanoseconds >= 1_000_000_000 ? ("s", 1_000_000_000)
            : nanoseconds >= 1_000_000 ? ("ms", 1_000_000) : nanoseconds >= 1_000 ? ("us", 1_000) : ("", 0)
        if per == 0 { return nanoseconds == 0 ? "0" : "\(Double(nanoseconds) / 1e3)us" }
        return nanoseconds % per == 0 ? "\(nanoseconds / per)\(unit)" : "\(Double(nanoseconds) / Double(per))\(unit)"
    }
}

/// Sets up logging for a process role at `level`, to standard error.
func bootstrapLogging(_ level: String) -> Logger.Level {
    let lvl = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = lvl
        return h
    }
    return lvl
}
