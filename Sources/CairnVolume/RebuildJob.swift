import CairnIO
import CairnWire
import Glibc
import Logging

/// Brings one replica up to date online (invariant 7). It joins write-only first (it gets every
/// new write from then on), then the job copies what it lacks from an RW replica: the regions of
/// that replica's dirty map for it (a delta), or every allocated extent after a wipe (a full
/// copy that skips holes). Each chunk is copied under the volume's range lock, so no newer write
/// to those blocks can be overwritten by older data. Paced by the rebuild rate.
actor RebuildJob {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
    let volume: Volume
    let key: Int
    let target: ReplicaLink
    let targetID: String
    let targetRecord: EpochRecord?
    /// Whether a delta copies the target's own write-intent regions too (see `Volume.ejectedHere`).
    let ownIntent: Bool
    let logger: Logger
    var cancelled = false

    init(volume: Volume, key: Int, target: ReplicaLink, targetID: String, targetRecord: EpochRecord?, ownIntent: Bool,
         logger: Logger) {
        self.volume = volume
        self.loop = volume.loop
        self.key = key
        self.target = target
        self.targetID = targetID
        self.targetRecord = targetRecord
        self.ownIntent = ownIntent
        var l = logger
        l[metadataKey: "rebuild"] = "\(targetID)"
        self.logger = l
    }

    nonisolated func cancel() {
        loop.spawn { await self.setCancelled() }
    }

    private func setCancelled() { cancelled = true }

    func run() async {
        do {
            try await copy()
        } catch {
            logger.warning("rebuild ended: \(error)")
            await volume.rebuildEnded(key, job: self, error: "\(error)")
            return
        }
    }

    private func copy() async throws(RebuildError) {
        let config = volume.config
        guard let (sourceKey, source, epoch, volumeSize) = await volume.rebuildSource() else {
            throw .noSource
        }
        // The source's snapshots: a full copy gives the target the same layers; a delta needs
        // the target to hold the same ones already. Not while a deleted one is being merged.
        let layers = try await snapshotList(source, epoch, "source")
        guard !layers.snapshots.contains(where: \.deleting) else {
            throw .source("a deleted snapshot is still being merged away there; the rebuild waits for it")
        }
        // Delta if an RW replica kept a dirty map for exactly the record this one last held.
        var delta = false
        if let rec = targetRecord, rec.members.contains(targetID),
           try await snapshotList(target, epoch, "target").sameLayers(as: layers) {
            delta = try await dirtyExtents(source, rec, epoch) != nil
        }
        if !delta {
            let (st, _) = await target.request(.wipe, epoch: epoch)
            guard st == .ok else { throw .target("wipe: \(st)") }
            if !layers.snapshots.isEmpty {
                let (st, _) = await target.request(.installSnapshots, epoch: epoch, control: WireJSON.encode(layers))
                guard st == .ok else { throw .target("installing \(layers.snapshots.count) snapshot layer(s): \(st)") }
            }
        }
        try checkCancelled()
        // From here on the target receives every new write; what it lacks is fixed from now.
        guard await volume.setWriteOnly(key, job: self) else { throw .cancelled }
        // But a write fanned out just before the switch went to the others only, and may still be
        // landing on the source, in a region that was a hole: the allocated-extents list below,
        // taken now, would miss it, and the target would turn RW without it. A lock over the whole
        // volume, released at once, waits for every write in flight (new ones queue behind it for
        // that moment, and go to the target too).
        let bs = UInt64(volume.config.blockSize)
        await volume.unlockRange(await volume.lockRange(lba: 0, count: (volumeSize + bs - 1) / bs))
        // What to copy, layer by layer: each snapshot's layer (frozen: no lock needed), then the
        // head's, under the volume's range lock.
        var plan: [(layer: UInt32, extents: [Extent])] = []
        if delta, let rec = targetRecord, let d = try await dirtyExtents(source, rec, epoch) {
            if ownIntent {
                // And where the target itself may hold one side of a write the others lack (one
                // a crashed controller left half-done).
                var regions = RegionBitmap(volumeSize: volumeSize, granularity: RegionBitmap.dirtyGranularity)
                for e in d { regions.mark(offset: e.offset, length: e.length) }
                for e in try await intentMap(target, epoch).extents(volumeSize: volumeSize) {
                    regions.mark(offset: e.offset, length: e.length)
                }
                plan = [(LayerSelector.head, regions.extents(volumeSize: volumeSize))]
            } else {
                plan = [(LayerSelector.head, d)]
            }
        } else {
            if delta { throw .source("the dirty map went away") }
            for (i, s) in layers.snapshots.enumerated() {
                plan.append((UInt32(i + 1), try await allocated(source, epoch, layer: UInt32(i + 1), size: s.size)))
            }
            plan.append((LayerSelector.head, try await allocated(source, epoch, layer: LayerSelector.head, size: volumeSize)))
        }
        let total = plan.reduce(0) { $0 + $1.extents.reduce(0) { $0 + $1.length } }
        var progress = RebuildProgress(kind: delta ? "delta" : "full", source: source.description, totalBytes: total,
                                       copiedBytes: 0, startedAt: Double(monotonicNanos()) / 1e9, finished: false)
        await volume.rebuildProgress(key, progress)
        logger.notice("\(progress.kind) rebuild from \(source): \(plan.map(\.extents.count).reduce(0, +)) extents, \(total) bytes in \(plan.count) layer(s)")

        var pacer = RatePacer(bytesPerSecond: config.rebuildBytesPerSecond)
        let t0 = monotonicNanos()
        let chunk = UInt64(config.rebuildChunkBytes)
        // Chunks in flight at once: one chunk's round trip (read from the source, write to the
        // target) must not bound the rate when the replicas are busy with the volume's own I/O.
        let depth = max(1, config.rebuildChunksInFlight)
        var failure: RebuildError?
        for (layer, extents) in plan where failure == nil {
            var chunks = ChunkCursor(extents: extents, chunk: chunk)
            let head = layer == LayerSelector.head
            let holes = head && delta
            await withTaskGroup(of: ChunkResult.self) { group in
                var running = 0
                while true {
                    if failure == nil, running < depth, let (off, len) = chunks.next() {
                        if cancelled { failure = .cancelled; continue }
                        await pacer.admit(len, loop: loop)
                        running += 1
                        group.addTask {
                            await self.copyChunk(offset: off, length: len, from: source, epoch: epoch, layer: layer,
                                                 locked: head, holes: holes)
                        }
                        continue
                    }
                    guard running > 0, let r = await group.next() else { break }
                    running -= 1
                    switch r {
                    case .copied(let len):
                        progress.copiedBytes += len
                        await volume.rebuildProgress(key, progress, copied: len)
                    case .sourceFailed(let st):
                        if failure == nil {
                            await volume.sourceFailed(sourceKey, "rebuild read failed: \(st)")
                            failure = .source("read: \(st)")
                        }
                    case .targetFailed(let st):
                        if failure == nil { failure = .target("write: \(st)") }
                    }
                }
            }
        }
        if let failure { throw failure }
        // The layers copied must be the ones the source still has.
        guard try await snapshotList(source, epoch, "source").generation == layers.generation else {
            throw .source("its snapshots changed during the rebuild")
        }
        let secs = Double(monotonicNanos() &- t0) / 1e9
        let (fs, _) = await target.request(.flush, epoch: epoch)
        guard fs == .ok else { throw .target("flush: \(fs)") }
        // What the target marked agrees with the set now: settled once idle, after it is RW.
        await volume.settleLater(try await intentMap(target, epoch))
        try checkCancelled()
        progress.finished = true
        await volume.rebuildProgress(key, progress)
        let rateText = secs > 0 ? "\(UInt64(Double(progress.copiedBytes) / secs)) B/s" : "-"
        logger.notice("copied \(progress.copiedBytes) bytes in \((secs * 1000).rounded() / 1000) s (\(rateText), limit \(pacer.bytesPerSecond) B/s); switching to RW")
        guard await volume.promote(key, job: self, source: source) else { throw .cancelled }
    }

    private enum ChunkResult: Sendable {
        case copied(UInt64)
        case sourceFailed(WireStatus)
        case targetFailed(WireStatus)
    }

    /// Copies one chunk of one layer. The head's is copied under the range lock, so no write to
    /// it lands between the read and the write; with `holes`, the target's head is deallocated
    /// where the source's holds nothing (a delta: the target may hold a write the others lack).
    private func copyChunk(offset: UInt64, length: UInt64, from source: ReplicaLink, epoch: UInt64, layer: UInt32,
                           locked: Bool, holes: Bool) async -> ChunkResult {
        let bs = UInt64(volume.config.blockSize)
        guard locked else { return await copyPieces(offset: offset, length: length, from: source, epoch: epoch, layer: layer, holes: holes) }
        let lock = await volume.lockRange(lba: offset / bs, count: (length + bs - 1) / bs)
        let r = await copyPieces(offset: offset, length: length, from: source, epoch: epoch, layer: layer, holes: holes)
        await volume.unlockRange(lock)
        return r
    }

    private func copyPieces(offset: UInt64, length: UInt64, from source: ReplicaLink, epoch: UInt64, layer: UInt32,
                            holes: Bool) async -> ChunkResult {
        var pieces = [Extent(offset: offset, length: length)]
        if holes {
            let (st, bytes) = await source.request(.allocatedExtents, epoch: epoch, offset: offset, extent: length, layer: layer)
            guard st == .ok, let list = try? WireJSON.decode(ExtentList.self, bytes) else { return .sourceFailed(st) }
            pieces = list.extents
            var at = offset
            for e in list.extents + [Extent(offset: offset + length, length: 0)] {
                if e.offset > at {
                    let (us, _) = await target.request(.unmap, epoch: epoch, offset: at, extent: e.offset - at,
                                                       flags: [.rebuild], layer: layer)
                    if us != .ok { return .targetFailed(us) }
                }
                at = max(at, e.end)
            }
        }
        let buf = loop.buffers.take(Int(length))
        defer { loop.buffers.give(buf) }
        for p in pieces {
            let piece = IOBuffer(base: buf.base, count: Int(p.length))
            let rs = await source.read(offset: p.offset, into: piece, epoch: epoch, rebuild: true, layer: layer)
            if rs != .ok { return .sourceFailed(rs) }
            let (ws, _) = await target.request(.write, epoch: epoch, offset: p.offset, extent: p.length, flags: [.rebuild],
                                               data: piece, layer: layer)
            if ws != .ok { return .targetFailed(ws) }
        }
        return .copied(length)
    }

    private func snapshotList(_ link: ReplicaLink, _ epoch: UInt64, _ side: String) async throws(RebuildError) -> SnapshotList {
        let (st, bytes) = await link.request(.snapshots, epoch: epoch)
        guard st == .ok, let list = try? WireJSON.decode(SnapshotList.self, bytes) else {
            throw side == "source" ? .source("snapshots: \(st)") : .target("snapshots: \(st)")
        }
        return list
    }

    private func allocated(_ source: ReplicaLink, _ epoch: UInt64, layer: UInt32, size: UInt64) async throws(RebuildError) -> [Extent] {
        let (st, bytes) = await source.request(.allocatedExtents, epoch: epoch, offset: 0, extent: size, layer: layer)
        guard st == .ok, let list = try? WireJSON.decode(ExtentList.self, bytes) else { throw .source("allocated extents: \(st)") }
        return list.extents
    }

    private func dirtyExtents(_ source: ReplicaLink, _ rec: EpochRecord, _ epoch: UInt64) async throws(RebuildError) -> [Extent]? {
        let (st, bytes) = await source.request(.dirtyExtents, epoch: epoch,
                                               control: WireJSON.encode(DirtyQuery(member: targetID, base: rec)))
        guard st == .ok, let list = try? WireJSON.decode(ExtentList.self, bytes) else { throw .source("dirty extents: \(st)") }
        return list.found ? list.extents : nil
    }

    private func intentMap(_ link: ReplicaLink, _ epoch: UInt64) async throws(RebuildError) -> RegionBitmap {
        let (st, bytes) = await link.request(.intentMap, epoch: epoch)
        guard st == .ok, let bits = try? RegionBitmap(decoding: bytes, maxVolumeSize: await volume.desiredSize) else {
            throw .target("write-intent map: \(st)")
        }
        return bits.resized(toVolumeSize: await volume.size)
    }

    private func checkCancelled() throws(RebuildError) {
        if cancelled || !target.isUp { throw .cancelled }
    }
}

enum RebuildError: Error, CustomStringConvertible {
    case noSource
    case source(String)
    case target(String)
    case cancelled

    var description: String {
        switch self {
        case .noSource: return "no RW replica to copy from"
        case .source(let s): return "source: \(s)"
        case .target(let s): return "target: \(s)"
        case .cancelled: return "cancelled"
        }
    }
}

extension Volume {
    func startRebuild(_ m: Member) {
        guard decided, !stopping, m.mode == .err, m.rebuildJob == nil, let link = m.link, link.isUp, let id = m.id else { return }
        let job = RebuildJob(volume: self, key: m.key, target: link, targetID: id, targetRecord: m.persisted,
                             ownIntent: !ejectedHere.contains(id), logger: logger)
        m.rebuildJob = job
        loop.spawn { await job.run() }
    }

    /// The least loaded RW replica, its link, the epoch to use and the volume's size now.
    func rebuildSource() -> (Int, ReplicaLink, UInt64, UInt64)? {
        // While a resync runs its source is the one copy every region agrees with in the end.
        if let r = resync, let m = member(r.sourceKey), m.mode == .rw, m.isUp { return (m.key, m.link!, writeEpoch, size) }
        guard let m = rwMembers.min(by: { $0.link!.outstanding < $1.link!.outstanding }) else { return nil }
        return (m.key, m.link!, writeEpoch, size)
    }

    /// The target joins write-only: it gets every write from now on. One smaller than the volume
    /// (away during a grow, or one under way) is grown first; the check and the switch are in
    /// one actor turn, so no grow can slip between them.
    func setWriteOnly(_ key: Int, job: RebuildJob) async -> Bool {
        while true {
            guard let m = member(key), m.rebuildJob === job, m.isUp, m.mode == .err, let link = m.link else { return false }
            if m.size >= desiredSize {
                m.mode = .wo
                return true
            }
            let to = desiredSize
            let (st, _) = await link.request(.resize, epoch: writeEpoch, extent: to)
            guard st == .ok else {
                logger.warning("growing \(m.id ?? "?") to \(to) bytes before its rebuild: \(st)")
                return false
            }
            logger.notice("replica \(m.id ?? "?") grown to \(to) bytes before its rebuild")
            m.size = max(m.size, to)
        }
    }

    func rebuildProgress(_ key: Int, _ p: RebuildProgress, copied: UInt64 = 0) {
        counters.rebuildBytes += copied
        member(key)?.rebuild = p
    }

    func sourceFailed(_ key: Int, _ why: String) async {
        if let m = member(key) { await eject(m, why) }
    }

    func rebuildEnded(_ key: Int, job: RebuildJob, error: String) async {
        guard let m = member(key), m.rebuildJob === job else { return }
        m.rebuildJob = nil
        m.lastError = "rebuild: \(error)"
        if m.mode == .wo { m.mode = .err }
        // Try again while the replica stays connected (a new source, or after the volume regains one).
        guard !stopping else { return }
        loop.spawn {
            await self.loop.sleep(nanoseconds: 1_000_000_000)
            await self.retryRebuild(key)
        }
    }

    func retryRebuild(_ key: Int) {
        guard let m = member(key), m.mode == .err, m.rebuildJob == nil else { return }
        startRebuild(m)
    }

    /// Turns a caught-up replica RW: new writes wait (the gate) and those in flight drain, the
    /// target inherits the source's dirty maps for absent members, and a new epoch with it as a
    /// member is persisted on all. The pause is measured and reported.
    func promote(_ key: Int, job: RebuildJob, source: ReplicaLink) async -> Bool {
        guard let m = member(key), m.rebuildJob === job, m.mode == .wo, m.isUp, let id = m.id else { return false }
        let t0 = monotonicNanos()
        gateClosed = true
        defer { openGate() }
        await waitForDrain()
        guard m.mode == .wo, m.isUp else { return false }
        // The maps the source keeps for other absent members, so the new member's are complete.
        var inherit: [TrackRequest] = []
        let (st, bytes) = await source.request(.status, epoch: writeEpoch)
        if st == .ok, let s = try? WireJSON.decode(ReplicaStatus.self, bytes) {
            for map in s.dirtyMaps where map.member != id {
                let (ds, db) = await source.request(.dirtyExtents, epoch: writeEpoch,
                                                    control: WireJSON.encode(DirtyQuery(member: map.member, base: map.base)))
                if ds == .ok, let list = try? WireJSON.decode(ExtentList.self, db), list.found {
                    inherit.append(TrackRequest(member: map.member, base: map.base, initialExtents: list.extents))
                }
            }
        } else {
            return false
        }
        let healthy = rwMembers
        guard let current = issued ?? record else { return false }
        let ids = (healthy.compactMap(\.id) + [id]).sorted()
        let next = EpochRecord(epoch: current.epoch + 1, membershipID: Self.randomID(), members: ids)
        var updates = healthy.map { ($0, MembershipUpdate(record: next, stopTracking: [id])) }
        updates.append((m, MembershipUpdate(record: next, startTracking: inherit, dropAllMaps: true)))
        m.mode = .rw
        let ok = await change(next, updates)
        let pause = monotonicNanos() &- t0
        counters.lastSwitchPauseNanos = pause
        counters.longestSwitchPauseNanos = max(counters.longestSwitchPauseNanos, pause)
        guard m.mode == .rw, m.persisted.map({ $0.same(as: next) }) == true else { return false }
        m.rebuildJob = nil
        m.lastError = nil
        counters.rebuildsCompleted += 1
        logger.notice("replica \(id) is RW at \(next); writes paused \(pause / 1000) µs for the switch")
        _ = ok
        return true
    }
}

/// Walks a list of extents in chunks of at most `chunk` bytes.
struct ChunkCursor {
    let extents: [Extent]
    let chunk: UInt64
    private var index = 0
    private var offset: UInt64?

    init(extents: [Extent], chunk: UInt64) {
        self.extents = extents
        self.chunk = chunk
    }

    mutating func next() -> (UInt64, UInt64)? {
        while index < extents.count {
            let e = extents[index]
            let off = offset ?? e.offset
            if off < e.end {
                let len = min(chunk, e.end - off)
                offset = off + len
                return (off, len)
            }
            index += 1
            offset = nil
        }
        return nil
    }
}
