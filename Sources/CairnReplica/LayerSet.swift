import CairnBlock
import CairnIO
import Glibc
import Logging

/// The layer files of a replica (each snapshot's and the head's), each in a numbered slot, and
/// the index of which layer of the head's chain holds each granule. Owned by `ReplicaStore`.
struct LayerSet {
    /// Slot 0 is "no layer" (zeros).
    private(set) var files: [FileBlockStore?] = [nil]
    /// Reads in flight per slot: a merged layer is closed only when none is left.
    var reads: [Int] = [0]
    /// The slot's place in the head's chain (1 = its oldest layer), 0 when not in it.
    private(set) var depth: [Int] = [0]
    private(set) var slotOf: [String: UInt16] = [:]
    private(set) var head: UInt16 = 0
    var index: LayerIndex
    private var freeSlots: [UInt16] = []

    /// Opens every snapshot's layer file beside the head, removes layer files the metadata does
    /// not name (left by a crash midway through a snapshot, revert or delete), and builds the
    /// index from the chain's allocation.
    init(meta: ReplicaMetadata, head store: FileBlockStore, directory: String, loop: EventLoop,
         logger: Logger) throws(BlockStoreError) {
        index = LayerIndex(granule: ReplicaStore.granule, volumeSize: meta.size)
        head = add(store)
        for s in meta.snapshotList {
            let f = try FileBlockStore(path: directory + "/" + s.file, size: s.size, blockSize: 512, loop: loop, logger: logger)
            slotOf[s.id] = add(f)
        }
        let named = Set(meta.snapshotList.map(\.file) + [meta.headFile])
        if let d = opendir(directory) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if (name.hasPrefix("layer-") || name == "volume.img"), name.hasSuffix(".img"), !named.contains(name) {
                    logger.notice("removing \(name): no snapshot or head names it (a change a crash left half-done)")
                    unlink(directory + "/" + name)
                }
            }
            closedir(d)
        }
        rechain(meta)
        reindex(meta)
    }

    func file(_ slot: UInt16) -> FileBlockStore? { Int(slot) < files.count ? files[Int(slot)] : nil }
    var headFile: FileBlockStore { files[Int(head)]! }
    /// Whether the head sits on a snapshot (reads then go through the index).
    var chained: Bool { depth[Int(head)] > 1 }

    mutating func add(_ f: FileBlockStore) -> UInt16 {
        if let s = freeSlots.popLast() {
            files[Int(s)] = f
            reads[Int(s)] = 0
            depth[Int(s)] = 0
            return s
        }
        files.append(f)
        reads.append(0)
        depth.append(0)
        return UInt16(files.count - 1)
    }

    /// The head is now snapshot `id` (same file, same slot: the index needs no change); `f` is the
    /// new head, on it.
    mutating func freezeHead(as id: String, newHead f: FileBlockStore) {
        slotOf[id] = head
        let d = depth[Int(head)]
        head = add(f)
        depth[Int(head)] = d + 1
    }

    /// Installs `f` as the head instead of the current one (which the caller closes).
    mutating func replaceHead(with f: FileBlockStore) -> FileBlockStore {
        let old = files[Int(head)]!
        files[Int(head)] = f
        return old
    }

    mutating func addSnapshot(_ id: String, _ f: FileBlockStore) {
        slotOf[id] = add(f)
    }

    /// Forgets the slot of snapshot `id`; returns its file for the caller to close.
    mutating func removeSnapshot(_ id: String) -> FileBlockStore? {
        guard let s = slotOf.removeValue(forKey: id) else { return nil }
        return freeSlot(s)
    }

    /// Snapshot `id` now lives in `slot` (the file of `replaced`, which is gone). Its old slot
    /// stays taken until `freeSlot`, once no read of it is in flight.
    mutating func moveSnapshot(_ id: String, to slot: UInt16, replacing replaced: String) {
        slotOf[replaced] = nil
        slotOf[id] = slot
    }

    /// Gives up a slot no name points to any more; returns its file for the caller to close.
    mutating func freeSlot(_ s: UInt16) -> FileBlockStore? {
        let f = files[Int(s)]
        files[Int(s)] = nil
        depth[Int(s)] = 0
        freeSlots.append(s)
        return f
    }

    /// Each slot's depth in the head's chain, from the metadata's parents.
    mutating func rechain(_ meta: ReplicaMetadata) {
        for i in depth.indices { depth[i] = 0 }
        var chain: [UInt16] = []
        var parent = meta.headParent
        let byID = Dictionary(meta.snapshotList.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        while let p = parent, let s = slotOf[p], chain.count <= byID.count {
            chain.append(s)
            parent = byID[p]?.parent
        }
        for (i, s) in chain.reversed().enumerated() { depth[Int(s)] = i + 1 }
        depth[Int(head)] = chain.count + 1
    }

    /// The head's chain, oldest first, ending with the head.
    var chain: [UInt16] {
        depth.indices.filter { depth[$0] > 0 }.sorted { depth[$0] < depth[$1] }.map { UInt16($0) }
    }

    /// Rebuilds the index from the allocation of each layer of the head's chain, oldest first.
    mutating func reindex(_ meta: ReplicaMetadata) {
        index = LayerIndex(granule: ReplicaStore.granule, volumeSize: meta.size)
        for s in chain { mark(slot: s, from: 0, to: meta.size, aboveOnly: false) }
    }

    /// Sets the granules the layer in `slot` holds within [from, to) to it, where no newer layer
    /// of the chain holds them (`aboveOnly`), or unconditionally.
    mutating func mark(slot s: UInt16, from: UInt64, to: UInt64, aboveOnly: Bool) {
        guard let f = file(s) else { return }
        let g = ReplicaStore.granule
        let d = depth[Int(s)]
        for r in f.allocatedRanges(from: from, to: to) {
            let first = Int(r.offset / g)
            let last = Int((r.offset + r.length + g - 1) / g)
            if aboveOnly {
                let depth = self.depth
                index.update(first, last - first, where: { depth[Int($0)] < d }, to: s)
            } else {
                index.set(first, last - first, to: s)
            }
        }
    }

    /// Granules [first, first+count) are now held by chain layer `s`, where no newer one holds them.
    mutating func hold(_ first: Int, _ count: Int, in s: UInt16) {
        let d = depth[Int(s)]
        guard d > 0 else { return }
        if s == head {
            index.set(first, count, to: s)
        } else {
            let depth = self.depth
            index.update(first, count, where: { depth[Int($0)] < d }, to: s)
        }
    }
}
