import CairnBlock
import CairnIO
import CairnWire

/// A snapshot's view opened by a reader: its index (what it reads as), and, for an incremental
/// backup, the layers between it and an older snapshot (where the two may differ). Rebuilt when
/// the layers change (a merge moves data between layers, never changes what a snapshot reads).
struct OpenView {
    var request: SnapshotViewRequest
    var generation: UInt64
    var index: LayerIndex
    /// The slots of the layers above `base` up to the snapshot; nil when not incremental.
    var sinceBase: [UInt16]?
}

extension ReplicaStore {
    public func openSnapshotView(_ r: SnapshotViewRequest) throws(WireStatus) -> SnapshotView {
        guard meta.record != nil else { throw .conflict }
        guard let e = meta.snapshotList.first(where: { $0.id == r.id }), e.deleting != true else { throw .notFound }
        let v = try buildView(r)
        let handle = nextViewHandle
        nextViewHandle = nextViewHandle >= LayerSelector.viewHandleBit - 1 ? 1 : nextViewHandle + 1
        views[handle] = v
        // Readers open a few; the oldest go when there are many.
        while views.count > 64, let oldest = views.keys.min() { views[oldest] = nil }
        return SnapshotView(handle: handle, size: e.size, incremental: v.sinceBase != nil)
    }

    private func buildView(_ r: SnapshotViewRequest) throws(WireStatus) -> OpenView {
        let index = try snapshotIndex(r.id)
        var since: [UInt16]?
        if let base = r.base {
            let byID = Dictionary(meta.snapshotList.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var slots: [UInt16] = []
            var at: String? = r.id
            while let x = at, x != base, let s = layers.slotOf[x], slots.count <= byID.count {
                slots.append(s)
                at = byID[x]?.parent
            }
            if at == base { since = slots }
        }
        return OpenView(request: r, generation: generation, index: index, sinceBase: since)
    }

    /// The view of `selector`'s handle, rebuilt if the layers changed since it was built.
    private func view(_ selector: UInt32) throws(WireStatus) -> OpenView {
        let handle = selector & ~LayerSelector.viewHandleBit
        guard var v = views[handle] else { throw .notFound }
        if v.generation != generation {
            let incremental = v.sinceBase != nil
            v = try buildView(v.request)
            // A base merged away meanwhile: what may differ is still within what was listed.
            if incremental && v.sinceBase == nil { v.sinceBase = [] }
            views[handle] = v
        }
        return v
    }

    func readView(_ selector: UInt32, offset: UInt64, length: Int, into buffer: IOBuffer) async throws(WireStatus) -> Bool {
        let v = try view(selector)
        return try await readSnapshot(v.index, offset: offset, length: length, into: buffer)
    }

    /// Where the view holds data; incremental: where it may differ from its base.
    func viewAllocation(_ selector: UInt32, offset: UInt64, length: UInt64) throws(WireStatus) -> [Extent] {
        let v = try view(selector)
        let end = offset + length
        var out: [Extent] = []
        func add(_ a: UInt64, _ b: UInt64) {
            if let i = out.indices.last, out[i].end >= a {
                out[i].length = max(out[i].end, b) - out[i].offset
            } else {
                out.append(Extent(offset: a, length: b - a))
            }
        }
        if let since = v.sinceBase {
            var ranges: [(UInt64, UInt64)] = []
            for s in since {
                for r in layers.file(s)?.allocatedRanges(from: offset, to: end) ?? [] { ranges.append((r.offset, r.offset + r.length)) }
            }
            for (a, b) in ranges.sorted(by: { $0.0 < $1.0 }) { add(a, b) }
            return out
        }
        let g = Self.granule
        var off = offset
        while off < end {
            let gi = Int(off / g)
            let (s, n) = v.index.run(from: gi, limit: Int((end - UInt64(gi) * g + g - 1) / g))
            let runEnd = min(end, UInt64(gi + n) * g)
            if s != LayerIndex.none { add(off, runEnd) }
            off = runEnd
        }
        return out
    }
}
