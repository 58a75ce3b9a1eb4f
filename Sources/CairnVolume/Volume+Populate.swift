import CairnIO
import CairnWire

/// A new volume's first data: copied from its populator (a snapshot of another volume, a
/// backup) to every replica before the first membership is persisted, paced at the rebuild
/// rate. Replicas that join meanwhile, or fail a write, are rebuilt from the others after.
extension Volume {
    /// Copies everything; returns the replicas that hold all of it, or nil after a failure (a
    /// transient one is tried again a few seconds later).
    func populateAll(_ p: any VolumePopulator, _ targets: [Member]) async -> [Member]? {
        var targets = targets
        var progress = RebuildProgress(kind: p.kind, source: p.source, totalBytes: 0, copiedBytes: 0,
                                       startedAt: Double(monotonicNanos()) / 1e9, finished: false)
        populate = progress
        let extents: [Extent]
        do { extents = try await p.open() } catch {
            populateFailed(p, error)
            return nil
        }
        progress.totalBytes = extents.reduce(0) { $0 + $1.length }
        populate = progress
        logger.notice("\(p.kind) from \(p.source): \(progress.totalBytes) bytes to copy to \(targets.count) replica(s)")
        var pacer = RatePacer(bytesPerSecond: config.rebuildBytesPerSecond)
        var chunks = ChunkCursor(extents: extents, chunk: UInt64(config.rebuildChunkBytes))
        let depth = max(1, config.rebuildChunksInFlight)
        var failure: PopulateError?
        let t0 = monotonicNanos()
        await withTaskGroup(of: Result<UInt64, PopulateError>.self) { group in
            var running = 0
            while true {
                if failure == nil, !stopping, running < depth, let (off, len) = chunks.next() {
                    await pacer.admit(len, loop: loop)
                    running += 1
                    let keys = targets.map(\.key)
                    group.addTask { await self.populateChunk(p, offset: off, length: len, to: keys) }
                    continue
                }
                guard running > 0, let r = await group.next() else { break }
                running -= 1
                switch r {
                case .success(let n):
                    progress.copiedBytes += n
                    populate = progress
                    if p.kind == "restore" { counters.restoreBytes += n }
                case .failure(let e):
                    if failure == nil { failure = e }
                }
            }
        }
        await p.close()
        if let failure {
            populateFailed(p, failure)
            return nil
        }
        if stopping { return nil }
        // Those that failed a write are left out (and rebuilt); the others make it durable.
        targets = targets.filter { $0.isUp && $0.lastError == nil }
        let f = FanOut(count: targets.count)
        for (i, m) in targets.enumerated() { m.link!.send(OutFrame(WireHeader(opcode: .flush, seq: 0, epoch: 0)), fan: f, slot: i) }
        await f.wait()
        targets = targets.enumerated().filter { f.results[$0.offset] == .ok }.map(\.element)
        guard !targets.isEmpty else {
            populateFailed(p, PopulateError("no replica took the copy"))
            return nil
        }
        progress.finished = true
        populate = progress
        populateError = nil
        let secs = Double(monotonicNanos() &- t0) / 1e9
        logger.notice("\(p.kind) from \(p.source) done: \(progress.copiedBytes) bytes in \((secs * 1000).rounded() / 1000) s on \(targets.compactMap(\.id).joined(separator: ","))")
        return targets
    }

    private func populateFailed(_ p: any VolumePopulator, _ error: PopulateError) {
        populateError = "\(p.kind) from \(p.source): \(error)"
        logger.error("\(populateError!)\(error.permanent ? "; not tried again" : "; trying again in 5 s")")
        guard !error.permanent else { return }
        loop.spawn {
            await self.loop.sleep(nanoseconds: 5_000_000_000)
            await self.decide()
        }
    }

    /// One chunk: read from the source, written to every target at once.
    private func populateChunk(_ p: any VolumePopulator, offset: UInt64, length: UInt64, to keys: [Int]) async -> Result<UInt64, PopulateError> {
        let targets = keys.compactMap { member($0) }
        let buf = loop.buffers.take(Int(length))
        defer { loop.buffers.give(buf) }
        do { try await p.read(offset: offset, into: buf) } catch { return .failure(error) }
        let live = targets.filter { $0.isUp && $0.lastError == nil }
        guard !live.isEmpty else { return .failure(PopulateError("every replica went away")) }
        let frame = OutFrame(WireHeader(opcode: .write, flags: [.rebuild], seq: 0, epoch: 0, offset: offset, extent: length),
                             data: buf, crc: wireChecksum(buf.base, buf.count), release: false)
        let f = FanOut(count: live.count)
        for (i, m) in live.enumerated() { m.link!.send(frame, fan: f, slot: i) }
        await f.wait()
        for (i, m) in live.enumerated() where f.results[i] != .ok {
            m.lastError = "\(p.kind) write failed: \(f.results[i].map { "\($0)" } ?? "?")"
            logger.warning("replica \(m.id ?? "?"): \(m.lastError!); it is rebuilt once the volume serves")
        }
        return .success(length)
    }
}
