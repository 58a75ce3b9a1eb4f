// Test support: a replicated volume made of real processes: N `cairn replica --http` and one
// `cairn controller --replica ... --api`, all on loopback ports they pick (port 0), each waited
// for (bounded) by the line it prints, all stopped by pid.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

final class APICluster {
    struct Replica {
        let process: Subprocess
        let directory: URL
        let logFile: URL
        /// HOST:PORT of its replica protocol listener (what the controller is given).
        let address: String
        let id: String
        /// http://HOST:PORT of its /healthz and /metrics.
        let http: String
    }

    let name: String
    let directory: URL
    private(set) var replicas: [Replica] = []
    private var controller: Subprocess?
    let controllerLog: URL
    /// iscsi://HOST:PORT/IQN/0
    private(set) var iscsiURL = ""
    /// http://HOST:PORT of the controller's API.
    private(set) var api = ""

    var controllerLogText: String { (try? String(contentsOf: controllerLog, encoding: .utf8)) ?? "" }

    /// Starts `count` replicas of `size`, then the controller; returns once every process printed
    /// its lines (each within `readyTimeout` seconds), or throws after stopping them all.
    init(name: String, count: Int = 3, size: String = "64MiB", controllerArguments: [String] = [],
         readyTimeout: TimeInterval = 30) throws {
        self.name = name
        directory = try Checkout.temporaryDirectory("cairn-itest-\(name)")
        controllerLog = directory.appendingPathComponent("controller.log")
        let bin = try CairnController.binary().path
        do {
            for i in 1...count {
                let dir = directory.appendingPathComponent("r\(i)")
                let log = directory.appendingPathComponent("r\(i).log")
                let p = try Subprocess(path: bin, arguments: ["replica", "--dir", dir.path, "--listen", "127.0.0.1:0",
                                                              "--size", size, "--http", "127.0.0.1:0"],
                                       environment: ProcessInfo.processInfo.environment, outputFile: log.path)
                let ready = try Self.waitForLine(p, log, prefix: "cairn: replica ", until: readyTimeout)
                // cairn: replica ID ready on HOST:PORT (... bytes in DIR)
                let words = ready.split(separator: " ")
                guard words.count >= 6, words[3] == "ready", words[4] == "on" else {
                    throw HarnessError("unexpected replica line: \(ready)")
                }
                let http = try Self.waitForLine(p, log, prefix: "cairn: http ", until: readyTimeout)
                replicas.append(Replica(process: p, directory: dir, logFile: log, address: String(words[5]),
                                        id: String(words[2]), http: String(http.dropFirst("cairn: http ".count))))
            }
            let args = ["controller", "--name", name, "--size", size, "--portal", "127.0.0.1:0",
                        "--api", "127.0.0.1:0", "--replica-timeout", "2s"]
                + replicas.flatMap { ["--replica", $0.address] } + controllerArguments
            let c = try Subprocess(path: bin, arguments: args, environment: ProcessInfo.processInfo.environment,
                                   outputFile: controllerLog.path)
            controller = c
            let ready = try Self.waitForLine(c, controllerLog, prefix: "cairn: ready ", until: readyTimeout)
            iscsiURL = String(ready.dropFirst("cairn: ready ".count))
            let api = try Self.waitForLine(c, controllerLog, prefix: "cairn: api ", until: readyTimeout)
            self.api = String(api.dropFirst("cairn: api ".count))
        } catch {
            stop()
            throw error
        }
    }

    /// The first complete line of `log` that starts with `prefix`; throws if `process` exits or
    /// `timeout` seconds pass first.
    static func waitForLine(_ process: Subprocess, _ log: URL, prefix: String, until timeout: TimeInterval) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            // Only lines that ended: the last one may still be being written.
            for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() where line.hasPrefix(prefix) {
                return String(line)
            }
            if let status = process.poll() {
                throw HarnessError("\(process.command.joined(separator: " ")) exited (status \(status)) before printing \"\(prefix)\"; its output:\n\(text)")
            }
            if Date() > deadline {
                throw HarnessError("no \"\(prefix)\" line within \(timeout) s from \(process.command.joined(separator: " ")); its output:\n\(text)")
            }
            usleep(20_000)
        }
    }

    /// GET the controller's API at `path`.
    func get(_ path: String) throws -> HTTPReply { try HTTPClient.get(api + path) }

    func request(_ method: String, _ path: String, body: String? = nil) throws -> HTTPReply {
        try HTTPClient.request(method, api + path, body: body)
    }

    /// The controller first (SIGTERM, then SIGKILL after `timeout`), then the replicas; removes
    /// the scratch directory unless `keepFiles`. Returns the controller's exit status.
    @discardableResult
    func stop(timeout: TimeInterval = 10, keepFiles: Bool = false) -> Int32 {
        let status = controller?.terminate(grace: timeout) ?? -1
        controller = nil
        for r in replicas { r.process.terminate(grace: timeout) }
        replicas = []
        if !keepFiles { try? FileManager.default.removeItem(at: directory) }
        return status
    }

    deinit { stop(timeout: 5) }
}
