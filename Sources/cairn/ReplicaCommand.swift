import ArgumentParser
import CairnAPI
import CairnIO
import CairnReplica
import CairnWire
import Glibc
import Logging

/// `cairn replica`: run a replica (the default: `cairn replica --dir ... --listen ...`), or list and
/// replace a volume's replicas through the apiserver.
struct ReplicaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replica",
        abstract: "Serve a replica (the default subcommand), or list and replace a volume's replicas through the apiserver.",
        subcommands: [ReplicaServeCommand.self, ReplicaListCommand.self, ReplicaReplaceCommand.self, ReplicaExportCommand.self,
                      ReplicaWipeCommand.self],
        defaultSubcommand: ReplicaServeCommand.self
    )
}

struct ReplicaServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Keep one copy of a volume's data in a directory and serve it to the volume's controller."
    )

    @Option(help: "Directory that holds this replica's data and metadata (created if missing).")
    var dir: String

    @Option(help: "HOST:PORT to listen on for the controller (port 0 picks one).")
    var listen: HostPort

    @Option(help: "Volume size, e.g. 1GiB: required on first start; later starts refuse another, but for the sizes it had before a controller grew it.")
    var size: ByteSize?

    @Option(help: ArgumentHelp(
        "File holding the volume's secret: only a controller that proves it holds the same one is served (HMAC-SHA256 challenge-response).",
        discussion: "Without it, anyone who reaches this port can write to the replica."))
    var secretFile: String?

    @OptionGroup var loopOptions: LoopOptions

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Serve /healthz and /metrics over HTTP on HOST:PORT (port 0 picks one).")
    var http: HostPort?

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if let s = size, s.bytes == 0 || s.bytes % 4096 != 0 { throw ValidationError("--size must be a positive multiple of 4 KiB") }
    }

    func run() async throws {
        _ = bootstrapLogging(logLevel)
        var logger = Logger(label: "cairn.replica")
        logger[metadataKey: "dir"] = "\(dir)"
        let secret = try secretFile.map { ReplicaSecret(try SecretFile.read($0, option: "--secret-file", logger: logger)) }
        if secret == nil {
            logger.warning("no --secret-file: any peer that reaches \(listen) can write to this replica")
        }
        let loop = try EventLoop(name: "cairn-replica", logger: logger, idlePoll: loopOptions.idlePollPolicy)
        loop.start()
        let store: ReplicaStore
        do {
            try DirectoryLock.acquire(dir)
            store = try ReplicaStore(directory: dir, size: size?.bytes, loop: loop, logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        let server = ReplicaServer(loop: loop, store: store, secret: secret, logger: logger)
        let (host, want) = (listen.host, listen.port)
        let port = try await loop.run { try await server.start(host: host, port: want) }
        let hp = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        print("cairn: replica \(store.replicaID) ready on \(hp) (\(await store.size) bytes in \(dir))")
        fflush(nil)
        var endpoint: HTTPEndpoint?
        if let http {
            let e = try await ReplicaHTTP.serve(store: store, host: http.host, port: Int(http.port), logger: logger)
            endpoint = e
            print("cairn: http \(e.url)")
            fflush(nil)
        }
        let signo = try await loop.run { try await loop.waitForSignal([SIGINT, SIGTERM]) }
        logger.notice("signal \(signo): stopping; finishing in-flight requests")
        await endpoint?.stop()
        try await loop.run {
            await server.shutdown()
            await store.close()
        }
        loop.stopAndJoin()
        logger.notice("stopped")
    }
}
