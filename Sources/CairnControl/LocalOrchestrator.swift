import CProcess
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The embedded default orchestrator: each controller and replica a child process of the
/// apiserver, in a session of its own (so a signal to the apiserver's terminal or process group
/// never reaches it, and killing the apiserver leaves it serving), output appended to a log file.
///
/// Every start is recorded (pid, start time, command line) in the state store before `ensure`
/// returns; a restarted apiserver adopts a recorded process only when all three still match
/// (the binary by its name), so a reused pid is never taken for ours. A process that exits is restarted at once the first time,
/// then after 1, 2, 4 ... up to 30 s while it keeps exiting within 30 s of its start; five such
/// exits in a row make it `crashLooping` (the reconciler replaces such a replica).
actor LocalOrchestrator: Orchestrator {
    static let maxBackoff: Double = 30
    static let stableAfter: Double = 30
    static let crashLoopExits = 5

    private struct Managed {
        var pid: Int32
        var startTicks: Int64
        var cmdline: String
        /// Spawned by this apiserver (reaped with waitpid), or adopted from a previous one.
        var isChild: Bool
        var startedAt: Double
        var running: Bool
        var restarts: Int
        /// Exits in a row that came within `stableAfter` of a start.
        var quickExits: Int
        var nextStart: Double
        var lastExit: String?
    }

    private let store: StateStore
    private let binary: String
    private let logger: Logger
    private var managed: [String: Managed] = [:]

    init(store: StateStore, binary: String = ProcFS.selfExecutable(), logger: Logger) {
        self.store = store
        self.binary = binary
        self.logger = logger
    }

    func adopt() async -> [ProcessChange] {
        var changes: [ProcessChange] = []
        let records = (try? store.processes()) ?? []
        for r in records {
            let alive = ProcFS.isAlive(r.pid, startTicks: r.startTicks)
            if alive, !Self.sameCommand(ProcFS.argv(r.pid), r.argv) {
                // Our process (pid and start time match) with another command line than recorded:
                // stopped, so that the one started now is never served beside it.
                logger.warning("process \(r.key) (pid \(r.pid)) runs another command line than recorded: stopping it")
                await stopForeign(r.pid, startTicks: r.startTicks)
            }
            if alive, Self.sameCommand(ProcFS.argv(r.pid), r.argv) {
                managed[r.key] = Managed(pid: r.pid, startTicks: r.startTicks, cmdline: r.cmdline, isChild: false,
                                         startedAt: Monotonic.seconds(), running: true, restarts: r.restarts, quickExits: 0,
                                         nextStart: 0, lastExit: nil)
                changes.append(.adopted(key: r.key, pid: r.pid))
            } else {
                // Gone (or the pid is another process now): `ensure` starts it again, as a restart.
                managed[r.key] = Managed(pid: r.pid, startTicks: r.startTicks, cmdline: r.cmdline, isChild: false,
                                         startedAt: 0, running: false, restarts: r.restarts, quickExits: 0,
                                         nextStart: 0, lastExit: "not running when the apiserver started")
                logger.notice("process \(r.key) (pid \(r.pid)) is not running: it will be started again")
            }
        }
        return changes
    }

    func keys() async -> [String] { Array(managed.keys) }

    func removeData(_ r: ReplicaRecord) async {
        do {
            if FileManager.default.fileExists(atPath: r.directory) { try FileManager.default.removeItem(atPath: r.directory) }
        } catch {
            logger.error("cannot remove \(r.directory): \(error)")
        }
        // The volume's folder in the pool, once empty.
        let parent = (r.directory as NSString).deletingLastPathComponent
        if (try? FileManager.default.contentsOfDirectory(atPath: parent))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: parent)
        }
    }

    /// Seconds before the next start after `quickExits` exits in a row soon after starting: the
    /// first restart at once, then 1, 2, 4 ... up to 30 s.
    static func backoff(quickExits: Int) -> Double {
        quickExits <= 1 ? 0 : min(maxBackoff, pow(2, Double(min(quickExits, 32) - 2)))
    }

    /// The same command: the same arguments, and a binary of the same name (a rebuilt or moved
    /// `cairn` runs the same processes).
    static func sameCommand(_ running: [String]?, _ recorded: [String]) -> Bool {
        guard let running, let a = running.first, let b = recorded.first else { return false }
        return running.dropFirst().elementsEqual(recorded.dropFirst())
            && (a as NSString).lastPathComponent == (b as NSString).lastPathComponent
    }

    /// SIGTERM, then SIGKILL after 10 s, to a process that is not (or no longer) our child.
    private func stopForeign(_ pid: Int32, startTicks: Int64) async {
        kill(pid, SIGTERM)
        let deadline = Monotonic.seconds() + 10
        while ProcFS.isAlive(pid, startTicks: startTicks) && Monotonic.seconds() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        if ProcFS.isAlive(pid, startTicks: startTicks) { kill(pid, SIGKILL) }
    }

    func ensure(_ specs: [ProcessSpec]) async -> (status: [ProcessStatus], changes: [ProcessChange]) {
        var changes: [ProcessChange] = []
        var status: [ProcessStatus] = []
        let now = Monotonic.seconds()
        for spec in specs {
            if var m = managed[spec.key] {
                if m.running, let why = exited(m) {
                    m.running = false
                    m.lastExit = why
                    m.quickExits = now - m.startedAt < Self.stableAfter ? m.quickExits + 1 : 1
                    let delay = Self.backoff(quickExits: m.quickExits)
                    m.nextStart = now + delay
                    logger.warning("process \(spec.key) (pid \(m.pid)) \(why); restarting in \(delay) s")
                }
                if !m.running && now >= m.nextStart {
                    if let started = spawn(spec, restarts: m.restarts + 1) {
                        m.pid = started.pid
                        m.startTicks = started.startTicks
                        m.cmdline = started.cmdline
                        m.isChild = true
                        m.startedAt = now
                        m.running = true
                        m.restarts += 1
                        changes.append(.restarted(key: spec.key, pid: started.pid, after: m.lastExit ?? "exited",
                                                  restarts: m.restarts))
                    } else {
                        m.quickExits += 1
                        m.nextStart = now + Self.backoff(quickExits: m.quickExits)
                    }
                }
                managed[spec.key] = m
            } else if let started = spawn(spec, restarts: 0) {
                managed[spec.key] = Managed(pid: started.pid, startTicks: started.startTicks, cmdline: started.cmdline,
                                            isChild: true, startedAt: now, running: true, restarts: 0, quickExits: 0,
                                            nextStart: 0, lastExit: nil)
                changes.append(.started(key: spec.key, pid: started.pid))
            } else {
                managed[spec.key] = Managed(pid: 0, startTicks: 0, cmdline: "", isChild: false, startedAt: now,
                                            running: false, restarts: 0, quickExits: 1, nextStart: now + 1,
                                            lastExit: "could not be started")
            }
            let m = managed[spec.key]!
            status.append(ProcessStatus(key: spec.key, pid: m.running ? m.pid : nil, running: m.running,
                                        restarts: m.restarts, crashLooping: m.quickExits >= Self.crashLoopExits,
                                        lastExit: m.running ? nil : m.lastExit))
        }
        return (status, changes)
    }

    /// Why the process has ended, or nil while it runs. A child is reaped here.
    private func exited(_ m: Managed) -> String? {
        if m.isChild {
            var st: Int32 = 0
            let r = waitpid(m.pid, &st, WNOHANG)
            if r == m.pid {
                let sig = st & 0x7f
                return sig == 0 ? "exited with status \((st >> 8) & 0xff)" : "was killed by signal \(sig)"
            }
            if r == 0 { return nil }
            // ECHILD: not ours after all (cannot happen for a spawned child); ask /proc.
        }
        return ProcFS.isAlive(m.pid, startTicks: m.startTicks) ? nil : "exited"
    }

    func stop(_ key: String, graceSeconds: Double) async {
        guard let m = managed[key] else {
            try? store.deleteProcess(key)
            return
        }
        if m.running && exited(m) == nil {
            kill(m.pid, SIGTERM)
            let deadline = Monotonic.seconds() + graceSeconds
            while exited(m) == nil && Monotonic.seconds() < deadline {
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
            if exited(m) == nil {
                logger.warning("process \(key) (pid \(m.pid)) still runs \(graceSeconds) s after SIGTERM: SIGKILL")
                kill(m.pid, SIGKILL)
                let hard = Monotonic.seconds() + 10
                while exited(m) == nil && Monotonic.seconds() < hard {
                    try? await Task.sleep(nanoseconds: 20_000_000)
                }
            }
        }
        managed[key] = nil
        try? store.deleteProcess(key)
    }

    /// Starts `binary arguments...` in a new session, stdin /dev/null, output appended to the spec's
    /// log file, with no descriptor of the apiserver's but those three; records it.
    private func spawn(_ spec: ProcessSpec, restarts: Int) -> (pid: Int32, startTicks: Int64, cmdline: String)? {
        try? FileManager.default.createDirectory(atPath: (spec.logFile as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        let argv = [binary] + spec.arguments
        guard let pid = Spawn.detached(argv, logFile: spec.logFile) else {
            logger.error("cannot start \(spec.key): \(String(cString: strerror(errno)))")
            return nil
        }
        // posix_spawn returns once the child has exec'd: /proc has its start time and command line.
        let ticks = ProcFS.stat(pid)?.startTicks ?? 0
        let cmdline = JSONText.encode(argv)
        let record = ProcessRecord(key: spec.key, volume: spec.volume, pid: pid, startTicks: ticks, cmdline: cmdline,
                                   startedAt: Timestamp.now(), restarts: restarts)
        do { try store.saveProcess(record) } catch {
            logger.error("could not record process \(spec.key) (pid \(pid)): \(error)")
        }
        logger.info("started \(spec.key): pid \(pid)", metadata: ["log": "\(spec.logFile)"])
        return (pid, ticks, cmdline)
    }
}

/// posix_spawn for a process that outlives its parent: its own session, default signal handling
/// and an empty signal mask (the parent's threads block some), descriptors 0-2 only.
enum Spawn {
    // glibc's POSIX_SPAWN_SETSID (spawn.h, since 2.26), which Swift's Glibc does not import.
    static let setsid = cairn_spawn_setsid_flag()

    static func detached(_ argv: [String], logFile: String) -> Int32? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // No listening socket or database of the apiserver may live on in a volume's process.
        cairn_spawn_closefrom(&actions, 3)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | setsid))

        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, environ)
        guard rc == 0 else {
            errno = rc
            return nil
        }
        return pid
    }
}
