import ArgumentParser
import CairnAPI
import CairnBlock
import CairnIO
import CairnISCSI
import CairnSCSI
import CairnVolume
import CairnWire
import Glibc
import Logging

struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract: "Serve one volume as an iSCSI target (LUN 0)."
    )

    @Option(help: "Volume name (also the last part of the default IQN).")
    var name: String

    @Option(help: "Volume size, e.g. 1GiB, 64MiB.")
    var size: ByteSize

    @Option(help: "Back the volume with this local sparse file (created if missing); or give --replica.")
    var file: String?

    @Option(help: "A replica HOST:PORT (repeat for each replica of the set).")
    var replica: [HostPort] = []

    @Option(help: "RW replicas needed to acknowledge writes (default: a majority of the replicas given).")
    var minHealthy: Int?

    @Option(help: "Eject a replica that leaves a request unanswered this long (e.g. 5s, 500ms).")
    var replicaTimeout: Duration = Duration(argument: "5s")!

    @Option(help: "Most bytes per second a rebuild, or a resync after a controller crash, copies (e.g. 64MiB).")
    var rebuildRate: ByteSize = ByteSize(argument: "64MiB")!

    @Option(help: "Settle a written region on the replicas (unmark it in their write-intent maps) after one to two of these idle (e.g. 10s). Shorter: less to resync after a controller crash; longer: fewer marks to persist again under scattered writes.")
    var settleInterval: Duration = Duration(argument: "10s")!

    @Option(help: "iSCSI portal HOST:PORT to listen on; give it twice for a second path (multipath).")
    var portal: [HostPort] = [HostPort(argument: "127.0.0.1:3260")!]

    @Option(help: "Target name; default iqn.2026-11.io.cairn:NAME.")
    var iqn: String?

    @Option(help: "Logical block size in bytes (512 or 4096).")
    var blockSize: Int = 512

    @Option(help: ArgumentHelp(
        "Physical block size reported to initiators (READ CAPACITY(16) LBPPBE, block limits granularities).",
        discussion: "A power-of-two multiple of --block-size, e.g. 4096 with 512-byte blocks. Default: the logical block size.",
        valueName: "bytes"))
    var physicalBlockSize: ByteSize?

    @Flag(help: "Removable medium: RMB=1; START STOP UNIT ejects and loads it, PREVENT ALLOW MEDIUM REMOVAL keeps it in.")
    var removable = false

    @Flag(help: "Write-protected volume: the file is opened read-only and every write command gets DATA PROTECT / WRITE PROTECTED.")
    var readOnly = false

    @Option(help: "CHAP user an initiator must log in with.")
    var chapUser: String?
    @Option(help: "CHAP secret for --chap-user (visible in ps: prefer --chap-secret-file).")
    var chapSecret: String?
    @Option(help: "File holding the CHAP secret for --chap-user (one trailing newline ignored).")
    var chapSecretFile: String?
    @Option(help: "User the target answers with in mutual CHAP.")
    var mutualChapUser: String?
    @Option(help: "Secret for --mutual-chap-user (visible in ps: prefer --mutual-chap-secret-file).")
    var mutualChapSecret: String?
    @Option(help: "File holding the secret for --mutual-chap-user.")
    var mutualChapSecretFile: String?

    @Option(help: ArgumentHelp(
        "File holding the volume's secret: replica links are authenticated with it both ways (HMAC-SHA256 challenge-response).",
        discussion: "Give every replica of the volume the same file (cairn replica --secret-file). Without it, anyone who reaches a replica's port can write to it."))
    var secretFile: String?

    @OptionGroup(title: "QoS (the API's PUT /v1/qos changes them live)") var qos: QoSOptions

    @OptionGroup(title: "Clone (a new volume's first data: another volume's snapshot)") var clone: CloneOptions

    @OptionGroup(title: "Restore (a new volume's first data: a backup)") var restore: RestoreOptions

    @Option(help: "Most bytes per second a SANITIZE overwrite may write (it runs in the background).")
    var sanitizeRate: ByteSize = ByteSize(argument: "64MiB")!

    @OptionGroup var loopOptions: LoopOptions

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Serve the HTTP API (REST, /metrics, /healthz) on HOST:PORT (port 0 picks one); needs --replica.")
    var api: HostPort?

    func validate() throws {
        guard api == nil || !replica.isEmpty else { throw ValidationError("--api needs --replica") }
        guard blockSize == 512 || blockSize == 4096 else { throw ValidationError("--block-size must be 512 or 4096") }
        guard size.bytes > 0, size.bytes % UInt64(blockSize) == 0 else {
            throw ValidationError("--size must be a positive multiple of the block size")
        }
        guard chapSecret == nil || chapSecretFile == nil else { throw ValidationError("give --chap-secret or --chap-secret-file, not both") }
        guard mutualChapSecret == nil || mutualChapSecretFile == nil else {
            throw ValidationError("give --mutual-chap-secret or --mutual-chap-secret-file, not both")
        }
        guard (chapUser == nil) == (chapSecret == nil && chapSecretFile == nil) else {
            throw ValidationError("--chap-user and --chap-secret (or --chap-secret-file) go together")
        }
        guard (mutualChapUser == nil) == (mutualChapSecret == nil && mutualChapSecretFile == nil) else {
            throw ValidationError("--mutual-chap-user and --mutual-chap-secret (or --mutual-chap-secret-file) go together")
        }
        guard secretFile == nil || !replica.isEmpty else { throw ValidationError("--secret-file needs --replica") }
        guard mutualChapUser == nil || chapUser != nil else { throw ValidationError("mutual CHAP needs --chap-user too") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard !portal.isEmpty else { throw ValidationError("give at least one --portal") }
        guard (file == nil) != replica.isEmpty else { throw ValidationError("give either --file or --replica (one or more)") }
        if let m = minHealthy, m < 1 || m > replica.count {
            throw ValidationError("--min-healthy must be between 1 and the number of replicas")
        }
        guard replicaTimeout.nanoseconds >= 10_000_000 else { throw ValidationError("--replica-timeout is too short") }
        guard rebuildRate.bytes > 0 else { throw ValidationError("--rebuild-rate must be positive") }
        guard settleInterval.nanoseconds >= 10_000_000 else { throw ValidationError("--settle-interval is too short") }
        if let why = unitOptions.validate(logicalBlockSize: blockSize) { throw ValidationError("--physical-block-size: \(why)") }
        if let why = qos.limits.validate() { throw ValidationError("QoS: \(why)") }
        try clone.validate(replicated: !replica.isEmpty)
        try restore.validate(replicated: !replica.isEmpty)
        guard clone.cloneVolume == nil || restore.restoreFrom == nil else { throw ValidationError("a clone or a restore, not both") }
    }

    var unitOptions: LogicalUnitOptions {
        LogicalUnitOptions(removable: removable, readOnly: readOnly,
                           physicalBlockSize: physicalBlockSize.map { Int(clamping: $0.bytes) })
    }

    func run() async throws {
        _ = bootstrapLogging(logLevel)
        var logger = Logger(label: "cairn.controller")
        logger[metadataKey: "volume"] = "\(name)"
        let targetName = iqn ?? "iqn.2026-11.io.cairn:\(name)"

        // Secrets first: a bad file stops the start before anything listens.
        let chapSecretValue = try chapSecret ?? chapSecretFile.map { try SecretFile.readString($0, option: "--chap-secret-file", logger: logger) }
        let mutualSecretValue = try mutualChapSecret
            ?? mutualChapSecretFile.map { try SecretFile.readString($0, option: "--mutual-chap-secret-file", logger: logger) }
        if chapSecret != nil || mutualChapSecret != nil {
            logger.warning("a CHAP secret on the command line is visible to every user in ps: use --chap-secret-file")
        }
        let replicaSecret = try secretFile.map { ReplicaSecret(try SecretFile.read($0, option: "--secret-file", logger: logger)) }
        if replicaSecret == nil && !replica.isEmpty {
            logger.warning("no --secret-file: replica links are not authenticated (anyone who reaches a replica's port can write to it)")
        }

        let loop = try EventLoop(name: "cairn-\(name)", logger: logger, idlePoll: loopOptions.idlePollPolicy)
        loop.start()
        let store: any BlockStore
        var backing: String
        var replicated: Volume?
        if let file {
            let f = try FileBlockStore(path: file, size: size.bytes, blockSize: blockSize, loop: loop, logger: logger,
                                       readOnly: readOnly)
            store = f
            backing = "file \(file) (direct: \(f.direct))"
        } else {
            // A read-only unit over replicas refuses writes in the SCSI layer; replicas stay writable for rebuilds.
            var config = VolumeConfig(name: name, size: size.bytes, blockSize: blockSize,
                                      replicas: replica.map { ReplicaAddress(host: $0.host, port: $0.port) },
                                      minHealthy: minHealthy, replicaTimeoutNanos: replicaTimeout.nanoseconds,
                                      rebuildBytesPerSecond: rebuildRate.bytes)
            config.settleIntervalNanos = settleInterval.nanoseconds
            if let v = getenv("CAIRN_TEST_WRITE_DELAY_US"), let us = UInt64(String(cString: v)), us > 0 {
                config.testWriteDelayNanos = us * 1000
                logger.warning("test hook CAIRN_TEST_WRITE_DELAY_US: every replicated write busy-waits \(us) µs")
            }
            config.secret = replicaSecret
            config.populator = try clone.populator(loop: loop, timeoutNanos: replicaTimeout.nanoseconds, logger: logger)
                ?? restore.populator(logger: logger)
            let volume = Volume(config: config, loop: loop, logger: logger)
            try await loop.run { await volume.start() }
            replicated = volume
            store = ReplicatedStore(volume: volume)
            backing = "\(replica.count) replicas (min healthy \(config.minHealthy))"
        }
        let scsi = SCSITarget(loop: loop, identity: LogicalUnitIdentity(volumeName: name, targetName: targetName),
                              luns: [0: store], logger: logger, sanitizeBytesPerSecond: sanitizeRate.bytes,
                              options: unitOptions, qos: qos.limits)
        if let replicated {
            // A grow reaches READ CAPACITY and the initiators' unit attentions.
            let bs = UInt64(blockSize)
            await replicated.observeCapacity { size in await scsi.capacityChanged(lun: 0, blockCount: size / bs) }
        }
        var config = ISCSITargetConfig(targetName: targetName,
                                       portals: portal.map { ISCSIPortalAddress(host: $0.host, port: $0.port) })
        if let u = chapUser, let s = chapSecretValue { config.chap = CHAPCredentials(user: u, secret: s) }
        if let u = mutualChapUser, let s = mutualSecretValue { config.mutualChap = CHAPCredentials(user: u, secret: s) }
        let server = ISCSIServer(loop: loop, config: config, target: scsi, logger: logger)

        let ports = try await server.start()
        for (p, port) in zip(portal, ports) {
            let hp = p.host.contains(":") ? "[\(p.host)]:\(port)" : "\(p.host):\(port)"
            print("cairn: ready iscsi://\(hp)/\(targetName)/0")
        }
        fflush(nil)  // flush every stream: the ready line must reach a pipe now
        logger.info("serving", metadata: ["backing": "\(backing)", "size": "\(size.bytes)",
                                          "removable": "\(removable)", "read-only": "\(readOnly)",
                                          "physical-block-size": "\(physicalBlockSize?.bytes ?? UInt64(blockSize))",
                                          "qos": "\(qos.limits.summary)"])
        // The HTTP API on its own thread, once the data path is up; stopped before it.
        var http: HTTPEndpoint?
        if let api, let replicated {
            let e = try await ControllerAPI.serve(volume: replicated, target: scsi, host: api.host, port: Int(api.port),
                                                loggedIn: { await server.sessionCount }, logger: logger)
            http = e
            print("cairn: api \(e.url)")
            fflush(nil)
        }

        let signo = try await loop.run { try await loop.waitForSignal([SIGINT, SIGTERM]) }
        logger.notice("signal \(signo): stopping; finishing in-flight I/O")
        await http?.stop()
        await server.shutdown()
        await scsi.close()
        loop.stopAndJoin()
        logger.notice("stopped")
    }
}
