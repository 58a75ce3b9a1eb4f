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

/// The port of "HOST:PORT" (the last colon's), from a process's ready line.
func portOf(_ hostPort: Substring) -> UInt16? {
    hostPort.split(separator: ":").last.flatMap { UInt16($0) }
}

/// One `cairn controller` process serving a scratch file.
final class CairnController {
    let name: String
    let iqn: String
    /// The portal's port: the one asked for (a restarted controller reuses its portal), else the
    /// one the process bound to port 0 and printed. Picking a free port here and passing it on
    /// would race every other process of the parallel test suites for it.
    private(set) var port: UInt16 = 0
    /// The URL from the ready line, e.g. iscsi://127.0.0.1:PORT/iqn.2026-11.io.cairn:NAME/0
    private(set) var url = ""
    /// http://HOST:PORT of the API, when the arguments have `--api`.
    private(set) var api: String?
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
        self.directory = try Checkout.temporaryDirectory("cairn-itest-\(name)")
        self.imageFile = directory.appendingPathComponent("\(name).img")
        self.logFile = directory.appendingPathComponent("cairn.log")

        let backing = replicas.map { ports in ports.flatMap { ["--replica", "127.0.0.1:\($0)"] } } ?? ["--file", imageFile.path]
        let arguments = ["controller", "--name", name, "--size", size] + backing
            + ["--portal", "127.0.0.1:\(port ?? 0)"] + arguments
        let child = try Subprocess(path: try Self.binary().path, arguments: arguments,
                                   environment: ProcessInfo.processInfo.environment, outputFile: logFile.path)
        process = child

        let deadline = Date().addingTimeInterval(readyTimeout)
        while true {
            if let found = Self.readyURL(in: logText) {
                url = found
                let hostPort = found.dropFirst("iscsi://".count).prefix { $0 != "/" }
                guard let bound = portOf(hostPort) else {
                    child.terminate(grace: 5)
                    throw HarnessError("no port in the ready URL \(found)")
                }
                self.port = bound
                guard arguments.contains("--api") else { return }
                if let r = logText.range(of: "cairn: api "), logText[r.upperBound...].contains("\n") {
                    api = String(logText[r.upperBound...].prefix { !$0.isWhitespace })
                    return
                }
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
