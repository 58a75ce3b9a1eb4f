import CairnBlock
import CairnIO
import CairnWire

// Online expansion. Every replica that receives writes grows before the volume does: the
// rebuilding ones (WO) with a `resize` request, the RW ones at a new epoch whose record carries
// the size (persisted in one write with it). Only then does the volume serve the new size and
// tell the SCSI layer, which raises CAPACITY DATA HAS CHANGED on every I_T nexus. A replica that
// was away is grown when it returns, before its rebuild (`setWriteOnly`). Volumes never shrink.

extension Volume {
    /// Grows the volume to `newSize` bytes, online. Refused: a size that is not a multiple of
    /// the block size (`invalid`), a smaller one, a volume that cannot take writes now, or a grow
    /// while another is under way (`conflict`). The same size again is a no-op.
    public func grow(to newSize: UInt64) async throws(VolumeError) {
        guard newSize > 0, newSize % bs == 0 else {
            throw .invalid("\(newSize) bytes is not a positive multiple of the block size (\(bs))")
        }
        guard newSize >= size else { throw .conflict("the volume is \(size) bytes: it cannot shrink to \(newSize)") }
        guard newSize > size else { return }
        guard !resizing else { throw .conflict("a grow to \(desiredSize) bytes is under way") }
        guard decided, rwCount >= config.minHealthy else {
            throw .conflict("the volume cannot grow while it takes no writes (\(state.rawValue))")
        }
        resizing = true
        defer { resizing = false }
        desiredSize = max(desiredSize, newSize)
        let from = size
        logger.notice("growing from \(from) to \(newSize) bytes")

        // Rebuilding replicas first: they get the writes past the old end too.
        let rebuilding = members.filter { $0.mode == .wo && $0.isUp }
        let f = FanOut(count: rebuilding.count)
        for (i, m) in rebuilding.enumerated() {
            m.link!.send(OutFrame(WireHeader(opcode: .resize, seq: 0, epoch: writeEpoch, extent: newSize)), fan: f, slot: i)
        }
        await f.wait()
        for (i, m) in rebuilding.enumerated() {
            if f.results[i] == .ok { m.size = max(m.size, newSize) } else { await eject(m, "grow failed: \(f.results[i].map { "\($0)" } ?? "?")") }
        }
        // Then the RW set, at a new epoch that carries the size.
        let healthy = rwMembers
        guard let current = issued ?? record, healthy.count >= config.minHealthy else {
            throw .conflict("the volume lost its quorum while growing")
        }
        let next = EpochRecord(epoch: current.epoch + 1, membershipID: Self.randomID(), members: healthy.compactMap(\.id).sorted())
        await change(next, healthy.map { ($0, MembershipUpdate(record: next, size: newSize)) })
        for m in healthy where m.mode == .rw && m.isUp { m.size = max(m.size, newSize) }
        guard rwCount >= config.minHealthy else {
            throw .conflict("too few replicas could grow: \(rwCount) of \(config.minHealthy) needed")
        }
        setSize(newSize)
        logger.notice("grown to \(newSize) bytes")
        await capacityObserver?(newSize)
    }

    func growAtStart(_ to: UInt64) async {
        do throws(VolumeError) { try await grow(to: to) } catch { logger.error("growing to \(to) bytes: \(error)") }
    }

    /// The size served from now on, with the bitmaps that cover it.
    func setSize(_ newSize: UInt64) {
        size = newSize
        written = written.resized(toVolumeSize: newSize)
        settling = settling.resized(toVolumeSize: newSize)
        if let r = resync { r.pending = r.pending.resized(toVolumeSize: newSize) }
    }

    /// `observer` is told each new size from now on (and at once, if the size already differs
    /// from the one the volume was started with).
    public func observeCapacity(_ observer: @escaping @Sendable (UInt64) async -> Void) async {
        capacityObserver = observer
        if size != config.size { await observer(size) }
    }
}
