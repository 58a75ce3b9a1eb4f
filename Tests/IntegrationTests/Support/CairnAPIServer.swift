// Test support: a `cairn apiserver` with its own data directory, pools and port range, the CLI
// pointed at it, and a cleanup that stops every process it started (by pid).

import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Port ranges handed to the apiservers of one test run: each its own 200 ports, below the
/// kernel's ephemeral range (where the other suites' port-0 listeners land).
private let nextRange = Atomic<Int>(0)

final class CairnAPIServer: @unchecked Sendable {
    // Used from one test's thread (the writer threads of a test never touch it).
    let directory: URL
    let dataDir: URL
    let ports: ClosedRange<Int>
    private(set) var url = ""
    private(set) var token = ""
    private(set) var process: Subprocess?
    let logFile: URL
    private var starts = 0

    /// Starts an apiserver (`--stop-volumes-on-exit`, so `stop()` ends the volumes' processes too)
    /// and adds `pools` pools p1...pN under its directory.
    init(pools: Int = 3, extraArguments: [String] = []) throws {
        directory = try Checkout.temporaryDirectory("cairn-apiserver")
        dataDir = directory.appendingPathComponent("state")
        logFile = directory.appendingPathComponent("apiserver.log")
        let n = nextRange.add(1, ordering: .relaxed).oldValue
        let base = 22000 + (Int(getpid()) % 10 + n * 10) % 50 * 200
        ports = base...(base + 199)
        self.extraArguments = extraArguments
        try start()
        for i in 1...max(pools, 1) where pools > 0 {
            let dir = directory.appendingPathComponent("p\(i)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let r = try cli(["pool", "add", "p\(i)", "--path", dir.path])
            guard r.succeeded else { throw HarnessError("pool add p\(i): \(r)") }
        }
    }

    private let extraArguments: [String]

    /// Starts (or starts again) the apiserver process on the same data directory.
    func start() throws {
        let args = ["apiserver", "--data", dataDir.path, "--listen", "127.0.0.1:\(url.isEmpty ? "0" : String(url.split(separator: ":").last!))",
                    "--ports", "\(ports.lowerBound)-\(ports.upperBound)", "--pool-root", directory.path,
                    "--stop-volumes-on-exit", "--poll-interval", "0.5"] + extraArguments
        starts += 1
        let marker = "cairn: apiserver "
        let p = try Subprocess(path: try CairnController.binary().path, arguments: args,
                               environment: ProcessInfo.processInfo.environment, outputFile: logFile.path)
        process = p
        // The log is appended to across restarts: wait for this start's line.
        let deadline = Date().addingTimeInterval(30)
        while true {
            let lines = ((try? String(contentsOf: logFile, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.hasPrefix(marker) }
            if lines.count >= starts {
                url = String(lines[starts - 1].dropFirst(marker.count))
                break
            }
            if let s = p.poll() { throw HarnessError("apiserver exited (\(s)) before listening:\n\(log)") }
            if Date() > deadline { throw HarnessError("apiserver did not listen within 30 s:\n\(log)") }
            usleep(20_000)
        }
        token = try String(contentsOf: dataDir.appendingPathComponent("token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Runs `cairn ARGS...` against this apiserver.
    func cli(_ arguments: [String], timeout: TimeInterval = 120) throws -> ToolResult {
        try Tools.run(try CairnController.binary().path, arguments,
                      environment: ["CAIRN_SERVER": url, "CAIRN_TOKEN": token, "CAIRN_TOKEN_FILE": nil], timeout: timeout)
    }

    /// `cairn ARGS... -o json`, parsed.
    func cliJSON(_ arguments: [String]) throws -> Any {
        let r = try cli(arguments + ["-o", "json"])
        guard r.succeeded else { throw HarnessError("\(r)") }
        // The CLI prints progress on stderr; the JSON is the output from the first '{' or '['.
        let text = r.output
        guard let start = text.firstIndex(where: { $0 == "{" || $0 == "[" }) else { throw HarnessError("no JSON in \(r)") }
        return try JSONSerialization.jsonObject(with: Data(text[start...].utf8))
    }

    /// A request to the REST API (with the token unless `token` says otherwise).
    func request(_ method: String, _ path: String, body: String? = nil, token: String? = nil) throws -> HTTPReply {
        try HTTPClient.request(method, url + path, body: body, headers: ["Authorization": "Bearer \(token ?? self.token)"],
                               timeout: 60)
    }

    func volume(_ name: String) throws -> [String: Any] {
        let r = try request("GET", "/v1/volumes/\(name)")
        guard r.status == 200, let v = r.json as? [String: Any] else { throw HarnessError("GET volume \(name): \(r)") }
        return v
    }

    func status(_ name: String) throws -> [String: Any] {
        try volume(name)["status"] as? [String: Any] ?? [:]
    }

    /// The pids of a volume's controller and replicas, as the apiserver reports them.
    func pids(_ name: String) throws -> (controller: Int32?, replicas: [Int32]) {
        let s = try status(name)
        let reps = (s["replicas"] as? [[String: Any]] ?? []).compactMap { ($0["pid"] as? Int).map(Int32.init) }
        return ((s["controllerPid"] as? Int).map(Int32.init), reps)
    }

    /// Every pid the state store records (controllers and replicas of every volume).
    func recordedPids() -> [Int32] {
        let r = try? Tools.run("sqlite3", [dataDir.appendingPathComponent("state.db").path, "SELECT pid FROM process"])
        return (r?.output ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    func kill9() {
        if let p = process {
            kill(p.pid, SIGKILL)
            _ = p.wait(timeout: 10)
        }
    }

    /// Stops the apiserver, which stops every volume's process; then kills by pid whatever it
    /// recorded and still runs, and removes the directory.
    func stop() {
        let recorded = recordedPids()
        if process?.isRunning == true { process?.terminate(grace: 60) }
        for pid in recorded where pid > 0 && isAlive(pid) {
            kill(pid, SIGKILL)
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

/// Whether `pid` runs (a zombie does not).
func isAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].split(separator: " ").first
    return state != "Z" && state != "X"
}
