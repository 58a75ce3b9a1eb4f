import CProcess
import Foundation

/// A program the node plugin runs (mount, mkfs, losetup, iscsiadm, ...) and what it printed.
struct CommandResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

struct CommandError: Error, CustomStringConvertible {
    let argv: [String]
    let result: CommandResult
    var description: String {
        let said = (result.stderr.isEmpty ? result.stdout : result.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
        return "\(argv.joined(separator: " ")) exited \(result.status)\(said.isEmpty ? "" : ": " + said.prefix(500))"
    }
}

enum Command {
    /// Runs `argv` (its first word found on PATH) on a dispatch thread, not the cooperative pool,
    /// and returns its exit status and output. A missing program is thrown. posix_spawn and
    /// waitpid, not Foundation's Process: its exit watch missed a child that daemonizes
    /// (qemu-storage-daemon --daemonize), and the wait never ended.
    static func run(_ argv: [String]) async throws -> CommandResult {
        guard let tool = which(argv[0]) else { throw CSIPluginError("\(argv[0]) is not installed (not on PATH)") }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try spawnAndWait(tool, argv) })
            }
        }
    }

    private static func spawnAndWait(_ tool: String, _ argv: [String]) throws -> CommandResult {
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        guard pipe(&out) == 0 else { throw CSIPluginError("pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&err) == 0 else {
            close(out[0]); close(out[1])
            throw CSIPluginError("pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        cairn_spawn_closefrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with default signal handling and an empty mask, whatever this process set.
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, tool, &actions, &attributes, &cArgs, environ)
        close(out[1])
        close(err[1])
        guard rc == 0 else {
            close(out[0]); close(err[0])
            throw CSIPluginError("cannot start \(tool): \(String(cString: strerror(rc)))")
        }
        // Both pipes drained at once: a program that fills one while we read the other would block.
        let errData = ErrorOutput(), errRead = err[0]
        let drained = DispatchGroup()
        drained.enter()
        DispatchQueue.global().async {
            errData.data = readAll(errRead)
            drained.leave()
        }
        let outData = readAll(out[0])
        drained.wait()
        close(out[0])
        close(err[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return CommandResult(status: code, stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData.data, as: UTF8.self))
    }

    private static func readAll(_ fd: Int32) -> [UInt8] {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 { data += buffer[..<n] } else if n < 0 && errno == EINTR { continue } else { break }
        }
        return data
    }

    /// Runs `argv` and throws unless it exits 0 (or with one of `okStatuses`).
    @discardableResult
    static func check(_ argv: [String], okStatuses: Set<Int32> = [0]) async throws -> CommandResult {
        let r = try await run(argv)
        guard okStatuses.contains(r.status) else { throw CommandError(argv: argv, result: r) }
        return r
    }

    /// The path of `name` on PATH (or /sbin, /usr/sbin, which a container's PATH may lack).
    static func which(_ name: String) -> String? {
        if name.hasPrefix("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// A program's stderr, read on another thread while its stdout is read: `drained.wait()` orders
/// the write before the read, so no lock is needed.
private final class ErrorOutput: @unchecked Sendable {
    var data = [UInt8]()
}
