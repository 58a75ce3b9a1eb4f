// Test support: start `cairn controller` on a free loopback port with a scratch
// file, wait (bounded) for its "cairn: ready iscsi://..." line, stop it by pid.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Checkout {
    /// The package root: this file is Tests/IntegrationTests/Support/CairnController.swift.
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// A fresh temporary directory (removed by the caller).
    static func temporaryDirectory(_ prefix: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (bound to port 0, then released).
func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> Int32 in
            guard bind(fd, sa, len) == 0 else { return -1 }
            return getsockname(fd, sa, &len)
        }
    }
    guard rc == 0 else { throw HarnessError("bind/getsockname on 127.0.0.1:0 failed: errno \(errno)") }
    return UInt16(bigEndian: addr.sin_port)
}

/// One `cairn controller` process serving a scratch file.
final class CairnController {
    let name: String
    let iqn: String
    let port: UInt16
    /// The URL from the ready line, e.g. iscsi://127.0.0.1:PORT/iqn.2026-11.io.cairn:NAME/0
    private(set) var url = ""
    let directory: URL
    let imageFile: URL
    let logFile: URL
    private var process: Subprocess?

    /// The binary: $CAIRN_BIN, else .build/debug/cairn of this checkout.
    static func binary() throws -> URL {
        let env = ProcessInfo.processInfo.environment["CAIRN_BIN"].flatMap { $0.isEmpty ? nil : $0 }
        let url = env.map { URL(fileURLWithPath: $0) }
            ?? Checkout.root.appendingPathComponent(".build/debug/cairn")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw HarnessError("no cairn binary at \(url.path): run `swift build` (or set CAIRN_BIN)")
        }
        return url
    }

    /// Starts `cairn controller --name NAME --size SIZE --file DIR/NAME.img --portal 127.0.0.1:PORT ARGS...`
    /// and returns once it printed its ready line; throws (after stopping it) if it does not
    /// within `readyTimeout` seconds or exits first.
    /// With `replicas`, the volume is served from those `cairn replica` ports instead of a file;
    /// `port` reuses a portal (a restarted controller).
    init(name: String = "itest", size: String = "64MiB", arguments: [String] = [], replicas: [UInt16]? = nil,
         port: UInt16? = nil, readyTimeout: TimeInterval = 30) throws {
        self.name = name
        self.iqn = "iqn.2026-11.io.cairn:\(name)"
        self.port = try port ?? freeLoopbackPort()
        self.directory = try Checkout.temporaryDirectory("cairn-itest-\(name)")
        self.imageFile = directory.appendingPathComponent("\(name).img")
        self.logFile = directory.appendingPathComponent("cairn.log")

        let backing = replicas.map { ports in ports.flatMap { ["--replica", "127.0.0.1:\($0)"] } } ?? ["--file", imageFile.path]
        let arguments = ["controller", "--name", name, "--size", size] + backing
            + ["--portal", "127.0.0.1:\(self.port)"] + arguments
        let child = try Subprocess(path: try Self.binary().path, arguments: arguments,
                                   environment: ProcessInfo.processInfo.environment, outputFile: logFile.path)
        process = child

        let deadline = Date().addingTimeInterval(readyTimeout)
        while true {
            if let found = Self.readyURL(in: logText) {
                url = found
                return
            }
            if let status = child.poll() {
                throw HarnessError("cairn exited (status \(status)) before it was ready; its output:\n\(logText)")
            }
            if Date() > deadline {
                child.terminate(grace: 5)
                throw HarnessError("cairn not ready after \(readyTimeout) s; its output:\n\(logText)")
            }
            usleep(20_000)
        }
    }

    var pid: pid_t { process?.pid ?? 0 }

    /// kill -9, as a crash would.
    func crash() {
        guard let p = process else { return }
        kill(p.pid, SIGKILL)
        _ = p.wait(timeout: 10)
    }
    var isRunning: Bool { process?.isRunning ?? false }
    var logText: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    static func readyURL(in text: String) -> String? {
        guard let r = text.range(of: "cairn: ready ") else { return nil }
        let rest = text[r.upperBound...]
        let url = rest.prefix { !$0.isWhitespace }
        // the line may still be being written: wait for its end
        guard url.hasPrefix("iscsi://"), rest.dropFirst(url.count).first?.isNewline == true else { return nil }
        return String(url)
    }

    /// SIGTERM, then SIGKILL if still running after `timeout` seconds. Returns the exit status
    /// (-N when killed by signal N). Removes the scratch directory unless `keepFiles`.
    @discardableResult
    func stop(timeout: TimeInterval = 10, keepFiles: Bool = false) -> Int32 {
        defer { if !keepFiles { try? FileManager.default.removeItem(at: directory) } }
        return process?.terminate(grace: timeout) ?? -1
    }

    deinit {
        process?.terminate(grace: 5)
        try? FileManager.default.removeItem(at: directory)
    }
}
