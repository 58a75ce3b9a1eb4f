import ArgumentParser
import CairnIO
import CairnVolume
import CairnWire
import Logging

/// `cairn controller --clone-*`: a new volume whose first data is another volume's snapshot,
/// read from that volume's replicas before the new one serves.
struct CloneOptions: ParsableArguments {
    @Option(help: "A replica HOST:PORT of the source volume (repeat: each is tried in turn).")
    var cloneFrom: [HostPort] = []

    @Option(help: "The source volume's name.")
    var cloneVolume: String?

    @Option(help: "The source snapshot's name (or id).")
    var cloneSnapshot: String?

    @Option(help: "File holding the source volume's secret (when its replicas have one).")
    var cloneSecretFile: String?

    func validate(replicated: Bool) throws {
        let given = [!cloneFrom.isEmpty, cloneVolume != nil, cloneSnapshot != nil]
        guard given.allSatisfy({ $0 }) || !given.contains(true) else {
            throw ValidationError("--clone-from, --clone-volume and --clone-snapshot go together")
        }
        guard cloneSecretFile == nil || given[0] else { throw ValidationError("--clone-secret-file needs --clone-from") }
        guard !given[0] || replicated else { throw ValidationError("a clone needs --replica") }
    }

    func populator(loop: EventLoop, timeoutNanos: UInt64, logger: Logger) throws -> (any VolumePopulator)? {
        guard let volume = cloneVolume, let snapshot = cloneSnapshot, !cloneFrom.isEmpty else { return nil }
        let secret = try cloneSecretFile.map { ReplicaSecret(try SecretFile.read($0, option: "--clone-secret-file", logger: logger)) }
        return SnapshotSource(loop: loop, addresses: cloneFrom.map { ReplicaAddress(host: $0.host, port: $0.port) },
                              volume: volume, snapshot: snapshot, secret: secret, timeoutNanos: timeoutNanos, logger: logger)
    }
}
