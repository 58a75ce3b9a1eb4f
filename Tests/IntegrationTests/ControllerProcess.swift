import Glibc

/// A `cairn controller` started for one test: its own scratch file and a port it picked, output
/// captured to files, stopped by pid (SIGTERM, then SIGKILL after a bound).
final class ControllerProcess {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t
    let port: UInt16
    let targetName: String
    let dir: String
    let stderrPath: String
    private(set) var exitStatus: Int32?

    var url: String { "iscsi://127.0.0.1:\(port)/\(targetName)/0" }

    /// The cairn binary: $CAIRN_BIN, else the debug build next to the test bundle.
    static func binary() -> String {
        if let p = getenv("CAIRN_BIN") { return String(cString: p) }
        for candidate in [".build/debug/cairn", ".build/x86_64-unknown-linux-gnu/debug/cairn"] where access(candidate, X_OK) == 0 {
            return candidate
        }
        return ".build/debug/cairn"
    }

    /// A free TCP port on 127.0.0.1 (bound to 0, read back, released).
    static func freePort() -> UInt16 {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { a -> Int32 in
                _ = bind(s, a, len)
                return getsockname(s, a, &len)
            }
        }
        return UInt16(bigEndian: addr.sin_port)
    }

    init(name: String = "t\(UInt32.random(in: 0...UInt32.max))", size: String = "64MiB", extraArgs: [String] = [],
         readyTimeoutSeconds: Int = 20) throws {
        var template = Array("/tmp/cairn-it-XXXXXX".utf8CString)
        guard let d = mkdtemp(&template) else { throw Failure(description: "mkdtemp failed") }
        dir = String(cString: d)
        port = ControllerProcess.freePort()
        targetName = "iqn.2026-11.io.cairn:\(name)"
        stderrPath = dir + "/stderr.log"
        let stdoutPath = dir + "/stdout.log"
        let args = [ControllerProcess.binary(), "controller", "--name", name, "--size", size,
                     "--file", dir + "/volume.img", "--portal", "127.0.0.1:\(port)"] + extraArgs
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var cargs = args.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, args[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw Failure(description: "posix_spawn \(args[0]): \(rc)") }
        pid = child
        // Ready when the line is printed; bounded.
        let deadline = time(nil) + readyTimeoutSeconds
        while time(nil) < deadline {
            if let out = try? ControllerProcess.read(stdoutPath), out.contains("ready iscsi://") { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exitStatus = status
                let err = (try? ControllerProcess.read(stderrPath)) ?? ""
                throw Failure(description: "cairn exited before ready (status \(status)): \(err)")
            }
            usleep(20_000)
        }
        stop()
        throw Failure(description: "cairn not ready within \(readyTimeoutSeconds) s")
    }

    static func read(_ path: String) throws -> String {
        guard let f = fopen(path, "r") else { throw Failure(description: "open \(path)") }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    var log: String { (try? ControllerProcess.read(stderrPath)) ?? "" }

    var isRunning: Bool {
        guard exitStatus == nil else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            exitStatus = status
            return false
        }
        return true
    }

    /// SIGTERM, wait up to `seconds`, then SIGKILL. Returns the exit status.
    @discardableResult
    func stop(seconds: Int = 10) -> Int32 {
        if let s = exitStatus { return s }
        kill(pid, SIGTERM)
        let deadline = time(nil) + seconds
        var status: Int32 = 0
        while time(nil) < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                exitStatus = status
                return status
            }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        exitStatus = status
        return status
    }

    deinit {
        if exitStatus == nil { stop(seconds: 2) }
    }
}
