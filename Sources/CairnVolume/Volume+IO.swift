import CairnBlock
import CairnIO
import CairnWire
import Glibc

extension Volume {
    var writeEpoch: UInt64 { issued?.epoch ?? 0 }

    /// TEST UNIT READY's answer: becoming ready until the newest data is found (start-up), not
    /// ready while no RW replica is up, ready otherwise (a read-only volume still serves reads).
    func readiness() -> BlockStoreError? {
        guard decided else { return .becomingReady("the newest data is not reachable yet") }
        return rwCount == 0 ? .unavailable("no healthy replica") : nil
    }

    func checkWritable() throws(BlockStoreError) {
        guard decided else { throw .becomingReady("the newest data is not reachable yet") }
        let rw = rwCount
        guard rw >= config.minHealthy else {
            throw .unavailable("read-only: \(rw) healthy replica(s), \(config.minHealthy) needed for writes")
        }
    }

    /// The SCSI layer checked the range against the size it announced; until a grow is announced
    /// (or after the replicas turned out smaller at start-up) that may be more than the replicas hold.
    @inline(__always)
    func checkRange(_ lba: UInt64, _ length: UInt64) throws(BlockStoreError) {
        guard lba * bs <= size, length <= size - lba * bs else {
            throw .unavailable("beyond the \(size) bytes every replica holds now")
        }
    }

    /// Writes to every replica in the set (RW and rebuilding), overlapping writes one at a time
    /// so all replicas apply them in one order (invariant 2). Acknowledged once every RW replica
    /// has it or was ejected, and a quorum still holds (invariants 1 and 5).
    func write(lba: UInt64, count: Int, from buffer: IOBuffer, fua: Bool) async throws(BlockStoreError) {
        let t0 = monotonicNanos()
        if config.testWriteDelayNanos > 0 {
            while monotonicNanos() &- t0 < config.testWriteDelayNanos {}
        }
        await waitForGate()
        try checkWritable()
        let length = count * config.blockSize
        try checkRange(lba, UInt64(length))
        let lock = await lockRange(lba: lba, count: UInt64(count))
        markWritten(offset: lba * bs, length: UInt64(length))
        let data = IOBuffer(base: buffer.base, count: length)
        let frame = OutFrame(WireHeader(opcode: .write, flags: fua ? [.fua] : [], seq: 0, epoch: writeEpoch,
                                        offset: lba * bs, extent: UInt64(length)),
                             data: data, crc: wireChecksum(data.base, length), release: false)
        try await fanOut(frame, lock: lock, what: "write")
        counters.writes += 1
        counters.writeBlocks += UInt64(count)
        let dt = monotonicNanos() &- t0
        counters.writeNanos &+= dt
        counters.writeLatency.record(nanos: dt)
    }

    func unmap(lba: UInt64, count: UInt64) async throws(BlockStoreError) {
        await waitForGate()
        try checkWritable()
        try checkRange(lba, count * bs)
        let lock = await lockRange(lba: lba, count: count)
        markWritten(offset: lba * bs, length: count * bs)
        let frame = OutFrame(WireHeader(opcode: .unmap, seq: 0, epoch: writeEpoch, offset: lba * bs, extent: count * bs))
        try await fanOut(frame, lock: lock, what: "unmap")
    }

    /// Sends `frame` to every replica receiving writes, waits for all, ejects the ones that
    /// failed, and releases `lock` only then (the ejection records the writes in flight).
    private func fanOut(_ frame: OutFrame, lock: UInt64, what: String) async throws(BlockStoreError) {
        let f = takeFanOut()
        for m in members where (m.mode == .rw || m.mode == .wo) && m.isUp { f.targets.append(m) }
        f.armForTargets()
        for (i, m) in f.targets.enumerated() { m.link!.send(frame, fan: f, slot: i) }
        await f.wait()
        var noSpace = false
        for (i, m) in f.targets.enumerated() where f.results[i] != .ok {
            if f.results[i] == .noSpace { noSpace = true }
            await eject(m, "\(what) failed: \(f.results[i].map { "\($0)" } ?? "?")")
        }
        recycle(f)
        await settled()
        unlockRange(lock)
        let rw = rwCount
        guard rw >= config.minHealthy else {
            if noSpace && rw == 0 { throw .noSpace }
            throw .unavailable("\(what) not acknowledged: \(rw) healthy replica(s), \(config.minHealthy) needed")
        }
    }

    func takeFanOut() -> FanOut { spareFanOuts.popLast() ?? FanOut() }

    func recycle(_ f: FanOut) {
        f.clear()
        if spareFanOuts.count < 256 { spareFanOuts.append(f) }
    }

    /// Reads from the least loaded RW replica; on error, ejects it and tries the next.
    func read(lba: UInt64, count: Int, into buffer: IOBuffer) async throws(BlockStoreError) {
        let t0 = monotonicNanos()
        guard decided else { throw .becomingReady("the newest data is not reachable yet") }
        let length = count * config.blockSize
        try checkRange(lba, UInt64(length))
        let dst = IOBuffer(base: buffer.base, count: length)
        while true {
            // A region a resync has not copied yet is read from its source only.
            var best = resyncSource(offset: lba * bs, length: UInt64(length))
            if best == nil {
                for m in members where m.mode == .rw && m.isUp {
                    if best == nil || m.link!.outstanding < best!.link!.outstanding { best = m }
                }
            }
            guard let m = best else { throw .unavailable("no healthy replica to read from") }
            let st = await m.link!.read(offset: lba * bs, into: dst, epoch: writeEpoch)
            if st == .ok {
                counters.reads += 1
                counters.readBlocks += UInt64(count)
                let dt = monotonicNanos() &- t0
                counters.readNanos &+= dt
                counters.readLatency.record(nanos: dt)
                return
            }
            if st == .badRequest { throw .medium(read: true, "replica refused the read") }
            await eject(m, "read failed: \(st)")
        }
    }

    /// Makes every completed write durable on every RW replica.
    func flush() async throws(BlockStoreError) {
        guard decided else { throw .becomingReady("the newest data is not reachable yet") }
        let f = takeFanOut()
        for m in members where m.mode == .rw && m.isUp { f.targets.append(m) }
        f.armForTargets()
        let frame = OutFrame(WireHeader(opcode: .flush, seq: 0, epoch: writeEpoch))
        for (i, m) in f.targets.enumerated() { m.link!.send(frame, fan: f, slot: i) }
        await f.wait()
        for (i, m) in f.targets.enumerated() where f.results[i] != .ok {
            await eject(m, "flush failed: \(f.results[i].map { "\($0)" } ?? "?")")
        }
        recycle(f)
        await settled()
        guard rwCount > 0 else { throw .unavailable("no healthy replica") }
    }

    /// Provisioning state at `lba`, from one RW replica's allocated extents.
    func allocation(at lba: UInt64) async throws(BlockStoreError) -> (mapped: Bool, count: UInt64) {
        guard decided else { throw .becomingReady("the newest data is not reachable yet") }
        guard let m = rwMembers.min(by: { $0.link!.outstanding < $1.link!.outstanding }) else {
            throw .unavailable("no healthy replica")
        }
        let blocks = size / bs
        let window = min(blocks - lba, (1 << 30) / bs)
        let (st, bytes) = await m.link!.request(.allocatedExtents, epoch: writeEpoch, offset: lba * bs, extent: window * bs)
        guard st == .ok, let list = try? WireJSON.decode(ExtentList.self, bytes) else {
            throw .medium(read: true, "allocation query failed: \(st)")
        }
        let off = lba * bs
        guard let first = list.extents.first else { return (false, window) }
        if first.offset <= off { return (true, max(1, (first.end - off) / bs)) }
        return (false, max(1, (first.offset - off) / bs))
    }

    // MARK: - Status

    public func snapshot() -> VolumeSnapshot {
        let replicas = members.map { m in
            ReplicaInfo(address: "\(m.address)", id: m.id, mode: m.mode, connected: m.isUp, lastError: m.lastError,
                        rebuild: m.rebuild, outstanding: m.link?.outstanding ?? 0)
        }
        return VolumeSnapshot(name: config.name, size: size, blockSize: config.blockSize, state: state,
                              epoch: record?.epoch ?? 0, members: record?.members ?? [], minHealthy: config.minHealthy,
                              replicas: replicas, counters: counters,
                              uptimeSeconds: Double(monotonicNanos() &- startedAt) / 1e9,
                              resync: resync?.progress ?? lastResync, populate: populate, populateError: populateError)
    }
}
