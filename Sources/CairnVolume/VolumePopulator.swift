import CairnIO
import CairnWire
import Logging

/// Where a new volume's data comes from before it first serves: another volume's snapshot (a
/// clone) or a backup (a restore). The controller copies it to every replica, then persists the
/// first membership: until then the volume serves nothing, and a controller that dies midway
/// copies it again at its next start (the replicas hold no record yet).
public protocol VolumePopulator: Sendable {
    /// "clone" or "restore" (progress and logs).
    var kind: String { get }
    /// What it copies from, for people.
    var source: String { get }
    /// Opens the source: the extents that hold data (the rest of the volume reads as zeros).
    func open() async throws(PopulateError) -> [Extent]
    /// Reads `buffer.count` bytes at `offset` (within an extent `open` listed).
    func read(offset: UInt64, into buffer: IOBuffer) async throws(PopulateError)
    func close() async
}

public struct PopulateError: Error, CustomStringConvertible {
    public var description: String
    /// Trying again cannot help (a corrupt or missing backup block, a snapshot that is gone).
    public var permanent: Bool

    public init(_ description: String, permanent: Bool = false) {
        self.description = description
        self.permanent = permanent
    }
}

/// A clone's source: a snapshot read from one of the source volume's replicas, as a reader
/// (it proves the source volume's secret, and may only read snapshot views).
public actor SnapshotSource: VolumePopulator {
    public nonisolated let loop: EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    public nonisolated let kind = "clone"
    public nonisolated let source: String
    let addresses: [ReplicaAddress]
    let volume: String
    /// The snapshot's name or id.
    let snapshot: String
    let secret: ReplicaSecret?
    let timeout: UInt64
    let logger: Logger
    private var link: ReplicaLink?
    private var handle: UInt32 = 0

    public init(loop: EventLoop, addresses: [ReplicaAddress], volume: String, snapshot: String, secret: ReplicaSecret?,
                timeoutNanos: UInt64 = 5_000_000_000, logger: Logger) {
        self.loop = loop
        self.addresses = addresses
        self.volume = volume
        self.snapshot = snapshot
        self.secret = secret
        self.timeout = timeoutNanos
        self.logger = logger
        source = "\(volume)/\(snapshot)"
    }

    public func open() async throws(PopulateError) -> [Extent] {
        var why: [String] = []
        var missing = 0
        for a in addresses {
            let l = ReplicaLink(loop: loop, address: a, timeout: timeout, logger: logger)
            do {
                _ = try await l.connect(Hello(volume: volume, size: 0, blockSize: 512, epoch: 0, reader: true), secret: secret)
            } catch {
                why.append("\(a): \(error)")
                continue
            }
            let (st, bytes) = await l.request(.snapshots, epoch: 0)
            guard st == .ok, let list = try? WireJSON.decode(SnapshotList.self, bytes) else {
                why.append("\(a): snapshots: \(st)")
                l.close()
                continue
            }
            guard let s = list.snapshots.first(where: { ($0.id == snapshot || $0.name == snapshot) && !$0.deleting }) else {
                why.append("\(a): no snapshot \(snapshot)")
                missing += 1
                l.close()
                continue
            }
            let (vs, vb) = await l.request(.openSnapshotView, epoch: 0, control: WireJSON.encode(SnapshotViewRequest(id: s.id)))
            guard vs == .ok, let view = try? WireJSON.decode(SnapshotView.self, vb) else {
                why.append("\(a): open \(snapshot): \(vs)")
                l.close()
                continue
            }
            let sel = LayerSelector.viewHandleBit | view.handle
            let (es, eb) = await l.request(.allocatedExtents, epoch: 0, offset: 0, extent: view.size, layer: sel)
            guard es == .ok, let extents = try? WireJSON.decode(ExtentList.self, eb) else {
                why.append("\(a): extents of \(snapshot): \(es)")
                l.close()
                continue
            }
            link = l
            handle = sel
            logger.notice("clone source: snapshot \(s.name) (\(s.id)) of \(volume) on \(a): \(extents.totalBytes) bytes of data in \(extents.extents.count) extent(s)")
            return extents.extents
        }
        // Every replica answered and none has it: the snapshot is gone, waiting will not help.
        throw PopulateError("no replica of \(volume) could give snapshot \(snapshot): \(why.joined(separator: "; "))",
                            permanent: missing == addresses.count)
    }

    public func read(offset: UInt64, into buffer: IOBuffer) async throws(PopulateError) {
        guard let l = link else { throw PopulateError("the clone source is not open") }
        let st = await l.read(offset: offset, into: buffer, epoch: 0, layer: handle)
        guard st == .ok else { throw PopulateError("reading \(source) at \(offset): \(st)") }
    }

    public func close() async {
        link?.close()
        link = nil
    }
}
