// Test support: run external tools (iscsi-ls, iscsi-inq, qemu-img, qemu-io, fio)
// with a timeout and capture their output.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

struct ToolResult: CustomStringConvertible {
    let command: [String]
    let status: Int32
    let timedOut: Bool
    /// stdout and stderr, interleaved as written
    let output: String

    var succeeded: Bool { status == 0 && !timedOut }
    var description: String {
        "\(command.joined(separator: " ")) -> \(timedOut ? "TIMED OUT" : "exit \(status)")\n\(output)"
    }
}

enum Tools {
    /// The path of `name` on $PATH, or nil.
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// fio with the libiscsi engine: $FIO, else .cache/fio/fio (Perf/build-fio.sh, `make fio`).
    static var fioWithLibiscsi: String? {
        let env = ProcessInfo.processInfo.environment["FIO"].flatMap { $0.isEmpty ? nil : $0 }
        let path = env ?? Checkout.root.appendingPathComponent(".cache/fio/fio").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// Runs `tool` (a name on $PATH or a path) with `arguments`; kills it (SIGTERM, then
    /// SIGKILL) after `timeout` seconds. `environment` adds to (or, with nil values,
    /// removes from) this process's environment.
    static func run(_ tool: String, _ arguments: [String], environment: [String: String?] = [:],
                    timeout: TimeInterval = 60) throws -> ToolResult {
        guard let path = tool.contains("/") ? tool : find(tool) else {
            throw HarnessError("\(tool) not found on PATH: run `make deps`")
        }
        let dir = try Checkout.temporaryDirectory("cairn-tool")
        defer { try? FileManager.default.removeItem(at: dir) }
        let outFile = dir.appendingPathComponent("output")
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let child = try Subprocess(path: path, arguments: arguments, environment: env, outputFile: outFile.path)
        var timedOut = false
        var status = child.wait(timeout: timeout)
        if status == nil {
            timedOut = true
            status = child.terminate(grace: 5)
        }
        let text = (try? String(contentsOf: outFile, encoding: .utf8)) ?? ""
        return ToolResult(command: [tool] + arguments, status: status ?? -1, timedOut: timedOut, output: text)
    }
}

/// Writes `count` bytes from /dev/urandom to `url`.
func writeRandomFile(_ url: URL, count: Int) throws {
    let src = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
    defer { try? src.close() }
    _ = FileManager.default.createFile(atPath: url.path, contents: nil)
    let dst = try FileHandle(forWritingTo: url)
    defer { try? dst.close() }
    var left = count
    while left > 0 {
        let chunk = try src.read(upToCount: min(left, 1 << 20)) ?? Data()
        guard !chunk.isEmpty else { throw HarnessError("short read from /dev/urandom") }
        try dst.write(contentsOf: chunk)
        left -= chunk.count
    }
}

/// The offset of the first differing byte of two files, or nil when they are identical
/// (a shorter file differs at its end).
func firstDifference(_ a: URL, _ b: URL) throws -> Int? {
    let fa = try FileHandle(forReadingFrom: a), fb = try FileHandle(forReadingFrom: b)
    defer { try? fa.close(); try? fb.close() }
    var offset = 0
    while true {
        let da = try fa.read(upToCount: 1 << 20) ?? Data()
        let db = try fb.read(upToCount: 1 << 20) ?? Data()
        if da != db {
            let n = min(da.count, db.count)
            for i in 0..<n where da[da.startIndex + i] != db[db.startIndex + i] { return offset + i }
            return offset + n
        }
        if da.isEmpty { return nil }
        offset += da.count
    }
}
