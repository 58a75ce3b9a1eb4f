import Foundation

/// The role of a volume's process.
enum ProcessRole: String, Sendable {
    case controller
    case replica
}

/// One process a volume needs: what to run, and where its output goes. The orchestrator runs the
/// `cairn` binary with `arguments`; a Kubernetes orchestrator would make a pod of the same.
struct ProcessSpec: Sendable, Equatable {
    /// `VOLUME/controller` or `VOLUME/replica/ID`: stable for the process's whole life.
    var key: String
    var volume: String
    var role: ProcessRole
    /// The arguments after the binary. Used at each (re)start; a running process whose spec
    /// changed keeps running (the reconciler changes a live controller through its API instead).
    var arguments: [String]
    /// stdout and stderr are appended here.
    var logFile: String
}

/// What an orchestrator knows of one process.
struct ProcessStatus: Sendable, Equatable {
    var key: String
    var pid: Int32?
    var running: Bool
    /// Restarts since the apiserver placed it (kept across apiserver restarts).
    var restarts: Int
    /// Exited this many times in a row, each soon after it started: it cannot stay up.
    var crashLooping: Bool
    /// Why it is not running, when it is not.
    var lastExit: String?
}

/// What happened to a process that the reconciler should tell the user about.
enum ProcessChange: Sendable, Equatable {
    case started(key: String, pid: Int32)
    case restarted(key: String, pid: Int32, after: String, restarts: Int)
    case adopted(key: String, pid: Int32)
}

/// Turns process specs into running processes and keeps them running: the layer under the
/// reconciler that a Kubernetes orchestrator replaces (there: a Deployment per controller, a pod
/// per replica, kubelet's restarts). The local one runs child processes on this machine.
protocol Orchestrator: Sendable {
    /// Takes over the processes a previous apiserver started that still run (each checked to be
    /// the very process recorded), so that none is restarted. Called once, before the first `ensure`.
    func adopt() async -> [ProcessChange]
    /// Starts each spec's process unless it runs; restarts one that exited, after its backoff.
    /// Returns every spec's status, in order, and what changed.
    func ensure(_ specs: [ProcessSpec]) async -> (status: [ProcessStatus], changes: [ProcessChange])
    /// Stops a process (SIGTERM, SIGKILL after `graceSeconds`) and forgets it.
    func stop(_ key: String, graceSeconds: Double) async
    /// The keys of all processes it runs or has records of.
    func keys() async -> [String]
    /// Removes a stopped replica's directory (and its volume's folder, once empty) where its pool is.
    func removeData(_ r: ReplicaRecord) async
}
