import CairnBlock
import CairnIO
import CairnWire
import Glibc

/// Snapshots: taken by freezing the head (no data copied), deleted by merging the layer into the
/// layers on it in the background, paced; a revert starts a new head on a snapshot. Each change
/// is one atomic metadata write (invariant 8): new layer files are made durable before the
/// metadata names them, and files it no longer names are removed after (or at the next start).
extension ReplicaStore {
    public func snapshotList() -> SnapshotList {
        let list = meta.snapshotList.map { e in
            SnapshotInfo(id: e.id, name: e.name, createdAt: e.createdAt, parent: e.parent, size: e.size,
                         allocatedBytes: layers.slotOf[e.id].flatMap { layers.file($0)?.allocatedBytes } ?? 0,
                         deleting: e.deleting == true)
        }
        return SnapshotList(generation: generation, headParent: meta.headParent, headID: meta.headID,
                            headAllocatedBytes: min(data.allocatedBytes, meta.size), snapshots: list)
    }

    /// Freezes the head as snapshot `c` (durable first) and starts a new, empty head on it. The
    /// same id again is a no-op (a controller retrying after a crash).
    public func createSnapshot(_ c: SnapshotCreate, epoch: UInt64) async throws(WireStatus) {
        try checkEpoch(epoch)
        if meta.snapshotList.contains(where: { $0.id == c.id }) { return }
        guard !meta.snapshotList.contains(where: { $0.name == c.name }) else { throw .conflict }
        guard meta.snapshotList.count < Int(UInt16.max) - 2 else { throw .conflict }
        await drainHeadWrites()
        // No flush of the head first: what it holds is on the device as a write acknowledged
        // without FUA is (O_DIRECT); a power loss takes from the frozen layer what it would
        // have taken from the volume. The metadata naming the layers is what must be durable.
        let (file, f) = try await takeSpareHead()
        var next = meta
        next.snapshots = meta.snapshotList + [ReplicaMetadata.SnapshotEntry(
            id: c.id, name: c.name, createdAt: c.createdAt, file: meta.headFile, parent: meta.headParent, size: meta.size)]
        next.head = file
        next.headParent = c.id
        // Checked again after the awaits: a newer controller (its epoch persisted meanwhile)
        // must not find a snapshot appear after it reconciled them.
        do { try checkEpoch(epoch) } catch {
            await f.close()
            unlink(directory + "/" + file)
            throw error
        }
        do { try next.save(metaPath, directory: directory) } catch {
            await f.close()
            unlink(directory + "/" + file)
            logger.error("saving metadata: \(error)")
            throw .ioError
        }
        meta = next
        layers.freezeHead(as: c.id, newHead: f)
        data = f
        generation += 1
        logger.notice("snapshot \(c.name) (\(c.id)) taken; \(next.snapshotList.count) snapshot(s)")
        // The next snapshot's head, made now rather than while writes wait.
        loop.spawn { await self.prepareSpareHead() }
    }

    /// An empty layer file of the volume's size for the next snapshot's head, made ahead.
    func prepareSpareHead() async {
        guard spareHead == nil else { return }
        if let made = try? await newLayerFile(size: meta.size) {
            if spareHead == nil { spareHead = made } else { await made.1.close(); unlink(directory + "/" + made.0) }
        }
    }

    /// The spare head when it has the volume's size (a grow since makes another), else a new file.
    private func takeSpareHead() async throws(WireStatus) -> (String, FileBlockStore) {
        if let s = spareHead {
            spareHead = nil
            if s.1.blockCount * 512 == meta.size { return s }
            await s.1.close()
            unlink(directory + "/" + s.0)
        }
        return try await newLayerFile(size: meta.size)
    }

    /// Removes the spare head (a clean stop; after a crash the next start removes it).
    func dropSpareHead() async {
        guard let s = spareHead else { return }
        spareHead = nil
        await s.1.close()
        unlink(directory + "/" + s.0)
    }

    /// Marks the snapshot deleted (durably) and merges it away in the background. Unknown ids
    /// are not an error: the delete may be a retry.
    public func deleteSnapshot(_ r: SnapshotRef, epoch: UInt64) throws(WireStatus) {
        try checkEpoch(epoch)
        guard let i = meta.snapshotList.firstIndex(where: { $0.id == r.id }) else { return }
        if let rate = r.bytesPerSecond, rate > 0 { mergeRate = rate }
        if meta.snapshotList[i].deleting != true {
            var next = meta
            next.snapshots![i].deleting = true
            do { try next.save(metaPath, directory: directory) } catch {
                logger.error("saving metadata: \(error)")
                throw .ioError
            }
            meta = next
            generation += 1
            logger.notice("snapshot \(next.snapshotList[i].name) (\(r.id)) deleted; merging its layer in the background")
        }
        if !merging { loop.spawn { await self.runMerges() } }
    }

    /// Drops the head and starts a new one on snapshot `r`: the volume reads as it did when it
    /// was taken. Dirty maps go too: an absent member can no longer catch up by a delta.
    public func revert(_ r: SnapshotRef, epoch: UInt64) async throws(WireStatus) {
        try checkEpoch(epoch)
        guard let s = meta.snapshotList.first(where: { $0.id == r.id }) else { throw .notFound }
        guard s.deleting != true else { throw .conflict }
        // A merge writing into the head would write into the dropped one.
        guard !meta.snapshotList.contains(where: { $0.deleting == true && $0.id == meta.headParent }) else {
            throw .conflict
        }
        await drainHeadWrites()
        let (file, f) = try await newLayerFile(size: meta.size)
        var next = meta
        let oldFile = meta.headFile
        next.head = file
        next.headParent = s.id
        next.headID = r.headID
        next.maps = []
        do { try checkEpoch(epoch) } catch {
            await f.close()
            unlink(directory + "/" + file)
            throw error
        }
        do { try next.save(metaPath, directory: directory) } catch {
            await f.close()
            unlink(directory + "/" + file)
            logger.error("saving metadata: \(error)")
            throw .ioError
        }
        meta = next
        for m in maps.values { unlink(m.path) }
        maps = [:]
        await waitForReads(layers.head)
        let old = layers.replaceHead(with: f)
        data = f
        layers.rechain(meta)
        layers.reindex(meta)
        await old.close()
        unlink(directory + "/" + oldFile)
        generation += 1
        logger.notice("reverted to snapshot \(s.name) (\(s.id))")
    }

    /// A wiped replica takes a rebuild source's snapshots as empty layers under its head, in the
    /// same order and tree; the rebuild fills them.
    public func installSnapshots(_ list: SnapshotList, epoch: UInt64) async throws(WireStatus) {
        try checkEpoch(epoch)
        guard meta.snapshotList.isEmpty, meta.headParent == nil else { throw .conflict }
        guard list.snapshots.allSatisfy({ $0.size > 0 && $0.size <= meta.size && $0.size % Self.alignment == 0 }),
              Set(list.snapshots.map(\.id)).count == list.snapshots.count else { throw .badRequest }
        var entries: [ReplicaMetadata.SnapshotEntry] = []
        var opened: [(String, FileBlockStore)] = []
        for s in list.snapshots {
            let made: (String, FileBlockStore)
            do { made = try await newLayerFile(size: s.size) } catch {
                for (file, f) in opened { await f.close(); unlink(directory + "/" + file) }
                throw error
            }
            opened.append(made)
            entries.append(.init(id: s.id, name: s.name, createdAt: s.createdAt, file: made.0, parent: s.parent, size: s.size))
        }
        var next = meta
        next.snapshots = entries
        next.headParent = list.headParent
        next.headID = list.headID
        do { try next.save(metaPath, directory: directory) } catch {
            for (file, f) in opened { await f.close(); unlink(directory + "/" + file) }
            throw .ioError
        }
        meta = next
        for (i, s) in list.snapshots.enumerated() { layers.addSnapshot(s.id, opened[i].1) }
        layers.rechain(meta)
        layers.reindex(meta)
        generation += 1
        logger.notice("\(entries.count) snapshot layer(s) installed for a rebuild")
    }

    /// A new empty layer file of `size` bytes, durable (the metadata names it next).
    private func newLayerFile(size: UInt64) async throws(WireStatus) -> (String, FileBlockStore) {
        var n = meta.nextLayer ?? 1
        while access(directory + "/layer-\(n).img", F_OK) == 0 { n += 1 }
        let file = "layer-\(n).img"
        meta.nextLayer = n + 1
        do {
            let f = try FileBlockStore(path: directory + "/" + file, size: size, blockSize: 512, loop: loop, logger: logger)
            try await f.flush()
            return (file, f)
        } catch {
            unlink(directory + "/" + file)
            throw failed(error, "creating \(file)")
        }
    }

    /// Closes and removes the layers of `dropped` (no longer in the metadata).
    func dropLayers(_ dropped: [ReplicaMetadata.SnapshotEntry]) async {
        for e in dropped {
            if let s = layers.slotOf[e.id] { await waitForReads(s) }
            if let f = layers.removeSnapshot(e.id) { await f.close() }
            unlink(directory + "/" + e.file)
        }
        layers.rechain(meta)
        layers.reindex(meta)
        generation += 1
    }

    // MARK: - Merges

    func stopMerges() async {
        stopMerging = true
        while merging { await loop.sleep(nanoseconds: 5_000_000) }
        stopMerging = false
    }

    /// Merges every snapshot marked deleted, oldest first, one at a time.
    func runMerges() async {
        guard !merging else { return }
        merging = true
        defer { merging = false }
        while !stopMerging, let s = meta.snapshotList.first(where: { $0.deleting == true }) {
            do {
                try await merge(s)
            } catch {
                logger.error("merging snapshot \(s.name) (\(s.id)) away: \(error); it stays marked deleted until the next start")
                return
            }
        }
    }

    /// Copies what `s`'s layer holds and a child's does not into each child (the layers whose
    /// parent it is, the head among them), paced; then the children sit on `s`'s parent, and
    /// its layer goes. Into the head, a range is copied while writes to it wait (`openWindow`),
    /// and only where the head holds nothing, so no newer write is overwritten.
    private func merge(_ s: ReplicaMetadata.SnapshotEntry) async throws(WireStatus) {
        guard let sSlot = layers.slotOf[s.id], let sFile = layers.file(sSlot) else { return }
        // One child that is a snapshot holding less than this one: its data moves into this
        // layer's file instead, which becomes the child's (deleting the oldest of a long chain
        // would otherwise copy the data of all before it, again and again).
        let kids = meta.snapshotList.filter { $0.parent == s.id }
        if kids.count == 1, meta.headParent != s.id, let c = kids.first, let cSlot = layers.slotOf[c.id],
           let cFile = layers.file(cSlot), cFile.allocatedBytes < sFile.allocatedBytes {
            try await mergeChildInto(s, sSlot, sFile, child: c, cSlot, cFile)
            return
        }
        let children = meta.snapshotList.filter { $0.parent == s.id }.compactMap { layers.slotOf[$0.id] }
            + (meta.headParent == s.id ? [layers.head] : [])
        let chunk: UInt64 = 1 << 20
        let buf = loop.buffers.take(Int(chunk))
        defer { loop.buffers.give(buf) }
        let t0 = monotonicNanos()
        var copied: UInt64 = 0
        for child in children {
            for r in sFile.allocatedRanges(from: 0, to: s.size) {
                var off = r.offset
                while off < r.offset + r.length {
                    if stopMerging { throw .unavailable }
                    let end = min(r.offset + r.length, off + chunk)
                    let intoHead = child == layers.head
                    if intoHead { await openWindow(off, end) }
                    do {
                        copied += try await fillHoles(of: child, from: sSlot, off, end, buf)
                    } catch {
                        if intoHead { closeWindow() }
                        throw error
                    }
                    if intoHead { closeWindow() }
                    off = end
                    // Paced: no faster than the rate over the merge so far.
                    let due = UInt64(Double(copied) / Double(max(mergeRate, 1)) * 1e9)
                    let spent = monotonicNanos() &- t0
                    if due > spent { await loop.sleep(nanoseconds: due - spent) }
                }
            }
        }
        // What was copied is durable before the layer it came from goes (a crash before this
        // merges again, from the start).
        for child in children {
            do { try await layers.file(child)?.flush() } catch { throw failed(error, "merge flush") }
        }
        var next = meta
        for i in next.snapshotList.indices where next.snapshots![i].parent == s.id { next.snapshots![i].parent = s.parent }
        if next.headParent == s.id { next.headParent = s.parent }
        next.snapshots!.removeAll { $0.id == s.id }
        do { try next.save(metaPath, directory: directory) } catch {
            logger.error("saving metadata: \(error)")
            throw .ioError
        }
        meta = next
        await waitForReads(sSlot)
        if let f = layers.removeSnapshot(s.id) { await f.close() }
        unlink(directory + "/" + s.file)
        layers.rechain(meta)
        generation += 1
        logger.notice("snapshot \(s.name) (\(s.id)) merged away: \(copied) bytes moved into \(children.count) layer(s)")
    }

    /// The other way round (see `merge`): the child's data is copied over `s`'s in `s`'s file,
    /// which then becomes the child's layer (same view, the smaller side moved).
    private func mergeChildInto(_ s: ReplicaMetadata.SnapshotEntry, _ sSlot: UInt16, _ sFile: FileBlockStore,
                                child c: ReplicaMetadata.SnapshotEntry, _ cSlot: UInt16, _ cFile: FileBlockStore) async throws(WireStatus) {
        if c.size > sFile.blockCount * 512 {
            do { try sFile.grow(to: c.size) } catch { throw failed(error, "growing \(s.file) for a merge") }
        }
        let chunk: UInt64 = 1 << 20
        let buf = loop.buffers.take(Int(chunk))
        defer { loop.buffers.give(buf) }
        let t0 = monotonicNanos()
        var copied: UInt64 = 0
        for r in cFile.allocatedRanges(from: 0, to: c.size) {
            var off = r.offset
            while off < r.offset + r.length {
                if stopMerging { throw .unavailable }
                let n = Int(min(chunk, r.offset + r.length - off))
                let piece = IOBuffer(base: buf.base, count: n)
                do {
                    try await readLayer(cSlot, offset: off, into: piece)
                    try await sFile.write(lba: off / 512, count: n / 512, from: piece, fua: false)
                } catch {
                    throw failed(error, "merge at \(off) (+\(n))")
                }
                off += UInt64(n)
                copied += UInt64(n)
                let due = UInt64(Double(copied) / Double(max(mergeRate, 1)) * 1e9)
                let spent = monotonicNanos() &- t0
                if due > spent { await loop.sleep(nanoseconds: due - spent) }
            }
        }
        do { try await sFile.flush() } catch { throw failed(error, "merge flush") }
        var next = meta
        for i in next.snapshotList.indices where next.snapshots![i].id == c.id {
            next.snapshots![i].file = s.file
            next.snapshots![i].parent = s.parent
        }
        next.snapshots!.removeAll { $0.id == s.id }
        do { try next.save(metaPath, directory: directory) } catch {
            logger.error("saving metadata: \(error)")
            throw .ioError
        }
        meta = next
        // The index: what pointed at the child's old file now points at the merged one.
        layers.index.relabel(cSlot, to: sSlot)
        layers.moveSnapshot(c.id, to: sSlot, replacing: s.id)
        layers.rechain(meta)
        await waitForReads(cSlot)
        if let old = layers.freeSlot(cSlot) { await old.close() }
        unlink(directory + "/" + c.file)
        generation += 1
        logger.notice("snapshot \(s.name) (\(s.id)) merged away: \(copied) bytes of \(c.name) moved into its layer instead")
    }

    /// Copies [off, end) of layer `from` into layer `child` where `child` holds nothing.
    private func fillHoles(of child: UInt16, from: UInt16, _ off: UInt64, _ end: UInt64, _ buf: IOBuffer) async throws(WireStatus) -> UInt64 {
        guard let cf = layers.file(child) else { return 0 }
        var gaps: [(UInt64, UInt64)] = []
        var at = off
        for h in cf.allocatedRanges(from: off, to: end) {
            if h.offset > at { gaps.append((at, h.offset)) }
            at = max(at, h.offset + h.length)
        }
        if at < end { gaps.append((at, end)) }
        var copied: UInt64 = 0
        for (a, b) in gaps {
            let n = Int(b - a)
            let piece = IOBuffer(base: buf.base, count: n)
            do {
                try await readLayer(from, offset: a, into: piece)
                try await cf.write(lba: a / 512, count: n / 512, from: piece, fua: false)
            } catch {
                throw failed(error, "merge at \(a) (+\(n))")
            }
            let r = Self.granules(a, b - a)
            layers.hold(r.first, r.count, in: child)
            copied += UInt64(n)
        }
        return copied
    }
}
