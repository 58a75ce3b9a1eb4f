// Test support: `cairn replica` processes on free loopback ports, over directories that outlive
// them (a restarted replica reopens its data), stopped, killed, paused and resumed by pid.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

final class CairnReplicaProcess {
    let directory: URL
    /// The port it listens on: the one asked for, else the one its first start bound to port 0
    /// and printed; a restart asks for that one again (the controller knows the replica by it).
    private(set) var port: UInt16
    let logFile: URL
    private(set) var process: Subprocess?
    /// Optional tmpfs size: the replica runs in its own mount namespace on a tmpfs this big.
    let tmpfsSize: String?
    private(set) var replicaID = ""
    /// Given to every start, after the harness's own (`--secret-file F`, `--http 127.0.0.1:0`).
    let extraArguments: [String]
    /// http://HOST:PORT of /healthz and /metrics, when `extraArguments` has `--http`.
    private(set) var http: String?

    init(directory: URL, size: String? = "64MiB", port: UInt16? = nil, tmpfsSize: String? = nil,
         arguments: [String] = []) throws {
        self.directory = directory
        self.port = port ?? 0
        self.tmpfsSize = tmpfsSize
        self.extraArguments = arguments
        self.logFile = directory.deletingLastPathComponent().appendingPathComponent("\(directory.lastPathComponent).log")
        try start(size: size)
    }

    /// Starts (or restarts) the process and waits for its ready line.
    func start(size: String? = nil, readyTimeout: TimeInterval = 30) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let before = logText.count
        var args = ["replica", "--dir", directory.path, "--listen", "127.0.0.1:\(port)"]
        if let size { args += ["--size", size] }
        args += extraArguments
        let bin = try CairnController.binary().path
        let child: Subprocess
        if let t = tmpfsSize {
            // A private mount namespace: the tmpfs goes away with the process.
            let quoted = ([bin] + args).map { "'\($0)'" }.joined(separator: " ")
            child = try Subprocess(path: "/usr/bin/unshare", arguments: ["-rm", "sh", "-c",
                                   "mount -t tmpfs -o size=\(t) tmpfs '\(directory.path)' && exec \(quoted)"],
                                   environment: ProcessInfo.processInfo.environment, outputFile: logFile.path)
        } else {
            child = try Subprocess(path: bin, arguments: args, environment: ProcessInfo.processInfo.environment,
                                   outputFile: logFile.path)
        }
        process = child
        let deadline = Date().addingTimeInterval(readyTimeout)
        while true {
            let text = String(logText.dropFirst(before))
            if let r = text.range(of: "cairn: replica "), text[r.upperBound...].contains("\n") {
                replicaID = String(text[r.upperBound...].prefix { !$0.isWhitespace })
                guard let on = text[r.upperBound...].range(of: " ready on "),
                      let bound = portOf(text[on.upperBound...].prefix { !$0.isWhitespace }) else {
                    child.terminate(grace: 5)
                    throw HarnessError("no port in the replica's ready line:\n\(text)")
                }
                port = bound
                guard extraArguments.contains("--http") else { return }
                if let h = text.range(of: "cairn: http "), text[h.upperBound...].contains("\n") {
                    http = String(text[h.upperBound...].prefix { !$0.isWhitespace })
                    return
                }
            }
            if let status = child.poll() {
                throw HarnessError("replica exited (status \(status)) before it was ready:\n\(text)")
            }
            if Date() > deadline {
                child.terminate(grace: 5)
                throw HarnessError("replica not ready after \(readyTimeout) s:\n\(text)")
            }
            usleep(20_000)
        }
    }

    var logText: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process?.isRunning ?? false }

    func kill9() {
        guard let p = process else { return }
        kill(p.pid, SIGKILL)
        _ = p.wait(timeout: 10)
    }

    func pause() { if let p = process { kill(p.pid, SIGSTOP) } }
    func resume() { if let p = process { kill(p.pid, SIGCONT) } }

    @discardableResult
    func stop() -> Int32 {
        resume()
        return process?.terminate(grace: 10) ?? -1
    }

    var dataFile: URL { directory.appendingPathComponent("volume.img") }

    deinit { process?.terminate(grace: 2) }
}

/// Three (or n) replicas and a controller over them, in one scratch directory.
final class ReplicatedVolume {
    let root: URL
    let name: String
    let size: String
    let controllerArguments: [String]
    let replicaArguments: [String]
    var replicas: [CairnReplicaProcess] = []
    var controller: CairnController?

    init(name: String, replicas n: Int = 3, size: String = "64MiB", controllerArguments: [String] = ["--replica-timeout", "2s"],
         tmpfs: [Int: String] = [:], withController: Bool = true, replicaArguments: [String] = [],
         root: URL? = nil) throws {
        self.name = name
        self.size = size
        self.controllerArguments = controllerArguments
        self.replicaArguments = replicaArguments
        self.root = try root ?? Checkout.temporaryDirectory("cairn-rtest-\(name)")
        for i in 0..<n {
            replicas.append(try CairnReplicaProcess(directory: self.root.appendingPathComponent("r\(i + 1)"), size: size,
                                                    tmpfsSize: tmpfs[i], arguments: replicaArguments))
        }
        if withController { try startController() }
    }

    var ports: [UInt16] { replicas.map(\.port) }

    func startController(port: UInt16? = nil) throws {
        controller = try CairnController(name: name, size: size, arguments: controllerArguments, replicas: ports, port: port)
    }

    var log: String { controller?.logText ?? "" }

    /// Waits until the controller's log has `needle` after `from` (characters), up to `timeout`.
    func waitForLog(_ needle: String, after from: Int = 0, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.dropFirst(from).contains(needle) { return true }
            usleep(50_000)
        }
        return false
    }

    /// Waits until every replica is RW in the newest membership the log reports.
    func waitAllRW(timeout: TimeInterval) -> Bool {
        let ids = replicas.map(\.replicaID)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let lines = log.split(separator: "\n").filter { $0.contains("membership epoch") && $0.contains("persisted on") }
            if let last = lines.last, ids.allSatisfy({ last.contains($0) }) {
                let counts = last.split(separator: " ").suffix(3)
                if counts.first == counts.last { return true }
            }
            usleep(100_000)
        }
        return false
    }

    deinit {
        _ = controller?.stop(timeout: 5)
        for r in replicas { r.stop() }
        try? FileManager.default.removeItem(at: root)
    }
}
