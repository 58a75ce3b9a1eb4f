import CairnBackup
import CairnIO
import CairnWire
import Foundation
import Logging

/// `POST /v1/backups` on the controller.
public struct BackupRequest: Codable, Sendable {
    /// The snapshot to back up (its name).
    public var snapshot: String
    public var target: TargetSpec

    public init(snapshot: String, target: TargetSpec) {
        self.snapshot = snapshot
        self.target = target
    }
}

/// A backup job's progress, as the controller's API shows it.
public struct BackupProgress: Codable, Sendable, Equatable {
    public var id: String
    public var volume: String
    public var snapshot: String
    /// The target's URL (no secrets).
    public var target: String
    /// running | done | failed
    public var state: String
    /// The backup whose blocks it reuses where the snapshots do not differ (incremental).
    public var previous: String?
    /// Bytes of the snapshot it reads (the changed regions, or all its data), and read so far.
    public var totalBytes: UInt64
    public var readBytes: UInt64
    /// Blocks and bytes (compressed) stored anew on the target.
    public var newBlocks: Int
    public var uploadedBytes: UInt64
    public var seconds: Double
    public var error: String?

    /// MiB read per second so far.
    public var mibPerSecond: Double { seconds > 0 ? Double(readBytes) / 1_048_576 / seconds : 0 }
}

/// Backs up one snapshot to a target: only the blocks where it may differ from the newest
/// earlier backup of the volume there (whose snapshot the replicas still hold) are read, from
/// the snapshot's layers on one RW replica; blocks already stored (by any backup, of any volume)
/// are not stored again; holes are not read at all. Blocks are hashed and compressed off the
/// event loop. The manifest is written last: until then the backup does not exist.
actor BackupJob {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    let volume: Volume
    let request: BackupRequest
    let id: String
    let logger: Logger
    var progress: BackupProgress

    init(volume: Volume, request: BackupRequest, id: String, logger: Logger) {
        self.volume = volume
        self.loop = volume.loop
        self.request = request
        self.id = id
        var l = logger
        l[metadataKey: "backup"] = "\(id)"
        self.logger = l
        progress = BackupProgress(id: id, volume: volume.config.name, snapshot: request.snapshot, target: request.target.url,
                                  state: "running", previous: nil, totalBytes: 0, readBytes: 0, newBlocks: 0,
                                  uploadedBytes: 0, seconds: 0, error: nil)
    }

    func run() async {
        let t0 = monotonicNanos()
        do {
            try await backup(t0)
            progress.state = "done"
        } catch {
            progress.state = "failed"
            progress.error = "\(error)"
            logger.error("backup of \(request.snapshot) to \(request.target.url) failed: \(error)")
        }
        progress.seconds = Double(monotonicNanos() &- t0) / 1e9
        await volume.backupUpdated(progress)
    }

    private func publish(_ t0: UInt64) async {
        progress.seconds = Double(monotonicNanos() &- t0) / 1e9
        await volume.backupUpdated(progress)
    }

    private func backup(_ t0: UInt64) async throws {
        let target = try request.target.open()
        defer { Task { await target.close() } }
        let repo = BackupRepository(target: target)
        let list = try await volume.snapshots()
        guard let snap = list.snapshots.first(where: { $0.name == request.snapshot && !$0.deleting }) else {
            throw BackupError.notFound("volume \(volume.config.name) has no snapshot \(request.snapshot)")
        }
        // The newest earlier backup of this volume whose snapshot is still here: the base.
        let held = Set(list.snapshots.filter { !$0.deleting }.map(\.id))
        let earlier = try await repo.manifests().filter {
            $0.volume == volume.config.name && $0.snapshotID != snap.id && held.contains($0.snapshotID)
                && $0.blockSize == BackupRepository.blockSize
        }
        let base = earlier.last
        guard let (link, epoch) = await volume.backupSource() else { throw BackupError.target("no RW replica to read from") }
        let (vs, vb) = await link.request(.openSnapshotView, epoch: epoch,
                                          control: WireJSON.encode(SnapshotViewRequest(id: snap.id, base: base?.snapshotID)))
        guard vs == .ok, let view = try? WireJSON.decode(SnapshotView.self, vb) else {
            throw BackupError.target("opening snapshot \(snap.name) on a replica: \(vs)")
        }
        let handle = LayerSelector.viewHandleBit | view.handle
        let (es, eb) = await link.request(.allocatedExtents, epoch: epoch, offset: 0, extent: view.size, layer: handle)
        guard es == .ok, let extents = try? WireJSON.decode(ExtentList.self, eb) else {
            throw BackupError.target("listing snapshot \(snap.name)'s regions: \(es)")
        }
        let previous = view.incremental ? base : nil
        progress.previous = previous?.id
        // Which blocks to read: those an extent touches; the rest are holes, or (incremental)
        // the previous backup's.
        let bs = UInt64(BackupRepository.blockSize)
        let count = Int((view.size + bs - 1) / bs)
        var touched = [Bool](repeating: false, count: count)
        for e in extents.extents where e.length > 0 {
            for i in Int(e.offset / bs)...Int((e.end - 1) / bs) where i < count { touched[i] = true }
        }
        let manifestShape = Manifest(id: id, volume: volume.config.name, snapshot: snap.name, snapshotID: snap.id,
                                     createdAt: Self.now(), size: view.size, blockSize: Int(bs), blocks: [],
                                     previous: previous?.id, stats: .init())
        var blocks = [String?](repeating: nil, count: count)
        var toRead: [Int] = []
        for i in 0..<count {
            if touched[i] {
                toRead.append(i)
            } else if let p = previous, i < p.blocks.count, p.blocks[i] != nil {
                // Unchanged since the previous backup: its block, if it has the same extent
                // (the last block of a volume grown since has not).
                if p.range(i).length == manifestShape.range(i).length { blocks[i] = p.blocks[i] } else { toRead.append(i) }
            }
        }
        progress.totalBytes = toRead.reduce(0) { $0 + UInt64(manifestShape.range($1).length) }
        let kind = previous.map { "incremental on \($0.id)" } ?? "full"
        logger.notice("backup of \(snap.name) to \(target.description): \(toRead.count) of \(count) blocks to read (\(kind))")
        await publish(t0)
        try await repo.begin(id)
        defer { Task { await repo.end(id) } }
        var pacer = RatePacer(bytesPerSecond: volume.config.rebuildBytesPerSecond)
        var failure: (any Error)?
        var stats = Manifest.Stats()
        await withTaskGroup(of: Result<(Int, String?, UInt64), any Error>.self) { group in
            var next = 0
            var running = 0
            while true {
                if failure == nil, running < 4, next < toRead.count {
                    let i = toRead[next]
                    next += 1
                    let r = manifestShape.range(i)
                    await pacer.admit(UInt64(r.length), loop: loop)
                    running += 1
                    group.addTask { await self.backupBlock(i, r.offset, r.length, link: link, epoch: epoch, handle: handle, repo: repo) }
                    continue
                }
                guard running > 0, let result = await group.next() else { break }
                running -= 1
                switch result {
                case .success(let (i, hash, stored)):
                    blocks[i] = hash
                    progress.readBytes += UInt64(manifestShape.range(i).length)
                    if stored > 0 {
                        progress.newBlocks += 1
                        progress.uploadedBytes += stored
                    }
                    await publish(t0)
                case .failure(let e):
                    if failure == nil { failure = e }
                }
            }
        }
        if let failure { throw failure }
        for (i, h) in blocks.enumerated() where h != nil {
            stats.dataBlocks += 1
            stats.dataBytes += UInt64(manifestShape.range(i).length)
        }
        stats.readBytes = progress.readBytes
        stats.newBlocks = progress.newBlocks
        stats.uploadedBytes = progress.uploadedBytes
        stats.seconds = Double(monotonicNanos() &- t0) / 1e9
        var m = manifestShape
        m.blocks = blocks
        m.stats = stats
        try await repo.putManifest(m)
        await volume.countBackup(read: stats.readBytes, uploaded: stats.uploadedBytes)
        logger.notice("backup \(id) of \(snap.name) done: \(stats.dataBlocks) data blocks, \(stats.readBytes) bytes read, \(stats.newBlocks) blocks (\(stats.uploadedBytes) bytes) stored in \(String(format: "%.2f", stats.seconds)) s")
    }

    /// Reads one block from the snapshot; a block of zeros is a hole (nil). Hashing and
    /// compression run off the loop.
    private func backupBlock(_ i: Int, _ offset: UInt64, _ length: Int, link: ReplicaLink, epoch: UInt64, handle: UInt32,
                             repo: BackupRepository) async -> Result<(Int, String?, UInt64), any Error> {
        let buf = loop.buffers.take(length)
        let st = await link.read(offset: offset, into: buf, epoch: epoch, layer: handle)
        guard st == .ok else {
            loop.buffers.give(buf)
            return .failure(BackupError.target("reading block \(i) of the snapshot: \(st)"))
        }
        let data = Data(bytes: buf.base, count: length)
        loop.buffers.give(buf)
        let work = Task.detached { () async throws -> (String?, UInt64) in
            let zero = data.withUnsafeBytes { b in b.allSatisfy { $0 == 0 } }
            if zero { return (nil, 0) }
            let hash = data.withUnsafeBytes { BackupRepository.hash($0) }
            let stored = try await repo.putBlock(hash, data)
            return (hash, stored)
        }
        do {
            let (hash, stored) = try await work.value
            return .success((i, hash, stored))
        } catch {
            return .failure(error)
        }
    }

    static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }
}

extension Volume {
    /// Starts backing up snapshot `r.snapshot` to `r.target`; answers at once with its id.
    public func startBackup(_ r: BackupRequest) async throws(VolumeError) -> BackupProgress {
        guard decided, rwCount > 0 else { throw .conflict("the volume is offline") }
        do { _ = try r.target.open() } catch { throw .invalid("\(error)") }
        guard try await snapshots().snapshots.contains(where: { $0.name == r.snapshot && !$0.deleting }) else {
            throw .notFound("volume \(config.name) has no snapshot \(r.snapshot)")
        }
        let id = BackupRepository.newID()
        let job = BackupJob(volume: self, request: r, id: id, logger: logger)
        let p = await job.progress
        backupProgress[id] = p
        loop.spawn { await job.run() }
        return p
    }

    public func backups() -> [BackupProgress] {
        backupProgress.values.sorted { $0.id < $1.id }
    }

    public func backup(_ id: String) -> BackupProgress? { backupProgress[id] }

    func backupUpdated(_ p: BackupProgress) {
        backupProgress[p.id] = p
        // Keep the newest 100 finished jobs.
        let finished = backupProgress.values.filter { $0.state != "running" }.sorted { $0.id < $1.id }
        for p in finished.dropLast(100) { backupProgress[p.id] = nil }
    }

    func countBackup(read: UInt64, uploaded: UInt64) {
        counters.backupReadBytes += read
        counters.backupUploadedBytes += uploaded
    }

    /// The least busy RW replica's link, and the epoch to use.
    func backupSource() -> (ReplicaLink, UInt64)? {
        guard let m = rwMembers.min(by: { $0.link!.outstanding < $1.link!.outstanding }) else { return nil }
        return (m.link!, writeEpoch)
    }
}
