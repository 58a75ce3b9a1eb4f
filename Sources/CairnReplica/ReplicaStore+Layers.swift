import CairnBlock
import CairnIO
import CairnWire
import Glibc

/// The data path through the layers: reads find each granule's layer in the index, writes go to
/// the head (a granule written in part is first copied up from the layer below, so the head
/// holds whole granules), unmaps under snapshots write zeros (a hole in the head would show the
/// layer below). Requests with a `LayerSelector` address one layer alone (rebuilds, backups).
extension ReplicaStore {
    typealias Granules = (first: Int, count: Int)

    static func granules(_ offset: UInt64, _ length: UInt64) -> Granules {
        let first = Int(offset / granule)
        return (first, Int((offset + length + granule - 1) / granule) - first)
    }

    /// The layer of a `LayerSelector` that names one (the head or a snapshot), and its size.
    func selected(_ layer: UInt32) throws(WireStatus) -> (slot: UInt16, file: FileBlockStore, size: UInt64) {
        if layer == LayerSelector.head { return (layers.head, data, meta.size) }
        let list = meta.snapshotList
        guard layer >= 1, Int(layer) <= list.count, let s = layers.slotOf[list[Int(layer) - 1].id],
              let f = layers.file(s) else { throw .badRequest }
        return (s, f, list[Int(layer) - 1].size)
    }

    // MARK: Reads

    /// Reads what the volume holds at [offset, +length): each run of granules from its layer.
    func readThroughLayers(offset: UInt64, length: Int, into buffer: IOBuffer) async throws(BlockStoreError) {
        try await readThrough(layers.index, offset: offset, length: length, into: buffer)
    }

    /// Reads through `index` (the head's, or a snapshot's from `snapshotIndex`).
    func readThrough(_ index: LayerIndex, offset: UInt64, length: Int, into buffer: IOBuffer) async throws(BlockStoreError) {
        let g = Self.granule
        let end = offset + UInt64(length)
        var off = offset
        while off < end {
            let gi = Int(off / g)
            let (s, n) = index.run(from: gi, limit: Int((end - UInt64(gi) * g + g - 1) / g))
            let runEnd = min(end, UInt64(gi + n) * g)
            let dst = IOBuffer(base: buffer.base + Int(off - offset), count: Int(runEnd - off))
            if s == LayerIndex.none {
                dst.zero()
            } else {
                try await readLayer(s, offset: off, into: dst)
            }
            off = runEnd
        }
    }

    /// Reads from one layer's file, counted so a merge does not close it meanwhile. Past the
    /// end of a layer smaller than the volume (taken before a grow) it reads zeros.
    func readLayer(_ s: UInt16, offset: UInt64, into dst: IOBuffer) async throws(BlockStoreError) {
        guard let f = layers.file(s) else { throw .medium(read: true, "layer \(s) is gone") }
        let fileEnd = f.blockCount * 512
        let n = offset >= fileEnd ? 0 : Int(min(UInt64(dst.count), fileEnd - offset))
        if n < dst.count { memset(dst.base + n, 0, dst.count - n) }
        guard n > 0 else { return }
        layers.reads[Int(s)] += 1
        defer { readEnded(s) }
        try await f.read(lba: offset / 512, count: n / 512, into: IOBuffer(base: dst.base, count: n))
    }

    private func readEnded(_ s: UInt16) {
        layers.reads[Int(s)] -= 1
        if layers.reads[Int(s)] == 0, !slotWaiters.isEmpty {
            let w = slotWaiters
            slotWaiters = []
            for c in w { c.resume() }
        }
    }

    /// Waits until no read of slot `s` is in flight.
    func waitForReads(_ s: UInt16) async {
        while layers.reads[Int(s)] > 0 {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in slotWaiters.append(c) }
        }
    }

    /// The index of what snapshot `id` reads as: its layer over its parent's, and so on down.
    public func snapshotIndex(_ id: String) throws(WireStatus) -> LayerIndex {
        let byID = Dictionary(meta.snapshotList.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        guard byID[id] != nil else { throw .notFound }
        var chain: [UInt16] = []
        var at: String? = id
        while let x = at, let s = layers.slotOf[x], chain.count <= byID.count {
            chain.append(s)
            at = byID[x]?.parent
        }
        var index = LayerIndex(granule: Self.granule, volumeSize: meta.size)
        for s in chain.reversed() {
            for r in layers.file(s)?.allocatedRanges(from: 0, to: meta.size) ?? [] {
                let gr = Self.granules(r.offset, r.length)
                index.set(gr.first, gr.count, to: s)
            }
        }
        return index
    }

    /// Reads what snapshot `index` (from `snapshotIndex`) holds at [offset, +length); returns
    /// whether any of it is data (false: all zeros, no layer holds it).
    public func readSnapshot(_ index: LayerIndex, offset: UInt64, length: Int, into buffer: IOBuffer) async throws(WireStatus) -> Bool {
        try checkRange(offset, UInt64(length))
        let r = Self.granules(offset, UInt64(length))
        let (s, n) = index.run(from: r.first, limit: r.count)
        if s == LayerIndex.none && n >= r.count {
            buffer.zero()
            return false
        }
        do { try await readThrough(index, offset: offset, length: length, into: buffer) } catch {
            throw failed(error, "snapshot read at \(offset) (+\(length))")
        }
        return true
    }

    // MARK: Writes to the head

    /// Writes to the head: after a merge filling that range, and with the granules it covers in
    /// part copied up first when a lower layer holds them.
    func writeHead(offset: UInt64, from buffer: IOBuffer, fua: Bool) async throws(WireStatus) {
        let length = UInt64(buffer.count)
        if mergeWindow != nil { await waitOutsideWindow(offset, length) }
        let gen = writeGeneration
        headWrites[gen] += 1
        defer { headWriteEnded(gen) }
        if layers.chained { try await promoteEdges(offset, length) }
        do {
            try await data.write(lba: offset / 512, count: buffer.count / 512, from: buffer, fua: fua)
        } catch {
            throw failed(error, "write at \(offset) (+\(buffer.count))")
        }
        let r = Self.granules(offset, length)
        layers.index.set(r.first, r.count, to: layers.head)
    }

    private func headWriteEnded(_ gen: Int) {
        headWrites[gen] -= 1
        if headWrites[gen] == 0, !drainWaiters.isEmpty {
            let ready = drainWaiters.filter { $0.gen == gen }
            drainWaiters.removeAll { $0.gen == gen }
            for w in ready { w.c.resume() }
        }
    }

    /// Waits for every head write that began before now (those that begin later are not waited for).
    func drainHeadWrites() async {
        let old = writeGeneration
        writeGeneration ^= 1
        if headWrites[old] > 0 {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in drainWaiters.append((old, c)) }
        }
    }

    func waitOutsideWindow(_ offset: UInt64, _ length: UInt64) async {
        while let w = mergeWindow, offset < w.end, w.start < offset + length {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in windowWaiters.append(c) }
        }
    }

    /// Holds head writes to [start, end) (and waits for those in flight) while a merge fills it.
    func openWindow(_ start: UInt64, _ end: UInt64) async {
        mergeWindow = (start, end)
        await drainHeadWrites()
    }

    func closeWindow() {
        mergeWindow = nil
        let w = windowWaiters
        windowWaiters = []
        for c in w { c.resume() }
    }

    private func promoteEdges(_ offset: UInt64, _ length: UInt64) async throws(WireStatus) {
        let g = Self.granule
        let end = offset + length
        let first = Int(offset / g), last = Int((end - 1) / g)
        if offset % g != 0 { try await promote(first) }
        if end % g != 0, !(last == first && offset % g != 0) { try await promote(last) }
    }

    /// Copies granule `gi` up into the head when a lower layer holds it, so a write of part of
    /// it leaves the rest as it read. Two writes into one granule wait for one copy.
    private func promote(_ gi: Int) async throws(WireStatus) {
        while promoting.contains(gi) {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in promoteWaiters.append(c) }
        }
        let s = layers.index.slot(gi)
        guard s != LayerIndex.none, s != layers.head else { return }
        promoting.insert(gi)
        defer {
            promoting.remove(gi)
            let w = promoteWaiters
            promoteWaiters = []
            for c in w { c.resume() }
        }
        let g = Self.granule
        let off = UInt64(gi) * g
        let n = Int(min(g, meta.size - off))
        let buf = loop.buffers.take(n)
        defer { loop.buffers.give(buf) }
        do {
            try await readLayer(s, offset: off, into: buf)
            try await data.write(lba: off / 512, count: n / 512, from: buf, fua: false)
        } catch {
            throw failed(error, "copying granule \(gi) up from layer \(s)")
        }
        layers.index.set(gi, 1, to: layers.head)
    }

    // MARK: Unmaps

    /// Under snapshots: zeros over every run a layer holds (runs no layer holds read as zeros).
    func zeroThroughLayers(offset: UInt64, length: UInt64) async throws(WireStatus) {
        let g = Self.granule
        let end = offset + length
        let zeros = loop.buffers.take(1 << 20)
        defer { loop.buffers.give(zeros) }
        zeros.zero()
        var off = offset
        while off < end {
            let gi = Int(off / g)
            let (s, n) = layers.index.run(from: gi, limit: Int((end - UInt64(gi) * g + g - 1) / g))
            let runEnd = min(end, UInt64(gi + n) * g)
            if s != LayerIndex.none {
                var o = off
                while o < runEnd {
                    let k = Int(min(UInt64(zeros.count), runEnd - o))
                    try await writeHead(offset: o, from: IOBuffer(base: zeros.base, count: k), fua: false)
                    o += UInt64(k)
                }
            }
            off = runEnd
        }
    }

    /// Deallocates [offset, +length) of the head alone (granule-aligned): the layers below show
    /// through there again. A delta rebuild uses it where the source's head holds nothing.
    func punchHead(offset: UInt64, length: UInt64) async throws(WireStatus) {
        let g = Self.granule
        guard offset % g == 0, length % g == 0 || offset + length == meta.size else { throw .badRequest }
        if mergeWindow != nil { await waitOutsideWindow(offset, length) }
        let gen = writeGeneration
        headWrites[gen] += 1
        defer { headWriteEnded(gen) }
        do { try await data.unmap(lba: offset / 512, count: length / 512) } catch {
            throw failed(error, "unmap of the head at \(offset) (+\(length))")
        }
        let r = Self.granules(offset, length)
        layers.index.set(r.first, r.count, to: LayerIndex.none)
        for s in layers.chain where s != layers.head {
            layers.mark(slot: s, from: offset, to: offset + length, aboveOnly: false)
        }
    }

    // MARK: Writes into a snapshot's layer (rebuilds)

    func writeSnapshotLayer(_ layer: UInt32, offset: UInt64, from buffer: IOBuffer) async throws(WireStatus) {
        let (s, f, size) = try selected(layer)
        let length = UInt64(buffer.count)
        let g = Self.granule
        guard offset % g == 0, length % g == 0 || offset + length == size, offset + length <= size else { throw .badRequest }
        do {
            try await f.write(lba: offset / 512, count: buffer.count / 512, from: buffer, fua: false)
        } catch {
            throw failed(error, "write into layer \(layer) at \(offset) (+\(buffer.count))")
        }
        let r = Self.granules(offset, length)
        layers.hold(r.first, r.count, in: s)
    }

    // MARK: Allocation

    /// The allocated extents of one layer, or (`view`) where any layer of the chain holds data.
    func allocated(offset: UInt64, length: UInt64, layer: UInt32) throws(WireStatus) -> [Extent] {
        let end = offset + length
        if LayerSelector.isViewHandle(layer) { return try viewAllocation(layer, offset: offset, length: length) }
        if layer != LayerSelector.view || !layers.chained {
            let f = layer == LayerSelector.view ? data : try selected(layer).file
            return f.allocatedRanges(from: offset, to: end).map { Extent(offset: $0.offset, length: $0.length) }
        }
        let g = Self.granule
        var out: [Extent] = []
        var off = offset
        while off < end {
            let gi = Int(off / g)
            let (s, n) = layers.index.run(from: gi, limit: Int((end - UInt64(gi) * g + g - 1) / g))
            let runEnd = min(end, UInt64(gi + n) * g)
            if s != LayerIndex.none {
                if let i = out.indices.last, out[i].end == off { out[i].length += runEnd - off } else {
                    out.append(Extent(offset: off, length: runEnd - off))
                }
            }
            off = runEnd
        }
        return out
    }
}
