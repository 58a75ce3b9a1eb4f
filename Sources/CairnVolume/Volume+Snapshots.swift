import CairnIO
import CairnWire
import Glibc

/// Snapshots of the whole volume, the same on every RW replica: new writes are held, those in
/// flight drain, every RW replica freezes its head under one id, and the writes go on. A
/// replica being rebuilt starts its rebuild again (its layers would not match); one that is away
/// gets the snapshots by a full rebuild when it returns.
extension Volume {
    /// A snapshot name: 1 to 63 of [A-Za-z0-9._-], not starting with '.' or '-'.
    public static func validSnapshotName(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), let first = name.utf8.first, first != UInt8(ascii: "."),
              first != UInt8(ascii: "-") else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
        }
    }

    /// The snapshots as the least busy RW replica lists them.
    public func snapshots() async throws(VolumeError) -> SnapshotList {
        guard decided, let m = rwMembers.min(by: { $0.link!.outstanding < $1.link!.outstanding }) else {
            throw .conflict("the volume is offline: no healthy replica to ask")
        }
        let (st, bytes) = await m.link!.request(.snapshots, epoch: writeEpoch)
        guard st == .ok, let list = try? WireJSON.decode(SnapshotList.self, bytes) else {
            throw .conflict("replica \(m.id ?? "?") did not list its snapshots: \(st)")
        }
        return list
    }

    /// Takes snapshot `name` on every RW replica at one point of the write stream; returns it,
    /// and how long new writes were held.
    public func createSnapshot(name: String) async throws(VolumeError) -> (SnapshotInfo, pauseNanos: UInt64) {
        guard Self.validSnapshotName(name) else {
            throw .invalid("a snapshot name is 1 to 63 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
        }
        try beginSnapshotOp()
        defer { snapshotBusy = false }
        guard rwCount >= config.minHealthy else {
            throw .conflict("read-only: \(rwCount) healthy replica(s), \(config.minHealthy) needed for a snapshot")
        }
        if try await snapshots().snapshots.contains(where: { $0.name == name }) {
            throw .conflict("volume \(config.name) has a snapshot \(name) already")
        }
        var g = SystemRandomNumberGenerator()
        let id = "snap-" + String(UInt64.random(in: 1...UInt64.max, using: &g), radix: 16)
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let create = SnapshotCreate(id: id, name: name, createdAt: Double(ts.tv_sec) + Double(ts.tv_nsec / 1_000_000) / 1000)

        let t0 = monotonicNanos()
        gateClosed = true
        await waitForDrain()
        await restartRebuilds("snapshot \(name) taken during its rebuild")
        let asked = rwCount
        let failed = await sendToRW(.snapshot, WireJSON.encode(create))
        openGate()
        if failed.count == asked {
            // None took it: nothing changed, no replica is rebuilt for it.
            throw .conflict("no replica took snapshot \(name): \(failed.map { "\($0.0.id ?? "?"): \($0.1)" }.joined(separator: ", "))")
        }
        let pause = monotonicNanos() &- t0
        counters.snapshotsTaken += 1
        counters.snapshotPause.record(nanos: pause)
        counters.lastSnapshotPauseNanos = pause
        for (m, st) in failed { await eject(m, "snapshot \(name) failed: \(st)") }
        guard rwCount >= config.minHealthy else {
            throw .conflict("snapshot \(name) reached \(rwCount) healthy replica(s), fewer than the \(config.minHealthy) needed")
        }
        logger.notice("snapshot \(name) (\(id)) taken; writes held \(pause / 1000) µs")
        let list = try await snapshots()
        guard let info = list.snapshots.first(where: { $0.id == id }) else {
            throw .conflict("snapshot \(name) is not listed after it was taken")
        }
        return (info, pause)
    }

    /// Deletes snapshot `name`: each RW replica merges its layer away in the background.
    public func deleteSnapshot(name: String, bytesPerSecond: UInt64? = nil) async throws(VolumeError) {
        try beginSnapshotOp()
        defer { snapshotBusy = false }
        guard let s = try await snapshots().snapshots.first(where: { $0.name == name }) else {
            throw .notFound("volume \(config.name) has no snapshot \(name)")
        }
        await restartRebuilds("snapshot \(name) deleted during its rebuild")
        let ref = SnapshotRef(id: s.id, bytesPerSecond: bytesPerSecond ?? config.rebuildBytesPerSecond)
        let asked = rwCount
        let failed = await sendToRW(.deleteSnapshot, WireJSON.encode(ref))
        if failed.count == asked {
            throw .conflict("no replica could delete snapshot \(name): \(failed.map { "\($0.0.id ?? "?"): \($0.1)" }.joined(separator: ", "))")
        }
        for (m, st) in failed { await eject(m, "deleting snapshot \(name) failed: \(st)") }
        logger.notice("snapshot \(name) (\(s.id)) deleted")
    }

    /// Makes the volume read as snapshot `name` on every RW replica: what was written since is
    /// dropped. The caller makes sure no initiator is logged in.
    public func revert(to name: String) async throws(VolumeError) {
        try beginSnapshotOp()
        defer { snapshotBusy = false }
        guard let s = try await snapshots().snapshots.first(where: { $0.name == name }) else {
            throw .notFound("volume \(config.name) has no snapshot \(name)")
        }
        guard !s.deleting else { throw .conflict("snapshot \(name) is being deleted") }
        guard rwCount >= config.minHealthy else {
            throw .conflict("read-only: \(rwCount) healthy replica(s), \(config.minHealthy) needed to revert")
        }
        // A replica still merging a deleted snapshot into its head would refuse, after the
        // others had reverted: asked of every one first.
        for m in rwMembers {
            let (st, bytes) = await m.link!.request(.snapshots, epoch: writeEpoch)
            guard st == .ok, let l = try? WireJSON.decode(SnapshotList.self, bytes) else { continue }
            if l.snapshots.contains(where: { $0.deleting && $0.id == l.headParent }) {
                throw .conflict("a deleted snapshot is still being merged into the volume on replica \(m.id ?? "?"): try again when it is gone")
            }
        }
        gateClosed = true
        defer { openGate() }
        await waitForDrain()
        await restartRebuilds("reverted to \(name) during its rebuild")
        var g = SystemRandomNumberGenerator()
        let headID = "head-" + String(UInt64.random(in: 1...UInt64.max, using: &g), radix: 16)
        let asked = rwCount
        let failed = await sendToRW(.revert, WireJSON.encode(SnapshotRef(id: s.id, headID: headID)))
        if failed.count == asked {
            // None took it: the volume is as it was.
            throw .conflict("no replica could revert to \(name): \(failed.map { "\($0.0.id ?? "?"): \($0.1)" }.joined(separator: ", "))")
        }
        // Those that did not take it are rebuilt from those that did.
        for (m, st) in failed { await eject(m, "revert to \(name) failed: \(st)") }
        guard rwCount >= config.minHealthy else {
            throw .conflict("the revert reached \(rwCount) healthy replica(s), fewer than the \(config.minHealthy) needed")
        }
        logger.notice("reverted to snapshot \(name) (\(s.id))")
    }

    private func beginSnapshotOp() throws(VolumeError) {
        guard decided else { throw .conflict("the volume is offline") }
        guard !snapshotBusy else { throw .conflict("another snapshot operation is under way") }
        guard resync == nil else { throw .conflict("a resync after the controller's restart is under way: try again when it is done") }
        snapshotBusy = true
    }

    /// Replicas being rebuilt start again: the layers they were given no longer match.
    private func restartRebuilds(_ why: String) async {
        for m in members where m.mode == .wo { await eject(m, why) }
    }

    /// Sends one control request to every RW replica at once; returns those that failed.
    private func sendToRW(_ op: WireOpcode, _ control: [UInt8]) async -> [(Member, WireStatus)] {
        let targets = rwMembers
        let epoch = writeEpoch
        var results: [WireStatus] = Array(repeating: .unavailable, count: targets.count)
        await withTaskGroup(of: (Int, WireStatus).self) { group in
            for (i, m) in targets.enumerated() {
                let link = m.link!
                group.addTask { (i, await self.request(link, op, epoch: epoch, control: control)) }
            }
            for await (i, st) in group { results[i] = st }
        }
        return zip(targets, results).filter { $0.1 != .ok }
    }

    /// One control request on the loop (a task group's child starts off it).
    private func request(_ link: ReplicaLink, _ op: WireOpcode, epoch: UInt64, control: [UInt8]) async -> WireStatus {
        await link.request(op, epoch: epoch, control: control).0
    }

    /// At start-up, after a controller died during a snapshot change: a snapshot some current
    /// replicas hold and others do not (a create cut short), or one marked deleted on some, is
    /// deleted on all that hold it; the head sits on one snapshot everywhere, or the replicas
    /// that disagree with most are rebuilt.
    func reconcileSnapshots(_ current: [Member]) async {
        var lists: [(Member, SnapshotList)] = []
        for m in current {
            let (st, bytes) = await m.link!.request(.snapshots, epoch: writeEpoch)
            if st == .ok, let l = try? WireJSON.decode(SnapshotList.self, bytes) { lists.append((m, l)) }
        }
        guard lists.count > 1 else { return }
        func common(_ lists: [(Member, SnapshotList)]) -> Set<String> {
            var ids = Set(lists[0].1.snapshots.filter { !$0.deleting }.map(\.id))
            for (_, l) in lists.dropFirst() { ids.formIntersection(l.snapshots.filter { !$0.deleting }.map(\.id)) }
            return ids
        }
        // The head each sits on once the snapshots not everywhere are gone (a create cut short
        // leaves the head on one of those): a revert cut short leaves some on another one.
        func head(_ l: SnapshotList, _ everywhere: Set<String>) -> String {
            let byID = Dictionary(l.snapshots.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var p = l.headParent
            var steps = 0
            while let x = p, !everywhere.contains(x), steps <= l.snapshots.count {
                p = byID[x]?.parent
                steps += 1
            }
            return (p ?? "") + "/" + (l.headID ?? "")
        }
        var everywhere = common(lists)
        var votes: [String: Int] = [:]
        for (_, l) in lists { votes[head(l, everywhere), default: 0] += 1 }
        if votes.count > 1, let top = votes.max(by: { ($0.value, $0.key) < ($1.value, $1.key) })?.key {
            for (m, l) in lists where head(l, everywhere) != top {
                await eject(m, "its head is not the others' (a revert cut short): rebuilt from them")
            }
            lists.removeAll { head($0.1, everywhere) != top }
            everywhere = common(lists)
        }
        for (m, l) in lists {
            for s in l.snapshots where !everywhere.contains(s.id) {
                logger.notice("snapshot \(s.name) (\(s.id)) is not on every replica: deleted on \(m.id ?? "?")")
                let ref = SnapshotRef(id: s.id, bytesPerSecond: config.rebuildBytesPerSecond)
                let (st, _) = await m.link!.request(.deleteSnapshot, epoch: writeEpoch, control: WireJSON.encode(ref))
                if st != .ok { await eject(m, "deleting snapshot \(s.name) failed: \(st)") }
            }
        }
    }
}
