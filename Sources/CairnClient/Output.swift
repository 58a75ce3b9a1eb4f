import Foundation
import Yams

/// How the CLI prints a resource: a table (as kubectl prints them), or the API's JSON, or YAML.
public enum OutputFormat: String, CaseIterable, Sendable {
    case table, json, yaml
}

public enum Render {
    /// Columns left-aligned, three spaces apart, headers in capitals.
    public static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var s = ""
            for (i, cell) in cells.enumerated() {
                if i == cells.count - 1 {
                    s += cell
                } else {
                    s += cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) + "   "
                }
            }
            return s
        }
        return ([line(header.map { $0.uppercased() })] + rows.map(line)).joined(separator: "\n")
    }

    public static func json<T: Encodable>(_ value: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try e.encode(value), as: UTF8.self)
    }

    public static func yaml<T: Encodable>(_ value: T) throws -> String {
        let e = YAMLEncoder()
        e.options.sortKeys = true
        var s = try e.encode(value)
        if s.hasSuffix("\n") { s.removeLast() }
        return s
    }

    /// Bytes as the CLI shows them: 1 GiB, 64 MiB, 1.5 TiB, 512 B.
    public static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        if i == 0 { return "\(n) B" }
        return v == v.rounded() ? "\(Int(v)) \(units[i])" : String(format: "%.1f %@", v, units[i])
    }

    /// A timestamp's age: 5s, 3m, 2h, 4d.
    public static func age(_ rfc3339: String, now: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let d = f.date(from: rfc3339) else { return "?" }
        let s = Int(max(0, now.timeIntervalSince(d)))
        if s < 120 { return "\(s)s" }
        if s < 7200 { return "\(s / 60)m" }
        if s < 172_800 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }
}

extension Volume {
    public static let tableHeader = ["name", "size", "replicas", "state", "url", "age"]

    public var tableRow: [String] {
        [name, Render.bytes(size), "\(status.healthyReplicas)/\(replicaCount)", status.state, status.url,
         Render.age(createdAt)]
    }
}

extension Snapshot {
    public static let tableHeader = ["name", "created", "size", "own data", "state"]

    public var tableRow: [String] {
        [name, createdAt, Render.bytes(size), Render.bytes(bytes), state]
    }
}

extension Backup {
    public static let tableHeader = ["id", "volume", "snapshot", "state", "read", "stored", "MiB/s", "target"]

    public var tableRow: [String] {
        [id, volume, snapshot, state + (error.map { ": \($0)" } ?? ""), Render.bytes(readBytes), Render.bytes(uploadedBytes),
         String(format: "%.1f", mibPerSecond), target]
    }
}

extension StoredBackup {
    public static let tableHeader = ["id", "volume", "snapshot", "created", "size", "data", "stored", "previous"]

    public var tableRow: [String] {
        [id, volume, snapshot, createdAt, Render.bytes(size), Render.bytes(dataBytes), Render.bytes(uploadedBytes), previous ?? "-"]
    }
}

extension Pool {
    public static let tableHeader = ["name", "state", "path", "replicas", "provisioned", "free", "labels"]

    public var tableRow: [String] {
        [name, state.rawValue, path, "\(replicaCount)", Render.bytes(provisionedBytes), Render.bytes(freeBytes),
         labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
    }
}

extension Replica {
    public static let tableHeader = ["id", "volume", "pool", "address", "mode", "role", "pid", "restarts", "rebuild"]

    public var tableRow: [String] {
        let rb = rebuild.map { $0.finished ? "\($0.kind) done" : String(format: "%@ %.0f%%", $0.kind, $0.percent) } ?? ""
        return [id, volume, pool, address, mode ?? "-", role, pid.map { "\($0)" } ?? "-", "\(restarts)", rb]
    }
}

extension Event {
    public var line: String {
        "\(time)  \(type.padding(toLength: 28, withPad: " ", startingAt: 0))\(volume.map { " \($0)" } ?? "")  \(message)"
    }
}
