import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What /proc says of a process: enough to tell that a pid still names the process we started
/// (the start time in clock ticks after boot, which a reused pid does not share) and whether it
/// has exited (a zombie has, though its pid still exists).
enum ProcFS {
    struct Stat: Equatable {
        var state: Character
        var startTicks: Int64
    }

    static func stat(_ pid: Int32) -> Stat? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // After "pid (comm) ": field 3 (state) is the first; field 22 (starttime) the 20th.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let ticks = Int64(fields[19]) else { return nil }
        return Stat(state: state, startTicks: ticks)
    }

    /// The command line, as the process's argv.
    static func argv(_ pid: Int32) -> [String]? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { return nil }
        var parts = data.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if data.last == 0 { parts.removeLast() }
        return parts
    }

    /// Whether `pid` is the live process that started at `startTicks`.
    static func isAlive(_ pid: Int32, startTicks: Int64) -> Bool {
        guard let s = stat(pid) else { return false }
        return s.startTicks == startTicks && s.state != "Z" && s.state != "X"
    }

    /// `readlink /proc/self/exe`: the running binary, to start the volumes' processes with.
    static func selfExecutable() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
