import CairnBlock
import CairnIO
import CairnWire

// Write intent: what keeps the replicas the same after a controller crash (invariant 3).
//
// A write the controller had sent to some replicas and not others when it died was never
// acknowledged, but it left them different, and a restarted controller that read from any of
// them could return the new data once and the old data the next time. So every replica marks
// each region a write reaches in its write-intent map (persisted before the write, like a dirty
// map), and the controller settles a region (the replicas unmark it) only once it has gone a
// settle interval without writes and has none in flight: then every healthy member holds the
// same data there. A starting controller unions the maps of the replicas it serves from, and
// those regions are resynced: copied from one of them (the source) to the others, under the
// range lock like a rebuild, while reads of the regions not yet copied go to the source only.
// Under a steady random load the marks stay set and cost nothing; a crash then resyncs more.

/// A resync in progress: the regions still to copy from `sourceKey` to the other members.
final class Resync {
    var sourceKey: Int
    var pending: RegionBitmap
    /// Bumped when the source changes; a copy loop of an older generation stops.
    var generation = 0
    var progress: RebuildProgress

    init(sourceKey: Int, pending: RegionBitmap, progress: RebuildProgress) {
        self.sourceKey = sourceKey
        self.pending = pending
        self.progress = progress
    }
}

extension Volume {
    /// At most this many extents stand for a bitmap in a membership update (a coarser list
    /// covers more, never less).
    static let maxTrackedExtents = 4096

    /// Notes a write (or unmap) about to be sent, for the settle ticks.
    func markWritten(offset: UInt64, length: UInt64) {
        written.mark(offset: offset, length: length)
    }

    /// Regions to settle once idle: copied by a rebuild or a resync, or marked on a replica by a
    /// controller before this one.
    func settleLater(_ bits: RegionBitmap) {
        settling.formUnion(bits)
    }

    /// Regions that must not be settled now: a write in flight (a held range) or a resync to do.
    private func unsettled() -> RegionBitmap {
        var b = RegionBitmap(volumeSize: size)
        for h in locks.held { b.mark(offset: h.lba * bs, length: (h.end - h.lba) * bs) }
        if let r = resync { b.formUnion(r.pending) }
        return b
    }

    /// One settle tick: the regions written before the last tick and not since, with nothing in
    /// flight, are settled on every RW replica; the rest wait for the next tick.
    func settleTick() {
        guard decided, !settling.isEmpty || !written.isEmpty else { return }
        var ready = settling
        ready.subtract(written)
        ready.subtract(unsettled())
        settling.subtract(ready)
        settling.formUnion(written)
        written.removeAll()
        if !ready.isEmpty { _ = sendSettle(ready) }
    }

    /// Sends `bits` to every RW replica, in this actor turn: a write sent later marks its region
    /// again after the replica unmarked it. WO replicas keep their marks (a rebuild in progress
    /// still relies on them); they are settled when they turn RW.
    func sendSettle(_ bits: RegionBitmap) -> FanOut {
        let targets = rwMembers
        let f = FanOut(count: targets.count)
        let frame = OutFrame(WireHeader(opcode: .settle, seq: 0, epoch: writeEpoch), control: bits.encoded)
        for (i, m) in targets.enumerated() { m.link!.send(frame, fan: f, slot: i) }
        counters.settledRegions += UInt64(bits.count)
        return f
    }

    func startSettleTicks() {
        loop.spawn {
            while await !self.stopping {
                await self.loop.sleep(nanoseconds: self.config.settleIntervalNanos)
                await self.settleTick()
            }
        }
    }

    /// At a clean shutdown, with nothing in flight: every region written is settled.
    func settleAll() async {
        settling.formUnion(written)
        written.removeAll()
        settling.subtract(unsettled())
        guard !settling.isEmpty, rwCount > 0 else { return }
        await sendSettle(settling).wait()
        settling.removeAll()
    }

    /// The union of `members`' write-intent maps (members that do not answer are skipped: they
    /// are ejected and rebuilt, and a rebuild copies their own marked regions too).
    func intentUnion(_ members: [Member], epoch: UInt64) async -> RegionBitmap {
        var union = RegionBitmap(volumeSize: size)
        for m in members {
            guard let link = m.link else { continue }
            let (st, bytes) = await link.request(.intentMap, epoch: epoch)
            // A replica of another size (one not grown yet) covers what it holds.
            if st == .ok, let b = try? RegionBitmap(decoding: bytes, maxVolumeSize: desiredSize) {
                union.formUnion(b.resized(toVolumeSize: size))
            } else {
                logger.warning("replica \(m.id ?? "?"): no write-intent map (\(st))")
            }
        }
        return union
    }

    // MARK: - Resync

    /// Starts copying `suspect` from one RW member to the others.
    func startResync(_ suspect: RegionBitmap) {
        guard let source = rwMembers.first else { return }
        let total = suspect.extents(volumeSize: size).reduce(0) { $0 + $1.length }
        let r = Resync(sourceKey: source.key, pending: suspect,
                       progress: RebuildProgress(kind: "resync", source: "\(source.address)", totalBytes: total, copiedBytes: 0,
                                                 startedAt: Double(monotonicNanos()) / 1e9, finished: false))
        resync = r
        logger.notice("resync: \(suspect.count) regions (\(total) bytes) a write may have reached on some replicas only; copying from \(source.id ?? "?")")
        let g = r.generation
        loop.spawn { await self.runResync(generation: g) }
    }

    /// The resync's source was ejected: the next RW member takes over what is left.
    func resyncSourceLost(_ m: Member) {
        guard let r = resync, r.sourceKey == m.key else { return }
        guard let next = rwMembers.first(where: { $0 !== m }) else {
            logger.warning("resync stopped: no RW replica left to copy from")
            resync = nil
            return
        }
        r.sourceKey = next.key
        r.generation += 1
        r.progress.source = "\(next.address)"
        logger.notice("resync: source \(m.id ?? "?") lost; copying the rest from \(next.id ?? "?")")
        let g = r.generation
        loop.spawn { await self.runResync(generation: g) }
    }

    /// The member a read of [offset, offset+length) must use while a resync is running: the
    /// source, when the range touches a region not copied yet.
    func resyncSource(offset: UInt64, length: UInt64) -> Member? {
        guard let r = resync, r.pending.overlaps(offset: offset, length: length),
              let m = member(r.sourceKey), m.mode == .rw, m.isUp else { return nil }
        return m
    }

    private func runResync(generation: Int) async {
        guard let r = resync, r.generation == generation else { return }
        let chunk = UInt64(config.rebuildChunkBytes)
        var pacer = RatePacer(bytesPerSecond: config.rebuildBytesPerSecond)
        for e in r.pending.extents(volumeSize: size) {
            var off = e.offset
            while off < e.end {
                guard resync === r, r.generation == generation, !stopping else { return }
                guard let source = member(r.sourceKey), source.mode == .rw, source.isUp, let link = source.link else { return }
                let len = min(chunk, e.end - off)
                await pacer.admit(len, loop: loop)
                let lock = await lockRange(lba: off / bs, count: len / bs)
                guard resync === r, r.generation == generation else { unlockRange(lock); return }
                let buf = loop.buffers.take(Int(len))
                let st = await link.read(offset: off, into: buf, epoch: writeEpoch, rebuild: true)
                if st == .ok {
                    // Plain writes, not rebuild copies: the targets mark the change in the dirty
                    // maps they keep for members absent since before this controller, whose own
                    // data there may be the old side.
                    for m in members where m !== source && (m.mode == .rw || m.mode == .wo) && m.isUp {
                        let (ws, _) = await m.link!.request(.write, epoch: writeEpoch, offset: off, extent: len, data: buf)
                        if ws != .ok { await eject(m, "resync write failed: \(ws)") }
                    }
                }
                loop.buffers.give(buf)
                if st != .ok {
                    unlockRange(lock)
                    await eject(source, "resync read failed: \(st)")  // the next member takes over
                    return
                }
                r.pending.clear(offset: off, length: len)
                settling.mark(offset: off, length: len)
                unlockRange(lock)
                r.progress.copiedBytes += len
                counters.resyncBytes += len
                off += len
            }
        }
        guard resync === r, r.generation == generation else { return }
        r.progress.finished = true
        lastResync = r.progress
        resync = nil
        logger.notice("resync done: \(r.progress.copiedBytes) bytes copied; the replicas agree again")
    }
}
