// Test support: a child process started with posix_spawn and reaped with waitpid,
// so every wait is bounded (Foundation's Process can block for good in
// waitUntilExit when it misses a child's exit).

import Foundation

#if canImport(Glibc)
import Glibc
#endif

final class Subprocess {
    let pid: pid_t
    let command: [String]
    /// Once reaped: the exit code, or -N when killed by signal N.
    private(set) var exitStatus: Int32?

    /// Starts `path` with `arguments`; stdin is /dev/null, stdout and stderr are appended to
    /// `outputFile`.
    init(path: String, arguments: [String], environment: [String: String], outputFile: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        // The test runner's threads block signals (libdispatch workers block them all), and a
        // spawned child inherits the mask: without this, SIGTERM would never reach it.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, envp)
        guard rc == 0 else {
            throw HarnessError("cannot start \(path): \(String(cString: strerror(rc)))")
        }
        pid = child
        command = [path] + arguments
    }

    /// Reaps the child if it has exited (never blocks). Returns its exit status, or nil while it runs.
    @discardableResult
    func poll() -> Int32? {
        if exitStatus != nil { return exitStatus }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            let signal = status & 0x7f
            exitStatus = signal == 0 ? (status >> 8) & 0xff : -signal
        }
        return exitStatus
    }

    var isRunning: Bool { poll() == nil }

    /// Waits up to `timeout` seconds; returns the exit status, or nil if still running.
    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while poll() == nil && Date() < deadline { usleep(10_000) }
        return poll()
    }

    /// SIGTERM; SIGKILL if still running after `grace` seconds. Returns the exit status.
    @discardableResult
    func terminate(grace: TimeInterval = 10) -> Int32 {
        if let s = poll() { return s }
        kill(pid, SIGTERM)
        if let s = wait(timeout: grace) { return s }
        kill(pid, SIGKILL)
        return wait(timeout: 10) ?? -SIGKILL
    }

    deinit {
        if poll() == nil { terminate(grace: 2) }
    }
}
